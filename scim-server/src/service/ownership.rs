//! Source-of-truth attribute ownership: the policy's `[[source]]` blocks, enforced on every SCIM
//! write of a User. POST, PUT, PATCH and each operation of /Bulk go through
//! [`super::create`], [`super::replace`] and [`super::patch`], which apply [`SourceRules`] once,
//! inside the store's write transaction (so the stored value compared against is the one being
//! replaced).
//!
//! The rules follow an authoritative-source model (midPoint's strong and weak mappings):
//!
//! * The **owner** (the client named in `[[source]] client`: the API token's name or the JWT's
//!   client claim) writes its attributes freely.
//! * **Another client** may fill an owned attribute that has no value — when it creates the user,
//!   or while the owner has not set one — so a user pushed by the IdP before HR knows them is not
//!   left without a title. Once the attribute has a value, only the owner changes or removes it:
//!   * `on_conflict = "ignore"` (default): the stored value is kept, the rest of the write
//!     applies, and the kept attribute is logged;
//!   * `on_conflict = "reject"`: the write is refused with `400 mutability`, naming the attribute
//!     and its owner, and nothing is written.
//! * A **PUT** from another client that leaves an owned attribute out keeps the stored value in
//!   both modes: a client that does not know the attribute has not asked to clear it. A PATCH
//!   `remove` (or `replace` with `null`) of it is a change like any other.
//!
//! Values compare as JSON, multi-valued attributes regardless of order. Writes by the hub itself
//! (an approved contract extension setting the end date) are not SCIM client writes and are not
//! subject to these rules.

use std::collections::HashMap;

use scim_schema::filter::AttrPath;
use scim_schema::json::find_key;
use serde_json::Value;

use crate::error::HubError;
use crate::policy::{OnConflict, Policy};
use crate::store::Doc;

/// An attribute some other client is the source of truth for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignAttribute {
    pub path: AttrPath,
    /// As the policy writes it (named in errors and logs).
    pub written: String,
    /// The owning client.
    pub owner: String,
    pub on_conflict: OnConflict,
    /// An attribute that makes someone an approver (the manager, the sponsor), or one whose
    /// value alone ends or holds back access (the status, end-date and start-date attributes):
    /// only its owner may fill it, even while it has no value, so another client can neither
    /// appoint an approver nor cause a departure.
    pub authority: bool,
}

/// The ownership rules as they apply to one client: the attributes other clients own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRules {
    foreign: Vec<ForeignAttribute>,
    /// The other client that owns `active`, when one does: it alone deletes Users.
    active_owner: Option<String>,
    /// The client holds `scim:delete`: it deletes Users whoever owns `active`.
    delete_granted: bool,
}

/// Which write is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Replace,
    Patch,
}

/// An attribute whose stored value was kept against a write (`on_conflict = "ignore"`, or an
/// omission in a PUT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub attribute: String,
    pub owner: String,
}

impl SourceRules {
    /// The attributes that clients other than `client` own under `policy`.
    pub fn for_client(policy: &Policy, client: &str) -> SourceRules {
        let foreign = policy
            .sources
            .values()
            .filter(|rule| rule.client != client)
            .flat_map(|rule| {
                rule.owns.iter().map(|a| ForeignAttribute {
                    path: a.path.clone(),
                    written: a.written.clone(),
                    owner: rule.client.clone(),
                    on_conflict: rule.on_conflict,
                    authority: policy.is_authority_attribute(&a.path)
                        || policy.is_lifecycle_attribute(&a.path),
                })
            })
            .collect::<Vec<ForeignAttribute>>();
        let active_owner = foreign
            .iter()
            .find(|f| {
                f.path.urn.is_none() && f.path.sub_attr.is_none() && f.path.name.eq_str("active")
            })
            .map(|f| f.owner.clone());
        SourceRules {
            foreign,
            active_owner,
            delete_granted: false,
        }
    }

    /// These rules for a client that holds the `scim:delete` scope (`granted`) or not.
    pub fn granting_delete(mut self, granted: bool) -> SourceRules {
        self.delete_granted = granted;
        self
    }

    /// Whether this client may delete a User: deleting one is the person's departure, which is
    /// the decision of whoever owns `active`. Refused with [`HubError::NotDeleter`] when
    /// another client owns `active` and this one lacks `scim:delete`.
    pub fn may_delete(&self) -> Result<(), HubError> {
        match &self.active_owner {
            Some(owner) if !self.delete_granted => Err(HubError::NotDeleter {
                owner: owner.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether no rule applies (no policy, no sources, or the client owns everything owned).
    pub fn is_empty(&self) -> bool {
        self.foreign.is_empty()
    }

    /// Applies the rules to `new`, the validated document a `kind` write would store over
    /// `existing` (`None` for a create): restores the stored value of every owned attribute the
    /// write may not change (`ignore`, PUT omissions), and returns them; refuses the write with
    /// [`HubError::NotOwner`] at the first change that `reject` forbids.
    pub fn enforce(
        &self,
        kind: WriteKind,
        existing: Option<&Doc>,
        new: &mut Doc,
    ) -> Result<Vec<Kept>, HubError> {
        let mut kept = Vec::new();
        // Authority attributes are never free to fill (a create included).
        for f in self.foreign.iter().filter(|f| f.authority) {
            if existing.and_then(|e| present(e, &f.path)).is_some()
                || present(new, &f.path).is_none()
            {
                continue;
            }
            if f.on_conflict == OnConflict::Reject {
                return Err(HubError::NotOwner {
                    attribute: f.written.clone(),
                    owner: f.owner.clone(),
                });
            }
            remove(new, &f.path);
            kept.push(Kept {
                attribute: f.written.clone(),
                owner: f.owner.clone(),
            });
        }
        let Some(existing) = existing else {
            // Nothing stored yet: every other attribute is free to fill.
            return Ok(kept);
        };
        for f in &self.foreign {
            let Some((stored_key, stored)) = present(existing, &f.path) else {
                continue;
            };
            let written = present(new, &f.path).map(|(_, v)| v);
            if written.is_some_and(|w| same(w, stored)) {
                continue;
            }
            let omitted_in_put = kind == WriteKind::Replace && written.is_none();
            if f.on_conflict == OnConflict::Reject && !omitted_in_put {
                return Err(HubError::NotOwner {
                    attribute: f.written.clone(),
                    owner: f.owner.clone(),
                });
            }
            let (stored_key, stored) = (stored_key.to_string(), stored.clone());
            restore(new, &f.path, &stored_key, stored);
            kept.push(Kept {
                attribute: f.written.clone(),
                owner: f.owner.clone(),
            });
        }
        Ok(kept)
    }
}

/// The object holding `path`'s attribute: the document, or its extension object.
fn container<'a>(doc: &'a Doc, path: &AttrPath) -> Option<&'a Doc> {
    match &path.urn {
        None => Some(doc),
        Some(urn) => doc.get(find_key(doc, urn.as_str())?)?.as_object(),
    }
}

/// The value at `path` and the key it is stored under (the sub-attribute's key for a
/// sub-attribute), unless absent or empty (`null`, `[]`, `{}` count as no value).
fn present<'a>(doc: &'a Doc, path: &AttrPath) -> Option<(&'a str, &'a Value)> {
    let c = container(doc, path)?;
    let key = find_key(c, path.name.as_str())?;
    let top = c.get(key)?;
    let (key, value) = match &path.sub_attr {
        None => (key.as_str(), top),
        Some(sub) => {
            let o = top.as_object()?;
            let k = find_key(o, sub.as_str())?;
            (k.as_str(), o.get(k)?)
        }
    };
    let empty = match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    (!empty).then_some((key, value))
}

/// Removes the value at `path` from `doc` (an authority attribute another client tried to fill).
fn remove(doc: &mut Doc, path: &AttrPath) {
    let container: &mut Doc = match &path.urn {
        None => doc,
        Some(urn) => match find_key(doc, urn.as_str())
            .cloned()
            .and_then(|k| doc.get_mut(&k))
            .and_then(Value::as_object_mut)
        {
            Some(o) => o,
            None => return,
        },
    };
    let Some(key) = find_key(container, path.name.as_str()).cloned() else {
        return;
    };
    match &path.sub_attr {
        None => {
            container.remove(&key);
        }
        Some(sub) => {
            if let Some(o) = container.get_mut(&key).and_then(Value::as_object_mut) {
                if let Some(k) = find_key(o, sub.as_str()).cloned() {
                    o.remove(&k);
                }
            }
        }
    }
}

/// JSON equality, multi-valued attributes regardless of order: the two arrays hold the same
/// values the same number of times. Each value is counted under its canonical text (object keys
/// sorted), so comparing two lists of n values costs O(n) map operations, not n² comparisons,
/// inside the write transaction.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let mut counts: HashMap<String, i64> = HashMap::with_capacity(x.len());
            for v in x {
                *counts.entry(canonical(v)).or_default() += 1;
            }
            for v in y {
                match counts.get_mut(&canonical(v)) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => return false,
                }
            }
            true
        }
        _ => a == b,
    }
}

/// A text that two JSON values share exactly when they are equal (`==`): object members in key
/// order (a map's equality ignores member order), everything else as serde_json writes it.
fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                let mut members: Vec<(&String, &Value)> = o.iter().collect();
                members.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Puts the stored `value` back at `path` in `doc` under the stored key (an extension object is
/// created, and its URN added to `schemas`, when the write dropped it).
fn restore(doc: &mut Doc, path: &AttrPath, stored_key: &str, value: Value) {
    let container: &mut Doc = match &path.urn {
        None => doc,
        Some(urn) => {
            let key = match find_key(doc, urn.as_str()) {
                Some(k) => k.clone(),
                None => {
                    add_schema_urn(doc, urn.as_str());
                    urn.as_str().to_string()
                }
            };
            let entry = doc.entry(key).or_insert_with(|| Value::Object(Doc::new()));
            if !entry.is_object() {
                *entry = Value::Object(Doc::new());
            }
            match entry.as_object_mut() {
                Some(o) => o,
                None => return,
            }
        }
    };
    match &path.sub_attr {
        None => put(container, path.name.as_str(), stored_key, value),
        Some(_) => {
            let key = find_key(container, path.name.as_str())
                .cloned()
                .unwrap_or_else(|| path.name.as_str().to_string());
            let top = container
                .entry(key)
                .or_insert_with(|| Value::Object(Doc::new()));
            if !top.is_object() {
                *top = Value::Object(Doc::new());
            }
            if let Some(o) = top.as_object_mut() {
                let name = path.sub_attr.as_ref().map(|s| s.as_str()).unwrap_or("");
                put(o, name, stored_key, value);
            }
        }
    }
}

/// Sets `name` (matched case-insensitively) in `o`, under `stored_key` when it is new.
fn put(o: &mut Doc, name: &str, stored_key: &str, value: Value) {
    let key = find_key(o, name)
        .cloned()
        .unwrap_or_else(|| stored_key.to_string());
    o.insert(key, value);
}

fn add_schema_urn(doc: &mut Doc, urn: &str) {
    if let Some(Value::Array(urns)) = find_key(doc, "schemas")
        .cloned()
        .and_then(|k| doc.get_mut(&k))
    {
        if !urns
            .iter()
            .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(urn)))
        {
            urns.push(Value::String(urn.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn policy(on_conflict: &str) -> Policy {
        Policy::parse(
            &format!(
                r#"
[[source]]
client = "workday"
owns = ["active", "title", "department", "name.familyName", "emails"]
on_conflict = "{on_conflict}"

[[source]]
client = "okta"
owns = ["userName"]
"#
            ),
            "t.toml",
        )
        .expect("policy")
    }

    fn doc(v: Value) -> Doc {
        match v {
            Value::Object(o) => o,
            _ => Doc::new(),
        }
    }

    fn stored() -> Doc {
        doc(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "userName": "ada", "active": true, "title": "Engineer",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "a@x", "primary": true}, {"value": "b@x"}],
            ENT: {"department": "Engineering", "costCenter": "42"},
        }))
    }

    #[test]
    fn the_owner_writes_freely() {
        let rules = SourceRules::for_client(&policy("reject"), "workday");
        let mut new = stored();
        new["title"] = json!("Manager");
        new[ENT]["department"] = json!("Sales");
        let kept = rules
            .enforce(WriteKind::Replace, Some(&stored()), &mut new)
            .expect("allowed");
        assert!(kept.is_empty());
        assert_eq!(new["title"], "Manager");
        // userName belongs to okta (on_conflict defaults to ignore): workday's change is dropped.
        let mut new = stored();
        new["userName"] = json!("ada2");
        let kept = rules
            .enforce(WriteKind::Patch, Some(&stored()), &mut new)
            .expect("kept");
        assert_eq!(
            kept,
            vec![Kept {
                attribute: "userName".into(),
                owner: "okta".into()
            }]
        );
        assert_eq!(new["userName"], "ada");
    }

    #[test]
    fn only_the_owner_fills_an_authority_attribute() {
        for on_conflict in ["ignore", "reject"] {
            let p = Policy::parse(
                &format!(
                    "[[source]]\nclient = \"workday\"\nowns = [\"manager\", \"title\"]\n\
                     on_conflict = \"{on_conflict}\"\n"
                ),
                "t.toml",
            )
            .expect("policy");
            let okta = SourceRules::for_client(&p, "okta");
            // No manager stored: an ordinary owned attribute may be filled by another client,
            // the manager (it makes someone an approver) may not, not even on create.
            let mut new = stored();
            new["title"] = Value::Null;
            let mut without_title = stored();
            without_title.remove("title");
            new.insert("title".into(), json!("Engineer"));
            new[ENT]["manager"] = json!({"value": "u-eve"});
            for existing in [None, Some(&without_title)] {
                let mut w = new.clone();
                let kind = if existing.is_none() {
                    WriteKind::Create
                } else {
                    WriteKind::Patch
                };
                match (on_conflict, okta.enforce(kind, existing, &mut w)) {
                    ("ignore", Ok(kept)) => {
                        assert_eq!(kept[0].attribute, "manager");
                        assert!(w[ENT].get("manager").is_none(), "{w:?}");
                        assert_eq!(w["title"], "Engineer");
                    }
                    ("reject", Err(HubError::NotOwner { attribute, .. })) => {
                        assert_eq!(attribute, "manager")
                    }
                    (_, other) => panic!("{on_conflict}: {other:?}"),
                }
            }
            // The owner may.
            let workday = SourceRules::for_client(&p, "workday");
            let mut w = new.clone();
            workday
                .enforce(WriteKind::Patch, Some(&without_title), &mut w)
                .expect("owner");
            assert_eq!(w[ENT]["manager"]["value"], "u-eve");
        }
    }

    /// The attributes whose value alone makes someone a leaver, an expired contractor or not
    /// yet started are no more free to fill than the manager: a client that does not own them
    /// cannot end a person by writing a status or an end date the HRIS has not sent yet.
    #[test]
    fn only_the_owner_fills_a_lifecycle_attribute() {
        let acme = "urn:example:acme:2.0:User";
        for attribute in ["status", "contractEnd", "startDate"] {
            let p = Policy::parse(
                &format!(
                    "[settings]\nextensions = [\"{acme}\"]\n\
                     status_attribute = \"{acme}:status\"\n\
                     end_date_attribute = \"{acme}:contractEnd\"\n\
                     start_date_attribute = \"{acme}:startDate\"\n\
                     terminated_values = [\"terminated\"]\n\n\
                     [[source]]\nclient = \"workday\"\nowns = [\"active\", \"{acme}:{attribute}\", \"title\"]\n\
                     on_conflict = \"reject\"\n"
                ),
                "t.toml",
            )
            .expect("policy");
            let mut without = stored();
            without.remove("title");
            let mut w = without.clone();
            w.insert(acme.into(), json!({ attribute: "terminated" }));
            match SourceRules::for_client(&p, "okta").enforce(
                WriteKind::Patch,
                Some(&without),
                &mut w,
            ) {
                Err(HubError::NotOwner {
                    attribute: a,
                    owner,
                }) => {
                    assert_eq!(
                        (a.as_str(), owner.as_str()),
                        (format!("{acme}:{attribute}").as_str(), "workday")
                    )
                }
                other => panic!("{attribute}: {other:?}"),
            }
            // An ordinary owned attribute stays free to fill while it has no value.
            let mut w = without.clone();
            w.insert("title".into(), json!("Engineer"));
            SourceRules::for_client(&p, "okta")
                .enforce(WriteKind::Patch, Some(&without), &mut w)
                .expect("title may be filled");
        }
    }

    #[test]
    fn ignore_keeps_the_stored_value_and_applies_the_rest() {
        let rules = SourceRules::for_client(&policy("ignore"), "okta");
        let mut new = stored();
        new["title"] = json!("CEO");
        new["active"] = json!(false);
        new[ENT]["department"] = json!("Sales");
        new[ENT]["costCenter"] = json!("7");
        new["name"]["familyName"] = json!("Byron");
        new["name"]["givenName"] = json!("Augusta");
        let kept = rules
            .enforce(WriteKind::Patch, Some(&stored()), &mut new)
            .expect("kept");
        let names: Vec<&str> = kept.iter().map(|k| k.attribute.as_str()).collect();
        assert_eq!(
            names,
            vec!["active", "title", "department", "name.familyName"]
        );
        assert_eq!(new["title"], "Engineer");
        assert_eq!(new["active"], true);
        assert_eq!(new[ENT]["department"], "Engineering");
        assert_eq!(new["name"]["familyName"], "Lovelace");
        // What okta may write went through.
        assert_eq!(new[ENT]["costCenter"], "7");
        assert_eq!(new["name"]["givenName"], "Augusta");
    }

    #[test]
    fn reject_refuses_naming_attribute_and_owner() {
        let rules = SourceRules::for_client(&policy("reject"), "okta");
        let mut new = stored();
        new[ENT]["department"] = json!("Sales");
        match rules.enforce(WriteKind::Patch, Some(&stored()), &mut new) {
            Err(HubError::NotOwner { attribute, owner }) => {
                assert_eq!(
                    (attribute.as_str(), owner.as_str()),
                    ("department", "workday")
                )
            }
            other => panic!("{other:?}"),
        }
        // Removing it by PATCH is a change too.
        let mut new = stored();
        new.remove("title");
        assert!(rules
            .enforce(WriteKind::Patch, Some(&stored()), &mut new)
            .is_err());
    }

    #[test]
    fn a_put_that_omits_an_owned_attribute_keeps_it_in_both_modes() {
        for mode in ["ignore", "reject"] {
            let rules = SourceRules::for_client(&policy(mode), "okta");
            let mut new = doc(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ada", "name": {"givenName": "Ada"},
            }));
            let kept = rules
                .enforce(WriteKind::Replace, Some(&stored()), &mut new)
                .expect(mode);
            assert_eq!(kept.len(), 5, "{mode}: {kept:?}");
            assert_eq!(new["active"], true);
            assert_eq!(new["emails"], stored()["emails"]);
            assert_eq!(
                new["name"],
                json!({"givenName": "Ada", "familyName": "Lovelace"})
            );
            // The enterprise extension came back, and with it its schema URN.
            assert_eq!(new[ENT]["department"], "Engineering");
            assert!(new["schemas"]
                .as_array()
                .is_some_and(|s| s.contains(&json!(ENT))));
        }
    }

    #[test]
    fn others_fill_what_has_no_value_and_order_does_not_matter() {
        let rules = SourceRules::for_client(&policy("reject"), "okta");
        // A create: nothing stored, everything may be set.
        let mut new = stored();
        assert_eq!(
            rules.enforce(WriteKind::Create, None, &mut new).ok(),
            Some(vec![])
        );
        // An attribute without a value yet (here: never set, or null) may be filled.
        let mut before = stored();
        before.remove("title");
        before["active"] = Value::Null;
        let mut new = stored();
        assert_eq!(
            rules
                .enforce(WriteKind::Patch, Some(&before), &mut new)
                .ok(),
            Some(vec![])
        );
        // The same emails in another order are no change.
        let mut new = stored();
        new["emails"] = json!([{"value": "b@x"}, {"value": "a@x", "primary": true}]);
        assert_eq!(
            rules
                .enforce(WriteKind::Replace, Some(&stored()), &mut new)
                .ok(),
            Some(vec![])
        );
    }

    #[test]
    fn only_the_owner_of_active_or_scim_delete_deletes_users() {
        let p = policy("ignore");
        assert!(SourceRules::for_client(&p, "workday").may_delete().is_ok());
        match SourceRules::for_client(&p, "okta").may_delete() {
            Err(HubError::NotDeleter { owner }) => assert_eq!(owner, "workday"),
            other => panic!("{other:?}"),
        }
        assert!(SourceRules::for_client(&p, "okta")
            .granting_delete(true)
            .may_delete()
            .is_ok());
        // Nobody owns active: every writer deletes.
        let p = Policy::parse(
            "[[source]]\nclient = \"workday\"\nowns = [\"title\"]\n",
            "t.toml",
        )
        .expect("policy");
        assert!(SourceRules::for_client(&p, "okta").may_delete().is_ok());
        assert!(SourceRules::default().may_delete().is_ok());
    }

    #[test]
    fn no_sources_no_rules() {
        let rules = SourceRules::for_client(&Policy::empty(), "okta");
        assert!(rules.is_empty());
        let mut new = doc(json!({"userName": "x"}));
        assert_eq!(
            rules
                .enforce(WriteKind::Replace, Some(&stored()), &mut new)
                .ok(),
            Some(vec![])
        );
    }

    /// The quadratic definition `same` replaced: every value occurs as often in each array.
    fn same_by_counting(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len()
                    && x.iter().all(|v| {
                        x.iter().filter(|w| *w == v).count() == y.iter().filter(|w| *w == v).count()
                    })
            }
            _ => a == b,
        }
    }

    fn small_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0i64..3).prop_map(Value::from),
            prop_oneof![Just(1.0f64), Just(0.5)].prop_map(Value::from),
            prop_oneof![Just("a"), Just("b"), Just("\"")].prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::vec(
                    (prop_oneof![Just("k"), Just("v"), Just("x")], inner),
                    0..3
                )
                .prop_map(|kv| {
                    let mut o = Doc::new();
                    for (k, v) in kv {
                        o.insert(k.to_string(), v);
                    }
                    Value::Object(o)
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn set_comparison_agrees_with_counting(
            x in proptest::collection::vec(small_value(), 0..5),
            y in proptest::collection::vec(small_value(), 0..5),
            shuffle in proptest::collection::vec(proptest::prelude::any::<usize>(), 5),
        ) {
            let (a, b) = (Value::Array(x.clone()), Value::Array(y));
            proptest::prop_assert_eq!(same(&a, &b), same_by_counting(&a, &b));
            // A permutation of the same values is always the same.
            let mut p = x;
            for (i, s) in shuffle.iter().enumerate().take(p.len()) {
                let j = s % p.len();
                p.swap(i, j);
            }
            proptest::prop_assert!(same(&a, &Value::Array(p)));
        }
    }

    #[test]
    fn members_in_another_key_order_are_the_same_value() {
        let a = json!([{"value": "a@x", "primary": true}, {"type": "work", "value": "b@x"}]);
        let b = json!([{"value": "b@x", "type": "work"}, {"primary": true, "value": "a@x"}]);
        assert!(same(&a, &b));
        assert!(!same(
            &a,
            &json!([{"value": "a@x", "primary": true}, {"value": "b@x"}])
        ));
        // Duplicates count: [x, x, y] is not [x, y, y].
        assert!(!same(&json!(["x", "x", "y"]), &json!(["x", "y", "y"])));
    }
}
