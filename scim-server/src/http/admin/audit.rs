//! `GET /admin/v1/audit` (a page of the audit chain, by `seq` cursor, filtered) and
//! `GET /admin/v1/audit/head` (the chain head, to anchor); `admin` scope. The work is in
//! `admin::audit`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{invalid, ok, run};
use crate::http::error::ApiResult;
use crate::http::AppState;
use crate::store::audit_chain::ExportFilter;

#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    /// The `nextCursor` of the previous page.
    after: Option<i64>,
    limit: Option<i64>,
    user: Option<String>,
    actor: Option<String>,
    /// `action`: exact, or a prefix ending in `.` or `*`.
    event: Option<String>,
    connector: Option<String>,
    /// RFC 3339 bounds on the entry time (from inclusive, to exclusive).
    from: Option<String>,
    to: Option<String>,
}

fn time(s: Option<&str>, what: &str) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    s.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| invalid(format!("{what} must be an RFC 3339 time")))
    })
    .transpose()
}

pub(super) async fn list_audit(
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=crate::admin::audit::MAX_PAGE).contains(&limit) {
        return Err(invalid(format!(
            "limit must be between 1 and {}",
            crate::admin::audit::MAX_PAGE
        )));
    }
    let f = ExportFilter {
        after_seq: q.after,
        to_seq: None,
        from_time: time(q.from.as_deref(), "from")?,
        to_time: time(q.to.as_deref(), "to")?,
        user_id: q.user,
        actor: q.actor,
        action: q.event,
        connector: q.connector,
    };
    let page = run(&state, move |a| a.audit_page(&f, limit)).await?;
    Ok(ok(
        StatusCode::OK,
        json!({
            "Resources": page.entries,
            "itemsPerPage": page.entries.len(),
            "nextCursor": page.next_cursor,
            "head": page.head,
        }),
    ))
}

pub(super) async fn audit_head(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let head = run(&state, |a| a.audit_head()).await?;
    Ok(ok(StatusCode::OK, json!(head)))
}
