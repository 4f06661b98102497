//! Shared HTTP plumbing for every HTTP connector (SCIM, webhook, Slack, Okta, GitHub, AWS IAM).
//!
//! One place for: the `reqwest` client (rustls, no OpenSSL), the per-call timeout, turning a
//! status code into a retryable or permanent [`ConnectorError`] ([`classify`]), reading
//! Retry-After and the vendors' rate-limit reset headers ([`retry_after`]), and scrubbing
//! credentials out of every error message. Connectors whose APIs add their own signals (IAM's
//! `Throttling` error code, GitHub's "secondary rate limit" message) decide the kind themselves
//! and still build the error through [`HttpClient::response_error`].
//!
//! Error messages name the method, the path and the status, never the host's query string or a
//! request header, and any credential the client was told about is replaced by `***` should a
//! server echo it back in a body.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode, Url};

use crate::error::{ConnectorError, ErrorKind};
use crate::secret::Secret;

/// The longest slice of a response body quoted in an error message.
const MAX_DETAIL: usize = 300;

/// The largest response body any connector reads. Every API we call answers a page or one
/// resource, far below this; a downstream that streams without end must not exhaust the hub's
/// memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// An HTTP client bound to one connector instance: every request gets `timeout`, every error
/// names the connector and is scrubbed of the registered secrets.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    connector: String,
    timeout: Duration,
    redact: Vec<Secret>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connector", &self.connector)
            .field("timeout", &self.timeout)
            .field("redacted_secrets", &self.redact.len())
            .finish_non_exhaustive()
    }
}

/// A response read in full (the body is read within the same timeout as the request, and is at
/// most [`MAX_BODY_BYTES`]).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub method: Method,
    /// The request path (no query string), for error messages.
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON; `Value::Null` for an empty body.
    pub fn json_value(&self) -> Result<serde_json::Value, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| format!("invalid JSON: {e}"))
    }

    /// A short, printable excerpt of the body.
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.len() <= MAX_DETAIL {
            return text.to_owned();
        }
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HttpClient {
    /// A client for connector `connector` whose every call is bounded by `timeout`.
    pub fn new(connector: &str, timeout: Duration) -> Result<Self, ConnectorError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("scimhub-connectors/", env!("CARGO_PKG_VERSION")))
            // Redirects could carry the Authorization header elsewhere; APIs we call don't need them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ConnectorError::permanent(connector, format!("cannot build HTTP client: {e}"))
            })?;
        Ok(HttpClient {
            client,
            connector: connector.to_owned(),
            timeout,
            redact: Vec::new(),
        })
    }

    /// Registers a credential that must never appear in an error message.
    pub fn redacting(mut self, secret: &Secret) -> Self {
        self.redact.push(secret.clone());
        self
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Starts a request with this client's timeout.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.client.request(method, url).timeout(self.timeout)
    }

    /// Sends the request and reads the whole body, at most [`MAX_BODY_BYTES`] (a larger body is
    /// a permanent error). Transport failures (connect, timeout, reset) are retryable; a
    /// request that cannot even be built is permanent. HTTP error statuses are
    /// *not* turned into errors here: callers decide (a 404 on delete is success) and use
    /// [`HttpClient::status_error`] for the rest.
    pub async fn send(&self, builder: RequestBuilder) -> Result<HttpResponse, ConnectorError> {
        let request = builder.build().map_err(|e| self.transport_error(&e))?;
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.transport_error(&e).prefixed(&method, &path))?;
        let status = response.status();
        let headers = response.headers().clone();
        let too_large = || {
            self.error(
                ErrorKind::Permanent,
                format!(
                    "{method} {path}: response body exceeds the {} MiB limit",
                    MAX_BODY_BYTES / (1024 * 1024)
                ),
            )
        };
        // A declared length over the cap is refused before reading a byte of it.
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e).prefixed(&method, &path))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                // dropping the response closes the connection: the rest is never read
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            method,
            path,
            status,
            headers,
            body,
        })
    }

    /// The error for a non-success response: kind from [`classify`], Retry-After from
    /// [`retry_after`], message `METHOD /path: STATUS detail`.
    pub fn status_error(&self, response: &HttpResponse, detail: &str) -> ConnectorError {
        let kind = classify(response.status, &response.headers);
        let mut message = format!(
            "{} {}: HTTP {}",
            response.method,
            response.path,
            response.status.as_u16()
        );
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        self.response_error(response, kind, message)
    }

    /// The error for a non-success response whose kind and wording the connector decided (its
    /// API signals more than the status, e.g. an error code in the body): `message` scrubbed,
    /// and a retryable error carries the wait from [`retry_after`].
    pub fn response_error(
        &self,
        response: &HttpResponse,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ConnectorError {
        let mut err = self.error(kind, message);
        if kind == ErrorKind::Retryable {
            if let Some(after) = retry_after(&response.headers) {
                err = err.with_retry_after(after);
            }
        }
        err
    }

    /// A connector error of `kind` with `message` scrubbed of registered secrets.
    /// Attaches `body` as JSON with `content_type` (`application/json`, `application/scim+json`).
    pub fn json_body(
        &self,
        builder: RequestBuilder,
        content_type: &'static str,
        body: &serde_json::Value,
    ) -> Result<RequestBuilder, ConnectorError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| self.error(ErrorKind::Permanent, format!("cannot encode body: {e}")))?;
        Ok(builder
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes))
    }

    /// The response body as JSON; an unreadable body is a permanent error naming the call.
    pub fn decode_json(&self, resp: &HttpResponse) -> Result<serde_json::Value, ConnectorError> {
        resp.json_value().map_err(|e| {
            self.error(
                ErrorKind::Permanent,
                format!("{} {}: {e}", resp.method, resp.path),
            )
        })
    }

    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ConnectorError {
        let message = self.scrub(message.into());
        match kind {
            ErrorKind::Retryable => ConnectorError::retryable(&self.connector, message),
            ErrorKind::Permanent => ConnectorError::permanent(&self.connector, message),
            ErrorKind::Unsupported => ConnectorError::unsupported(&self.connector, &message),
            ErrorKind::Refused => ConnectorError::refused(&self.connector, message),
        }
    }

    /// Replaces every registered secret in `text` by `***`.
    pub fn scrub(&self, mut text: String) -> String {
        for secret in &self.redact {
            let value = secret.expose();
            // Real credentials are long; scrubbing a 1–5 character test value would only
            // garble the message.
            if value.len() >= 6 && text.contains(value) {
                text = text.replace(value, "***");
            }
        }
        text
    }

    fn transport_error(&self, e: &reqwest::Error) -> TransportError<'_> {
        let kind = if e.is_builder() {
            ErrorKind::Permanent
        } else {
            ErrorKind::Retryable
        };
        let what = if e.is_timeout() {
            format!("timed out after {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            format!("cannot connect: {}", source_chain(e))
        } else if e.is_builder() {
            format!("invalid request: {}", source_chain(e))
        } else {
            format!("request failed: {}", source_chain(e))
        };
        TransportError {
            client: self,
            kind,
            what,
        }
    }
}

/// A transport failure before it is turned into a [`ConnectorError`].
struct TransportError<'a> {
    client: &'a HttpClient,
    kind: ErrorKind,
    what: String,
}

impl TransportError<'_> {
    fn prefixed(self, method: &Method, path: &str) -> ConnectorError {
        self.client
            .error(self.kind, format!("{method} {path}: {}", self.what))
    }
}

impl From<TransportError<'_>> for ConnectorError {
    fn from(t: TransportError<'_>) -> Self {
        t.client.error(t.kind, t.what)
    }
}

/// The error and its sources, without the URL (which may carry a query string).
fn source_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(err) = cur {
        parts.push(err.to_string());
        cur = err.source();
    }
    if parts.is_empty() {
        // reqwest's own Display names the URL; drop it.
        let mut plain = e.to_string();
        if let Some(url) = e.url() {
            plain = plain
                .replace(&format!(" ({url})"), "")
                .replace(url.as_str(), "<url>");
        }
        plain
    } else {
        parts.join(": ")
    }
}

/// Whether a non-success status may succeed later.
///
/// * 408, 425, 429 and every 5xx except 501 and 505 → retryable;
/// * 403 that carries Retry-After or `x-ratelimit-remaining: 0` (GitHub's primary and secondary
///   rate limits answer 403) → retryable;
/// * every other 4xx (bad credentials 401/403 included), 501, 505 → permanent.
pub fn classify(status: StatusCode, headers: &HeaderMap) -> ErrorKind {
    let code = status.as_u16();
    match code {
        408 | 425 | 429 => ErrorKind::Retryable,
        501 | 505 => ErrorKind::Permanent,
        500..=599 => ErrorKind::Retryable,
        403 if headers.contains_key(RETRY_AFTER)
            || header_str(headers, "x-ratelimit-remaining") == Some("0") =>
        {
            ErrorKind::Retryable
        }
        _ => ErrorKind::Permanent,
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// How long the server asked us to wait, from (in order):
///
/// 1. `Retry-After` — delay-seconds or an HTTP-date (RFC 9110 §10.2.3);
/// 2. `X-Rate-Limit-Reset` (Okta) / `X-RateLimit-Reset` (GitHub) — the UTC epoch second when the
///    window resets;
/// 3. `RateLimit-Reset` (IETF draft) — delta seconds.
///
/// A date in the past gives zero.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, chrono::Utc::now())
}

/// [`retry_after`] with an explicit "now", for tests.
pub fn retry_after_at(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if let Some(after) =
        header_str(headers, "retry-after").and_then(|v| parse_retry_after_at(v, now))
    {
        return Some(after);
    }
    for name in ["x-rate-limit-reset", "x-ratelimit-reset"] {
        if let Some(epoch) = header_str(headers, name).and_then(|v| v.parse::<i64>().ok()) {
            let delta = epoch - now.timestamp();
            return Some(Duration::from_secs(delta.max(0).unsigned_abs()));
        }
    }
    header_str(headers, "ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// One `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); a date in the
/// past gives zero.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, chrono::Utc::now())
}

/// [`parse_retry_after`] with an explicit "now", for tests.
pub fn parse_retry_after_at(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// An `Authorization` header value marked sensitive (hyper never logs it).
pub fn auth_header(scheme: &str, secret: &Secret) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("{scheme} {}", secret.expose()))
        .map_err(|_| "credential contains characters not allowed in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// A path segment [`join_segments`] will not build: empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} cannot be a path segment (empty, `.` or `..`)")]
pub struct InvalidSegment(pub String);

/// `base` with `segments` appended as path segments, each percent-encoded (a `/` or `?` inside a
/// user id or login cannot change the path). Empty, `.` and `..` segments are refused: the URL
/// parser drops or resolves them, so an id of `..` would address the collection (`/Users`)
/// instead of one user, and an empty one the collection too.
pub fn join_segments(base: &Url, segments: &[&str]) -> Result<Url, InvalidSegment> {
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        return Err(InvalidSegment((*bad).to_owned()));
    }
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    Ok(url)
}

/// Parses a configured base URL (http or https), naming the setting in the error.
pub fn parse_base_url(connector: &str, setting: &str, raw: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(raw).map_err(|e| {
        ConnectorError::permanent(connector, format!("{setting} is not a valid URL: {e}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConnectorError::permanent(
            connector,
            format!("{setting} must be an http(s) URL"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConnectorError::permanent(
            connector,
            format!("{setting} must not carry credentials; use a secret reference"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn classifies_statuses() {
        let none = HeaderMap::new();
        for code in [408, 425, 429, 500, 502, 503, 504] {
            let s = StatusCode::from_u16(code).expect("status");
            assert_eq!(classify(s, &none), ErrorKind::Retryable, "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501] {
            let s = StatusCode::from_u16(code).expect("status");
            assert_eq!(classify(s, &none), ErrorKind::Permanent, "{code}");
        }
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "0")])
            ),
            ErrorKind::Retryable
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after_at(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        let reset = (now.timestamp() + 42).to_string();
        assert_eq!(
            retry_after_at(&headers(&[("x-rate-limit-reset", &reset)]), now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            retry_after_at(&headers(&[("x-ratelimit-reset", "1")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
    }

    #[test]
    fn joins_segments_with_encoding() {
        let base = Url::parse("http://h/scim/v2/").expect("url");
        assert_eq!(
            join_segments(&base, &["Users", "a/b?c"])
                .expect("valid")
                .as_str(),
            "http://h/scim/v2/Users/a%2Fb%3Fc"
        );
        // an encoded dot-segment is escaped again, so it stays a plain name
        assert_eq!(
            join_segments(&base, &["Users", "%2e%2e", "..."])
                .expect("valid")
                .as_str(),
            "http://h/scim/v2/Users/%252e%252e/..."
        );
        for bad in ["..", ".", ""] {
            assert_eq!(
                join_segments(&base, &["Users", bad]),
                Err(InvalidSegment(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    /// A one-connection HTTP stub on 127.0.0.1 that answers any request with `head` and then
    /// lets `body` write what it likes.
    async fn stub<F, Fut>(head: &'static str, body: F) -> Url
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.expect("read");
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            stream.write_all(head.as_bytes()).await.expect("head");
            body(stream).await;
        });
        Url::parse(&format!("http://{addr}/Users")).expect("url")
    }

    /// Writes `total` bytes of `x` as 64 KiB chunks; stops when the client hangs up.
    async fn write_chunks(mut stream: tokio::net::TcpStream, total: usize) {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if stream.write_all(&frame).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn a_streamed_body_over_the_cap_is_a_permanent_error() {
        // 8× the cap stands in for "endless" while keeping an unfixed client finite.
        let url = stub(CHUNKED, |s| write_chunks(s, 8 * MAX_BODY_BYTES)).await;
        let c = HttpClient::new("x", Duration::from_secs(20)).expect("client");
        let err = c
            .send(c.request(Method::GET, url))
            .await
            .expect_err("over the cap");
        assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
        assert!(err.message.contains("8 MiB"), "{err}");
        assert!(err.message.contains("GET /Users"), "{err}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        // announces 9 MiB and sends none of it: only the header can end this call early
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 9437184\r\n\r\n";
        let url = stub(head, |s| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        })
        .await;
        let c = HttpClient::new("x", Duration::from_secs(3)).expect("client");
        let err = c
            .send(c.request(Method::GET, url))
            .await
            .expect_err("over the cap");
        assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
        assert!(err.message.contains("8 MiB"), "{err}");
    }

    #[tokio::test]
    async fn a_chunked_body_under_the_cap_is_read_whole() {
        let url = stub(CHUNKED, |s| write_chunks(s, 1024 * 1024)).await;
        let c = HttpClient::new("x", Duration::from_secs(20)).expect("client");
        let resp = c.send(c.request(Method::GET, url)).await.expect("read");
        assert_eq!(resp.body.len(), 1024 * 1024);
    }

    #[test]
    fn scrubs_secrets_and_debug_hides_them() {
        let s = Secret::new("tok-123");
        let c = HttpClient::new("x", Duration::from_secs(1))
            .expect("client")
            .redacting(&s);
        assert_eq!(c.scrub("echo tok-123!".into()), "echo ***!");
        assert!(!format!("{c:?}").contains("tok-123"));
        assert!(parse_base_url("x", "url", "http://u:p@h/").is_err());
    }
}
