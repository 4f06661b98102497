//! /Bulk (RFC 7644 §3.7): the request is parsed as a [`BulkRequest`], run in the order
//! [`order_bulk_operations`] gives (each operation after the ones whose `bulkId`s it references;
//! request order otherwise), `"bulkId:<id>"` references resolved with [`resolve_bulk_ids`]
//! (including inside member values and in paths), and `failOnErrors` honoured. Responses are
//! listed in request order.
//!
//! Circular references (§3.7.1) are not resolved: the operations then run in request order and
//! those naming a resource not yet created fail with `invalidValue`.

use std::collections::HashMap;

use scim_schema::message::{
    order_bulk_operations, resolve_bulk_ids, BulkMethod, BulkOperation, BulkRequest,
};
use scim_schema::Error;
use serde_json::{json, Value};

use crate::error::HubError;
use crate::store::bursts::{self, BurstSource};
use crate::store::Store;

use super::{kind_of_endpoint, Caller, Schemas};

/// How one operation ended.
#[derive(Debug)]
pub struct OpOutcome {
    pub method: BulkMethod,
    pub bulk_id: Option<String>,
    pub location: Option<String>,
    pub version: Option<String>,
    pub result: Result<u16, HubError>,
}

/// Parses a BulkRequest body (`invalidSyntax` when it is not one).
pub fn parse(body: Value) -> Result<BulkRequest, Error> {
    if !body.is_object() {
        return Err(Error::InvalidSyntax(
            "A BulkRequest must be a JSON object.".into(),
        ));
    }
    serde_json::from_value(body)
        .map_err(|e| Error::InvalidSyntax(format!("The BulkRequest is malformed: {e}")))
}

fn unresolved(ids: &[String]) -> Error {
    Error::InvalidValue(format!(
        "bulkId {} is not defined by an operation that ran before this one.",
        ids.join(", ")
    ))
}

/// Runs a bulk request's operations; `base` is the SCIM base URL for `location`s. Its joiners
/// are one onboarding burst (`store::bursts`), sealed when the request ends.
pub fn run(
    store: &Store,
    schemas: &Schemas,
    request: BulkRequest,
    caller: &Caller,
    base: &str,
) -> Result<Vec<OpOutcome>, Error> {
    let key = uuid::Uuid::now_v7().to_string();
    let out = {
        let _burst = bursts::scope(BurstSource::Bulk, &key);
        run_ops(store, schemas, request, caller, base)
    };
    if let Err(e) = store.write_tx(|c, _| bursts::seal(c, BurstSource::Bulk, &key)) {
        // The burst is then closed by time (`onboarding_window`) instead.
        tracing::warn!(error = %e, "cannot seal the /Bulk request's onboarding burst");
    }
    out
}

fn run_ops(
    store: &Store,
    schemas: &Schemas,
    request: BulkRequest,
    caller: &Caller,
    base: &str,
) -> Result<Vec<OpOutcome>, Error> {
    let _audit = crate::store::audit_chain::request_scope(&caller.request_id);
    let order = match order_bulk_operations(&request.operations) {
        Ok(order) => order,
        Err(scim_schema::message::BulkOrderError::DuplicateBulkId(id)) => {
            return Err(Error::InvalidValue(format!(
                "bulkId {id:?} is used by more than one operation."
            )))
        }
        // Unresolvable or circular references: run as written; the references fail one by one.
        Err(_) => (0..request.operations.len()).collect(),
    };
    let fail_on_errors = request.fail_on_errors.filter(|n| *n > 0);
    let mut ops: Vec<Option<BulkOperation>> = request.operations.into_iter().map(Some).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut out: Vec<(usize, OpOutcome)> = Vec::new();
    let mut errors = 0u32;
    for i in order {
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
        let Some(op) = ops.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let outcome = run_one(store, schemas, op, caller, base, &mut ids);
        if outcome.result.is_err() {
            errors += 1;
        }
        out.push((i, outcome));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, o)| o).collect())
}

fn run_one(
    store: &Store,
    schemas: &Schemas,
    op: BulkOperation,
    caller: &Caller,
    base: &str,
    ids: &mut HashMap<String, String>,
) -> OpOutcome {
    let mut outcome = OpOutcome {
        method: op.method,
        bulk_id: op.bulk_id.clone(),
        location: None,
        version: None,
        result: Ok(200),
    };
    let result = (|| -> Result<u16, HubError> {
        // Each path segment may be a reference: `/Users/bulkId:qwerty`.
        let mut segments = Value::Array(
            op.path
                .split('/')
                .map(|s| Value::String(s.to_string()))
                .collect(),
        );
        resolve_bulk_ids(&mut segments, ids).map_err(|e| unresolved(&e.bulk_ids))?;
        let path = segments
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let kind = segs
            .first()
            .and_then(|s| kind_of_endpoint(s))
            .ok_or_else(|| Error::InvalidPath(format!("Unknown bulk path {path:?}.")))?;
        let id = match segs.get(1..) {
            Some([]) | None => None,
            Some([id]) if !id.is_empty() => Some(id.to_string()),
            _ => return Err(Error::InvalidPath(format!("Unknown bulk path {path:?}.")).into()),
        };
        let if_match = op.version.as_deref();
        let mut data = op.data.unwrap_or(Value::Null);
        resolve_bulk_ids(&mut data, ids).map_err(|e| unresolved(&e.bulk_ids))?;
        let (status, r) = match (op.method, id) {
            (BulkMethod::Post, None) => {
                let bulk_id = op
                    .bulk_id
                    .clone()
                    .ok_or_else(|| Error::InvalidSyntax("A bulk POST needs a bulkId.".into()))?;
                let r = super::create(store, schemas, kind, data, caller)?;
                ids.insert(bulk_id, r.id.clone());
                (201, Some(r))
            }
            (BulkMethod::Put, Some(id)) => (
                200,
                Some(super::replace(
                    store, schemas, kind, &id, data, if_match, caller,
                )?),
            ),
            (BulkMethod::Patch, Some(id)) => (
                200,
                Some(
                    super::patch(
                        store,
                        schemas,
                        kind,
                        &id,
                        data,
                        if_match,
                        caller,
                        super::PatchReply::Minimal,
                    )?
                    .resource,
                ),
            ),
            (BulkMethod::Delete, Some(id)) => {
                super::delete(store, kind, &id, if_match, caller)?;
                outcome.location = Some(format!("{base}/{}/{id}", kind.endpoint()));
                (204, None)
            }
            (m, _) => {
                return Err(Error::InvalidSyntax(format!(
                    "Unsupported bulk operation {m:?} {path}."
                ))
                .into())
            }
        };
        if let Some(r) = r {
            outcome.location = Some(format!("{base}/{}/{}", kind.endpoint(), r.id));
            outcome.version = Some(r.etag());
        }
        Ok(status)
    })();
    outcome.result = result;
    outcome
}

/// The BulkResponse operation entry for an outcome; `error_body` renders a failure.
pub fn response_entry(o: &OpOutcome, error_body: impl Fn(&HubError) -> (u16, Value)) -> Value {
    let (status, response) = match &o.result {
        Ok(status) => (*status, None),
        Err(err) => {
            let (status, body) = error_body(err);
            (status, Some(body))
        }
    };
    let entry = scim_schema::message::BulkOperationResponse {
        location: o.location.clone(),
        method: o.method,
        bulk_id: o.bulk_id.clone(),
        version: o.version.clone(),
        status: status.to_string(),
        response,
    };
    serde_json::to_value(entry).unwrap_or_else(|_| json!({"status": status.to_string()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7644_3_7_bulk_requests_parse() {
        let r = parse(json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "failOnErrors":1,"Operations":[{"method":"post","path":"/Users","bulkId":"q","data":{}}]}))
        .expect("parse");
        assert_eq!(r.operations[0].method, BulkMethod::Post);
        assert_eq!(r.fail_on_errors, Some(1));
        assert!(matches!(parse(json!([1])), Err(Error::InvalidSyntax(_))));
        assert!(matches!(
            parse(json!({"Operations":[{"method":"MOVE","path":"/Users"}]})),
            Err(Error::InvalidSyntax(_))
        ));
    }
}
