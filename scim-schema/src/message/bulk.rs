//! Bulk operations (RFC 7644 §3.7): request and response bodies, `bulkId` temporary identifiers
//! (§3.7.2) and the order in which a bulk job's operations must run so that every
//! `"bulkId:<id>"` reference names a resource already created.
//!
//! The ordering never gives up as a whole: a reference to a `bulkId` no operation declares is
//! no dependency (its operation fails alone when [`resolve_bulk_ids`] cannot resolve it), and
//! operations on a circular reference (§3.7.1) are reported in [`BulkOrder::cycles`] and placed
//! after the others, so one bad reference never disorders the valid ones beside it. Only a
//! `bulkId` declared twice makes a request unorderable.

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

/// Why a bulk request cannot be ordered at all. Unknown and circular references do not stop the
/// ordering (see [`order_bulk_operations`]): only their operations fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkOrderError {
    /// Two operations declare the same `bulkId`: a reference to it would be ambiguous.
    #[error("duplicate bulkId {0:?}")]
    DuplicateBulkId(String),
}

/// How to run a bulk request: [`order_bulk_operations`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BulkOrder {
    /// Every operation's index into the request, once each, in the order to run them.
    pub order: Vec<usize>,
    /// The circular references (§3.7.1): for each, the `bulkId`s of the operations that reach
    /// one another through their references, sorted. A self-reference is a cycle of one.
    pub cycles: Vec<Vec<String>>,
    /// For each operation of the request, the index in `cycles` of the cycle it is on.
    pub cycle_of: Vec<Option<usize>>,
}

impl BulkOrder {
    /// The `bulkId`s of the cycle operation `i` is on, if it is on one.
    pub fn cycle(&self, i: usize) -> Option<&[String]> {
        let c = (*self.cycle_of.get(i)?)?;
        self.cycles.get(c).map(Vec::as_slice)
    }
}

/// The order (indices into `ops`) in which to run a bulk request so that each operation runs
/// after the operations whose `bulkId`s it references, and the operations on a circular
/// reference. Independent operations keep their request order (a stable topological sort), so a
/// request without references runs as written. One bad reference never disorders the rest:
///
/// * a reference to a `bulkId` no operation declares is no dependency: its operation is ordered
///   by its other references and fails on its own when the reference is resolved
///   ([`resolve_bulk_ids`] reports it);
/// * the operations on a cycle come after every operation that does not wait on a cycle, in
///   request order; the operations that wait on a cycle (but are not on one) come last, in
///   stable topological order. Cycles are reported in [`BulkOrder::cycles`]; the caller
///   decides what to do with them (RFC 7644 §3.7.1 allows answering 409).
///
/// Only a `bulkId` declared twice is an error: no order would make its references mean one thing.
pub fn order_bulk_operations(ops: &[BulkOperation]) -> Result<BulkOrder, BulkOrderError> {
    let mut declared: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(id) = &op.bulk_id {
            if declared.insert(id.as_str(), i).is_some() {
                return Err(BulkOrderError::DuplicateBulkId(id.clone()));
            }
        }
    }
    // deps[i] = operations that must run before i (each once: references are de-duplicated and
    // each bulkId has one declarer); dependents[j] = operations waiting on j.
    let deps: Vec<Vec<usize>> = ops
        .iter()
        .map(|op| {
            bulk_id_references(op)
                .iter()
                .filter_map(|r| declared.get(r.as_str()).copied())
                .collect()
        })
        .collect();
    let (cycles, cycle_of) = find_cycles(ops, &deps);
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..ops.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(ops.len());
    // Everything not waiting on a cycle: an operation on a cycle never becomes ready, as it
    // waits on another (or itself).
    kahn(&mut ready, &mut waiting, &dependents, &mut order);
    // Then the operations on cycles, releasing those that waited on them.
    let on_cycle: Vec<usize> = (0..ops.len()).filter(|&i| cycle_of[i].is_some()).collect();
    order.extend(&on_cycle);
    for &i in &on_cycle {
        for &k in &dependents[i] {
            if cycle_of[k].is_none() {
                waiting[k] -= 1;
                if waiting[k] == 0 {
                    ready.push(Reverse(k));
                }
            }
        }
    }
    // What is left is acyclic (a cycle among it would have been found), so this ends it.
    kahn(&mut ready, &mut waiting, &dependents, &mut order);
    debug_assert_eq!(order.len(), ops.len());
    Ok(BulkOrder {
        order,
        cycles,
        cycle_of,
    })
}

/// Kahn's algorithm, always taking the lowest ready index: the first not-yet-run operation whose
/// dependencies have all run, without rescanning every operation at each step. Operations on a
/// cycle are never pushed to `ready` by it.
fn kahn(
    ready: &mut BinaryHeap<Reverse<usize>>,
    waiting: &mut [usize],
    dependents: &[Vec<usize>],
    order: &mut Vec<usize>,
) {
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &k in &dependents[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
}

/// The cycles of the reference graph and each operation's cycle: the strongly connected
/// components with more than one operation or a self-reference (Tarjan's algorithm, iterative so
/// that a long chain of references cannot overflow the stack; linear, as a 1 MiB body holds
/// thousands of operations).
fn find_cycles(
    ops: &[BulkOperation],
    deps: &[Vec<usize>],
) -> (Vec<Vec<String>>, Vec<Option<usize>>) {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut cycles = Vec::new();
    let mut cycle_of = vec![None; n];
    // The depth-first walk: (operation, position of the next dependency to visit).
    let mut walk: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        walk.push((root, 0));
        while let Some(&(v, pos)) = walk.last() {
            if let Some(&w) = deps[v].get(pos) {
                if let Some(top) = walk.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    walk.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            walk.pop();
            if let Some(&(parent, _)) = walk.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] != index[v] {
                continue;
            }
            // v roots a component: everything above it on the stack.
            let mut members = Vec::new();
            while let Some(w) = stack.pop() {
                on_stack[w] = false;
                members.push(w);
                if w == v {
                    break;
                }
            }
            if members.len() > 1 || deps[v].contains(&v) {
                let c = cycles.len();
                // Each member is referenced from within the cycle, so each declares a bulkId.
                let mut bulk_ids: Vec<String> = members
                    .iter()
                    .filter_map(|&m| ops[m].bulk_id.clone())
                    .collect();
                bulk_ids.sort();
                for &m in &members {
                    cycle_of[m] = Some(c);
                }
                cycles.push(bulk_ids);
            }
        }
    }
    (cycles, cycle_of)
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
    /// first-seen order, by both functions that de-duplicate; unknown ones do not stop ordering.
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
        assert_eq!(
            order_bulk_operations(std::slice::from_ref(&group)),
            Ok(BulkOrder {
                order: vec![0],
                cycles: vec![],
                cycle_of: vec![None],
            })
        );
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

    /// The ordering by its definition: at each step, rescan for the first operation not on a
    /// cycle whose dependencies have all run; when none is left, release every operation on a
    /// cycle (in request order) and go on. An operation is on a cycle when it reaches itself
    /// through references to declared bulkIds; its cycle is every operation it reaches that
    /// reaches it back. Quadratic and worse, kept as the specification.
    fn naive_order(ops: &[BulkOperation]) -> (Vec<usize>, Vec<Option<Vec<String>>>) {
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
        let reaches = |from: usize, to: usize| {
            let mut stack = deps[from].clone();
            let mut seen = HashSet::new();
            while let Some(n) = stack.pop() {
                if n == to {
                    return true;
                }
                if seen.insert(n) {
                    stack.extend(&deps[n]);
                }
            }
            false
        };
        let cycles: Vec<Option<Vec<String>>> = (0..ops.len())
            .map(|i| {
                reaches(i, i).then(|| {
                    let mut ids: Vec<String> = (0..ops.len())
                        .filter(|&j| j == i || (reaches(i, j) && reaches(j, i)))
                        .filter_map(|j| ops[j].bulk_id.clone())
                        .collect();
                    ids.sort();
                    ids
                })
            })
            .collect();
        let mut done = vec![false; ops.len()];
        let mut order = Vec::new();
        let mut released = false;
        while order.len() < ops.len() {
            let next = (0..ops.len()).find(|&i| {
                !done[i] && (released || cycles[i].is_none()) && deps[i].iter().all(|&d| done[d])
            });
            match next {
                Some(i) => {
                    done[i] = true;
                    order.push(i);
                }
                None if !released => {
                    released = true;
                    for i in (0..ops.len()).filter(|&i| cycles[i].is_some()) {
                        done[i] = true;
                        order.push(i);
                    }
                }
                None => break,
            }
        }
        (order, cycles)
    }

    fn ids(order: &BulkOrder, i: usize) -> Option<Vec<&str>> {
        order
            .cycle(i)
            .map(|c| c.iter().map(String::as_str).collect())
    }

    /// The reviewer's request: a forward reference beside a reference to an unknown bulkId. The
    /// unknown one is no dependency; the forward one still orders its operation after the User.
    #[test]
    fn an_unknown_reference_does_not_disorder_a_valid_forward_reference() {
        let ops = vec![
            op(
                Some("g".into()),
                json!({"members": [{"value": "bulkId:u"}]}),
            ),
            op(Some("u".into()), json!({"userName": "x"})),
            op(
                Some("bad".into()),
                json!({"members": [{"value": "bulkId:nope"}]}),
            ),
        ];
        let o = order_bulk_operations(&ops).expect("orderable");
        assert_eq!(o.order, vec![1, 0, 2]);
        assert!(o.cycles.is_empty());
    }

    /// A cycle (and a self-reference) elsewhere in the request: the other operations keep their
    /// topological order; the operations on cycles come after them, then what waits on a cycle.
    #[test]
    fn a_cycle_does_not_disorder_an_unrelated_forward_reference() {
        let ops = vec![
            op(
                Some("a".into()),
                json!({"members": [{"value": "bulkId:b"}]}),
            ),
            op(
                Some("g".into()),
                json!({"members": [{"value": "bulkId:u"}]}),
            ),
            op(
                Some("b".into()),
                json!({"members": [{"value": "bulkId:a"}]}),
            ),
            op(
                Some("after".into()),
                json!({"members": [{"value": "bulkId:a"}]}),
            ),
            op(Some("u".into()), json!({"userName": "x"})),
            op(
                Some("me".into()),
                json!({"members": [{"value": "bulkId:me"}]}),
            ),
            op(Some("free".into()), json!({})),
        ];
        let o = order_bulk_operations(&ops).expect("orderable");
        assert_eq!(o.order, vec![4, 1, 6, 0, 2, 5, 3]);
        assert_eq!(ids(&o, 0), Some(vec!["a", "b"]));
        assert_eq!(ids(&o, 2), Some(vec!["a", "b"]));
        assert_eq!(ids(&o, 5), Some(vec!["me"]));
        for i in [1, 3, 4, 6] {
            assert_eq!(o.cycle(i), None, "operation {i}");
        }
        assert_eq!(o.cycles.len(), 2);
    }

    /// Independent operations run in request order, each dependent one as early as it can,
    /// also beside an unknown reference and a cycle.
    #[test]
    fn ordering_is_stable() {
        let free = |id: &str| op(Some(id.into()), json!({}));
        let refs = |id: &str, to: &str| {
            op(
                Some(id.into()),
                json!({"members": [{"value": format!("bulkId:{to}")}]}),
            )
        };
        let ops = vec![
            free("a"),
            refs("c", "e"),
            refs("x", "y"),
            free("b"),
            refs("unknown", "nope"),
            free("d"),
            refs("y", "x"),
            free("e"),
            free("f"),
        ];
        let o = order_bulk_operations(&ops).expect("orderable");
        assert_eq!(o.order, vec![0, 3, 4, 5, 7, 1, 8, 2, 6]);
        let none: Vec<BulkOperation> = (0..5).map(|i| free(&format!("x{i}"))).collect();
        assert_eq!(
            order_bulk_operations(&none).map(|o| o.order),
            Ok(vec![0, 1, 2, 3, 4])
        );
    }

    /// 100,000 operations each referring to the next: the cycle search walks the chain without
    /// recursion, and the chain runs back to front.
    #[test]
    fn a_long_chain_of_references_is_ordered_without_deep_recursion() {
        let n = 100_000;
        let ops: Vec<BulkOperation> = (0..n)
            .map(|i| {
                let members = if i + 1 < n {
                    json!([{"value": format!("bulkId:b{}", i + 1)}])
                } else {
                    json!([])
                };
                op(Some(format!("b{i}")), json!({"members": members}))
            })
            .collect();
        let o = order_bulk_operations(&ops).expect("orderable");
        assert!(o.order.iter().copied().eq((0..n).rev()));
        assert!(o.cycles.is_empty());
    }

    proptest! {
        /// Random references, some to undeclared bulkIds (`b12` and above), cycles included.
        #[test]
        fn ordering_matches_the_rescanning_definition(
            refs in proptest::collection::vec(proptest::collection::vec(0usize..16, 0..4), 1..12)
        ) {
            let ops: Vec<BulkOperation> = refs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let members: Vec<Value> = r
                        .iter()
                        .map(|j| json!({"value": format!("bulkId:b{j}")}))
                        .collect();
                    op(Some(format!("b{i}")), json!({"members": members}))
                })
                .collect();
            let fast = order_bulk_operations(&ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (order, cycles) = naive_order(&ops);
            prop_assert_eq!(&fast.order, &order);
            for (i, c) in cycles.iter().enumerate() {
                prop_assert_eq!(fast.cycle(i), c.as_deref());
            }
        }
    }
}
