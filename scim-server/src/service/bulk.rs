//! /Bulk (RFC 7644 §3.7): the request is parsed as a [`BulkRequest`], run in the order
//! [`order_bulk_operations`] gives (each operation after the ones whose `bulkId`s it references;
//! request order otherwise), `"bulkId:<id>"` references resolved with [`resolve_bulk_ids`]
//! (including inside member values and in paths), and `failOnErrors` honoured. Responses are
//! listed in request order. A `bulkId` declared twice fails the whole request (400
//! `invalidValue`); every other bad reference fails only its own operation:
//!
//! * a reference to a `bulkId` no operation declares: 400 `invalidValue` naming it, when the
//!   operation runs; the other operations are ordered as if it were not there;
//! * circular references (§3.7.1) are not resolved: each operation on a cycle fails with 409
//!   ([`HubError::BulkCycle`], naming the cycle's `bulkId`s), without running, after the
//!   operations that do not wait on a cycle have run;
//! * a reference to an operation that failed (or was not run, or is on a cycle): 400
//!   `invalidValue`.
//!
//! Each failure counts towards `failOnErrors`, a cycle's operations one each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use scim_schema::dialect::{check_case_duplicates, check_members, check_request_message, Dialect};
use scim_schema::message::{
    order_bulk_operations, resolve_bulk_ids, BulkMethod, BulkOperation, BulkOrderError,
    BulkRequest, BULK_REQUEST,
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

/// The members a BulkRequest and each of its operations take (RFC 7644 §3.7), as serde names them.
const REQUEST_MEMBERS: &[&str] = &["Operations", "failOnErrors"];
/// `location`, `response` and `status` are §3.7's response members: a client echoing an
/// operation back may send them, and they are ignored.
const OPERATION_MEMBERS: &[&str] = &[
    "method", "bulkId", "version", "path", "data", "location", "response", "status",
];

/// Parses a BulkRequest body (`invalidSyntax` when it is not one). Members are matched
/// case-insensitively (RFC 7643 §2.1); outside the Lenient dialect the body must list the
/// BulkRequest schema and carry no member §3.7 does not define, in the request or in an
/// operation ([`check_request_message`]).
pub fn parse(body: Value, dialect: Dialect) -> Result<BulkRequest, Error> {
    let Value::Object(mut request) = body else {
        return Err(Error::InvalidSyntax(
            "A BulkRequest must be a JSON object.".into(),
        ));
    };
    check_case_duplicates(&request, "BulkRequest")?;
    check_request_message(
        &request,
        "BulkRequest",
        BULK_REQUEST,
        REQUEST_MEMBERS,
        dialect,
    )?;
    canonical_names(&mut request, REQUEST_MEMBERS);
    if let Some(Value::Array(ops)) = request.get_mut("Operations") {
        for (i, op) in ops.iter_mut().enumerate() {
            if let Value::Object(op) = op {
                check_case_duplicates(op, &format!("bulk operation (Operations[{i}])"))?;
                if dialect != Dialect::Lenient {
                    check_members(
                        op,
                        &format!("bulk operation (Operations[{i}])"),
                        OPERATION_MEMBERS,
                    )?;
                }
                canonical_names(op, OPERATION_MEMBERS);
            }
        }
    }
    serde_json::from_value(Value::Object(request))
        .map_err(|e| Error::InvalidSyntax(format!("The BulkRequest is malformed: {e}")))
}

/// Renames members spelt in another case to the names serde reads (`bulkid` to `bulkId`).
fn canonical_names(object: &mut serde_json::Map<String, Value>, names: &[&str]) {
    for name in names {
        let other = object
            .keys()
            .find(|k| k.as_str() != *name && k.eq_ignore_ascii_case(name))
            .cloned();
        if let Some(other) = other {
            if !object.contains_key(*name) {
                if let Some(v) = object.remove(&other) {
                    object.insert((*name).to_string(), v);
                }
            }
        }
    }
}

/// The error of an operation whose references `ids` name no created resource: undeclared
/// ones (not in `declared`) are told apart from those whose operation failed or did not run.
fn unresolved(ids: &[String], declared: &HashSet<String>) -> Error {
    let (known, unknown): (Vec<String>, Vec<String>) =
        ids.iter().cloned().partition(|id| declared.contains(id));
    let mut detail = Vec::new();
    if !unknown.is_empty() {
        detail.push(format!(
            "bulkId {} is not declared by any operation of this request.",
            unknown.join(", ")
        ));
    }
    if !known.is_empty() {
        detail.push(format!(
            "bulkId {} is not defined by an operation that ran before this one.",
            known.join(", ")
        ));
    }
    Error::InvalidValue(detail.join(" "))
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
    let plan = match order_bulk_operations(&request.operations) {
        Ok(plan) => plan,
        Err(BulkOrderError::DuplicateBulkId(id)) => {
            return Err(Error::InvalidValue(format!(
                "bulkId {id:?} is used by more than one operation."
            )))
        }
    };
    let declared: HashSet<String> = request
        .operations
        .iter()
        .filter_map(|op| op.bulk_id.clone())
        .collect();
    // Shared by the operations of each cycle, so that a long one is not copied per operation.
    let cycles: Vec<Arc<[String]>> = plan.cycles.iter().map(|c| c.as_slice().into()).collect();
    let fail_on_errors = request.fail_on_errors.filter(|n| *n > 0);
    let mut ops: Vec<Option<BulkOperation>> = request.operations.into_iter().map(Some).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut out: Vec<(usize, OpOutcome)> = Vec::new();
    let mut errors = 0u32;
    for i in plan.order {
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
        let Some(op) = ops.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let cycle = plan.cycle_of.get(i).copied().flatten();
        let outcome = match cycle.and_then(|c| cycles.get(c)) {
            Some(bulk_ids) => OpOutcome {
                method: op.method,
                bulk_id: op.bulk_id,
                location: None,
                version: None,
                result: Err(HubError::BulkCycle {
                    bulk_ids: bulk_ids.clone(),
                }),
            },
            None => run_one(store, schemas, op, caller, base, &mut ids, &declared),
        };
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
    declared: &HashSet<String>,
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
        resolve_bulk_ids(&mut segments, ids).map_err(|e| unresolved(&e.bulk_ids, declared))?;
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
        resolve_bulk_ids(&mut data, ids).map_err(|e| unresolved(&e.bulk_ids, declared))?;
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::service::schemas;

    /// Runs a bulk request; each operation's status (as the HTTP edge would give it for the
    /// errors these tests expect) and error message, in request order.
    fn run_bulk(store: &Store, body: Value) -> Vec<(u16, String)> {
        let schemas = Schemas::new(schemas::registry(), false).expect("schemas");
        let caller = Caller {
            client: "test".into(),
            dialect: Default::default(),
            sources: Default::default(),
            request_id: String::new(),
        };
        let mut body = body;
        if body.get("schemas").is_none() {
            body["schemas"] = json!([BULK_REQUEST]);
        }
        let request = parse(body, Dialect::Standard).expect("a BulkRequest");
        run(store, &schemas, request, &caller, "http://x/scim/v2")
            .expect("runs")
            .into_iter()
            .map(|o| match o.result {
                Ok(status) => (status, String::new()),
                Err(HubError::Scim(e)) => (e.status(), e.to_string()),
                Err(e @ HubError::BulkCycle { .. }) => (409, e.to_string()),
                Err(e) => panic!("unexpected error {e:?}"),
            })
            .collect()
    }

    fn group(bulk_id: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members
            .iter()
            .map(|m| json!({"value": format!("bulkId:{m}")}))
            .collect();
        json!({"method": "POST", "path": "/Groups", "bulkId": bulk_id,
               "data": {"displayName": format!("group {bulk_id}"), "members": members}})
    }

    fn user(bulk_id: &str) -> Value {
        json!({"method": "POST", "path": "/Users", "bulkId": bulk_id,
               "data": {"userName": format!("user-{bulk_id}")}})
    }

    /// The reviewer's request: a reference to an undeclared bulkId fails only its operation,
    /// naming it, and the forward reference beside it still resolves.
    #[test]
    fn an_unknown_reference_fails_alone() {
        let db = crate::store::tests::sqlite_db();
        let out = run_bulk(
            &db.store,
            json!({"Operations": [group("g", &["u"]), user("u"), group("bad", &["nope"])]}),
        );
        assert_eq!(out[0], (201, String::new()));
        assert_eq!(out[1], (201, String::new()));
        assert_eq!(out[2].0, 400);
        assert_eq!(
            out[2].1,
            "bulkId nope is not declared by any operation of this request."
        );
    }

    /// Operations on a cycle fail with 409 naming it; an unrelated forward reference resolves;
    /// an operation referring to one on the cycle fails with `invalidValue`.
    #[test]
    fn operations_on_a_cycle_fail_with_409_and_the_others_run() {
        let db = crate::store::tests::sqlite_db();
        let out = run_bulk(
            &db.store,
            json!({"Operations": [group("a", &["b"]), group("g", &["u"]), group("b", &["a"]),
                                  group("after", &["a"]), user("u")]}),
        );
        let statuses: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_eq!(statuses, vec![409, 201, 409, 400, 201], "{out:?}");
        assert_eq!(out[0].1, "circular bulkId references among a, b");
        assert_eq!(out[2].1, out[0].1);
        assert_eq!(
            out[3].1,
            "bulkId a is not defined by an operation that ran before this one."
        );
    }

    /// failOnErrors counts each operation of a cycle as one error; the cycle runs after the
    /// operations that do not wait on it, so those are not cut off by it.
    #[test]
    fn fail_on_errors_counts_the_operations_on_a_cycle() {
        let db = crate::store::tests::sqlite_db();
        let out = run_bulk(
            &db.store,
            json!({"failOnErrors": 1,
                   "Operations": [group("a", &["b"]), group("b", &["a"]), user("u")]}),
        );
        // u ran first, then a failed and stopped the job: b was not run nor listed.
        let statuses: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_eq!(statuses, vec![409, 201]);
    }

    #[test]
    fn rfc7644_3_7_bulk_requests_parse() {
        let std = Dialect::Standard;
        let r = parse(json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "failOnErrors":1,"Operations":[{"method":"post","path":"/Users","bulkId":"q","data":{}}]}), std)
        .expect("parse");
        assert_eq!(r.operations[0].method, BulkMethod::Post);
        assert_eq!(r.fail_on_errors, Some(1));
        assert!(matches!(
            parse(json!([1]), std),
            Err(Error::InvalidSyntax(_))
        ));
        assert!(matches!(
            parse(
                json!({"schemas":[BULK_REQUEST],"Operations":[{"method":"MOVE","path":"/Users"}]}),
                std
            ),
            Err(Error::InvalidSyntax(_))
        ));
    }

    /// Members are read in any case (RFC 7643 §2.1): `FailOnErrors` and `BulkId` are not lost.
    #[test]
    fn bulk_members_are_read_in_any_case() {
        let r = parse(
            json!({"SCHEMAS":[BULK_REQUEST.to_ascii_lowercase()],"FailOnErrors":2,"operations":[
                {"Method":"POST","Path":"/Users","BulkId":"q","Version":"W/\"3\"","Data":{}}]}),
            Dialect::Strict,
        )
        .expect("parse");
        assert_eq!(r.fail_on_errors, Some(2));
        let op = &r.operations[0];
        assert_eq!(op.bulk_id.as_deref(), Some("q"));
        assert_eq!(op.version.as_deref(), Some("W/\"3\""));
        assert_eq!(op.path, "/Users");
        assert!(op.data.is_some());
    }

    /// One member named twice in different cases is refused in every dialect: read
    /// case-insensitively it has two values, and either would drop the other silently.
    #[test]
    fn bulk_members_named_twice_in_different_cases_are_refused() {
        let op = json!({"method":"DELETE","path":"/Users/1"});
        let bodies = [
            json!({"schemas":[BULK_REQUEST],"SCHEMAS":["x"],"Operations":[op.clone()]}),
            json!({"schemas":[BULK_REQUEST],"failOnErrors":1,"FailOnErrors":9,"Operations":[op.clone()]}),
            json!({"schemas":[BULK_REQUEST],"Operations":[
                {"method":"DELETE","METHOD":"PATCH","path":"/Users/1"}]}),
            json!({"schemas":[BULK_REQUEST],"Operations":[
                {"method":"DELETE","path":"/Users/1","version":"W/\"1\"","VERSION":"*"}]}),
        ];
        for body in bodies {
            for dialect in [Dialect::Strict, Dialect::Standard, Dialect::Lenient] {
                let e = parse(body.clone(), dialect).expect_err("refused");
                assert!(
                    matches!(e, Error::InvalidSyntax(_)),
                    "{body} {dialect:?}: {e:?}"
                );
            }
        }
        // §3.7's response members echoed in a request are ignored.
        let echoed = json!({"schemas":[BULK_REQUEST],"Operations":[{"method":"DELETE",
            "path":"/Users/1","location":"x","status":"200","response":{}}]});
        assert!(parse(echoed, Dialect::Strict).is_ok());
    }

    /// Without the BulkRequest schema, or with a member §3.7 does not define (a misspelt
    /// `failOnErrors` would run every operation; a misspelt `version` would drop the
    /// precondition), the request is `invalidSyntax` outside the Lenient dialect.
    #[test]
    fn bulk_envelope_is_checked_outside_lenient() {
        let op = json!({"method":"DELETE","path":"/Users/1","version":"W/\"1\""});
        let bodies = [
            json!({"Operations":[op.clone()]}),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[op.clone()]}),
            json!({"schemas":BULK_REQUEST,"Operations":[op.clone()]}),
            json!({"schemas":[BULK_REQUEST],"failOnError":1,"Operations":[op.clone()]}),
            json!({"schemas":[BULK_REQUEST],"Operations":[
                {"method":"DELETE","path":"/Users/1","versoin":"W/\"1\""}]}),
        ];
        for body in bodies {
            for dialect in [
                Dialect::Strict,
                Dialect::Standard,
                Dialect::EntraId,
                Dialect::Okta,
            ] {
                let e = parse(body.clone(), dialect).expect_err("refused");
                assert!(
                    matches!(e, Error::InvalidSyntax(_)),
                    "{body} {dialect:?}: {e:?}"
                );
            }
            // Lenient takes a missing or other schema and ignores unknown members (a `schemas`
            // that is not a list is still malformed).
            if body.get("schemas").is_none_or(Value::is_array) {
                let lenient = parse(body.clone(), Dialect::Lenient);
                assert!(lenient.is_ok(), "{body}: {lenient:?}");
            }
        }
        let e = parse(
            json!({"schemas":[BULK_REQUEST],"Operations":[op.clone()],"failOnError":1}),
            Dialect::Standard,
        )
        .expect_err("refused")
        .to_string();
        assert!(
            e.contains("\"failOnError\"") && e.contains("failOnErrors"),
            "{e}"
        );
    }
}
