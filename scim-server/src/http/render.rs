//! Writing resources as JSON straight from their stored text, for reads under the default
//! projection (no `attributes`, no `excludedAttributes`) — by far the most common read.
//!
//! The general path parses each stored document into a `serde_json` map, assembles `id`, `meta`
//! and members or groups into it, projects it (`scim_schema::projection::project`) and
//! serialises it again: for a page of 100 users most of the server's time went there. This path
//! splits the stored text into its top-level members without allocating
//! (`serde_json::value::RawValue`), decides per attribute what the default projection keeps, and
//! copies the kept values' text.
//!
//! It writes exactly what the general path writes, byte for byte (the tests below compare the
//! two). Where the decision would need to look inside a value — a complex attribute with a
//! sub-attribute that is not returned by default, or an empty object or array that the
//! projection drops — it gives up and the caller takes the general path.

use std::marker::PhantomData;

use scim_schema::name::eq_ci;
use scim_schema::schema::attribute::{AttributeDef, Returned};
use scim_schema::schema::ResourceSchema;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::store::{LoadedResource, ResourceKind};

/// The top-level members of a JSON object, borrowed from its text, in order.
struct Entries<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EntriesVisitor<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'a>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                // A key with escapes cannot be borrowed: that is an error here, and the caller
                // falls back to the general path.
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(EntriesVisitor(PhantomData))
    }
}

fn entries(text: &str) -> Option<Vec<(&str, &RawValue)>> {
    serde_json::from_str::<Entries<'_>>(text).ok().map(|e| e.0)
}

/// What the default projection does with one attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Keep,
    Drop,
    /// Only a look inside the value could tell: use the general path.
    Unsure,
}

/// Mirrors `project_attribute` for a request without `attributes` or `excludedAttributes`.
fn decide(def: Option<&AttributeDef>, raw: &str) -> Decision {
    match def.map_or(Returned::Default, |d| d.returned) {
        Returned::Never | Returned::Request => Decision::Drop,
        Returned::Always => Decision::Keep,
        Returned::Default => match def {
            Some(d) if !d.sub_attributes.is_empty() => {
                let hidden_sub = d
                    .sub_attributes
                    .iter()
                    .any(|s| matches!(s.returned, Returned::Never | Returned::Request));
                // The projection drops empty objects and arrays (and empty items): such text
                // (or the same characters inside a string) sends the resource the general way.
                if hidden_sub || raw.contains("{}") || raw.contains("[]") {
                    Decision::Unsure
                } else {
                    Decision::Keep
                }
            }
            _ => Decision::Keep,
        },
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes `parts`, joined, as one JSON string: the `$ref`s and `meta.location` of every
/// resource on a page, without building each in a `String` first (`format!` showed in the
/// point read's instruction profile).
fn push_joined(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        if part.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            let start = out.len();
            push_str(out, part);
            // Drop the quotes the serialiser put around this part.
            out.pop();
            out.remove(start);
        } else {
            out.extend_from_slice(part.as_bytes());
        }
    }
    out.push(b'"');
}

/// `meta.version`: the weak ETag ([`crate::store::resource_etag`]) as a JSON string.
fn push_version(out: &mut Vec<u8>, version: i64, groups_digest: Option<u64>) {
    out.extend_from_slice(br#""W/\""#);
    out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
    if let Some(d) = groups_digest {
        out.extend_from_slice(format!(".{d:016x}").as_bytes());
    }
    out.extend_from_slice(br#"\"""#);
}

/// The URL of a resource: `base/Users/id`.
pub fn location(base: &str, kind: ResourceKind, id: &str) -> String {
    let endpoint = kind.endpoint();
    let mut url = String::with_capacity(base.len() + endpoint.len() + id.len() + 2);
    url.push_str(base);
    url.push('/');
    url.push_str(endpoint);
    url.push('/');
    url.push_str(id);
    url
}

fn push_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    push_str(out, key);
    out.push(b':');
}

/// About how many bytes [`write_default`] writes for `r`: reserving it up front means a group of
/// 100,000 members (18 MB of JSON) is written into one allocation instead of a chain of doubling
/// reallocations, which roughly tripled the memory such a read took.
pub fn size_hint(r: &LoadedResource, base: &str) -> usize {
    let per_item = |value: usize, display: usize| value * 2 + display + base.len() + 64;
    let members: usize = r.members.as_deref().map_or(0, |m| {
        m.iter()
            .map(|m| {
                let display = m.display.as_ref().map_or(0, String::len);
                per_item(m.member_id.len(), m.member_type.len() + display)
            })
            .sum()
    });
    let groups: usize = r.groups.as_deref().map_or(0, |g| {
        g.iter()
            .map(|g| per_item(g.group_id.len(), g.display.as_ref().map_or(0, String::len)))
            .sum()
    });
    r.doc.len() + members + groups + base.len() + r.id.len() + 256
}

/// Appends the default representation of `r` to `out`, as the general path (assemble, add
/// locations, project, serialise) would write it; `base` is the SCIM base URL the client used.
/// Returns `false`, with `out` as it was, when this resource needs the general path.
pub fn write_default(
    out: &mut Vec<u8>,
    r: &LoadedResource,
    schema: &ResourceSchema,
    base: &str,
) -> bool {
    let start = out.len();
    let ok = write_inner(out, r, schema, base).is_some();
    if !ok {
        out.truncate(start);
    }
    ok
}

fn write_inner(
    out: &mut Vec<u8>,
    r: &LoadedResource,
    schema: &ResourceSchema,
    base: &str,
) -> Option<()> {
    let stored = entries(&r.doc)?;
    // What the store adds itself; a stored key of the same name would change where it lands.
    if stored.iter().any(|(k, _)| {
        ["id", "meta", "members", "groups"]
            .iter()
            .any(|n| eq_ci(k, n))
    }) {
        return None;
    }
    let mut first = true;
    out.push(b'{');
    let schemas_at = stored.iter().position(|(k, _)| eq_ci(k, "schemas"));
    if let Some(i) = schemas_at {
        push_key(out, &mut first, "schemas");
        out.extend_from_slice(stored[i].1.get().as_bytes());
    }
    push_key(out, &mut first, "id");
    push_str(out, &r.id);
    for (i, (key, value)) in stored.iter().enumerate() {
        if Some(i) == schemas_at {
            continue;
        }
        if let Some(idx) = schema.extension_index(key) {
            let ext = &schema.extensions[idx].0;
            if !value.get().starts_with('{') {
                continue;
            }
            let mut kept = Vec::new();
            for (sub_key, sub_value) in entries(value.get())? {
                match decide(ext.attribute(sub_key), sub_value.get()) {
                    Decision::Keep => kept.push((sub_key, sub_value)),
                    Decision::Drop => {}
                    Decision::Unsure => return None,
                }
            }
            if kept.is_empty() {
                continue;
            }
            push_key(out, &mut first, key);
            let mut inner_first = true;
            out.push(b'{');
            for (k, v) in kept {
                push_key(out, &mut inner_first, k);
                out.extend_from_slice(v.get().as_bytes());
            }
            out.push(b'}');
            continue;
        }
        match decide(schema.main_attribute(key), value.get()) {
            Decision::Keep => {
                push_key(out, &mut first, key);
                out.extend_from_slice(value.get().as_bytes());
            }
            Decision::Drop => {}
            Decision::Unsure => return None,
        }
    }
    if let Some(members) = r.members.as_deref().filter(|m| !m.is_empty()) {
        if let Some(()) = kept_whole(schema, "members")? {
            push_key(out, &mut first, "members");
            out.push(b'[');
            for (n, member) in members.iter().enumerate() {
                let (value, member_type, display) =
                    (&member.member_id, &member.member_type, &member.display);
                if n > 0 {
                    out.push(b',');
                }
                let mut f = true;
                out.push(b'{');
                push_key(out, &mut f, "value");
                push_str(out, value);
                push_key(out, &mut f, "type");
                push_str(out, member_type);
                if let Some(d) = display {
                    push_key(out, &mut f, "display");
                    push_str(out, d);
                }
                if let Some(k) = ResourceKind::parse(member_type) {
                    push_key(out, &mut f, "$ref");
                    push_joined(out, &[base, "/", k.endpoint(), "/", value]);
                }
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    if let Some(groups) = r.groups.as_deref().filter(|g| !g.is_empty()) {
        if let Some(()) = kept_whole(schema, "groups")? {
            push_key(out, &mut first, "groups");
            out.push(b'[');
            for (n, group) in groups.iter().enumerate() {
                let (value, display, direct) = (&group.group_id, &group.display, &group.direct);
                if n > 0 {
                    out.push(b',');
                }
                let mut f = true;
                out.push(b'{');
                push_key(out, &mut f, "value");
                push_str(out, value);
                if let Some(d) = display {
                    push_key(out, &mut f, "display");
                    push_str(out, d);
                }
                push_key(out, &mut f, "type");
                push_str(out, if *direct { "direct" } else { "indirect" });
                push_key(out, &mut f, "$ref");
                push_joined(out, &[base, "/Groups/", value]);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    if let Some(()) = kept_whole(schema, "meta")? {
        push_key(out, &mut first, "meta");
        let mut f = true;
        out.push(b'{');
        push_key(out, &mut f, "resourceType");
        push_str(out, r.kind.as_str());
        push_key(out, &mut f, "created");
        push_str(out, &r.created);
        push_key(out, &mut f, "lastModified");
        push_str(out, &r.last_modified);
        push_key(out, &mut f, "version");
        push_version(out, r.version, r.groups_digest());
        push_key(out, &mut f, "location");
        push_joined(out, &[base, "/", r.kind.endpoint(), "/", &r.id]);
        out.push(b'}');
    }
    out.push(b'}');
    Some(())
}

/// For an attribute the server builds (`members`, `groups`, `meta`): `Some(Some(()))` when the
/// default projection keeps it whole, `Some(None)` when it drops it, `None` when unsure.
fn kept_whole(schema: &ResourceSchema, name: &str) -> Option<Option<()>> {
    // The values built here are never empty objects or arrays: a placeholder text suffices.
    match decide(schema.main_attribute(name), "[x]") {
        Decision::Keep => Some(Some(())),
        Decision::Drop => Some(None),
        Decision::Unsure => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::query::Projection;
    use crate::service::{schemas, Schemas};
    use crate::store::{Doc, GroupRef, MemberRow, Store};
    use serde_json::{json, Value};

    fn general(r: &LoadedResource, schemas: &Schemas, base: &str) -> String {
        // A store without a base URL, as the server opens it.
        let path = std::env::temp_dir().join(format!("scimhub-render-{}.db", uuid::Uuid::new_v4()));
        let store = Store::open(&format!("sqlite://{}", path.display())).expect("store");
        let doc = crate::http::resources::render(
            store.assemble_loaded(r.clone()),
            &Projection::default(),
            schemas,
            base,
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        serde_json::to_string(&doc).expect("json")
    }

    fn loaded(kind: ResourceKind, doc: Value) -> LoadedResource {
        LoadedResource {
            kind,
            id: "0190f3c2-7d1e-7000-8000-000000000001".into(),
            doc: serde_json::to_string(&doc).expect("doc"),
            created: "2026-11-29T10:00:00.000000Z".into(),
            last_modified: "2026-11-29T11:00:00.000000Z".into(),
            version: 3,
            members: None,
            groups: None,
        }
    }

    fn both(r: &LoadedResource, s: &Schemas) -> (Option<String>, String) {
        let base = "http://127.0.0.1:8080/scim/v2";
        let mut out = b"prefix".to_vec();
        let fast = write_default(&mut out, r, s.of(r.kind), base)
            .then(|| String::from_utf8(out[6..].to_vec()).expect("utf-8"));
        match &fast {
            None => assert_eq!(out, b"prefix", "a refusal leaves the buffer as it was"),
            // The reservation covers what is written, so writing never reallocates.
            Some(text) => assert!(size_hint(r, base) >= text.len(), "{text}"),
        }
        (fast, general(r, s, base))
    }

    fn schemas_for_test() -> Schemas {
        Schemas::new(schemas::registry(), false).expect("schemas")
    }

    /// Joined parts are the JSON string of their concatenation, whatever they hold; the version
    /// is the JSON string of the ETag.
    #[test]
    fn joined_parts_and_versions_are_the_json_strings_of_their_text() {
        let cases: [&[&str]; 5] = [
            &["http://h/scim/v2", "/", "Users", "/", "0190f3c2"],
            &["http://h\"x", "/Groups/", "a\\b"],
            &["tab\tnew\nline", "", "\u{1}", "\u{e9}\u{1F600}"],
            &["", "\"", ""],
            &[],
        ];
        for parts in cases {
            let mut out = b"[".to_vec();
            push_joined(&mut out, parts);
            assert_eq!(
                String::from_utf8(out[1..].to_vec()).expect("utf-8"),
                serde_json::to_string(&parts.concat()).expect("json"),
                "{parts:?}"
            );
        }
        assert_eq!(crate::store::etag(12), "W/\"12\"");
        for version in [0, 7, 1_234_567_890_123, i64::MAX, -1] {
            for digest in [None, Some(0), Some(0x0123_4567_89ab_cdef), Some(u64::MAX)] {
                let mut out = Vec::new();
                push_version(&mut out, version, digest);
                assert_eq!(
                    out,
                    serde_json::to_vec(&crate::store::resource_etag(version, digest))
                        .expect("json")
                );
            }
        }
    }

    #[test]
    fn render_matches_the_general_path_byte_for_byte() {
        let s = schemas_for_test();
        let user = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": "bjensen@example.com", "externalId": "bj",
            "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
            "active": true, "title": "Tour Guide \"senior\" \u{e9}",
            "password": "$argon2id$v=19$m=19456,t=2,p=1$abc$def",
            "x-unknown": {"a": 1},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984", "department": "Tours",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
            }
        });
        let mut r = loaded(ResourceKind::User, user);
        for groups in [
            None,
            Some(vec![]),
            Some(vec![
                GroupRef {
                    group_id: "g1".to_string(),
                    display: Some("Tour Guides".to_string()),
                    direct: true,
                },
                GroupRef {
                    group_id: "g2".to_string(),
                    display: None,
                    direct: false,
                },
            ]),
        ] {
            r.groups = groups;
            let (fast, general) = both(&r, &s);
            assert_eq!(fast.as_deref(), Some(general.as_str()));
            assert!(!general.contains("argon2"), "{general}");
        }
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                           "displayName": "Tour Guides", "externalId": "tg"});
        let mut g = loaded(ResourceKind::Group, group);
        for members in [
            None,
            Some(vec![]),
            Some(vec![
                MemberRow {
                    member_id: "u1".to_string(),
                    member_type: "User".to_string(),
                    display: Some("Babs".to_string()),
                },
                MemberRow {
                    member_id: "g9".to_string(),
                    member_type: "Group".to_string(),
                    display: None,
                },
            ]),
        ] {
            g.members = members;
            let (fast, general) = both(&g, &s);
            assert_eq!(fast.as_deref(), Some(general.as_str()));
        }
    }

    #[test]
    fn render_refuses_what_only_the_general_path_can_decide() {
        let s = schemas_for_test();
        for doc in [
            // The projection drops empty complex values.
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "name": {}}),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "emails": []}),
            // Escaped keys cannot be borrowed.
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "user\"Name": "a"}),
            // A stored key that collides with what the store adds.
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "Groups": []}),
        ] {
            let r = loaded(ResourceKind::User, doc);
            let (fast, _general) = both(&r, &s);
            assert_eq!(fast, None);
        }
        // And everything it does write is what the general path writes.
        let r = loaded(
            ResourceKind::User,
            json!({"userName": "no-schemas", "displayName": "", "nickName": null}),
        );
        let (fast, general) = both(&r, &s);
        assert_eq!(fast.as_deref(), Some(general.as_str()));
        let _: Doc = serde_json::from_str(&general).expect("object");
    }
}
