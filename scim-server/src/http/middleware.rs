//! Authentication (scopes by method), rate limits and request logging.
//!
//! Request logs carry method, path (never the query string, which may hold filter values or a
//! `token=`), status, latency and the client's name: never a token, a password or a body. Paths
//! that carry a credential, the one-click links `/admin/v1/links/{token}`, are logged with the
//! token replaced by `[redacted]` ([`loggable_path`]).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use crate::auth::{Authenticator, Credential, Principal, Scope, TokenRecord};
use crate::engine::notices::API_PREFIX;

use super::error::ApiError;
use super::AppState;

/// The scope a request needs: reads (GET, and POST to `/.search`) need `scim:read`, everything
/// else `scim:write`.
pub fn required_scope(method: &Method, path: &str) -> Scope {
    if method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && path.ends_with("/.search"))
    {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// Authenticates the bearer credential, checks the SCIM scope the request needs
/// ([`required_scope`]) and stores the [`Principal`] in the request extensions.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let principal = identify(&req).await?;
    let needed = required_scope(req.method(), req.path());
    if !principal.has(needed) {
        return Err(ApiError::Forbidden(format!("The token lacks the {needed} scope.")).into());
    }
    req.extensions_mut().insert(principal);
    next.call(req).await
}

/// Authenticates the bearer credential and stores the [`Principal`] in the request extensions,
/// leaving the scope check to the routes' own middleware (the admin API's scopes are not the
/// SCIM ones: `super::admin::require_admin`).
pub async fn identify_only(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let principal = identify(&req).await?;
    req.extensions_mut().insert(principal);
    next.call(req).await
}

/// The principal of a request's bearer credential; 401 when there is none or it is not valid.
async fn identify(req: &ServiceRequest) -> Result<Principal, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match resolve(&state, header).await {
        Ok(p) => Ok(p),
        Err(ApiError::Unauthorized(reason)) => {
            let path = loggable_path(req.path());
            tracing::info!(path = %path, reason = %reason, "authentication failed");
            Err(ApiError::Unauthorized("A valid bearer token is required.".into()).into())
        }
        Err(other) => Err(other.into()),
    }
}

async fn resolve(state: &AppState, header: Option<&str>) -> Result<Principal, ApiError> {
    let unauthorized = |f: crate::auth::AuthFailure| ApiError::Unauthorized(f.0);
    let token = Authenticator::bearer(header)
        .map_err(unauthorized)?
        .to_string();
    match state.auth.classify(&token).map_err(unauthorized)? {
        Credential::Done(p) => Ok(p),
        Credential::Jwt => state.auth.verify_jwt(&token).await.map_err(unauthorized),
        Credential::Lookup { prefix } => {
            // The record as read within the last second (`auth::token_cache`): a revocation
            // takes effect within a second, on every node.
            let read_at = std::time::Instant::now();
            let record: Option<TokenRecord> = match state.auth.tokens.get(&prefix, read_at) {
                Some(cached) => Some(cached),
                None => {
                    let key = prefix.clone();
                    let read = state
                        .read(true, move |s| s.find_token_by_prefix(&key))
                        .await?
                        .map(|t| TokenRecord {
                            id: t.id,
                            name: t.name,
                            hash: t.token_hash,
                            scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                            revoked: t.revoked.is_some(),
                            user_id: t.user_id,
                            expires: t.expires,
                        });
                    if let Some(r) = &read {
                        state.auth.tokens.put(&prefix, r.clone(), read_at);
                    }
                    read
                }
            };
            let id = record.as_ref().map(|r| r.id.clone());
            let now = state.store.now();
            let principal =
                Authenticator::check_opaque(&token, record, now).map_err(unauthorized)?;
            if let Some(id) = id {
                record_use(state, id, now);
            }
            Ok(principal)
        }
    }
}

/// Writes the token's `last_used`, at most once a minute per token from this node
/// ([`crate::auth::usage::TokenUsage`]), in the background: the request does not wait for it, and
/// a failed write costs only precision.
fn record_use(state: &AppState, id: String, now: chrono::DateTime<chrono::Utc>) {
    use crate::auth::usage::TokenUsage;
    if !state.auth.usage.due(&id, std::time::Instant::now()) {
        return;
    }
    let store = state.store.clone();
    let granularity = chrono::Duration::from_std(TokenUsage::GRANULARITY)
        .unwrap_or_else(|_| chrono::Duration::seconds(60));
    actix_web::rt::spawn(async move {
        let written = web::block(move || store.touch_token(&id, now, granularity)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot record a token's last use");
        }
    });
}

/// The path as logged: after a `links` segment (the one-click link routes, whose last segment
/// is a signed token), and any segment that looks like a bearer token (`shub_…`, a JWT), the
/// text is replaced by `[redacted]`. The query string is never logged at all.
pub fn loggable_path(path: &str) -> String {
    if is_link_path(&routed(path)) {
        return format!("{API_PREFIX}/links/[redacted]");
    }
    let mut out = Vec::new();
    let mut after_links = false;
    for segment in path.split('/') {
        // Judged as routed (`%2E` for a JWT's dots is still a JWT), written as received: a
        // decoded segment could carry a line break into the log.
        let plain = routed(segment);
        let secret = after_links
            || plain.starts_with(crate::auth::token::TOKEN_PREFIX)
            || crate::auth::jwt::JwtVerifier::looks_like_jwt(&plain);
        out.push(if secret && !segment.is_empty() {
            "[redacted]"
        } else {
            segment
        });
        after_links = after_links || plain.eq_ignore_ascii_case("links");
    }
    out.join("/")
}

/// `path` with its percent-escapes decoded, as actix matches routes (`/admin/v1/%6Cinks/…` is
/// the links route): what decides whether a path is a link's must see the same path. Paths
/// without a `%` are borrowed as they are.
fn routed(path: &str) -> std::borrow::Cow<'_, str> {
    if path.contains('%') {
        percent_encoding::percent_decode_str(path).decode_utf8_lossy()
    } else {
        std::borrow::Cow::Borrowed(path)
    }
}

/// Whether `path` (decoded, see [`routed`]) is under `/admin/v1/links/` (ASCII case ignored),
/// without allocating.
fn is_link_path(path: &str) -> bool {
    const LINKS: &str = "/links/";
    let n = API_PREFIX.len() + LINKS.len();
    path.len() >= n
        && path.is_char_boundary(API_PREFIX.len())
        && path.is_char_boundary(n)
        && path[..API_PREFIX.len()].eq_ignore_ascii_case(API_PREFIX)
        && path[API_PREFIX.len()..n].eq_ignore_ascii_case(LINKS)
}

/// Rate limits per source address ([`super::rate_limit`]): requests to the one-click link routes
/// spend a token of the `links` bucket; every other request except `/healthz` and `/readyz` is
/// refused while the address has no failed authentication left, and each 401 spends one. A
/// blocked address is refused before its credential is looked at, so a good token from it waits
/// too (a guessed token cannot be confirmed while blocked). Answers `429` with `Retry-After`.
pub async fn limit_rates(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // The client's address: the peer's, or the forwarded one when the peer is a trusted proxy.
    let (Some(state), Some(ip)) = (state, super::forwarded::client_ip(req.request())) else {
        return next.call(req).await;
    };
    let path = req.path();
    let too_many = |retry_after_secs: u64, what: &str| -> actix_web::Error {
        tracing::info!(%ip, path = %loggable_path(path), retry_after_secs, "rate limited: {what}");
        ApiError::TooManyRequests {
            detail: format!("Too many {what} from this address; retry in {retry_after_secs} s."),
            retry_after_secs,
        }
        .into()
    };
    if is_link_path(&routed(path)) {
        if let Err(wait) = state.rate_limits.links.take(ip) {
            return Err(too_many(wait, "one-click link requests"));
        }
        return next.call(req).await;
    }
    if path == "/healthz" || path == "/readyz" {
        return next.call(req).await;
    }
    if let Err(wait) = state.rate_limits.failed_auth.check(ip) {
        return Err(too_many(wait, "failed authentications"));
    }
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    if status == actix_web::http::StatusCode::UNAUTHORIZED {
        // Spent whatever the outcome: the bucket being empty only matters for the next request.
        let _ = state.rate_limits.failed_auth.take(ip);
    }
    res
}

/// HTTP/2 requests bypass the front door's head scanner (`super::transport`): their request
/// line and fields are held to the same limits here, answered with the same SCIM errors
/// (414/431). HTTP/1 requests were checked before actix parsed them.
pub async fn limit_h2_heads(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.version() == actix_web::http::Version::HTTP_2 {
        let uri = req.uri();
        let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
        // As the HTTP/1 request line would be: `METHOD target HTTP/1.1`.
        let line = req.method().as_str().len() + 1 + target + 9;
        let head = line
            + req
                .headers()
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if let Some(refusal) = super::transport::check_head_limits(line, req.headers().len(), head)
        {
            tracing::info!(?refusal, "HTTP/2 request head refused");
            return Err(refusal.to_api_error().into());
        }
    }
    next.call(req).await
}

/// One log line per request.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Nothing to gather when request lines are filtered out (`RUST_LOG=warn`): the path's
    // redaction and the address's formatting are measurable on a point read.
    if !tracing::enabled!(tracing::Level::INFO) {
        return next.call(req).await;
    }
    let start = Instant::now();
    let method = req.method().clone();
    let path = loggable_path(req.path());
    let ip = super::forwarded::client_ip(req.request())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let res = next.call(req).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    match &res {
        Ok(res) => {
            let client = res
                .request()
                .extensions()
                .get::<Principal>()
                .map(|p| p.client.clone())
                .unwrap_or_default();
            let status = res.status().as_u16();
            tracing::info!(%method, path = %path, status, latency_ms, client = %client, %ip, "request");
        }
        Err(e) => {
            let status = e.as_response_error().status_code().as_u16();
            tracing::info!(%method, path = %path, status, latency_ms, %ip, "request");
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_paths_are_redacted() {
        let link = "/admin/v1/links/eyJ1Ijoi.c2lnbmF0dXJl";
        assert_eq!(loggable_path(link), "/admin/v1/links/[redacted]");
        assert_eq!(
            loggable_path("/ADMIN/v1/LINKS/abc/def"),
            "/admin/v1/links/[redacted]"
        );
        assert_eq!(
            loggable_path("//admin/v1/links/abc"),
            "//admin/v1/links/[redacted]"
        );
        assert_eq!(
            loggable_path("/scim/v2/shub_0123456789ab_ffff/x"),
            "/scim/v2/[redacted]/x"
        );
        assert_eq!(loggable_path("/scim/v2/Users/42"), "/scim/v2/Users/42");
        // Percent-escapes are decoded as actix routes: still the links route, still a JWT.
        assert_eq!(
            loggable_path("/admin/v1/%6Cinks/secret-link-token"),
            "/admin/v1/links/[redacted]"
        );
        assert_eq!(
            loggable_path("/scim/v2/eyJ1Ijoi%2Ec2ln%2Ec2lnbmF0dXJl/x"),
            "/scim/v2/[redacted]/x"
        );
        assert_eq!(loggable_path("/scim/v2/a%0Ab"), "/scim/v2/a%0Ab");
        assert_eq!(loggable_path("/admin/v1/links"), "/admin/v1/links");
        assert_eq!(loggable_path("/"), "/");
    }

    #[test]
    fn scopes_by_method() {
        assert_eq!(required_scope(&Method::GET, "/scim/v2/Users"), Scope::Read);
        assert_eq!(
            required_scope(&Method::POST, "/scim/v2/Users/.search"),
            Scope::Read
        );
        assert_eq!(
            required_scope(&Method::POST, "/scim/v2/Users"),
            Scope::Write
        );
        assert_eq!(
            required_scope(&Method::PATCH, "/scim/v2/Groups/1"),
            Scope::Write
        );
        assert_eq!(required_scope(&Method::POST, "/scim/v2/Bulk"), Scope::Write);
    }
}
