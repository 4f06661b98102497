//! Authentication (scopes by method) and request logging.
//!
//! Request logs carry method, path (never the query string, which may hold filter values),
//! status, latency and the client's name: never a token, a password or a body.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use crate::auth::{Authenticator, Credential, Principal, Scope, TokenRecord};

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
            tracing::info!(path = req.path(), reason = %reason, "authentication failed");
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
        Credential::Lookup { prefix } => {
            let record: Option<TokenRecord> = state
                .db(move |s| s.find_token_by_prefix(&prefix))
                .await?
                .map(|t| TokenRecord {
                    name: t.name,
                    hash: t.token_hash,
                    scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                    revoked: t.revoked.is_some(),
                    user_id: t.user_id,
                });
            Authenticator::check_opaque(&token, record).map_err(unauthorized)
        }
    }
}

/// One log line per request.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
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
            tracing::info!(%method, path = %path, status, latency_ms, client = %client, "request");
        }
        Err(e) => {
            let status = e.as_response_error().status_code().as_u16();
            tracing::info!(%method, path = %path, status, latency_ms, "request");
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

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
