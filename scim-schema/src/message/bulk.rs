//! Bulk operations (RFC 7644 §3.7): request and response bodies, `bulkId` temporary identifiers
//! (§3.7.2) and the order in which a bulk job's operations must run so that every
//! `"bulkId:<id>"` reference names a resource already created (§3.7.1 circular references).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{some_value, BULK_REQUEST, BULK_RESPONSE};

fn bulk_request_schemas() -> Vec<String> {
    vec![BULK_REQUEST.to_owned()]
}
fn bulk_response_schemas() -> Vec<String> {
    vec![BULK_RESPONSE.to_owned()]
}

/// The prefix of a reference to a resource created earlier in the same bulk request (§3.7.2).
pub const BULK_ID_PREFIX: &str = "bulkId:";

/// The HTTP method of a bulk operation. RFC 7644 §3.7 spells them in upper case; any case is
/// accepted when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
    Delete,
}

impl<'de> Deserialize<'de> for BulkMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(BulkMethod::Post),
            "PUT" => Ok(BulkMethod::Put),
            "PATCH" => Ok(BulkMethod::Patch),
            "DELETE" => Ok(BulkMethod::Delete),
            _ => Err(serde::de::Error::custom(format!(
                "unsupported bulk method {s:?}"
            ))),
        }
    }
}

/// A bulk request (§3.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    #[serde(default = "bulk_request_schemas")]
    pub schemas: Vec<String>,
    /// Stop after this many errors (§3.7.3); absent means process everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_errors: Option<u32>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<BulkOperation>,
}

/// One operation of a bulk request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperation {
    pub method: BulkMethod,
    /// Required for POST (§3.7): the temporary identifier other operations refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    /// An ETag for If-Match semantics (§3.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The resource's relative path, e.g. `/Users` or `/Groups/e9e30dba...`.
    pub path: String,
    /// The body: a resource (POST, PUT) or a PatchOp (PATCH); absent for DELETE.
    #[serde(
        default,
        deserialize_with = "some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Value>,
}

/// A bulk response (§3.7.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResponse {
    #[serde(default = "bulk_response_schemas")]
    pub schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<BulkOperationResponse>,
}

impl BulkResponse {
    pub fn new(operations: Vec<BulkOperationResponse>) -> Self {
        BulkResponse {
            schemas: bulk_response_schemas(),
            operations,
        }
    }
}

/// The outcome of one bulk operation. `status` is a string (`"201"`) as in the §3.7.3 examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperationResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub method: BulkMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub status: String,
    /// The response body; for a failed operation an `ErrorResponse` (§3.7.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

/// `"bulkId:<id>"` references that name no operation of the request (RFC 7644 §3.7.2:
/// the service provider answers 409 for such an operation). Ids are listed once, in order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unresolved bulkId reference(s): {}", .bulk_ids.join(", "))]
pub struct UnresolvedBulkId {
    pub bulk_ids: Vec<String>,
}

/// Replaces every string `"bulkId:<id>"` anywhere in `value` (member values, `$ref`s, nested
/// extension attributes, strings in arrays) with `ids[<id>]`, the id the resource got when it was
/// created. Every reference that `ids` cannot resolve is reported; resolvable ones are replaced
/// even then.
pub fn resolve_bulk_ids(
    value: &mut Value,
    ids: &HashMap<String, String>,
) -> Result<(), UnresolvedBulkId> {
    let mut missing = Unique::default();
    resolve_in(value, ids, &mut missing);
    if missing.list.is_empty() {
        Ok(())
    } else {
        Err(UnresolvedBulkId {
            bulk_ids: missing.list,
        })
    }
}

/// Strings in first-seen order, each once. A set beside the list keeps the de-duplication
/// linear: one 1 MiB body holds some 80,000 references, and a scan of the list per reference
/// took a minute.
#[derive(Default)]
struct Unique {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Unique {
    fn push(&mut self, s: &str) {
        if !self.seen.contains(s) {
            self.seen.insert(s.to_owned());
            self.list.push(s.to_owned());
        }
    }
}

fn resolve_in(value: &mut Value, ids: &HashMap<String, String>, missing: &mut Unique) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                match ids.get(id) {
                    Some(real) => *s = real.clone(),
                    None => missing.push(id),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve_in(v, ids, missing)),
        Value::Object(map) => map.values_mut().for_each(|v| resolve_in(v, ids, missing)),
        _ => {}
    }
}

/// The `bulkId`s an operation refers to, in its `data` and in its `path`
/// (`/Groups/bulkId:qwerty`), each once.
pub fn bulk_id_references(op: &BulkOperation) -> Vec<String> {
    let mut out = Unique::default();
    if let Some(i) = op.path.find(BULK_ID_PREFIX) {
        let id = op.path[i + BULK_ID_PREFIX.len()..]
            .split('/')
            .next()
            .unwrap_or_default();
        out.push(id);
    }
    if let Some(data) = &op.data {
        collect_refs(data, &mut out);
    }
    out.list
}

fn collect_refs(value: &Value, out: &mut Unique) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                out.push(id);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Why a bulk request cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkOrderError {
    /// Two operations declare the same `bulkId`.
    #[error("duplicate bulkId {0:?}")]
    DuplicateBulkId(String),
    /// A reference to a `bulkId` no operation declares.
    #[error(transparent)]
    Unresolved(#[from] UnresolvedBulkId),
    /// Operations that refer to each other in a cycle (§3.7.1). The service provider MUST try to
    /// resolve these (create each, then PATCH the references in) or MAY answer 409.
    #[error("circular bulkId references among: {}", .bulk_ids.join(", "))]
    Cycle { bulk_ids: Vec<String> },
}

/// The order (indices into `ops`) in which to run a bulk request so that each operation runs
/// after the operations whose `bulkId`s it references. Independent operations keep their request
/// order (a stable topological sort), so a request without references runs as written.
pub fn order_bulk_operations(ops: &[BulkOperation]) -> Result<Vec<usize>, BulkOrderError> {
    let mut declared: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(id) = &op.bulk_id {
            if declared.insert(id.as_str(), i).is_some() {
                return Err(BulkOrderError::DuplicateBulkId(id.clone()));
            }
        }
    }
    // deps[i] = operations that must run before i; dependents[j] = operations waiting on j.
    let mut missing = Unique::default();
    let mut deps: Vec<HashSet<usize>> = vec![HashSet::new(); ops.len()];
    for (i, op) in ops.iter().enumerate() {
        for r in bulk_id_references(op) {
            match declared.get(r.as_str()) {
                Some(&j) => {
                    deps[i].insert(j);
                }
                None => missing.push(&r),
            }
        }
    }
    if !missing.list.is_empty() {
        return Err(UnresolvedBulkId {
            bulk_ids: missing.list,
        }
        .into());
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    let mut waiting: Vec<usize> = deps.iter().map(HashSet::len).collect();
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    // Kahn's algorithm, always taking the lowest ready index: the first not-yet-run operation
    // whose dependencies have all run, without rescanning every operation at each step.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..ops.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut done = vec![false; ops.len()];
    let mut order = Vec::with_capacity(ops.len());
    while let Some(Reverse(i)) = ready.pop() {
        done[i] = true;
        order.push(i);
        for &k in &dependents[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    if order.len() < ops.len() {
        let mut bulk_ids: Vec<String> = (0..ops.len())
            .filter(|&i| !done[i] && is_on_cycle(i, &deps, &done))
            .filter_map(|i| ops[i].bulk_id.clone())
            .collect();
        bulk_ids.sort();
        return Err(BulkOrderError::Cycle { bulk_ids });
    }
    Ok(order)
}

/// Whether `start` can reach itself through not-yet-run dependencies.
fn is_on_cycle(start: usize, deps: &[HashSet<usize>], done: &[bool]) -> bool {
    let mut stack: Vec<usize> = deps[start].iter().copied().filter(|&d| !done[d]).collect();
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if n == start {
            return true;
        }
        if seen.insert(n) {
            stack.extend(deps[n].iter().copied().filter(|&d| !done[d]));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn op(bulk_id: Option<String>, data: Value) -> BulkOperation {
        BulkOperation {
            method: BulkMethod::Post,
            bulk_id,
            version: None,
            path: "/Groups".into(),
            data: Some(data),
        }
    }

    /// 80,000 references (what one 1 MiB body holds), every id twice: each is reported once, in
    /// first-seen order, by all three functions that de-duplicate.
    #[test]
    fn duplicate_references_in_a_large_body_are_reported_once_in_order() {
        let n = 40_000;
        let members: Vec<Value> = (0..2 * n)
            .map(|i| json!({"value": format!("bulkId:u{}", (i * 7919) % n)}))
            .collect();
        let expected: Vec<String> = {
            let mut seen = HashSet::new();
            (0..2 * n)
                .map(|i| format!("u{}", (i * 7919) % n))
                .filter(|id| seen.insert(id.clone()))
                .collect()
        };
        assert_eq!(expected.len(), n);
        let group = op(Some("g".into()), json!({"members": members}));
        assert_eq!(bulk_id_references(&group), expected);
        match order_bulk_operations(std::slice::from_ref(&group)) {
            Err(BulkOrderError::Unresolved(e)) => assert_eq!(e.bulk_ids, expected),
            other => panic!("{other:?}"),
        }
        let mut data = group.data.clone().unwrap_or(Value::Null);
        let half: HashMap<String, String> = (0..n / 2)
            .map(|i| (format!("u{i}"), format!("id{i}")))
            .collect();
        let e = resolve_bulk_ids(&mut data, &half).expect_err("half unresolved");
        let unresolved: Vec<String> = expected
            .iter()
            .filter(|id| !half.contains_key(*id))
            .cloned()
            .collect();
        assert_eq!(e.bulk_ids, unresolved);
        // Resolvable ones were replaced even so.
        assert_eq!(data["members"][0]["value"], "id0");
        // Two operations declaring one bulkId.
        let dup = vec![
            op(Some("x".into()), json!({})),
            op(Some("x".into()), json!({})),
        ];
        assert_eq!(
            order_bulk_operations(&dup),
            Err(BulkOrderError::DuplicateBulkId("x".into()))
        );
    }

    /// The ordering as it was first written: at each step, rescan for the first operation whose
    /// dependencies have all run (quadratic, kept as the specification).
    fn naive_order(ops: &[BulkOperation]) -> Option<Vec<usize>> {
        let declared: HashMap<&str, usize> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.bulk_id.as_deref().map(|b| (b, i)))
            .collect();
        let deps: Vec<Vec<usize>> = ops
            .iter()
            .map(|o| {
                bulk_id_references(o)
                    .iter()
                    .filter_map(|r| declared.get(r.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut done = vec![false; ops.len()];
        let mut order = Vec::new();
        while order.len() < ops.len() {
            let i = (0..ops.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))?;
            done[i] = true;
            order.push(i);
        }
        Some(order)
    }

    proptest! {
        #[test]
        fn ordering_matches_the_rescanning_definition(
            refs in proptest::collection::vec(proptest::collection::vec(0usize..12, 0..4), 1..12)
        ) {
            let ops: Vec<BulkOperation> = refs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let members: Vec<Value> = r
                        .iter()
                        .filter(|&&j| j < refs.len())
                        .map(|j| json!({"value": format!("bulkId:b{j}")}))
                        .collect();
                    op(Some(format!("b{i}")), json!({"members": members}))
                })
                .collect();
            match (order_bulk_operations(&ops), naive_order(&ops)) {
                (Ok(fast), Some(slow)) => prop_assert_eq!(fast, slow),
                (Err(BulkOrderError::Cycle { .. }), None) => {}
                (fast, slow) => prop_assert!(false, "{:?} vs {:?}", fast, slow),
            }
        }
    }
}
