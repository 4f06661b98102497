//! Request bodies: content type, size limit, UTF-8 and JSON checked here, each failure a SCIM error.
//!
//! actix's own `Json` extractor answers with plain-text errors, so SCIM bodies are read as bytes and
//! parsed here instead.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use super::error::ApiError;

/// The body limit in force for a route (app data); the default comes from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body, parsed and checked.
#[derive(Debug)]
pub struct ScimJson(pub Value);

/// Accepts `application/scim+json` and `application/json` (any parameters, e.g. charset=utf-8),
/// and a missing Content-Type (some clients omit it); anything else is 415. So is a body in a
/// content coding other than `identity` (RFC 9110 §8.4.1): the hub decodes none, and reading
/// compressed bytes as JSON could store a body that happens to parse.
pub fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    check_content_encoding(req)?;
    check_media_type(req)
}

/// 415 for a body in a content coding other than `identity`: the hub decodes none (a gzipped
/// form read as plain bytes would parse as an empty one).
fn check_content_encoding(req: &HttpRequest) -> Result<(), ApiError> {
    for coding in req.headers().get_all(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or("?");
        if coding
            .split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {coding:?} is not supported; send the body uncompressed."
            )));
        }
    }
    Ok(())
}

fn check_media_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/scim+json" | "application/json" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {ct:?} is not supported; use application/scim+json or application/json."
        ))),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The request body exceeds the limit of {limit} bytes."
    ))
}

/// Parses bytes as a JSON value with SCIM errors for bad UTF-8 and bad JSON.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        scim_schema::Error::InvalidSyntax(format!(
            "The request body is not valid UTF-8 (byte {}).",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(scim_schema::Error::InvalidSyntax("The request body is empty.".into()).into());
    }
    // A member named twice is refused, not resolved to the last one (serde_json's way).
    let value = scim_schema::json::from_str_unique(text).map_err(|e| {
        ApiError::from(scim_schema::Error::InvalidSyntax(format!(
            "The request body is not valid JSON: {e}"
        )))
    })?;
    // JSON spells U+0000 only as the escape `\u0000`, so a body without it has none to look for.
    if text.contains("u0000") && holds_nul(&value) {
        return Err(scim_schema::Error::InvalidValue(
            "A value or attribute name holds U+0000, which cannot be stored.".into(),
        )
        .into());
    }
    Ok(value)
}

/// Whether any string or member name in `v` holds U+0000: PostgreSQL stores none in `text` or
/// `jsonb`, so it is refused on every backend, before anything is written.
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(members) => members
            .iter()
            .any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// How long a SCIM request body may take to arrive once its handler reads it: 30 s, time for a
/// 1 MiB body at 35 KB/s.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Another deadline than [`BODY_DEADLINE`] (app data; tests).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

fn limit_of(req: &HttpRequest) -> usize {
    req.app_data::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(1024 * 1024)
}

fn deadline_of(req: &HttpRequest) -> std::time::Duration {
    req.app_data::<BodyDeadline>()
        .map_or(BODY_DEADLINE, |d| d.0)
}

/// Reads a whole body of at most `limit` bytes (413 above) that arrives within `deadline`
/// (408 after: a body that trickles in, or stops short of its Content-Length, would hold the
/// connection and its buffer for as long as the client likes).
async fn read_within(
    payload: &mut Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<web::BytesMut, ApiError> {
    let read = async {
        let mut buf = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                actix_web::error::PayloadError::Overflow => too_large(limit),
                other => ApiError::Scim(scim_schema::Error::InvalidSyntax(format!(
                    "Could not read the request body: {other}"
                ))),
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(deadline, read).await.map_err(|_| {
        ApiError::RequestTimeout(format!(
            "The request body did not arrive within {} s.",
            deadline.as_secs()
        ))
    })?
}

/// A request body read whole, under the same size limit and deadline as a SCIM body, but of
/// any content type: the admin API's JSON and the one-click links' forms. (actix's `Bytes`
/// extractor waits for a stalled body for ever.)
#[derive(Debug)]
pub struct BoundedBody(pub web::Bytes);

impl std::ops::Deref for BoundedBody {
    type Target = web::Bytes;
    fn deref(&self) -> &web::Bytes {
        &self.0
    }
}

impl FromRequest for BoundedBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (limit, deadline) = (limit_of(req), deadline_of(req));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let encoding = check_content_encoding(req);
        let mut payload = payload.take();
        Box::pin(async move {
            encoding?;
            if declared.is_some_and(|len| len > limit) {
                return Err(too_large(limit));
            }
            let buf = read_within(&mut payload, limit, deadline).await?;
            Ok(BoundedBody(buf.freeze()))
        })
    }
}

impl FromRequest for ScimJson {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = limit_of(req);
        let checked = check_content_type(req).and_then(|()| {
            match req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(len) if len > limit => Err(too_large(limit)),
                _ => Ok(()),
            }
        });
        let mut payload = payload.take();
        let deadline = deadline_of(req);
        Box::pin(async move {
            checked?;
            let buf = read_within(&mut payload, limit, deadline).await?;
            parse_json(&buf).map(ScimJson)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn status(r: Result<Value, ApiError>) -> Option<&'static str> {
        r.err().and_then(|e| e.scim_type())
    }

    #[test]
    fn json_errors_are_invalid_syntax() {
        assert_eq!(status(parse_json(b"{")), Some("invalidSyntax"));
        assert_eq!(status(parse_json(b"\xff\xfe")), Some("invalidSyntax"));
        assert_eq!(status(parse_json(b"  ")), Some("invalidSyntax"));
        for nul in [
            &br#"{"userName":"a\u0000b"}"#[..],
            br#"{"emails":[{"value":"\u0000"}]}"#,
            br#"{"a\u0000":1}"#,
        ] {
            assert_eq!(status(parse_json(nul)), Some("invalidValue"));
        }
        // An escaped backslash before `u0000` is text, not U+0000.
        assert!(parse_json(br#"{"userName":"a\\u0000b"}"#).is_ok());
        assert!(parse_json(br#"{"a":1}"#).is_ok());
    }

    #[test]
    fn repeated_members_are_invalid_syntax() {
        for body in [
            &br#"{"userName":"a","userName":"b"}"#[..],
            br#"{"name":{"givenName":"a","givenName":"b"}}"#,
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[],"Operations":[]}"#,
        ] {
            let e = parse_json(body).expect_err("repeated member");
            assert_eq!(e.scim_type(), Some("invalidSyntax"));
            assert!(e.to_string().contains("is given more than once"), "{e}");
        }
    }

    #[test]
    fn content_types() {
        let ok = |ct: &str| {
            check_content_type(
                &TestRequest::default()
                    .insert_header(("content-type", ct))
                    .to_http_request(),
            )
            .is_ok()
        };
        assert!(ok("application/scim+json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/SCIM+JSON"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(check_content_type(&TestRequest::default().to_http_request()).is_ok());
        use actix_web::ResponseError;
        let encoded = |ce: &str| {
            check_content_type(
                &TestRequest::default()
                    .insert_header(("content-type", "application/scim+json"))
                    .insert_header(("content-encoding", ce))
                    .to_http_request(),
            )
            .err()
            .map(|e| e.status_code().as_u16())
        };
        assert_eq!(encoded("gzip"), Some(415));
        assert_eq!(encoded("br"), Some(415));
        assert_eq!(encoded("identity, gzip"), Some(415));
        assert_eq!(encoded("identity"), None);
    }

    /// A body that stops short of its end (a slow or stalled client) is answered 408 with a
    /// SCIM error once the deadline passes, and the connection is not kept.
    #[actix_web::test]
    async fn a_body_that_stops_arriving_is_408() {
        let (req, _) = TestRequest::post()
            .insert_header(("content-type", "application/json"))
            .app_data(BodyDeadline(std::time::Duration::from_millis(50)))
            .to_http_parts();
        let stalled = futures_util::stream::once(async {
            Ok::<_, actix_web::error::PayloadError>(web::Bytes::from_static(b"{\"userName\":"))
        })
        .chain(futures_util::stream::pending());
        let stream: actix_http::BoxedPayloadStream = Box::pin(stalled);
        let mut pl = Payload::from(stream);
        let err = ScimJson::from_request(&req, &mut pl)
            .await
            .expect_err("no body");
        assert!(matches!(err, ApiError::RequestTimeout(_)), "{err:?}");
        let resp = actix_web::ResponseError::error_response(&err);
        assert_eq!(resp.status().as_u16(), 408);
        assert!(!resp.head().keep_alive());
        assert_eq!(err.body()["status"], "408");
    }

    /// The admin API's and the links' bodies (any content type) are bounded the same way.
    #[actix_web::test]
    async fn a_bounded_body_is_read_whole_or_refused() {
        let (req, _) = TestRequest::post()
            .app_data(BodyDeadline(std::time::Duration::from_millis(50)))
            .to_http_parts();
        let stalled = futures_util::stream::once(async {
            Ok::<_, actix_web::error::PayloadError>(web::Bytes::from_static(b"reason=slo"))
        })
        .chain(futures_util::stream::pending());
        let stream: actix_http::BoxedPayloadStream = Box::pin(stalled);
        let err = BoundedBody::from_request(&req, &mut Payload::from(stream))
            .await
            .expect_err("stalled");
        assert!(matches!(err, ApiError::RequestTimeout(_)), "{err:?}");

        let (req, mut pl) = TestRequest::post()
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .app_data(BodyLimit(8))
            .set_payload("reason=too long for the limit")
            .to_http_parts();
        let err = BoundedBody::from_request(&req, &mut pl)
            .await
            .expect_err("too large");
        assert_eq!(err.body()["status"], "413");

        // No Content-Length: the stream is cut at the limit.
        let (req, _) = TestRequest::post().app_data(BodyLimit(8)).to_http_parts();
        let chunks = futures_util::stream::iter(["reason=", "too long"].map(|c| {
            Ok::<_, actix_web::error::PayloadError>(web::Bytes::from_static(c.as_bytes()))
        }));
        let stream: actix_http::BoxedPayloadStream = Box::pin(chunks);
        let err = BoundedBody::from_request(&req, &mut Payload::from(stream))
            .await
            .expect_err("too large");
        assert_eq!(err.body()["status"], "413");

        // A compressed body is not read as plain bytes (a gzipped form would parse as empty).
        let (req, mut pl) = TestRequest::post()
            .insert_header(("content-encoding", "gzip"))
            .set_payload(&b"\x1f\x8b"[..])
            .to_http_parts();
        let err = BoundedBody::from_request(&req, &mut pl)
            .await
            .expect_err("gzip");
        assert_eq!(err.body()["status"], "415");

        let (req, mut pl) = TestRequest::post()
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload("reason=ok")
            .to_http_parts();
        let body = BoundedBody::from_request(&req, &mut pl)
            .await
            .expect("read");
        assert_eq!(&body[..], b"reason=ok");
    }

    #[actix_web::test]
    async fn oversized_bodies_are_413() {
        let (req, mut pl) = TestRequest::post()
            .insert_header(("content-type", "application/json"))
            .app_data(BodyLimit(8))
            .set_payload(r#"{"userName":"long enough"}"#)
            .to_http_parts();
        let err = ScimJson::from_request(&req, &mut pl)
            .await
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("limit of 8")));
    }
}
