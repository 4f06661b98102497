//! The admin HTTP API under `/admin/v1` (docs/admin-api.md): thin handlers over [`Admin`].
//!
//! Every route needs a bearer credential (the SCIM authentication middleware, then
//! [`require_admin`]) with the `admin` scope, or for the approval routes the `approvals` scope
//! ([`admin_scope`]); deciding a request also needs the credential to act as a person with
//! authority over it (`crate::admin::authority`). The exception is `/admin/v1/links/{token}`
//! (`links`): a signed one-click link from a notification is its own credential (HMAC and expiry
//! checked before any database work, then addressee, event, one use per event); `GET` only
//! shows what it would do, `POST` does it.
//! Errors are [`ApiError`]s, mapped to SCIM-shaped JSON bodies in `http::error`.

mod audit;
mod events;
mod links;
mod reports;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::Duration;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::BoundedBody;
use super::error::{ApiError, ApiResult};
use super::{method_not_allowed, middleware, not_found, resource as res, AppState};
use crate::admin::simulate::SimulationRequest;
use crate::admin::{Admin, AdminResult, MAX_LEGACY_EXTENSION_DAYS};
use crate::auth::{Principal, Scope};
use crate::engine::notices::API_PREFIX;
use crate::store::{approvals, outbox};

/// Mounts the admin API (called from `http::configure`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(format!("{API_PREFIX}/links/{{token}}"))
            .route(web::get().to(links::preview_link))
            .route(web::post().to(links::follow_link))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::scope(API_PREFIX)
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ApiError::Scim(scim_schema::Error::InvalidValue(format!(
                    "The query string is not valid: {e}"
                )))
                .into()
            }))
            .wrap(actix_web::middleware::from_fn(require_admin))
            .wrap(actix_web::middleware::from_fn(middleware::identify_only))
            .service(res("/approvals").route(web::get().to(list_approvals)))
            .service(res("/approvals/{id}/approve").route(web::post().to(approve)))
            .service(res("/approvals/{id}/reject").route(web::post().to(reject)))
            .service(res("/users/{id}/extensions").route(web::post().to(request_extension)))
            .service(res("/extensions/{id}/approve").route(web::post().to(approve_extension)))
            .service(res("/extensions/{id}/reject").route(web::post().to(reject_extension)))
            .service(res("/users/{id}/grants").route(web::post().to(create_grant)))
            .service(res("/grants").route(web::get().to(list_grants)))
            .service(res("/grants/{id}/revoke").route(web::post().to(revoke_grant)))
            .service(res("/holds").route(web::get().to(list_holds)))
            .service(res("/holds/{id}/confirm").route(web::post().to(confirm_hold)))
            .service(res("/holds/{id}/discard").route(web::post().to(discard_hold)))
            .service(
                res("/users/{id}/legacy-access/acknowledge")
                    .route(web::post().to(acknowledge_legacy)),
            )
            .service(res("/users/{id}/legacy-access/extend").route(web::post().to(extend_legacy)))
            .service(res("/users/{id}/explain").route(web::get().to(explain)))
            .service(res("/simulate").route(web::post().to(simulate)))
            .service(res("/outbox").route(web::get().to(list_outbox)))
            .service(res("/outbox/retry").route(web::post().to(retry_connector)))
            .service(res("/outbox/{id}/retry").route(web::post().to(retry)))
            .service(res("/events").route(web::get().to(events::list_events)))
            .service(res("/events/{id}").route(web::get().to(events::get_event)))
            .service(res("/reports/termination/{user}").route(web::get().to(reports::termination)))
            .service(res("/reports/period").route(web::get().to(reports::period)))
            .service(res("/reports/contractor/{user}").route(web::get().to(reports::contractor)))
            .service(res("/reconcile").route(web::post().to(reconcile)))
            .service(res("/cluster").route(web::get().to(cluster_nodes)))
            .service(res("/policy").route(web::get().to(policy_status)))
            .service(res("/policy/reload").route(web::post().to(reload_policy)))
            .service(res("/drift").route(web::get().to(drift_findings)))
            .service(
                res("/campaigns")
                    .route(web::get().to(list_campaigns))
                    .route(web::post().to(create_campaign)),
            )
            .service(res("/campaigns/{id}").route(web::get().to(get_campaign)))
            .service(res("/campaigns/{id}/report").route(web::get().to(reports::campaign)))
            .service(res("/campaigns/{id}/cancel").route(web::post().to(cancel_campaign)))
            .service(
                res("/campaigns/{id}/items/{item}/decision")
                    .route(web::post().to(decide_campaign_item)),
            )
            .service(res("/revocations").route(web::get().to(list_revocations)))
            .service(res("/revocations/{id}/lift").route(web::post().to(lift_revocation)))
            .service(res("/incidents").route(web::get().to(incidents)))
            .service(res("/incidents/{id}").route(web::get().to(incident)))
            .service(res("/incidents/{id}/acknowledge").route(web::post().to(acknowledge_incident)))
            .service(res("/incidents/{id}/resolve").route(web::post().to(resolve_incident)))
            .service(res("/audit").route(web::get().to(audit::list_audit)))
            .service(res("/audit/head").route(web::get().to(audit::audit_head)))
            .default_service(web::to(not_found)),
    );
}

/// The scope an admin route needs: `approvals` for listing and deciding approval and extension
/// requests and asking for an extension (managers, owners and sponsors are not administrators),
/// `admin` for everything else. `admin` implies `approvals`.
pub fn admin_scope(method: &actix_web::http::Method, path: &str) -> Scope {
    let rest = path.strip_prefix(API_PREFIX).unwrap_or(path);
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let approval_route = match segments.as_slice() {
        ["approvals"] => method == actix_web::http::Method::GET,
        ["approvals" | "extensions", _, "approve" | "reject"] => true,
        ["users", _, "extensions"] => true,
        // Reviewers (managers, owners) decide their campaign items without being administrators.
        ["campaigns", _, "items", _, "decision"] => true,
        _ => false,
    };
    if approval_route {
        Scope::Approvals
    } else {
        Scope::Admin
    }
}

/// Refuses credentials without the route's scope (runs after authentication).
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let needed = admin_scope(req.method(), req.path());
    let ok = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| p.has(needed));
    if !ok {
        return Err(ApiError::Forbidden(format!("The token lacks the {needed} scope.")).into());
    }
    next.call(req).await
}

/// The admin operations, or 501 when the server runs without the engine.
fn admin_of(state: &web::Data<AppState>) -> ApiResult<Admin> {
    state.admin.clone().ok_or_else(|| {
        ApiError::NotImplemented(
            "The admin API needs the lifecycle engine: start `scimhub serve --policy FILE`.".into(),
        )
    })
}

/// Runs an admin action on the blocking pool, holding a database permit as every other
/// database task does (`AppState::db`): admin work is bounded like SCIM work.
async fn run<T, F>(state: &web::Data<AppState>, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Admin) -> AdminResult<T> + Send + 'static,
{
    let admin = admin_of(state)?;
    let _permit = state
        .db_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    Ok(web::block(move || f(&admin)).await??)
}

fn ok(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn list(items: Vec<Value>) -> HttpResponse {
    ok(
        StatusCode::OK,
        json!({"totalResults": items.len(), "Resources": items}),
    )
}

/// Who acts, for the audit of administrative actions (holds, retries, legacy access,
/// extension requests): the authenticated principal, never the request body: the JWT `sub`
/// when the credential is a JWT, else the token's (or client's) name.
fn actor(req: &HttpRequest) -> String {
    req.extensions()
        .get::<Principal>()
        .map(|p| p.subject.clone().unwrap_or_else(|| p.client.clone()))
        // Only reachable if a route were mounted without authentication.
        .unwrap_or_else(|| "unauthenticated".into())
}

/// The authenticated caller (approval decisions are taken as the person it acts as).
fn principal(req: &HttpRequest) -> ApiResult<Principal> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no principal on an authenticated route"))
}

/// A JSON body; an empty body is `{}` (every field optional) when `T` allows it.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    unique_json(text).and_then(T::deserialize).map_err(|e| {
        ApiError::Scim(scim_schema::Error::InvalidSyntax(format!(
            "The request body is not valid: {e}"
        )))
    })
}

/// Client JSON with each member named once (a typed field given twice is refused by serde, but
/// not a member inside a free-form value such as a simulated SCIM body).
fn unique_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let text = std::str::from_utf8(bytes).map_err(serde::de::Error::custom)?;
    scim_schema::json::from_str_unique(text)
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Scim(scim_schema::Error::InvalidValue(msg.into()))
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `?status=`: one of `allowed`, or `all` (no filter); `default` when absent.
fn status_filter(
    q: &StatusQuery,
    allowed: &[&str],
    default: Option<&str>,
) -> ApiResult<Option<String>> {
    match q.status.as_deref() {
        None => Ok(default.map(str::to_string)),
        Some("all") => Ok(None),
        Some(s) if allowed.contains(&s) => Ok(Some(s.to_string())),
        Some(s) => Err(invalid(format!(
            "status {s:?} is not one of {}, all",
            allowed.join(", ")
        ))),
    }
}

fn approval_json(r: &approvals::ApprovalRow) -> Value {
    let mut v = json!(r);
    // The entitlement is stored as JSON text: return it as an object.
    if let Some(e) = r
        .entitlement
        .as_deref()
        .filter(|_| {
            matches!(
                r.kind,
                approvals::ApprovalKind::Entitlement | approvals::ApprovalKind::Grant
            )
        })
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
    {
        v["entitlement"] = e;
    }
    v
}

fn op_json(r: &outbox::OutboxRow) -> Value {
    json!({
        "id": r.id,
        "plan_id": r.plan_id,
        "user_id": r.user_id,
        "connector": r.connector,
        "event": r.event,
        "priority": r.priority,
        "operation": serde_json::from_str::<Value>(&r.op).unwrap_or(Value::String(r.op.clone())),
        "status": r.status,
        "hold_id": r.hold_id,
        "attempts": r.attempts,
        "not_before": r.not_before,
        "last_error": r.last_error,
        "created": r.created,
        "finished": r.finished,
    })
}

// ---------------------------------------------------------------------------------------------
// Approvals and extensions
// ---------------------------------------------------------------------------------------------

async fn list_approvals(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<StatusQuery>,
) -> ApiResult<HttpResponse> {
    let status = status_filter(
        &q,
        &["pending", "approved", "rejected", "blocked"],
        Some("pending"),
    )?;
    // An `approvals` credential sees the requests its person may decide; `admin` sees all.
    let by = principal(&req)?;
    let rows = run(&state, move |a| a.approvals_for(&by, status.as_deref())).await?;
    Ok(list(rows.iter().map(approval_json).collect()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    bytes: BoundedBody,
    kind: Option<&'static str>,
    approve: bool,
) -> ApiResult<HttpResponse> {
    let d: Decision = body(&bytes)?;
    let reason = d
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if !approve && reason.is_none() {
        return Err(invalid("a rejection needs a reason"));
    }
    let by = principal(&req)?;
    let status = if approve { "approved" } else { "rejected" };
    let row = run(&state, move |a| {
        a.decide_request(&id, kind, status, &by, reason.as_deref())
    })
    .await?;
    Ok(ok(StatusCode::OK, approval_json(&row)))
}

async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    decide(state, req, path.into_inner(), bytes, None, true).await
}

async fn reject(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    decide(state, req, path.into_inner(), bytes, None, false).await
}

async fn approve_extension(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    decide(
        state,
        req,
        path.into_inner(),
        bytes,
        Some("extension"),
        true,
    )
    .await
}

async fn reject_extension(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    decide(
        state,
        req,
        path.into_inner(),
        bytes,
        Some("extension"),
        false,
    )
    .await
}

/// Who asks is the authenticated caller, never a field of the body: a `requested_by` in the
/// body is refused as an unknown field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtensionRequest {
    /// The new contract end date (`2025-06-30` or RFC 3339).
    end: Option<String>,
    reason: Option<String>,
}

async fn request_extension(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    let r: ExtensionRequest = body(&bytes)?;
    let end = r
        .end
        .ok_or_else(|| invalid("`end` (the new end date) is required"))?;
    let reason = r.reason.unwrap_or_default();
    let caller = principal(&req)?;
    let by = actor(&req);
    let user = path.into_inner();
    let row = run(&state, move |a| {
        let id = a.request_extension(&user, &end, &reason, &by, caller.user.as_ref())?;
        Ok(a.approvals(None)?.into_iter().find(|r| r.id == id))
    })
    .await?
    .ok_or_else(|| ApiError::internal("extension request vanished"))?;
    let location = format!("{API_PREFIX}/extensions/{}", row.id);
    let mut resp = ok(StatusCode::CREATED, approval_json(&row));
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Emergency grants (docs/grants.md)
// ---------------------------------------------------------------------------------------------

/// Who asks is the authenticated caller, never a field of the body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    /// `CONNECTOR:KIND:ID` or `CONNECTOR:KIND:ID:ROLE`.
    entitlement: Option<String>,
    /// How long, e.g. `4h` (at most the policy's `[grants] max_duration`).
    duration: Option<String>,
    reason: Option<String>,
}

async fn create_grant(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    let b: GrantBody = body(&bytes)?;
    let entitlement = b
        .entitlement
        .ok_or_else(|| invalid("`entitlement` (CONNECTOR:KIND:ID) is required"))?;
    let duration = b
        .duration
        .ok_or_else(|| invalid("`duration` (e.g. \"4h\") is required"))?;
    let duration = crate::policy::parse_duration(&duration)
        .map_err(|e| invalid(format!("`duration`: {e}")))?;
    let reason = b.reason.unwrap_or_default();
    let caller = principal(&req)?;
    let by = actor(&req);
    let user = path.into_inner();
    let out = run(&state, move |a| {
        a.create_grant(&crate::admin::grants::GrantRequest {
            user: &user,
            entitlement: &entitlement,
            duration,
            reason: &reason,
            requested_by: &by,
            requester: caller.user.as_ref(),
        })
    })
    .await?;
    let mut v = json!(out);
    if let Some(a) = &out.approval {
        v["approval"] = approval_json(a);
    }
    let location = format!(
        "{API_PREFIX}/grants?user={}",
        out.grant["user_id"].as_str().unwrap_or_default()
    );
    let mut resp = ok(StatusCode::CREATED, v);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsQuery {
    /// A user's id or userName.
    user: Option<String>,
    /// `true`: only grants in force now.
    active: Option<bool>,
}

async fn list_grants(
    state: web::Data<AppState>,
    q: web::Query<GrantsQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let rows = run(&state, move |a| {
        a.grants(q.user.as_deref(), q.active.unwrap_or(false))
    })
    .await?;
    Ok(list(rows))
}

async fn revoke_grant(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    let d: Decision = body(&bytes)?;
    let reason = d.reason.unwrap_or_default();
    let by = actor(&req);
    let id = path.into_inner();
    let v = run(&state, move |a| a.revoke_grant(&id, &by, &reason)).await?;
    Ok(ok(StatusCode::OK, v))
}

// ---------------------------------------------------------------------------------------------
// Holds
// ---------------------------------------------------------------------------------------------

async fn list_holds(
    state: web::Data<AppState>,
    q: web::Query<StatusQuery>,
) -> ApiResult<HttpResponse> {
    let status = status_filter(&q, &["pending", "confirmed", "discarded"], None)?;
    let rows = run(&state, move |a| a.holds(status.as_deref())).await?;
    Ok(list(rows.iter().map(|h| json!(h)).collect()))
}

async fn confirm_hold(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (id, by) = (path.into_inner(), actor(&req));
    let rid = id.clone();
    let n = run(&state, move |a| a.confirm_hold(&rid, &by)).await?;
    Ok(ok(
        StatusCode::OK,
        json!({"id": id, "status": "confirmed", "operations_released": n}),
    ))
}

async fn discard_hold(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (id, by) = (path.into_inner(), actor(&req));
    let rid = id.clone();
    let n = run(&state, move |a| a.discard_hold(&rid, &by)).await?;
    Ok(ok(
        StatusCode::OK,
        json!({"id": id, "status": "discarded", "users": n}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Legacy access and one-click links
// ---------------------------------------------------------------------------------------------

fn plan_summary(o: &crate::engine::PlanOutcome) -> Value {
    json!({
        "user_id": o.user_id,
        "event": o.event,
        "operations": o.plan.ops,
    })
}

async fn acknowledge_legacy(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (user, by) = (path.into_inner(), actor(&req));
    let (out, _) = run(&state, move |a| a.legacy_access(&user, None, &by)).await?;
    Ok(ok(StatusCode::OK, plan_summary(&out)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extend {
    days: Option<i64>,
}

async fn extend_legacy(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    let e: Extend = body(&bytes)?;
    let days = e.days.unwrap_or(7);
    if !(1..=MAX_LEGACY_EXTENSION_DAYS).contains(&days) {
        return Err(invalid(format!(
            "days must be between 1 and {}",
            MAX_LEGACY_EXTENSION_DAYS
        )));
    }
    let (user, by) = (path.into_inner(), actor(&req));
    let (out, until) = run(&state, move |a| {
        a.legacy_access(&user, Some(Duration::days(days)), &by)
    })
    .await?;
    let mut v = plan_summary(&out);
    v["extended_days"] = json!(days);
    v["until"] = json!(until);
    Ok(ok(StatusCode::OK, v))
}

// ---------------------------------------------------------------------------------------------
// Simulation, explanation, outbox, incidents
// ---------------------------------------------------------------------------------------------

async fn simulate(state: web::Data<AppState>, bytes: BoundedBody) -> ApiResult<HttpResponse> {
    let value = unique_json(&bytes).map_err(|e| {
        ApiError::Scim(scim_schema::Error::InvalidSyntax(format!(
            "The request body is not valid JSON: {e}"
        )))
    })?;
    let request = SimulationRequest::deserialize(value).map_err(|_| {
        invalid(
            "expected {\"method\", \"path\", \"body\"} (a SCIM request) or {\"user\", \"set\"} \
             (a user and attribute changes)",
        )
    })?;
    let schemas = state.schemas.clone();
    let out = run(&state, move |a| a.dry_run(&schemas, &request)).await?;
    Ok(ok(StatusCode::OK, out))
}

async fn explain(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let user = path.into_inner();
    let v = run(&state, move |a| a.explain(&user)).await?;
    Ok(ok(StatusCode::OK, v))
}

/// The nodes on this database and the policy each runs.
async fn cluster_nodes(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let v = run(&state, |a| a.cluster()).await?;
    Ok(HttpResponse::Ok().json(v))
}

/// `GET /policy`: the policy in force and whether the file on disk differs
/// ([`Admin::policy_status`]).
async fn policy_status(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let v = run(&state, |a| a.policy_status()).await?;
    Ok(ok(StatusCode::OK, v))
}

/// `POST /policy/reload`: re-reads the policy file now, as SIGHUP does
/// ([`Admin::reload_policy`]); 400 with the file's errors when it is rejected.
async fn reload_policy(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let by = actor(&req);
    let v = run(&state, move |a| a.reload_policy(&by)).await?;
    Ok(ok(StatusCode::OK, v))
}

async fn list_outbox(
    state: web::Data<AppState>,
    q: web::Query<StatusQuery>,
) -> ApiResult<HttpResponse> {
    let status = status_filter(
        &q,
        &["failed", "pending", "running", "held", "done", "discarded"],
        Some("failed"),
    )?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit must be between 1 and 1000"));
    }
    let rows = run(&state, move |a| a.outbox(status.as_deref(), limit)).await?;
    Ok(list(rows.iter().map(op_json).collect()))
}

async fn retry(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id: i64 = path
        .parse()
        .map_err(|_| ApiError::NotFound(format!("Not found: operation {path}.")))?;
    let by = actor(&req);
    let row = run(&state, move |a| a.retry(id, &by)).await?;
    Ok(ok(StatusCode::OK, op_json(&row)))
}

#[derive(Debug, Deserialize)]
struct ConnectorQuery {
    connector: Option<String>,
}

/// `POST /outbox/retry?connector=X`: resumes a connector after an outage
/// ([`Admin::retry_connector`]).
async fn retry_connector(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ConnectorQuery>,
) -> ApiResult<HttpResponse> {
    let connector = q
        .into_inner()
        .connector
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("connector is required: POST /outbox/retry?connector=NAME"))?;
    let by = actor(&req);
    let out = run(&state, move |a| a.retry_connector(&connector, &by)).await?;
    Ok(ok(StatusCode::OK, json!(out)))
}

#[derive(Debug, Deserialize)]
struct ReconcileQuery {
    connector: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /reconcile?connector=X&dry_run=true`: runs drift reconciliation now, for one
/// connector or every connector that can list accounts, and answers each run's report
/// ([`crate::jobs::reconcile::run`]; a dry run writes nothing).
async fn reconcile(
    state: web::Data<AppState>,
    q: web::Query<ReconcileQuery>,
) -> ApiResult<HttpResponse> {
    let admin = admin_of(&state)?;
    let q = q.into_inner();
    let names: Vec<String> = match q.connector.filter(|c| !c.is_empty()) {
        Some(c) => vec![c],
        None => crate::jobs::reconcile::listable(&admin.engine),
    };
    let mut reports = Vec::new();
    for name in names {
        crate::metrics::global().reconcile_run(&name, "api");
        let report = crate::jobs::reconcile::run(&admin.store, &admin.engine, &name, q.dry_run)
            .await
            .map_err(|e| match e {
                crate::error::HubError::NotFound => {
                    ApiError::NotFound(format!("Not found: connector {name}."))
                }
                other => ApiError::from(other),
            })?;
        reports.push(json!(report));
    }
    Ok(ok(StatusCode::OK, json!({ "runs": reports })))
}

#[derive(Debug, Deserialize)]
struct DriftQuery {
    connector: Option<String>,
    kind: Option<String>,
    /// `open` (default), `closed` or `all`.
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /drift?connector=&kind=&status=`: drift findings, oldest first.
async fn drift_findings(
    state: web::Data<AppState>,
    q: web::Query<DriftQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let status = match q.status.as_deref() {
        None | Some("") => Some("open".to_string()),
        Some("all") => None,
        Some(s) => Some(s.to_string()),
    };
    let rows = run(&state, move |a| {
        a.drift_findings(
            q.connector.as_deref(),
            q.kind.as_deref(),
            status.as_deref(),
            q.limit.unwrap_or(1000),
        )
    })
    .await?;
    Ok(list(
        rows.iter().map(crate::admin::drift::finding_json).collect(),
    ))
}

async fn incidents(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let rows = run(&state, |a| a.incidents()).await?;
    Ok(list(
        rows.into_iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "created": i.created,
                    "kind": i.kind,
                    "user_id": i.user_id,
                    "connector": i.connector,
                    "reason": i.reason,
                })
            })
            .collect(),
    ))
}

fn incident_id(path: &str) -> ApiResult<i64> {
    path.parse()
        .map_err(|_| ApiError::NotFound(format!("Not found: incident {path}.")))
}

fn incident_json(i: &crate::store::incidents::IncidentDetail) -> serde_json::Value {
    // Only an open, unacknowledged incident has a next notice.
    let next_notice = if i.status == "open" && i.acknowledged_at.is_none() {
        i.next_notify_at.clone()
    } else {
        None
    };
    json!({
        "id": i.id,
        "created": i.created,
        "kind": i.kind,
        "user_id": i.user_id,
        "connector": i.connector,
        "reason": i.reason,
        "status": i.status,
        "notices": i.notify_count,
        "next_notice": next_notice,
        "acknowledged": i.acknowledged_at,
        "acknowledged_by": i.acknowledged_by,
        "resolved": i.resolved_at,
        "resolved_by": i.resolved_by,
        "note": i.note,
    })
}

async fn incident(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = incident_id(&path)?;
    let row = run(&state, move |a| a.incident(id)).await?;
    Ok(ok(StatusCode::OK, incident_json(&row)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentNote {
    #[serde(default)]
    note: Option<String>,
}

async fn close_incident(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
    resolve: bool,
) -> ApiResult<HttpResponse> {
    let id = incident_id(&path)?;
    let n: IncidentNote = body(&bytes)?;
    let note = n
        .note
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let by = actor(&req);
    let row = run(&state, move |a| {
        if resolve {
            a.resolve_incident(id, &by, note.as_deref())
        } else {
            a.acknowledge_incident(id, &by, note.as_deref())
        }
    })
    .await?;
    Ok(ok(StatusCode::OK, incident_json(&row)))
}

async fn acknowledge_incident(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    close_incident(state, req, path, bytes, false).await
}

async fn resolve_incident(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    close_incident(state, req, path, bytes, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;

    #[test]
    fn approval_routes_need_the_approvals_scope_and_the_rest_admin() {
        let approvals = [
            (Method::GET, "/admin/v1/approvals"),
            (Method::POST, "/admin/v1/approvals/r1/approve"),
            (Method::POST, "/admin/v1/approvals/r1/reject"),
            (Method::POST, "/admin/v1/extensions/r1/approve"),
            (Method::POST, "/admin/v1/extensions/r1/reject"),
            (Method::POST, "/admin/v1/users/u1/extensions"),
        ];
        for (m, p) in approvals {
            assert_eq!(admin_scope(&m, p), Scope::Approvals, "{m} {p}");
        }
        let admin = [
            (Method::POST, "/admin/v1/approvals"),
            (Method::GET, "/admin/v1/holds"),
            (Method::POST, "/admin/v1/holds/h1/confirm"),
            (Method::POST, "/admin/v1/outbox/1/retry"),
            (Method::POST, "/admin/v1/outbox/retry"),
            (Method::POST, "/admin/v1/incidents/1/acknowledge"),
            (Method::POST, "/admin/v1/incidents/1/resolve"),
            (Method::POST, "/admin/v1/users/u1/legacy-access/acknowledge"),
            (Method::POST, "/admin/v1/simulate"),
            (Method::GET, "/admin/v1/users/u1/explain"),
            (Method::POST, "/admin/v1/approvals/r1/approve/x"),
        ];
        for (m, p) in admin {
            assert_eq!(admin_scope(&m, p), Scope::Admin, "{m} {p}");
        }
    }
}

#[derive(Debug, Deserialize)]
struct CampaignQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /campaigns?state=`: certification campaigns, newest first.
async fn list_campaigns(
    state: web::Data<AppState>,
    q: web::Query<CampaignQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let rows = run(&state, move |a| {
        a.campaigns(
            q.state.as_deref().filter(|s| !s.is_empty()),
            q.limit.unwrap_or(1000),
        )
    })
    .await?;
    Ok(list(rows))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCampaign {
    name: String,
    /// `connector=github,department=Sales,profile=engineer,privileged`; empty: everything.
    #[serde(default)]
    scope: String,
    /// A duration from now (`14d`); default `[certification] due`.
    #[serde(default)]
    due: Option<String>,
}

/// `POST /campaigns {name, scope, due}`: opens a certification campaign now.
async fn create_campaign(
    state: web::Data<AppState>,
    req: HttpRequest,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    let b: NewCampaign = body(&bytes)?;
    let who = actor(&req);
    let v = run(&state, move |a| {
        let due = match b.due.as_deref() {
            Some(d) => crate::admin::certification::parse_due(d)?,
            None => a.engine.policy.current().certification.due,
        };
        a.create_campaign(&b.name, &b.scope, due, &who)
    })
    .await?;
    Ok(ok(StatusCode::CREATED, v))
}

/// `GET /campaigns/{id}`: a campaign and its items.
async fn get_campaign(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    Ok(ok(
        StatusCode::OK,
        run(&state, move |a| a.campaign(&id)).await?,
    ))
}

/// `POST /campaigns/{id}/cancel`.
async fn cancel_campaign(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let who = actor(&req);
    Ok(ok(
        StatusCode::OK,
        run(&state, move |a| a.cancel_campaign(&id, &who)).await?,
    ))
}

/// `POST /campaigns/{id}/items/{item}/decision {decision, reason, delegate_to}`: a reviewer's
/// decision, taken as the person the credential acts as.
async fn decide_campaign_item(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    bytes: BoundedBody,
) -> ApiResult<HttpResponse> {
    let (id, item) = path.into_inner();
    let b: crate::admin::certification::DecisionRequest = body(&bytes)?;
    let by = principal(&req)?;
    let d = run(&state, move |a| a.decide_campaign_item(&id, &item, &b, &by)).await?;
    Ok(ok(StatusCode::OK, json!(d)))
}

#[derive(Debug, Deserialize)]
struct RevocationQuery {
    /// `all` lists lifted ones too (default: in force only).
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /revocations?status=all`: certification revocations, newest first.
async fn list_revocations(
    state: web::Data<AppState>,
    q: web::Query<RevocationQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let in_force = q.status.as_deref() != Some("all");
    let rows = run(&state, move |a| {
        a.revocations(in_force, q.limit.unwrap_or(1000))
    })
    .await?;
    Ok(list(rows))
}

/// `POST /revocations/{id}/lift`: an administrator lifts a revocation; the user is re-planned.
async fn lift_revocation(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let who = actor(&req);
    Ok(ok(
        StatusCode::OK,
        run(&state, move |a| a.lift_revocation(&id, &who)).await?,
    ))
}
