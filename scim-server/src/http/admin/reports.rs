//! `GET /admin/v1/reports/termination/{user}`, `/reports/period?from=&to=` and
//! `/reports/contractor/{user}`: thin handlers over [`crate::report`]. JSON by default; HTML
//! with `?format=html` or when `Accept` prefers `text/html` (a browser).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{admin_of, invalid};
use crate::http::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::report::{self, ReportError};

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::NotFound(what) => ApiError::NotFound(format!("Not found: {what}.")),
            ReportError::Invalid(d) => ApiError::Scim(scim_schema::Error::InvalidValue(d)),
            ReportError::Store(e) => e.into(),
            e @ (ReportError::Render(_) | ReportError::Archive(_)) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportQuery {
    format: Option<String>,
    event: Option<i64>,
    from: Option<String>,
    to: Option<String>,
}

/// HTML when asked by `format=html`, or by an `Accept` header that names `text/html` before
/// any JSON type; JSON otherwise. An unknown `format` is a 400.
fn wants_html(req: &HttpRequest, q: &ReportQuery) -> ApiResult<bool> {
    match q.format.as_deref() {
        Some("html") => return Ok(true),
        Some("json") => return Ok(false),
        Some(f) => return Err(invalid(format!("format must be json or html, not {f:?}"))),
        None => {}
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let html = accept.find("text/html");
    let json = accept.find("json");
    Ok(match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    })
}

/// What a report page may load: nothing but its own inline style (charts are inline SVG).
/// The same policy is in the page's `<meta>` for copies saved to disk (`report/templates`).
pub(crate) const REPORT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

fn respond(html: bool, body: String) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    resp.content_type(if html {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    })
    .insert_header((header::CACHE_CONTROL, "no-store"))
    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
    .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if html {
        resp.insert_header((header::CONTENT_SECURITY_POLICY, REPORT_CSP))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    }
    resp.body(body)
}

/// Runs report work on the blocking pool under a database permit, like every admin action.
async fn run_report<F>(state: &web::Data<AppState>, f: F) -> ApiResult<String>
where
    F: FnOnce(&crate::admin::Admin) -> Result<String, ReportError> + Send + 'static,
{
    let admin = admin_of(state)?;
    let _permit = state
        .db_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    Ok(web::block(move || f(&admin))
        .await
        .map_err(ApiError::internal)??)
}

fn to_json(v: &impl serde::Serialize) -> Result<String, ReportError> {
    serde_json::to_string(v).map_err(|e| ReportError::Render(e.to_string()))
}

/// Builds a report on the blocking pool and answers it as JSON or, when `html`, as the page
/// `render` draws.
async fn answer<R, B, H>(
    state: &web::Data<AppState>,
    html: bool,
    build: B,
    render: H,
) -> ApiResult<HttpResponse>
where
    R: serde::Serialize,
    B: FnOnce(&crate::admin::Admin) -> Result<R, ReportError> + Send + 'static,
    H: FnOnce(&R) -> Result<String, ReportError> + Send + 'static,
{
    let body = run_report(state, move |a| {
        let r = build(a)?;
        if html {
            render(&r)
        } else {
            to_json(&r)
        }
    })
    .await?;
    Ok(respond(html, body))
}

pub(super) async fn termination(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let html = wants_html(&req, &q)?;
    let user = path.into_inner();
    let event = q.event;
    answer(
        &state,
        html,
        move |a| report::termination::build(&a.store, &user, event, a.engine.now()),
        report::html::termination,
    )
    .await
}

pub(super) async fn period(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let html = wants_html(&req, &q)?;
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(invalid("from and to are required (YYYY-MM-DD or RFC 3339)"));
    };
    let from = report::parse_bound(from, false, "from")?;
    let to = report::parse_bound(to, true, "to")?;
    answer(
        &state,
        html,
        move |a| report::period::build(&a.store, from, to, a.engine.now()),
        report::html::period,
    )
    .await
}

pub(super) async fn contractor(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let html = wants_html(&req, &q)?;
    let user = path.into_inner();
    answer(
        &state,
        html,
        move |a| report::contractor::serve(&a.store, &user, a.engine.now()),
        report::html::contractor,
    )
    .await
}

/// `GET /campaigns/{id}/report`: a certification campaign's completion report.
pub(super) async fn campaign(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let html = wants_html(&req, &q)?;
    let id = path.into_inner();
    answer(
        &state,
        html,
        move |a| report::campaign::build(&a.store, &id, a.engine.now()),
        report::html::campaign,
    )
    .await
}
