//! Bulk operations (RFC 7644 §3.7): request and response bodies, `bulkId` temporary identifiers
//! (§3.7.2) and the order in which a bulk job's operations must run so that every
//! `"bulkId:<id>"` reference names a resource already created (§3.7.1 circular references).

use std::collections::{HashMap, HashSet};

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
    let mut missing = Vec::new();
    resolve_in(value, ids, &mut missing);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(UnresolvedBulkId { bulk_ids: missing })
    }
}

fn resolve_in(value: &mut Value, ids: &HashMap<String, String>, missing: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                match ids.get(id) {
                    Some(real) => *s = real.clone(),
                    None => {
                        if !missing.iter().any(|m| m == id) {
                            missing.push(id.to_owned());
                        }
                    }
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
    let mut out: Vec<String> = Vec::new();
    if let Some(i) = op.path.find(BULK_ID_PREFIX) {
        let id = op.path[i + BULK_ID_PREFIX.len()..]
            .split('/')
            .next()
            .unwrap_or_default();
        out.push(id.to_owned());
    }
    if let Some(data) = &op.data {
        collect_refs(data, &mut out);
    }
    out
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                if !out.iter().any(|o| o == id) {
                    out.push(id.to_owned());
                }
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
    // deps[i] = operations that must run before i.
    let mut missing = Vec::new();
    let mut deps: Vec<HashSet<usize>> = vec![HashSet::new(); ops.len()];
    for (i, op) in ops.iter().enumerate() {
        for r in bulk_id_references(op) {
            match declared.get(r.as_str()) {
                Some(&j) => {
                    deps[i].insert(j);
                }
                None => {
                    if !missing.contains(&r) {
                        missing.push(r);
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(UnresolvedBulkId { bulk_ids: missing }.into());
    }
    let mut done = vec![false; ops.len()];
    let mut order = Vec::with_capacity(ops.len());
    while order.len() < ops.len() {
        // The first not-yet-run operation whose dependencies have all run.
        let next = (0..ops.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                let mut bulk_ids: Vec<String> = (0..ops.len())
                    .filter(|&i| !done[i] && is_on_cycle(i, &deps, &done))
                    .filter_map(|i| ops[i].bulk_id.clone())
                    .collect();
                bulk_ids.sort();
                return Err(BulkOrderError::Cycle { bulk_ids });
            }
        }
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
