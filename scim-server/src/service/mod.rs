//! SCIM operations over the store, free of HTTP: request documents in, stored resources out.
//!
//! Every function blocks (it calls the store) and is run by the HTTP layer through
//! [`crate::http::AppState::db`]. Errors are [`StoreError`]s (protocol errors as
//! `StoreError::Scim`); the HTTP layer maps them once.

pub mod bulk;
pub mod glue;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use scim_schema::json::{find_key, get_ci, remove_ci};
use scim_schema::Error;
use serde_json::Value;

use crate::store::{
    Doc, MemberRemoval, NewMember, ResourceKind, Store, StoreError, StoredResource,
};

use glue::PatchOp;

/// The resource kind behind an endpoint segment (`Users`, `Groups`, any case).
pub fn kind_of_endpoint(segment: &str) -> Option<ResourceKind> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.endpoint().eq_ignore_ascii_case(segment))
}

/// Replaces a clear-text `password` with its argon2 hash (never stored or returned in clear).
fn hash_password(doc: &mut Doc) -> Result<(), StoreError> {
    let Some(key) = find_key(doc, "password").cloned() else {
        return Ok(());
    };
    match doc.get(&key) {
        Some(Value::String(clear)) if clear.starts_with("$argon2") => Ok(()),
        Some(Value::String(clear)) => {
            let salt = SaltString::generate(&mut OsRng);
            let hash = argon2::Argon2::default()
                .hash_password(clear.as_bytes(), &salt)
                .map_err(|e| StoreError::Backend(format!("password hashing failed: {e}")))?
                .to_string();
            doc.insert(key, Value::String(hash));
            Ok(())
        }
        Some(Value::Null) | None => {
            doc.shift_remove(&key);
            Ok(())
        }
        Some(_) => Err(Error::InvalidValue("password must be a string.".into()).into()),
    }
}

/// POST: validates, hashes the password and creates.
pub fn create(
    store: &Store,
    kind: ResourceKind,
    body: Value,
    client: &str,
) -> Result<StoredResource, StoreError> {
    let mut doc = glue::validate_write(body, kind)?;
    hash_password(&mut doc)?;
    store.create(kind, doc, Some(client))
}

/// PUT: validates and replaces (Group members in the body replace the member set).
pub fn replace(
    store: &Store,
    kind: ResourceKind,
    id: &str,
    body: Value,
    if_match: Option<&str>,
    client: &str,
) -> Result<StoredResource, StoreError> {
    let mut doc = glue::validate_write(body, kind)?;
    if let Some(body_id) = get_ci(&doc, "id").and_then(Value::as_str) {
        if body_id != id {
            return Err(Error::Mutability("id cannot be changed.".into()).into());
        }
    }
    hash_password(&mut doc)?;
    store.replace(kind, id, doc, if_match, Some(client))
}

/// The membership part of a Group PATCH, split from the rest.
#[derive(Debug, Default)]
struct MemberDelta {
    add: Vec<NewMember>,
    remove: MemberRemoval,
}

fn is_members_path(path: &str) -> bool {
    let p = path.trim();
    let p = p
        .strip_prefix(glue::GROUP_URN)
        .map(|r| r.trim_start_matches(':'))
        .unwrap_or(p);
    p.len() >= 7
        && p[..7].eq_ignore_ascii_case("members")
        && (p.len() == 7 || p[7..].starts_with('['))
}

/// `members[value eq "id"]` → `id`.
fn member_filter_id(path: &str) -> Option<String> {
    let inner = path.split_once('[')?.1.strip_suffix(']')?.trim();
    let mut parts = inner.splitn(3, char::is_whitespace);
    let (attr, op, val) = (parts.next()?, parts.next()?, parts.next()?.trim());
    (attr.eq_ignore_ascii_case("value") && op.eq_ignore_ascii_case("eq"))
        .then(|| val.trim_matches('"').to_string())
}

fn member_ids(value: &Value) -> Vec<String> {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .filter_map(|m| {
            m.as_object()
                .and_then(|o| get_ci(o, "value"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn add_ids(delta: &mut MemberDelta, value: &Value) -> Result<(), StoreError> {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    for m in items {
        let obj = m
            .as_object()
            .ok_or_else(|| Error::InvalidValue("A member must be an object.".into()))?;
        let value = get_ci(obj, "value")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidValue("A member needs a string value.".into()))?;
        let text = |k: &str| get_ci(obj, k).and_then(Value::as_str).map(str::to_string);
        delta.add.push(NewMember {
            value: value.to_string(),
            member_type: text("type"),
            display: text("display"),
        });
    }
    Ok(())
}

fn remove_ids(delta: &mut MemberDelta, ids: Vec<String>) {
    match &mut delta.remove {
        MemberRemoval::All => {}
        MemberRemoval::Ids(existing) => existing.extend(ids),
        none @ MemberRemoval::None => *none = MemberRemoval::Ids(ids),
    }
}

/// Splits Group PATCH operations into member deltas and the rest. Path-less add/replace values
/// lose their `members` key to the delta.
fn split_members(ops: Vec<PatchOp>) -> Result<(MemberDelta, Vec<PatchOp>), StoreError> {
    let mut delta = MemberDelta::default();
    let mut rest = Vec::new();
    for mut op in ops {
        match op.path.as_deref() {
            Some(path) if is_members_path(path) => match op.op.as_str() {
                "add" => add_ids(&mut delta, op.value.as_ref().unwrap_or(&Value::Null))?,
                "replace" => {
                    delta.add.clear();
                    delta.remove = MemberRemoval::All;
                    add_ids(
                        &mut delta,
                        op.value.as_ref().unwrap_or(&Value::Array(vec![])),
                    )?;
                }
                _ => match (member_filter_id(path), &op.value) {
                    (Some(id), _) => remove_ids(&mut delta, vec![id]),
                    (None, _) if path.contains('[') => {
                        return Err(Error::InvalidFilter(format!(
                            "Unsupported member filter in {path}."
                        ))
                        .into())
                    }
                    // Entra: remove with a value lists the members to remove.
                    (None, Some(v)) => remove_ids(&mut delta, member_ids(v)),
                    (None, None) => {
                        delta.add.clear();
                        delta.remove = MemberRemoval::All;
                    }
                },
            },
            None if op.op != "remove" => {
                if let Some(Value::Object(values)) = &mut op.value {
                    if let Some(members) = remove_ci(values, "members") {
                        if op.op == "replace" {
                            delta.add.clear();
                            delta.remove = MemberRemoval::All;
                        }
                        add_ids(&mut delta, &members)?;
                    }
                    if !values.is_empty() {
                        rest.push(op);
                    }
                } else {
                    rest.push(op);
                }
            }
            _ => rest.push(op),
        }
    }
    Ok((delta, rest))
}

/// The outcome of a PATCH.
#[derive(Debug)]
pub struct Patched {
    pub resource: StoredResource,
    /// Member ids that named no resource: left out, the rest applied.
    pub unknown_members: Vec<String>,
}

/// PATCH: applies the operations in one transaction. Group member operations become member
/// deltas (cost independent of group size); members that name no resource are skipped and
/// reported instead of failing the whole request (what Okta and Entra expect).
pub fn patch(
    store: &Store,
    kind: ResourceKind,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
    client: &str,
) -> Result<Patched, StoreError> {
    let ops = glue::parse_patch(body)?;
    let apply = |ops: Vec<PatchOp>| {
        move |doc: Doc| -> Result<Doc, Error> {
            let mut doc = glue::apply_patch(doc, &ops)?;
            hash_password(&mut doc)
                .map_err(|_| Error::InvalidValue("password must be a string.".into()))?;
            Ok(doc)
        }
    };
    match kind {
        ResourceKind::User => {
            if ops
                .iter()
                .any(|o| o.path.as_deref().is_some_and(is_members_path))
            {
                return Err(Error::InvalidPath("Users have no members attribute.".into()).into());
            }
            let resource = store.update_with(kind, id, if_match, Some(client), apply(ops))?;
            Ok(Patched {
                resource,
                unknown_members: vec![],
            })
        }
        ResourceKind::Group => {
            let (mut delta, rest) = split_members(ops)?;
            let mut unknown = Vec::new();
            loop {
                let attempt = store.update_group_with(
                    id,
                    if_match,
                    Some(client),
                    delta.add.clone(),
                    delta.remove.clone(),
                    apply(rest.clone()),
                );
                match attempt {
                    Err(StoreError::UnknownMembers(ids)) if !ids.is_empty() => {
                        delta.add.retain(|m| !ids.contains(&m.value));
                        unknown.extend(ids);
                    }
                    other => {
                        break Ok(Patched {
                            resource: other?,
                            unknown_members: unknown,
                        })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Vec<PatchOp> {
        glue::parse_patch(&json!({"Operations": v})).expect("ops")
    }

    #[test]
    fn rfc7644_3_5_2_member_operations_become_deltas() {
        let (d, rest) = split_members(ops(json!([
            {"op":"Add","path":"members","value":[{"value":"a"},{"value":"b"}]},
            {"op":"remove","path":"members[value eq \"c\"]"},
            {"op":"Remove","path":"members","value":[{"value":"d"}]},
            {"op":"replace","value":{"displayName":"x"}}
        ])))
        .expect("split");
        assert_eq!(
            d.add.iter().map(|m| m.value.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(d.remove, MemberRemoval::Ids(vec!["c".into(), "d".into()]));
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn replace_members_replaces_the_set() {
        let (d, rest) = split_members(ops(
            json!([{"op":"replace","value":{"members":[{"value":"a"}]}}]),
        ))
        .expect("split");
        assert_eq!(d.remove, MemberRemoval::All);
        assert_eq!(d.add.len(), 1);
        assert!(rest.is_empty());
        let (d, _) = split_members(ops(json!([{"op":"remove","path":"members"}]))).expect("split");
        assert_eq!(d.remove, MemberRemoval::All);
    }

    #[test]
    fn passwords_are_hashed() {
        let mut doc = Doc::new();
        doc.insert("password".into(), json!("t1meMach1ne"));
        hash_password(&mut doc).expect("hash");
        assert!(doc["password"]
            .as_str()
            .is_some_and(|h| h.starts_with("$argon2")));
    }
}
