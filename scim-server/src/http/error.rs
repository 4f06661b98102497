//! The one place where every failure becomes a SCIM error response (RFC 7644 §3.12).
//!
//! Handlers and the service layer return [`ApiError`]; protocol errors from `scim-schema`
//! and storage errors convert into it with `?`. Internal causes (database messages, I/O errors)
//! are logged here and never sent to the client: a 500 or 503 carries a generic detail.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::error::HubError;

/// The media type of every SCIM response body (RFC 7644 §3.1).
pub const SCIM_JSON: &str = "application/scim+json";

/// The URN of the SCIM error message (RFC 7644 §3.12).
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Every way a request can fail, each with its HTTP status and (where RFC 7644 defines one) scimType.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A protocol error (invalid filter, mutability, uniqueness, ...): status and scimType from
    /// RFC 7644 §3.12 Table 9.
    #[error(transparent)]
    Scim(#[from] scim_schema::Error),
    #[error("{0}")]
    NotFound(String),
    /// 409 outside the SCIM protocol errors: an admin decision that was already taken (an
    /// approval decided, a hold confirmed, a one-click link used), or an action that conflicts
    /// with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 410: a one-click link past its expiry.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// 401: no credentials, or credentials that are not valid. Answered with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials whose scopes do not cover the request.
    #[error("{0}")]
    Forbidden(String),
    /// 405, with the `Allow` header RFC 9110 §15.5.6 requires when the route's methods are known.
    #[error("{detail}")]
    MethodNotAllowed {
        detail: String,
        allow: Option<&'static str>,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 413: a body over the configured limit, or a bulk request over maxOperations/maxPayloadSize.
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    NotImplemented(String),
    /// 429: too many requests (failed authentications, or calls to an unauthenticated route)
    /// from one address; answered with `Retry-After: retry_after_secs`.
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    /// 414: a request line over the front door's limit (`http::transport`). RFC 7644 defines no
    /// scimType for it (`tooMany` is about results and bulk operations), so none is sent.
    #[error("{0}")]
    UriTooLong(String),
    /// 431: a request head too large or with too many fields (`http::transport`); no scimType.
    #[error("{0}")]
    HeaderFieldsTooLarge(String),
    /// 408: the request body did not arrive within its deadline (`http::body`); the connection
    /// is closed after the answer, since the rest of the body may still come.
    #[error("{0}")]
    RequestTimeout(String),
    /// 503: the database cannot be reached right now; the client may retry.
    #[error("service unavailable")]
    Unavailable(String),
    /// 500: a bug or an unexpected backend failure. The cause is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The RFC 7644 §3.12 scimType, when the error has one.
    pub fn scim_type(&self) -> Option<&'static str> {
        match self {
            ApiError::Scim(e) => Some(e.scim_type().as_str()),
            // RFC 7644 §3.4.3/§3.7: too many operations or too large a payload.
            ApiError::PayloadTooLarge(_) => Some("tooMany"),
            _ => None,
        }
    }

    /// The detail sent to the client. Internal causes are replaced by a generic sentence.
    pub fn client_detail(&self) -> String {
        match self {
            ApiError::Scim(e) => e.detail().to_string(),
            ApiError::Unavailable(_) => {
                "The service is temporarily unavailable; retry later.".into()
            }
            ApiError::Internal(_) => "An internal error occurred.".into(),
            ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::Gone(d)
            | ApiError::PreconditionFailed(d)
            | ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::MethodNotAllowed { detail: d, .. }
            | ApiError::UnsupportedMediaType(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::NotImplemented(d)
            | ApiError::UriTooLong(d)
            | ApiError::RequestTimeout(d)
            | ApiError::HeaderFieldsTooLarge(d) => d.clone(),
            ApiError::TooManyRequests { detail, .. } => detail.clone(),
        }
    }

    /// The SCIM error body (RFC 7644 §3.12): `status` is a string, `scimType` only when defined.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status_code().as_u16().to_string(),
            "detail": self.client_detail(),
        });
        if let (Some(t), Some(obj)) = (self.scim_type(), body.as_object_mut()) {
            obj.insert("scimType".into(), Value::String(t.into()));
        }
        body
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NotFound => ApiError::NotFound("Resource not found.".into()),
            HubError::PreconditionFailed { .. } => ApiError::PreconditionFailed(
                "The resource has changed: its version does not match If-Match.".into(),
            ),
            HubError::UnknownMembers(ids) => ApiError::Scim(scim_schema::Error::InvalidValue(
                format!("Unknown member ids: {}.", ids.join(", ")),
            )),
            HubError::Uniqueness(d) => ApiError::Scim(scim_schema::Error::Uniqueness(d)),
            HubError::Scim(e) => ApiError::Scim(e),
            // RFC 7644 §3.12: an attempt to modify an attribute the client may not modify.
            HubError::NotOwner { attribute, owner } => {
                ApiError::Scim(scim_schema::Error::Mutability(format!(
                    "{attribute} is maintained by its source of truth, the client {owner:?}; \
                     this client may not change it."
                )))
            }
            // RFC 7644 §3.12 has no scimType for 403: the detail names the rule and the owner.
            HubError::NotDeleter { owner } => ApiError::Forbidden(format!(
                "Users are deleted by their source of truth for active, the client {owner:?}; \
                 this client may not delete them (it would need the scim:delete scope)."
            )),
            // RFC 7644 §3.7.1 allows 409 for circular references it does not resolve; §3.12's
            // only 409 scimType is `uniqueness`, which this is not, so none is sent.
            HubError::BulkCycle { bulk_ids } => ApiError::Conflict(format!(
                "The operations with bulkId {} refer to one another in a cycle; circular \
                 references are not resolved. Create the resources first, then PATCH the \
                 references in.",
                crate::error::name_some(&bulk_ids)
            )),
            // Transient: the client retries after `Retry-After`. An unknown commit outcome is
            // never a success; the retry is safe because every SCIM write is idempotent in
            // effect or refused as a duplicate (docs/postgresql.md, "Faults").
            HubError::Unavailable(cause) => ApiError::Unavailable(cause),
            HubError::TxConflict(cause) => {
                ApiError::Unavailable(format!("transaction conflict, retries exhausted: {cause}"))
            }
            HubError::StatementTimeout(cause) => {
                ApiError::Unavailable(format!("statement timeout: {cause}"))
            }
            HubError::OutcomeUnknown(cause) => {
                ApiError::Unavailable(format!("commit outcome unknown: {cause}"))
            }
            HubError::Config(cause) | HubError::Backend(cause) => ApiError::Internal(cause),
            HubError::NotHere => {
                ApiError::Internal("a read for the blocking pool ran on the worker".into())
            }
        }
    }
}

/// Admin API errors (`/admin/v1`): unknown ids are 404, decisions already taken 409, bad input
/// 400 `invalidValue`, refused one-click links 403 (tampered) or 410 (expired).
impl From<crate::admin::AdminError> for ApiError {
    fn from(e: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError;
        match e {
            AdminError::NotFound(what) => ApiError::NotFound(format!("Not found: {what}.")),
            AdminError::Conflict(d) => ApiError::Conflict(d),
            AdminError::Invalid(d) => ApiError::Scim(scim_schema::Error::InvalidValue(d)),
            AdminError::Forbidden(d) => ApiError::Forbidden(d),
            AdminError::Refused(r) => ApiError::Forbidden(r.to_string()),
            AdminError::Expired(d) => ApiError::Gone(d),
            AdminError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    /// The same error as a small HTML page (one-click links opened in a browser). The status
    /// and the client detail are those of [`ApiError::body`]; internal causes stay out.
    pub fn html_response(&self) -> HttpResponse {
        let status = self.status_code();
        HttpResponse::build(status)
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ))
            .body(html_page(
                status.canonical_reason().unwrap_or("Error"),
                &self.client_detail(),
            ))
    }
}

/// A minimal HTML page with a title and one paragraph, both escaped.
pub fn html_page(title: &str, text: &str) -> String {
    let esc = crate::notify::mail_html::escape_html;
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>scimhub: {t}</title></head>\
         <body><h1>{t}</h1><p>{x}</p></body></html>",
        t = esc(title),
        x = esc(text)
    )
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::internal(e)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Scim(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeaderFieldsTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(cause = %cause, "database unavailable"),
            _ => {}
        }
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON)));
        if let ApiError::Unauthorized(_) = self {
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scimhub\""),
            ));
        }
        if let ApiError::Unavailable(_) = self {
            resp.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        if let ApiError::RequestTimeout(_) = self {
            resp.force_close();
        }
        if let ApiError::MethodNotAllowed {
            allow: Some(allow), ..
        } = self
        {
            resp.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            resp.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
        }
        resp.body(self.body().to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn render(e: ApiError) -> (u16, Value, HttpResponse) {
        let resp = e.error_response();
        let status = resp.status().as_u16();
        let (resp, body) = resp.into_parts();
        let bytes = body.try_into_bytes().unwrap_or_default();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (
            status,
            value,
            resp.set_body(actix_web::body::BoxBody::new(())),
        )
    }

    fn check(e: ApiError, status: u16, scim_type: Option<&str>) -> Value {
        let (s, body, resp) = render(e);
        assert_eq!(s, status);
        assert_eq!(body["schemas"][0], ERROR_URN);
        assert_eq!(body["status"], status.to_string());
        assert_eq!(body["scimType"].as_str(), scim_type);
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(SCIM_JSON)
        );
        body
    }

    #[test]
    fn every_scim_type_maps_to_its_table_9_status() {
        use scim_schema::Error as E;
        let cases = [
            (E::InvalidFilter("f".into()), 400, "invalidFilter"),
            (E::TooMany("f".into()), 400, "tooMany"),
            (E::Uniqueness("f".into()), 409, "uniqueness"),
            (E::Mutability("f".into()), 400, "mutability"),
            (E::InvalidSyntax("f".into()), 400, "invalidSyntax"),
            (E::InvalidPath("f".into()), 400, "invalidPath"),
            (E::NoTarget("f".into()), 400, "noTarget"),
            (E::InvalidValue("f".into()), 400, "invalidValue"),
            (E::InvalidVers("f".into()), 400, "invalidVers"),
            (E::Sensitive("f".into()), 400, "sensitive"),
        ];
        for (e, status, t) in cases {
            let body = check(ApiError::Scim(e), status, Some(t));
            assert_eq!(body["detail"], "f");
        }
    }

    #[test]
    fn store_not_found_is_404() {
        check(HubError::NotFound.into(), 404, None);
    }

    #[test]
    fn store_precondition_failed_is_412() {
        check(
            HubError::PreconditionFailed { current_version: 3 }.into(),
            412,
            None,
        );
    }

    #[test]
    fn store_uniqueness_is_409_uniqueness() {
        let body = check(
            HubError::Uniqueness("userName taken".into()).into(),
            409,
            Some("uniqueness"),
        );
        assert_eq!(body["detail"], "userName taken");
    }

    #[test]
    fn store_scim_error_keeps_its_scim_type() {
        check(
            HubError::Scim(scim_schema::Error::InvalidFilter("x".into())).into(),
            400,
            Some("invalidFilter"),
        );
    }

    #[test]
    fn store_not_owner_is_400_mutability_naming_attribute_and_owner() {
        let body = check(
            HubError::NotOwner {
                attribute: "title".into(),
                owner: "workday".into(),
            }
            .into(),
            400,
            Some("mutability"),
        );
        assert_eq!(
            body["detail"],
            "title is maintained by its source of truth, the client \"workday\"; this client \
             may not change it."
        );
    }

    #[test]
    fn store_bulk_cycle_is_409_without_scim_type_naming_the_cycle() {
        let body = check(
            HubError::BulkCycle {
                bulk_ids: vec!["a".to_owned(), "b".to_owned()].into(),
            }
            .into(),
            409,
            None,
        );
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("bulkId a, b ") && d.contains("cycle")),
            "{body}"
        );
    }

    #[test]
    fn store_unknown_members_is_400_invalid_value() {
        let body = check(
            HubError::UnknownMembers(vec!["u1".into()]).into(),
            400,
            Some("invalidValue"),
        );
        assert!(body["detail"].as_str().is_some_and(|d| d.contains("u1")));
    }

    #[test]
    fn store_config_is_500_without_cause() {
        let body = check(
            HubError::Config("bad url postgres://user:pw@h".into()).into(),
            500,
            None,
        );
        assert!(!body.to_string().contains("pw@h"));
    }

    #[test]
    fn store_unavailable_is_503_without_cause() {
        let (s, body, resp) =
            render(HubError::Unavailable("connection refused to 10.0.0.7".into()).into());
        assert_eq!(s, 503);
        assert!(!body.to_string().contains("10.0.0.7"));
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn store_transient_database_failures_are_503_with_retry_after() {
        for e in [
            HubError::TxConflict("deadlock detected".into()),
            HubError::StatementTimeout("canceling statement due to statement timeout".into()),
            HubError::OutcomeUnknown("server closed the connection unexpectedly".into()),
        ] {
            let (s, body, resp) = render(e.into());
            assert_eq!(s, 503);
            assert_eq!(body["schemas"][0], ERROR_URN);
            assert_eq!(body["status"], "503");
            assert_eq!(
                body["detail"],
                "The service is temporarily unavailable; retry later."
            );
            assert!(resp.headers().contains_key(header::RETRY_AFTER));
        }
    }

    #[test]
    fn store_backend_is_500_without_cause() {
        let body = check(
            HubError::Backend("syntax error near SELECT secret".into()).into(),
            500,
            None,
        );
        assert!(!body.to_string().contains("SELECT"));
        assert_eq!(body["detail"], "An internal error occurred.");
    }

    #[test]
    fn unauthorized_is_401_with_www_authenticate() {
        let (s, _, resp) = render(ApiError::Unauthorized("no token".into()));
        assert_eq!(s, 401);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_some());
    }

    #[test]
    fn admin_not_found_is_404() {
        let body = check(
            crate::admin::AdminError::NotFound("approval a1".into()).into(),
            404,
            None,
        );
        assert!(body["detail"].as_str().is_some_and(|d| d.contains("a1")));
    }

    #[test]
    fn admin_conflict_is_409() {
        let body = check(
            crate::admin::AdminError::Conflict("already approved".into()).into(),
            409,
            None,
        );
        assert_eq!(body["detail"], "already approved");
    }

    #[test]
    fn admin_invalid_is_400_invalid_value() {
        check(
            crate::admin::AdminError::Invalid("not a date".into()).into(),
            400,
            Some("invalidValue"),
        );
    }

    #[test]
    fn admin_forbidden_is_403() {
        check(
            crate::admin::AdminError::Forbidden("invalid signature".into()).into(),
            403,
            None,
        );
    }

    #[test]
    fn admin_refused_decision_is_403_naming_why() {
        let body = check(
            crate::admin::AdminError::Refused(crate::admin::authority::Refusal::OwnAccess {
                user_name: "ada".into(),
            })
            .into(),
            403,
            None,
        );
        assert_eq!(
            body["detail"],
            "ada cannot decide a request for their own access"
        );
    }

    #[test]
    fn admin_expired_is_410() {
        check(
            crate::admin::AdminError::Expired("link expired".into()).into(),
            410,
            None,
        );
    }

    #[test]
    fn admin_store_errors_map_like_store_errors() {
        check(
            crate::admin::AdminError::Store(HubError::NotFound).into(),
            404,
            None,
        );
        check(
            crate::admin::AdminError::Store(HubError::Backend("x".into())).into(),
            500,
            None,
        );
    }

    #[test]
    fn html_error_page_escapes_and_keeps_status() {
        let resp = ApiError::Gone("link <expired>".into()).html_response();
        assert_eq!(resp.status().as_u16(), 410);
        let (_, body) = resp.into_parts();
        let text = String::from_utf8(body.try_into_bytes().unwrap_or_default().to_vec())
            .unwrap_or_default();
        assert!(text.contains("link &lt;expired&gt;"));
        let resp = ApiError::Internal("secret cause".into()).html_response();
        let (_, body) = resp.into_parts();
        let bytes = body.try_into_bytes().unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
    }

    #[test]
    fn http_level_errors() {
        check(ApiError::Forbidden("scope".into()), 403, None);
        let (_, _, resp) = render(ApiError::MethodNotAllowed {
            detail: "m".into(),
            allow: Some("GET, HEAD"),
        });
        assert_eq!(resp.status().as_u16(), 405);
        assert_eq!(
            resp.headers().get(header::ALLOW).expect("Allow"),
            "GET, HEAD"
        );
        check(ApiError::UnsupportedMediaType("ct".into()), 415, None);
        check(
            ApiError::PayloadTooLarge("big".into()),
            413,
            Some("tooMany"),
        );
        check(ApiError::NotImplemented("me".into()), 501, None);
        check(ApiError::NotFound("nf".into()), 404, None);
    }
}
