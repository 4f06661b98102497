//! The RFC 7644 protocol messages (the `urn:ietf:params:scim:api:messages:2.0:*` schemas).
//!
//! * [`ListResponse`] — §3.4.2, with the RFC 9865 cursor fields.
//! * [`ErrorResponse`] — §3.12; `status` is a JSON *string*, as the RFC's examples show.
//! * [`PatchOpRequest`] — §3.5.2 as received: `op` stays a raw string so that
//!   [`crate::dialect`] can normalise what real clients send; [`PatchOperation`] is the typed,
//!   normalised form consumed by [`crate::patch::apply_patch`].
//! * [`SearchRequest`] — §3.4.3 (`POST .../.search`), with the RFC 9865 `cursor`.
//! * [`bulk`] — §3.7 BulkRequest/BulkResponse, `bulkId` reference resolution and ordering.
//!
//! Field names follow the RFC exactly (`Resources`, `Operations` capitalised). Deserialisation
//! is tolerant where clients differ harmlessly (a numeric `status`, lower-case `operations`);
//! serialisation always produces the RFC form.

pub mod bulk;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ScimType};
use crate::filter::PatchPath;

pub use bulk::{
    order_bulk_operations, resolve_bulk_ids, BulkMethod, BulkOperation, BulkOperationResponse,
    BulkOrder, BulkOrderError, BulkRequest, BulkResponse, UnresolvedBulkId,
};

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

fn schemas_of(urn: &str) -> Vec<String> {
    vec![urn.to_owned()]
}
fn list_response_schemas() -> Vec<String> {
    schemas_of(LIST_RESPONSE)
}
fn error_schemas() -> Vec<String> {
    schemas_of(ERROR)
}
fn patch_op_schemas() -> Vec<String> {
    schemas_of(PATCH_OP)
}
fn search_request_schemas() -> Vec<String> {
    schemas_of(SEARCH_REQUEST)
}

/// Keeps an explicit JSON `null` as `Some(Value::Null)` (an absent member stays `None`), so that
/// "no value" and "value: null" can be told apart.
pub(crate) fn some_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Whether `schemas` names `urn` (case-insensitively, RFC 7643 §2.1).
pub fn has_schema(schemas: &[String], urn: &str) -> bool {
    schemas.iter().any(|s| s.eq_ignore_ascii_case(urn))
}

/// A query response (RFC 7644 §3.4.2), optionally paged by cursor (RFC 9865).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    #[serde(default = "list_response_schemas")]
    pub schemas: Vec<String>,
    pub total_results: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_per_page: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<u64>,
    /// RFC 9865 §2: the cursor of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// RFC 9865 §2: the cursor of the previous page, when the provider supports going back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_cursor: Option<String>,
    /// Always serialised, even when empty: several clients (Entra among them) expect
    /// `"Resources": []` on an empty result.
    #[serde(rename = "Resources", alias = "resources", default = "Vec::new")]
    pub resources: Vec<T>,
}

impl<T> ListResponse<T> {
    /// An index-paged page (RFC 7644 §3.4.2.4): `start_index` is 1-based.
    pub fn indexed(resources: Vec<T>, total_results: u64, start_index: u64) -> Self {
        ListResponse {
            schemas: list_response_schemas(),
            total_results,
            items_per_page: Some(resources.len() as u64),
            start_index: Some(start_index),
            next_cursor: None,
            previous_cursor: None,
            resources,
        }
    }

    /// A cursor-paged page (RFC 9865).
    pub fn cursored(
        resources: Vec<T>,
        total_results: u64,
        next_cursor: Option<String>,
        previous_cursor: Option<String>,
    ) -> Self {
        ListResponse {
            schemas: list_response_schemas(),
            total_results,
            items_per_page: Some(resources.len() as u64),
            start_index: None,
            next_cursor,
            previous_cursor,
            resources,
        }
    }
}

/// An error body (RFC 7644 §3.12). `status` is the HTTP status code *as a string*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    #[serde(default = "error_schemas")]
    pub schemas: Vec<String>,
    /// Serialised as a string (`"400"`); a number is accepted when reading.
    #[serde(deserialize_with = "status_string")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<ScimType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn status_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(de::Error::custom(format!(
            "status must be a string, got {other}"
        ))),
    }
}

impl ErrorResponse {
    /// An error without a `scimType` (e.g. 404, 412, 500).
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: Option<String>) -> Self {
        ErrorResponse {
            schemas: error_schemas(),
            status: status.to_string(),
            scim_type,
            detail,
        }
    }

    /// The numeric status, if `status` is a valid one.
    pub fn status_code(&self) -> Option<u16> {
        self.status.parse().ok()
    }
}

impl From<&Error> for ErrorResponse {
    fn from(e: &Error) -> Self {
        ErrorResponse::new(e.status(), Some(e.scim_type()), Some(e.detail().to_owned()))
    }
}

impl From<Error> for ErrorResponse {
    fn from(e: Error) -> Self {
        ErrorResponse::from(&e)
    }
}

/// One PATCH operation as received (RFC 7644 §3.5.2): `op` is kept verbatim ("Replace" included)
/// and `path` unparsed; [`crate::dialect::normalize_patch`] turns these into [`PatchOperation`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawPatchOperation {
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `None` when absent; `Some(Value::Null)` when the client sent `"value": null`.
    #[serde(
        default,
        deserialize_with = "some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
}

/// A PATCH request body (RFC 7644 §3.5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOpRequest {
    /// Empty when the client sent none: [`crate::dialect::normalize_patch`] refuses that unless
    /// the client is configured lenient (RFC 7643 §3 makes `schemas` REQUIRED).
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<RawPatchOperation>,
}

impl PatchOpRequest {
    pub fn new(operations: Vec<RawPatchOperation>) -> Self {
        PatchOpRequest {
            schemas: patch_op_schemas(),
            operations,
        }
    }

    /// The request body that sends typed operations (what a connector builds) in RFC form.
    pub fn from_operations(operations: &[PatchOperation]) -> Self {
        PatchOpRequest::new(operations.iter().map(RawPatchOperation::from).collect())
    }
}

impl From<&PatchOperation> for RawPatchOperation {
    /// The RFC wire form: the op in lower case, the path printed by the filter printer.
    fn from(op: &PatchOperation) -> Self {
        RawPatchOperation {
            op: op.op.as_str().to_owned(),
            path: op.path.as_ref().map(PatchPath::to_string),
            value: op.value.clone(),
        }
    }
}

/// The three PATCH operations of RFC 7644 §3.5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    Add,
    Remove,
    Replace,
}

impl PatchOpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }

    /// The RFC spelling only (`add`, `remove`, `replace`).
    pub fn parse_strict(op: &str) -> Option<Self> {
        match op {
            "add" => Some(PatchOpKind::Add),
            "remove" => Some(PatchOpKind::Remove),
            "replace" => Some(PatchOpKind::Replace),
            _ => None,
        }
    }

    /// Any ASCII case (`Replace`, `ADD`).
    pub fn parse_ci(op: &str) -> Option<Self> {
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(op))
    }
}

/// A normalised PATCH operation: the op is typed and the path parsed.
///
/// Serialises to the RFC 7644 §3.5.2 wire form (`{"op": "replace", "path": "emails[type eq
/// \"work\"].value", "value": …}`), the path printed canonically by [`crate::filter::print`], so
/// connectors can send the operations they build. There is deliberately no `Deserialize`: what a
/// client sends goes through [`crate::dialect::normalize_patch`].
#[derive(Debug, Clone, Serialize)]
pub struct PatchOperation {
    pub op: PatchOpKind,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_path"
    )]
    pub path: Option<PatchPath>,
    /// `None` when the request had no `value` member; `Some(Value::Null)` is sent as `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The request's `Operations[i]` this came from, for error details: normalising may split one
    /// request operation into several or set some aside (Group members). `None` for operations
    /// built in code, which are then named by their position.
    #[serde(skip)]
    pub request_index: Option<usize>,
}

/// What an operation does; where it came from ([`PatchOperation::request_index`]) is not compared.
impl PartialEq for PatchOperation {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.path == other.path && self.value == other.value
    }
}

fn serialize_path<S: serde::Serializer>(path: &Option<PatchPath>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}

impl PatchOperation {
    pub fn new(op: PatchOpKind, path: Option<PatchPath>, value: Option<Value>) -> Self {
        PatchOperation {
            op,
            path,
            value,
            request_index: None,
        }
    }
}

/// RFC 7644 §3.4.2.3 `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Ascending,
    Descending,
}

/// A query by POST (RFC 7644 §3.4.3), with the RFC 9865 `cursor`.
///
/// `startIndex` and `count` are signed: RFC 7644 §3.4.2.4 says a value below 1 (`startIndex`) or
/// a negative `count` is interpreted as 1 and 0, which [`SearchRequest::start_index`] and
/// [`SearchRequest::count`] apply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default = "search_request_schemas")]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_attributes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<SortOrder>,
    #[serde(
        default,
        rename = "startIndex",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_index_raw: Option<i64>,
    #[serde(default, rename = "count", skip_serializing_if = "Option::is_none")]
    pub count_raw: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl SearchRequest {
    /// The 1-based start index: absent or below 1 means 1 (RFC 7644 §3.4.2.4).
    pub fn start_index(&self) -> u64 {
        self.start_index_raw.map_or(1, |i| i.max(1) as u64)
    }

    /// The requested page size: negative means 0 (RFC 7644 §3.4.2.4); `None` when absent.
    pub fn count(&self) -> Option<u64> {
        self.count_raw.map(|c| c.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_from_domain_error() {
        let e = ErrorResponse::from(Error::NoTarget("no match".into()));
        assert_eq!(e.status, "400");
        assert_eq!(e.scim_type, Some(ScimType::NoTarget));
        assert_eq!(
            ErrorResponse::from(Error::Uniqueness("x".into())).status_code(),
            Some(409)
        );
    }

    #[test]
    fn op_names() {
        assert_eq!(PatchOpKind::parse_strict("Replace"), None);
        assert_eq!(PatchOpKind::parse_ci("Replace"), Some(PatchOpKind::Replace));
        assert_eq!(PatchOpKind::parse_ci("move"), None);
    }
}
