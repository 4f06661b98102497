//! Group membership changes as a delta (inserts and deletes), so that PATCH-adding one member to
//! a group of 100,000 costs the same as to a group of 10 (docs/DESIGN.md: membership is a table,
//! never a members array rewritten whole).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::filter::ast::{CompValue, CompareOp, Filter, PatchPath};
use crate::json::get_ci;
use crate::name::eq_ci;
use crate::schema::{AttrType, ResourceSchema};

use super::value::prepare;
use super::{PatchOpKind, PatchOperation};

/// Which existing members to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveSpec {
    /// Every member (`remove members`, or `replace members`).
    All,
    /// The members with these `value`s (ids). Deleting an id that is not a member is a no-op.
    Values(Vec<String>),
}

/// The net effect of a PATCH on `members`: apply `remove` first, then insert `add` (ignoring
/// members already present); `other_ops` (every operation not about `members`) go through
/// [`super::apply_patch`] as usual.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDelta {
    /// Member values in canonical form (`{"value": id, ...}`), each id once, in request order.
    pub add: Vec<Value>,
    pub remove: RemoveSpec,
    pub other_ops: Vec<PatchOperation>,
}

/// Splits a Group PATCH into a membership delta and the remaining operations.
///
/// Returns `None` when no operation touches `members`, when the resource type has no
/// multi-valued complex `members` attribute, or when some `members` operation cannot be expressed
/// as a delta (a filter other than `value eq "..."` joined by `or`, a sub-attribute path, a
/// malformed member value): the server then loads the members and uses `apply_patch`, which also
/// reports the errors.
///
/// Operations apply in order, so `add x` then `remove members[value eq "x"]` nets to a removal
/// of `x` only, and `remove members` then `add [y]` to "delete all, insert y".
pub fn group_member_delta(ops: &[PatchOperation], schema: &ResourceSchema) -> Option<MemberDelta> {
    let (s, members_def) = schema.top_level(None, "members")?;
    if !members_def.multi_valued
        || members_def.attr_type != AttrType::Complex
        || !s.id.eq_str(schema.main.id.as_str())
    {
        return None;
    }
    let mut add: Vec<Value> = Vec::new();
    let mut remove = RemoveSpec::Values(Vec::new());
    let mut other_ops = Vec::new();
    let mut touched = false;

    let add_members = |add: &mut Vec<Value>, v: &Value| -> Option<()> {
        let prepared = prepare(members_def, v.clone()).ok()?;
        // id → position in `add`, so that adding n members is linear, not quadratic.
        let mut at: HashMap<String, usize> = add
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((member_id(a)?.to_owned(), i)))
            .collect();
        for m in prepared.as_array()? {
            let id = member_id(m)?;
            match at.get(id) {
                Some(&i) => add[i] = m.clone(),
                None => {
                    at.insert(id.to_owned(), add.len());
                    add.push(m.clone());
                }
            }
        }
        Some(())
    };

    for op in ops {
        match &op.path {
            Some(p) if is_members(p) => {
                touched = true;
                match (op.op, &p.value_filter, &p.sub_attr, &p.attr.sub_attr) {
                    (PatchOpKind::Remove, None, None, None) => {
                        if op.value.is_some() {
                            return None;
                        }
                        add.clear();
                        remove = RemoveSpec::All;
                    }
                    (PatchOpKind::Remove, Some(f), None, None) => {
                        let mut ids = Vec::new();
                        value_eq_ids(f, &mut ids)?;
                        let removed: HashSet<&str> = ids.iter().map(String::as_str).collect();
                        add.retain(|a| member_id(a).is_none_or(|id| !removed.contains(id)));
                        if let RemoveSpec::Values(existing) = &mut remove {
                            existing.extend(ids);
                            dedup_in_order(existing);
                        }
                    }
                    (PatchOpKind::Add, None, None, None) => {
                        add_members(&mut add, op.value.as_ref()?)?
                    }
                    (PatchOpKind::Replace, None, None, None) => {
                        add.clear();
                        remove = RemoveSpec::All;
                        add_members(&mut add, op.value.as_ref()?)?;
                    }
                    _ => return None,
                }
            }
            Some(_) => other_ops.push(op.clone()),
            None => {
                // A path-less add/replace may carry `members` next to other attributes.
                let Some(Value::Object(m)) = &op.value else {
                    other_ops.push(op.clone());
                    continue;
                };
                let Some(members) = m.iter().find(|(k, _)| eq_ci(k, "members")).map(|(_, v)| v)
                else {
                    other_ops.push(op.clone());
                    continue;
                };
                touched = true;
                if op.op == PatchOpKind::Replace {
                    add.clear();
                    remove = RemoveSpec::All;
                }
                if !members.is_null() {
                    add_members(&mut add, members)?;
                }
                let rest: Map<String, Value> = m
                    .iter()
                    .filter(|(k, _)| !eq_ci(k, "members"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !rest.is_empty() {
                    other_ops.push(PatchOperation {
                        request_index: op.request_index,
                        ..PatchOperation::new(op.op, None, Some(Value::Object(rest)))
                    });
                }
            }
        }
    }
    touched.then_some(MemberDelta {
        add,
        remove,
        other_ops,
    })
}

fn is_members(p: &PatchPath) -> bool {
    p.attr.name.eq_str("members")
        && p.attr
            .urn
            .as_ref()
            .is_none_or(|u| u.eq_str(crate::schema::core::GROUP))
}

fn member_id(v: &Value) -> Option<&str> {
    v.as_object()
        .and_then(|o| get_ci(o, "value"))
        .and_then(Value::as_str)
}

/// Keeps the first occurrence of each id, in order, in linear time (Entra may remove thousands
/// of members in one operation).
fn dedup_in_order(ids: &mut Vec<String>) {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(id.clone()));
}

/// `value eq "a" or value eq "b"` → `["a", "b"]` (duplicates are removed by the caller).
fn value_eq_ids(f: &Filter, out: &mut Vec<String>) -> Option<()> {
    match f {
        Filter::Or(a, b) => {
            value_eq_ids(a, out)?;
            value_eq_ids(b, out)
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(s),
        } if path.urn.is_none() && path.sub_attr.is_none() && path.name.eq_str("value") => {
            out.push(s.clone());
            Some(())
        }
        _ => None,
    }
}
