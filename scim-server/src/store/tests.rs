//! Store tests, run on SQLite (a temp file per test) and, when `SCIMHUB_TEST_POSTGRES_URL` is set,
//! on PostgreSQL (a fresh database per test, created through that URL and dropped afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter};
use scim_schema::schema::{ResourceSchema, ResourceType, Schema};
use serde_json::{json, Value};

use super::*;

struct TestDb {
    store: Store,
    name: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Files(std::path::PathBuf),
    Postgres { admin_url: String, db: String },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Files(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
                }
            }
            Cleanup::Postgres { admin_url, db } => {
                if let Ok(mut c) = diesel::pg::PgConnection::establish(admin_url) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
                }
            }
        }
    }
}

fn sqlite_db() -> TestDb {
    let path = std::env::temp_dir().join(format!("scimhub-store-{}.db", uuid::Uuid::new_v4()));
    let store = Store::open(&format!("sqlite://{}", path.display())).expect("open sqlite");
    TestDb {
        store,
        name: "sqlite".into(),
        cleanup: Cleanup::Files(path),
    }
}

fn postgres_db() -> Option<TestDb> {
    let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").ok()?;
    let db = format!("scimhub_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel::pg::PgConnection::establish(&admin_url)
        .expect("connect to SCIMHUB_TEST_POSTGRES_URL");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .expect("create test database");
    let (prefix, _) = admin_url
        .rsplit_once('/')
        .expect("database URL with a database name");
    let url = format!("{prefix}/{db}");
    let store = Store::open_with(
        &url,
        StoreOptions {
            pool_size: 4,
            ..StoreOptions::default()
        },
    )
    .expect("open pg");
    Some(TestDb {
        store,
        name: "postgres".into(),
        cleanup: Cleanup::Postgres { admin_url, db },
    })
}

/// Runs `f` on every configured backend.
fn each_backend(f: impl Fn(&TestDb)) {
    let db = sqlite_db();
    f(&db);
    if let Some(db) = postgres_db() {
        f(&db);
    }
}

fn obj(v: Value) -> Doc {
    match v {
        Value::Object(m) => m,
        _ => panic!("object expected"),
    }
}

fn user_schema() -> ResourceSchema {
    let main: Schema = serde_json::from_value(json!({
        "id": "urn:ietf:params:scim:schemas:core:2.0:User",
        "attributes": [
            {"name": "userName", "type": "string", "uniqueness": "server"},
            {"name": "displayName", "type": "string"},
            {"name": "externalId", "type": "string", "caseExact": true},
            {"name": "active", "type": "boolean"},
            {"name": "title", "type": "string"},
            {"name": "name", "type": "complex", "subAttributes": [
                {"name": "givenName", "type": "string"}, {"name": "familyName", "type": "string"}]},
            {"name": "emails", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string"}, {"name": "type", "type": "string"},
                {"name": "primary", "type": "boolean"}]},
            {"name": "groups", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string"}, {"name": "type", "type": "string"}]}
        ]
    }))
    .unwrap();
    let ent: Schema = serde_json::from_value(json!({
        "id": ENTERPRISE,
        "attributes": [
            {"name": "employeeNumber", "type": "string"},
            {"name": "manager", "type": "complex", "subAttributes": [{"name": "value", "type": "string"}]}
        ]
    }))
    .unwrap();
    let rt: ResourceType = serde_json::from_value(json!({
        "id": "User", "name": "User", "endpoint": "/Users",
        "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
        "schemaExtensions": [{"schema": ENTERPRISE, "required": false}]
    }))
    .unwrap();
    ResourceSchema {
        resource_type: rt,
        main: Arc::new(main),
        extensions: vec![(Arc::new(ent), false)],
    }
}

fn group_schema() -> ResourceSchema {
    let main: Schema = serde_json::from_value(json!({
        "id": "urn:ietf:params:scim:schemas:core:2.0:Group",
        "attributes": [
            {"name": "displayName", "type": "string"},
            {"name": "externalId", "type": "string", "caseExact": true},
            {"name": "members", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string", "caseExact": true}, {"name": "type", "type": "string"}]}
        ]
    }))
    .unwrap();
    let rt: ResourceType = serde_json::from_value(json!({
        "id": "Group", "name": "Group", "endpoint": "/Groups",
        "schema": "urn:ietf:params:scim:schemas:core:2.0:Group"
    }))
    .unwrap();
    ResourceSchema {
        resource_type: rt,
        main: Arc::new(main),
        extensions: vec![],
    }
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user(s: &Store, name: &str) -> StoredResource {
    s.create(ResourceKind::User, obj(json!({"userName": name})), None)
        .unwrap()
}

fn group(s: &Store, name: &str, members: &[&str]) -> StoredResource {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    s.create(
        ResourceKind::Group,
        obj(json!({"displayName": name, "members": members})),
        None,
    )
    .unwrap()
}

fn cmp(path: AttrPath, op: CompareOp, v: &str) -> Filter {
    Filter::Compare {
        path,
        op,
        value: CompValue::Str(v.into()),
    }
}

#[test]
fn store_uniqueness() {
    each_backend(|db| {
        let s = &db.store;
        user(s, "BJensen");
        let e = s
            .create(
                ResourceKind::User,
                obj(json!({"userName": "bjensen"})),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Uniqueness(m) if m.contains("userName")),
            "{}: {e:?}",
            db.name
        );
        // externalId is unique per client.
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "a", "externalId": "X1"})),
            Some("hr"),
        )
        .unwrap();
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "b", "externalId": "X1"})),
            Some("idp"),
        )
        .unwrap();
        let e = s
            .create(
                ResourceKind::User,
                obj(json!({"userName": "c", "externalId": "X1"})),
                Some("hr"),
            )
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Uniqueness(m) if m.contains("externalId")),
            "{}: {e:?}",
            db.name
        );
        // Group displayName, case-insensitively; users may share displayNames.
        group(s, "Admins", &[]);
        let e = s
            .create(
                ResourceKind::Group,
                obj(json!({"displayName": "ADMINS"})),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Uniqueness(m) if m.contains("displayName")),
            "{}: {e:?}",
            db.name
        );
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "d", "displayName": "Same"})),
            None,
        )
        .unwrap();
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "e", "displayName": "Same"})),
            None,
        )
        .unwrap();
    });
}

#[test]
fn store_versions_if_match_and_delete() {
    each_backend(|db| {
        let s = &db.store;
        let u = user(s, "alice");
        assert_eq!(u.version, 1);
        assert_eq!(u.doc["meta"]["version"], json!("W/\"1\""));
        let got = s.get(ResourceKind::User, &u.id, true).unwrap();
        assert_eq!(got.doc["userName"], json!("alice"));
        let e = s
            .replace(
                ResourceKind::User,
                &u.id,
                obj(json!({"userName": "alice2"})),
                Some("W/\"7\""),
                None,
            )
            .unwrap_err();
        assert!(matches!(
            e,
            StoreError::PreconditionFailed { current_version: 1 }
        ));
        let r = s
            .replace(
                ResourceKind::User,
                &u.id,
                obj(json!({"userName": "alice2"})),
                Some("W/\"1\""),
                None,
            )
            .unwrap();
        assert_eq!(r.version, 2);
        // An update that changes nothing keeps the version.
        let same = s
            .update_with(ResourceKind::User, &u.id, Some("*"), None, Ok)
            .unwrap();
        assert_eq!(same.version, 2);
        let up = s
            .update_with(ResourceKind::User, &u.id, None, None, |mut d| {
                d.insert("title".into(), json!("Boss"));
                Ok(d)
            })
            .unwrap();
        assert_eq!(up.version, 3);
        assert_eq!(up.doc["title"], json!("Boss"));
        assert!(matches!(
            s.delete(ResourceKind::User, &u.id, Some("W/\"2\"")),
            Err(StoreError::PreconditionFailed { current_version: 3 })
        ));
        s.delete(ResourceKind::User, &u.id, None).unwrap();
        assert!(matches!(
            s.delete(ResourceKind::User, &u.id, None),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.get(ResourceKind::User, &u.id, false),
            Err(StoreError::NotFound)
        ));
        // A kind mismatch is NotFound.
        let g = group(s, "g", &[]);
        assert!(matches!(
            s.get(ResourceKind::User, &g.id, false),
            Err(StoreError::NotFound)
        ));
    });
}

fn doc_text(s: &Store, id: &str) -> (String, i64) {
    use diesel::RunQueryDsl;
    let mut c = s.read_conn().unwrap();
    let mut q = sql::Sql::<(diesel::sql_types::Text, diesel::sql_types::BigInt)>::new(
        "SELECT doc, version FROM resources WHERE id = ",
    );
    q.text(id);
    q.get_result(&mut *c).unwrap()
}

#[test]
fn store_member_delta_touches_only_changed_rows() {
    each_backend(|db| {
        let s = &db.store;
        let n_big = if db.name == "sqlite" { 10_000 } else { 3_000 };
        let users: Vec<String> = (0..n_big).map(|i| user(s, &format!("u{i}")).id).collect();
        let small = group(
            s,
            "small",
            &users[..10].iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let big = group(
            s,
            "big",
            &users.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let extra = user(s, "extra").id;
        let mut times = Vec::new();
        for g in [&small, &big] {
            let (doc_before, v_before) = doc_text(s, &g.id);
            let t = std::time::Instant::now();
            let out = s
                .apply_member_delta(
                    &g.id,
                    vec![NewMember::new(extra.clone())],
                    MemberRemoval::None,
                    None,
                )
                .unwrap();
            let out2 = s
                .apply_member_delta(
                    &g.id,
                    vec![],
                    MemberRemoval::Ids(vec![users[3].clone()]),
                    Some(&etag(out.version)),
                )
                .unwrap();
            times.push(t.elapsed());
            assert!(out.changed && out2.changed);
            let (doc_after, v_after) = doc_text(s, &g.id);
            assert_eq!(doc_before, doc_after, "the document is not rewritten");
            assert_eq!(v_after, v_before + 2);
            // Adding an existing member changes nothing.
            let same = s
                .apply_member_delta(
                    &g.id,
                    vec![NewMember::new(extra.clone())],
                    MemberRemoval::None,
                    None,
                )
                .unwrap();
            assert!(!same.changed);
            assert_eq!(same.version, v_after);
        }
        assert_eq!(s.group_members(&big.id).unwrap().len(), n_big);
        assert_eq!(s.group_members(&small.id).unwrap().len(), 10);
        // Unknown members fail the whole change.
        let e = s
            .apply_member_delta(
                &small.id,
                vec![NewMember::new("nope"), NewMember::new(users[20].clone())],
                MemberRemoval::None,
                None,
            )
            .unwrap_err();
        assert!(matches!(&e, StoreError::UnknownMembers(ids) if ids == &vec!["nope".to_string()]));
        assert_eq!(s.group_members(&small.id).unwrap().len(), 10);
        // Cost does not grow with the group (generous bound against machine noise).
        assert!(
            times[1] < times[0] * 20 + std::time::Duration::from_millis(50),
            "{}: {times:?}",
            db.name
        );
        // excludedAttributes=members does not read members.
        let g = s.get(ResourceKind::Group, &big.id, false).unwrap();
        assert!(g.doc.get("members").is_none());
        // Deleting a member removes it from the groups and bumps their versions.
        let v = s
            .get(ResourceKind::Group, &small.id, false)
            .unwrap()
            .version;
        s.delete(ResourceKind::User, &extra, None).unwrap();
        assert_eq!(
            s.get(ResourceKind::Group, &small.id, false)
                .unwrap()
                .version,
            v + 1
        );
        assert_eq!(s.group_members(&small.id).unwrap().len(), 9);
    });
}

#[test]
fn store_user_groups_direct_and_indirect() {
    each_backend(|db| {
        let s = &db.store;
        let u = user(s, "nested");
        let inner = group(s, "inner", &[&u.id]);
        let outer = group(s, "outer", &[&inner.id]);
        let top = group(s, "top", &[&outer.id, &u.id]);
        // A cycle must not loop.
        s.apply_member_delta(
            &inner.id,
            vec![NewMember::new(top.id.clone())],
            MemberRemoval::None,
            None,
        )
        .unwrap();
        let got = s.get(ResourceKind::User, &u.id, true).unwrap();
        let groups = got.doc["groups"].as_array().unwrap();
        let find = |id: &str| {
            groups
                .iter()
                .find(|g| g["value"] == json!(id))
                .map(|g| g["type"].clone())
        };
        assert_eq!(find(&inner.id), Some(json!("direct")));
        assert_eq!(find(&outer.id), Some(json!("indirect")));
        assert_eq!(find(&top.id), Some(json!("direct")));
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups
                .iter()
                .find(|g| g["value"] == json!(inner.id))
                .unwrap()["display"],
            json!("inner")
        );
        let page = s
            .search(
                ResourceKind::User,
                &SearchQuery {
                    count: 10,
                    with_members: true,
                    ..Default::default()
                },
                &user_schema(),
            )
            .unwrap();
        assert_eq!(page.resources[0].doc["groups"].as_array().unwrap().len(), 3);
        let g = s.get(ResourceKind::Group, &top.id, true).unwrap();
        assert_eq!(g.doc["members"].as_array().unwrap().len(), 2);
    });
}

fn seed(s: &Store) {
    let docs = [
        json!({"userName": "bjensen", "displayName": "Barbara Jensen", "active": true, "title": "Tour Guide",
               "name": {"givenName": "Barbara", "familyName": "Jensen"}, "externalId": "E-1",
               "emails": [{"value": "bjensen@Example.com", "type": "work", "primary": true},
                          {"value": "babs@home.org", "type": "home"}],
               ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "M-1"}}}),
        json!({"userName": "JSmith", "displayName": "John Smith", "active": false,
               "name": {"givenName": "John"}, "externalId": "e-1",
               "emails": [{"value": "john@example.com", "type": "home"}],
               ENTERPRISE: {"employeeNumber": "701985", "manager": {"value": "m-1"}}}),
        json!({"userName": "a_b%c\\d", "displayName": "Wild Card", "title": "Tour Manager",
               "emails": [{"value": "wild@example.org"}]}),
        json!({"userName": "abc", "active": true, "emails": [{"type": "work"}]}),
        json!({"userName": "Zoe", "displayName": "zoe", "title": "", "externalId": "Z"}),
        json!({"userName": "ümlaut", "displayName": "Ünïcode"}),
    ];
    for d in docs {
        s.create(ResourceKind::User, obj(d), None).unwrap();
    }
    for i in 0..40 {
        s.create(
            ResourceKind::User,
            obj(json!({"userName": format!("bulk{i:02}"), "active": i % 2 == 0,
                       "emails": [{"value": format!("bulk{i}@example.com"), "type": if i % 3 == 0 {"work"} else {"home"}}]})),
            None,
        )
        .unwrap();
    }
}

fn parse_ish(spec: &str) -> Filter {
    // A tiny prefix notation for tests (the real parser lives in scim-schema):
    // "and|or <f> ; <f>", "not <f>", "pr path", "path op value".
    fn path(p: &str) -> AttrPath {
        if let Some(rest) = p.strip_prefix(&format!("{ENTERPRISE}:")) {
            let mut parts = rest.splitn(2, '.');
            let name = parts.next().unwrap();
            let mut a = match parts.next() {
                Some(sub) => AttrPath::with_sub(name, sub),
                None => AttrPath::simple(name),
            };
            a.urn = Some(scim_schema::CiString::from(ENTERPRISE));
            return a;
        }
        match p.split_once('.') {
            Some((a, b)) => AttrPath::with_sub(a, b),
            None => AttrPath::simple(p),
        }
    }
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix("and ") {
        let (a, b) = rest.split_once(" ; ").unwrap();
        return Filter::And(Box::new(parse_ish(a)), Box::new(parse_ish(b)));
    }
    if let Some(rest) = spec.strip_prefix("or ") {
        let (a, b) = rest.split_once(" ; ").unwrap();
        return Filter::Or(Box::new(parse_ish(a)), Box::new(parse_ish(b)));
    }
    if let Some(rest) = spec.strip_prefix("not ") {
        return Filter::Not(Box::new(parse_ish(rest)));
    }
    if let Some(rest) = spec.strip_prefix("pr ") {
        return Filter::Present(path(rest));
    }
    if let Some(rest) = spec.strip_prefix("vp ") {
        let (attr, inner) = rest.split_once(' ').unwrap();
        return Filter::ValuePath {
            path: AttrPath::simple(attr),
            filter: Box::new(parse_ish(inner)),
        };
    }
    let mut it = spec.splitn(3, ' ');
    let (p, op, v) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let op = match op {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => panic!("op {op}"),
    };
    let value = match v {
        "true" => CompValue::Bool(true),
        "false" => CompValue::Bool(false),
        _ => CompValue::Str(v.trim_matches('"').to_string()),
    };
    Filter::Compare {
        path: path(p),
        op,
        value,
    }
}

#[test]
fn store_filter_push_down_matches_memory() {
    let filters = [
        "userName eq BJENSEN",
        "userName ne bjensen",
        "userName co \"_b%\"",
        "userName co %",
        "userName sw a",
        "userName sw A_",
        "userName ew \\d",
        "userName gt m",
        "userName le bulk05",
        "userName sw Ü",
        "displayName eq \"barbara jensen\"",
        "displayName co smith",
        "pr displayName",
        "not pr displayName",
        "externalId eq e-1",
        "externalId eq E-1",
        "externalId co E",
        "externalId sw e",
        "pr externalId",
        "active eq true",
        "active eq false",
        "active ne true",
        "pr active",
        "emails.value eq JOHN@example.com",
        "emails.value co example.com",
        "emails.value ew .org",
        "emails.value ne john@example.com",
        "emails.type eq work",
        "pr emails.value",
        "vp emails and type eq work ; value co example",
        "vp emails not type eq work",
        "vp emails and type eq home ; value sw bulk1",
        "employeeNumber eq 701984",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber sw 7019",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq M-1",
        "and userName sw bulk ; active eq true",
        "or userName eq zoe ; emails.type eq work",
        "not and userName sw bulk ; active eq true",
        "not or active eq true ; pr externalId",
        // Not pushable (no column): in memory over a narrowed set, or batched.
        "title eq \"tour guide\"",
        "pr title",
        "and title sw tour ; active eq true",
        "or title co manager ; userName eq zoe",
        "not title co guide",
        "name.givenName sw J",
        "and not name.givenName eq john ; emails.value co example",
        "meta.created gt 2000-01-01T00:00:00Z",
        "meta.lastModified lt 2000-01-01T00:00:00Z",
        "id gt 0",
    ];
    each_backend(|db| {
        let s = &db.store;
        seed(s);
        let schema = user_schema();
        let all = s
            .search(
                ResourceKind::User,
                &SearchQuery {
                    count: 1000,
                    ..Default::default()
                },
                &schema,
            )
            .unwrap();
        assert_eq!(all.total_results, 46);
        for spec in filters {
            let f = parse_ish(spec);
            let mut expected: Vec<String> = all
                .resources
                .iter()
                .filter(|r| in_memory_filter::matches(&f, &r.doc, &schema))
                .map(|r| r.id.clone())
                .collect();
            expected.sort();
            let q = SearchQuery {
                filter: Some(f),
                count: 1000,
                ..Default::default()
            };
            let page = s.search(ResourceKind::User, &q, &schema).unwrap();
            let got: Vec<String> = page.resources.iter().map(|r| r.id.clone()).collect();
            assert_eq!(got, expected, "{}: filter {spec}", db.name);
            assert_eq!(
                page.total_results as usize,
                expected.len(),
                "{}: total for {spec}",
                db.name
            );
        }
        // Groups: members.value pushed down.
        let gs = group_schema();
        let u = &all.resources[0].id;
        let g1 = group(s, "with", &[u]);
        group(s, "without", &[]);
        let q = SearchQuery {
            filter: Some(cmp(
                AttrPath::with_sub("members", "value"),
                CompareOp::Eq,
                u,
            )),
            count: 10,
            ..Default::default()
        };
        let page = s.search(ResourceKind::Group, &q, &gs).unwrap();
        assert_eq!(
            page.resources
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>(),
            vec![g1.id.clone()]
        );
        let q = SearchQuery {
            filter: Some(parse_ish(&format!("vp members value eq {u}"))),
            count: 10,
            ..Default::default()
        };
        assert_eq!(
            s.search(ResourceKind::Group, &q, &gs)
                .unwrap()
                .total_results,
            1
        );
    });
}

#[test]
fn store_paging_sorting_and_cursors() {
    each_backend(|db| {
        let s = &db.store;
        seed(s);
        let schema = user_schema();
        for (sort, desc, filter) in [
            (None, false, None),
            (Some(AttrPath::simple("userName")), false, None),
            (
                Some(AttrPath::simple("userName")),
                true,
                Some("userName sw bulk"),
            ),
            (Some(AttrPath::simple("displayName")), false, None),
            (Some(AttrPath::simple("displayName")), true, None),
            (Some(AttrPath::simple("title")), false, None),
            (
                Some(AttrPath::simple("userName")),
                false,
                Some("or title co manager ; active eq true"),
            ),
        ] {
            let base = SearchQuery {
                filter: filter.map(parse_ish),
                sort_by: sort.clone(),
                descending: desc,
                ..Default::default()
            };
            let all = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        count: 1000,
                        ..base.clone()
                    },
                    &schema,
                )
                .unwrap();
            let all_ids: Vec<String> = all.resources.iter().map(|r| r.id.clone()).collect();
            // Sorted as the in-memory sort key says.
            if let Some(p) = &sort {
                let keys: Vec<_> = all
                    .resources
                    .iter()
                    .map(|r| in_memory_filter::sort_key(&r.doc, p, &schema))
                    .collect();
                for w in keys.windows(2) {
                    let o = in_memory_filter::cmp_keys(&w[0], &w[1]);
                    assert!(
                        if desc { o.is_ge() } else { o.is_le() },
                        "{}: {sort:?} {desc}: {keys:?}",
                        db.name
                    );
                }
            }
            // startIndex/count.
            let p2 = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        start_index: 8,
                        count: 7,
                        ..base.clone()
                    },
                    &schema,
                )
                .unwrap();
            let ids: Vec<String> = p2.resources.iter().map(|r| r.id.clone()).collect();
            assert_eq!(
                ids,
                all_ids.iter().skip(7).take(7).cloned().collect::<Vec<_>>(),
                "{}: {sort:?}",
                db.name
            );
            assert_eq!(p2.total_results as usize, all_ids.len());
            // count=0.
            let p0 = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        count: 0,
                        ..base.clone()
                    },
                    &schema,
                )
                .unwrap();
            assert!(p0.resources.is_empty());
            assert_eq!(p0.total_results as usize, all_ids.len());
            // Cursors walk the same order.
            let mut walked = Vec::new();
            let mut cursor = Some(String::new());
            let mut pages = 0;
            while let Some(c) = cursor {
                let p = s
                    .search(
                        ResourceKind::User,
                        &SearchQuery {
                            count: 10,
                            cursor: Some(c),
                            ..base.clone()
                        },
                        &schema,
                    )
                    .unwrap();
                walked.extend(p.resources.iter().map(|r| r.id.clone()));
                cursor = p.next_cursor;
                pages += 1;
                assert!(pages < 20);
            }
            assert_eq!(walked, all_ids, "{}: cursor walk {sort:?} {desc}", db.name);
        }
        // A cursor from another query is rejected.
        let p = s
            .search(
                ResourceKind::User,
                &SearchQuery {
                    count: 5,
                    cursor: Some(String::new()),
                    ..Default::default()
                },
                &schema,
            )
            .unwrap();
        let other = SearchQuery {
            count: 5,
            cursor: p.next_cursor,
            descending: true,
            ..Default::default()
        };
        assert!(matches!(
            s.search(ResourceKind::User, &other, &schema),
            Err(StoreError::Scim(_))
        ));
    });
}

/// totalResults stays exact however it is obtained: from a short last page, from the per-type
/// count cache (SQLite), or from COUNT(*); and it follows creates and deletes at once.
#[test]
fn store_total_results_follow_writes() {
    each_backend(|db| {
        let s = &db.store;
        seed(s);
        let schema = user_schema();
        let total = |q: SearchQuery| s.search(ResourceKind::User, &q, &schema).unwrap();
        let n = total(SearchQuery {
            count: 1000,
            ..Default::default()
        })
        .resources
        .len() as u64;
        assert!(n > 10, "{}", db.name);
        let ids =
            |page: &Page| -> Vec<String> { page.resources.iter().map(|r| r.id.clone()).collect() };
        let shapes = |expected: u64| {
            for descending in [false, true] {
                let all = ids(&total(SearchQuery {
                    count: 1000,
                    descending,
                    ..Default::default()
                }));
                assert_eq!(all.len() as u64, expected, "{}", db.name);
                for (start_index, count) in [
                    (1, 0),
                    (1, 3),
                    (1, 1000),
                    (4, 3),
                    (n - 1, 5),
                    (n, 5),
                    (n + 7, 5),
                ] {
                    let q = SearchQuery {
                        start_index,
                        count,
                        descending,
                        ..Default::default()
                    };
                    let page = total(q);
                    assert_eq!(
                        page.total_results, expected,
                        "{}: startIndex {start_index} count {count}",
                        db.name
                    );
                    let want: Vec<String> = all
                        .iter()
                        .skip(start_index as usize - 1)
                        .take(count as usize)
                        .cloned()
                        .collect();
                    assert_eq!(
                        ids(&page),
                        want,
                        "{}: startIndex {start_index} count {count} desc {descending}",
                        db.name
                    );
                }
            }
            let first_cursor_page = total(SearchQuery {
                start_index: 5,
                count: 1000,
                cursor: Some(String::new()),
                ..Default::default()
            });
            assert_eq!(first_cursor_page.total_results, expected, "{}", db.name);
        };
        shapes(n);
        let extra = user(s, "count.extra");
        shapes(n + 1);
        s.delete(ResourceKind::User, &extra.id, None).unwrap();
        shapes(n);
        s.delete(ResourceKind::User, &extra.id, None).unwrap_err();
        shapes(n);
        // Filtered totals never come from the per-type cache.
        let filtered = total(SearchQuery {
            filter: Some(parse_ish("userName sw bulk")),
            count: 0,
            ..Default::default()
        });
        assert!(filtered.total_results < n, "{}", db.name);
    });
}

#[test]
fn store_type_count_cache_refuses_counts_older_than_a_commit() {
    let counts = TypeCounts::default();
    let before = counts.generation();
    counts.invalidate();
    counts.put(ResourceKind::User, before, 10);
    assert_eq!(counts.get(ResourceKind::User), None);
    let now = counts.generation();
    counts.put(ResourceKind::User, now, 11);
    assert_eq!(counts.get(ResourceKind::User), Some(11));
    assert_eq!(counts.get(ResourceKind::Group), None);
    counts.invalidate();
    assert_eq!(counts.get(ResourceKind::User), None);
}

#[test]
fn store_concurrent_sqlite_writes_never_fail() {
    let db = sqlite_db();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = db.store.clone();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let u = s
                        .create(
                            ResourceKind::User,
                            obj(json!({"userName": format!("t{t}-{i}")})),
                            None,
                        )
                        .unwrap();
                    s.update_with(ResourceKind::User, &u.id, None, None, |mut d| {
                        d.insert("title".into(), json!("x"));
                        Ok(d)
                    })
                    .unwrap();
                    s.get(ResourceKind::User, &u.id, true).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let page = db
        .store
        .search(
            ResourceKind::User,
            &SearchQuery {
                count: 0,
                ..Default::default()
            },
            &user_schema(),
        )
        .unwrap();
    assert_eq!(page.total_results, 480);
}

#[test]
fn store_tokens() {
    each_backend(|db| {
        let s = &db.store;
        let t = s
            .insert_token(
                "ci",
                "hash",
                "pfx1",
                &["scim:read".to_string(), "admin".to_string()],
                None,
            )
            .unwrap();
        let found = s.find_token_by_prefix("pfx1").unwrap().unwrap();
        assert_eq!(found.user_id, None);
        assert_eq!(found.scopes, vec!["scim:read", "admin"]);
        assert!(found.last_used.is_none());
        s.touch_token(&t.id).unwrap();
        assert!(s
            .find_token_by_prefix("pfx1")
            .unwrap()
            .unwrap()
            .last_used
            .is_some());
        s.revoke_token(&t.id).unwrap();
        assert!(s
            .find_token_by_prefix("pfx1")
            .unwrap()
            .unwrap()
            .revoked
            .is_some());
        assert!(matches!(s.revoke_token("nope"), Err(StoreError::NotFound)));
        assert!(s.find_token_by_prefix("none").unwrap().is_none());
        assert_eq!(s.list_tokens().unwrap().len(), 1);
    });
}

#[test]
fn store_tokens_may_act_as_a_directory_user() {
    each_backend(|db| {
        let s = &db.store;
        let mut doc = Doc::new();
        doc.insert("userName".into(), json!("Grace"));
        let grace = s.create(ResourceKind::User, doc, None).unwrap();
        // By id, and by userName case-insensitively.
        assert_eq!(
            s.find_user_id(&grace.id).unwrap(),
            Some((grace.id.clone(), "Grace".to_string()))
        );
        assert_eq!(
            s.find_user_id("grace").unwrap(),
            Some((grace.id.clone(), "Grace".to_string()))
        );
        assert_eq!(s.find_user_id("nobody").unwrap(), None);
        s.insert_token(
            "grace-approvals",
            "hash",
            "pfx2",
            &["approvals".to_string()],
            Some(&grace.id),
        )
        .unwrap();
        let found = s.find_token_by_prefix("pfx2").unwrap().unwrap();
        assert_eq!(found.user_id.as_deref(), Some(grace.id.as_str()));
    });
}

#[test]
fn store_rejects_foreign_urls() {
    assert!(matches!(
        Store::open("host=localhost port=5432"),
        Err(StoreError::Config(_))
    ));
}

/// The create answer rendered from the written row must be what a read returns right after it.
#[test]
fn create_loaded_is_what_a_read_loads() {
    each_backend(|db| {
        let s = &db.store;
        let made = s
            .create_loaded(
                ResourceKind::User,
                obj(json!({"userName": "cl-user", "emails": [{"value": "a@example.com"}]})),
                Some("client"),
            )
            .unwrap();
        let read = s.get_loaded(ResourceKind::User, &made.id, true).unwrap();
        assert_eq!(made, read, "{}", db.name);
        let g = s
            .create_loaded(
                ResourceKind::Group,
                obj(json!({"displayName": "cl-group", "members": [{"value": made.id}]})),
                None,
            )
            .unwrap();
        let read = s.get_loaded(ResourceKind::Group, &g.id, true).unwrap();
        assert_eq!(g, read, "{}", db.name);
        assert_eq!(g.members.as_ref().map(Vec::len), Some(1));
    });
}
