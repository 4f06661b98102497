//! /Bulk (RFC 7644 §3.7): operations in order, `bulkId` references resolved across operations
//! (including inside member values), `failOnErrors` honoured.

use std::collections::HashMap;

use scim_schema::json::get_ci;
use scim_schema::Error;
use serde_json::{json, Map, Value};

use crate::store::{Store, StoreError};

use super::kind_of_endpoint;

/// How one operation ended.
#[derive(Debug)]
pub struct OpOutcome {
    pub method: String,
    pub bulk_id: Option<String>,
    pub location: Option<String>,
    pub version: Option<String>,
    pub result: Result<u16, StoreError>,
}

/// Replaces every `"bulkId:<id>"` string in `v` by the id it was created with.
fn resolve(v: &mut Value, ids: &HashMap<String, String>) -> Result<(), Error> {
    match v {
        Value::String(s) => {
            if let Some(b) = s.strip_prefix("bulkId:") {
                *s = ids.get(b).cloned().ok_or_else(|| {
                    Error::InvalidValue(format!(
                        "bulkId {b:?} is not defined by an earlier operation."
                    ))
                })?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|i| resolve(i, ids)),
        Value::Object(o) => o.values_mut().try_for_each(|i| resolve(i, ids)),
        _ => Ok(()),
    }
}

fn resolve_path(path: &str, ids: &HashMap<String, String>) -> Result<String, Error> {
    path.split('/')
        .map(|seg| match seg.strip_prefix("bulkId:") {
            Some(b) => ids.get(b).cloned().ok_or_else(|| {
                Error::InvalidValue(format!(
                    "bulkId {b:?} is not defined by an earlier operation."
                ))
            }),
            None => Ok(seg.to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|s| s.join("/"))
}

/// Runs a bulk request's operations; `base` is the SCIM base URL for `location`s.
pub fn run(
    store: &Store,
    body: &Map<String, Value>,
    client: &str,
    base: &str,
) -> Result<Vec<OpOutcome>, Error> {
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::InvalidSyntax("A BulkRequest needs an Operations array.".into()))?;
    let fail_on_errors = match get_ci(body, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            Error::InvalidValue("failOnErrors must be a positive integer.".into())
        })?),
    };
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let mut errors = 0u64;
    for op in ops {
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
        let outcome = run_one(store, op, client, base, &mut ids);
        if outcome.result.is_err() {
            errors += 1;
        }
        out.push(outcome);
    }
    Ok(out)
}

fn run_one(
    store: &Store,
    op: &Value,
    client: &str,
    base: &str,
    ids: &mut HashMap<String, String>,
) -> OpOutcome {
    let obj = op.as_object();
    let field = |n: &str| obj.and_then(|o| get_ci(o, n));
    let method = field("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase();
    let bulk_id = field("bulkId").and_then(Value::as_str).map(str::to_string);
    let mut outcome = OpOutcome {
        method: method.clone(),
        bulk_id: bulk_id.clone(),
        location: None,
        version: None,
        result: Ok(200),
    };
    let result = (|| -> Result<u16, StoreError> {
        let path = field("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidSyntax("A bulk operation needs a path.".into()))?;
        let path = resolve_path(path, ids)?;
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let kind = segs
            .first()
            .and_then(|s| kind_of_endpoint(s))
            .ok_or_else(|| Error::InvalidPath(format!("Unknown bulk path {path:?}.")))?;
        let id = segs.get(1).map(|s| s.to_string());
        let if_match = field("version").and_then(Value::as_str).map(str::to_string);
        let mut data = field("data").cloned().unwrap_or(Value::Null);
        resolve(&mut data, ids)?;
        let (status, r) = match (method.as_str(), id) {
            ("POST", None) => {
                let bulk_id = bulk_id
                    .clone()
                    .ok_or_else(|| Error::InvalidSyntax("A bulk POST needs a bulkId.".into()))?;
                let r = super::create(store, kind, data, client)?;
                ids.insert(bulk_id, r.id.clone());
                (201, Some(r))
            }
            ("PUT", Some(id)) => (
                200,
                Some(super::replace(
                    store,
                    kind,
                    &id,
                    data,
                    if_match.as_deref(),
                    client,
                )?),
            ),
            ("PATCH", Some(id)) => (
                200,
                Some(super::patch(store, kind, &id, &data, if_match.as_deref(), client)?.resource),
            ),
            ("DELETE", Some(id)) => {
                store.delete(kind, &id, if_match.as_deref())?;
                outcome.location = Some(format!("{base}/{}/{id}", kind.endpoint()));
                (204, None)
            }
            _ => {
                return Err(Error::InvalidSyntax(format!(
                    "Unsupported bulk operation {method} {path}."
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
pub fn response_entry(o: &OpOutcome, error_body: impl Fn(&StoreError) -> (u16, Value)) -> Value {
    let mut e = json!({"method": o.method});
    let obj = e.as_object_mut();
    if let Some(obj) = obj {
        if let Some(b) = &o.bulk_id {
            obj.insert("bulkId".into(), json!(b));
        }
        if let Some(l) = &o.location {
            obj.insert("location".into(), json!(l));
        }
        if let Some(v) = &o.version {
            obj.insert("version".into(), json!(v));
        }
        match &o.result {
            Ok(status) => {
                obj.insert("status".into(), json!(status.to_string()));
            }
            Err(err) => {
                let (status, body) = error_body(err);
                obj.insert("status".into(), json!(status.to_string()));
                obj.insert("response".into(), body);
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7644_3_7_2_bulk_ids_resolve_in_values_and_paths() {
        let ids = HashMap::from([("qwerty".to_string(), "u-1".to_string())]);
        let mut v = json!({"members":[{"type":"User","value":"bulkId:qwerty"}]});
        resolve(&mut v, &ids).expect("resolve");
        assert_eq!(v["members"][0]["value"], "u-1");
        assert_eq!(
            resolve_path("/Users/bulkId:qwerty", &ids).expect("path"),
            "/Users/u-1"
        );
        assert!(resolve(&mut json!("bulkId:nope"), &ids).is_err());
    }
}
