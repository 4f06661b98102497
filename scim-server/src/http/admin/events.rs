//! `GET /admin/v1/events` (paged, filtered by user, kind and time) and
//! `GET /admin/v1/events/{id}` (one event's whole record): thin handlers over
//! [`crate::admin::events`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{invalid, ok, run};
use crate::admin::events::EventQuery;
use crate::http::error::{ApiError, ApiResult};
use crate::http::AppState;

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    user: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

fn time(name: &str, v: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| invalid(format!("{name} is not an RFC 3339 time ({s:?}): {e}")))
    })
    .transpose()
}

pub(super) async fn list_events(
    state: web::Data<AppState>,
    q: web::Query<EventsQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let query = EventQuery {
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
        user: q.user,
        kind: q.kind,
        before: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let page = run(&state, move |a| a.events(&query)).await?;
    Ok(ok(
        StatusCode::OK,
        json!({
            "totalResults": page.events.len(),
            "Resources": page.events,
            "nextBefore": page.next_before,
        }),
    ))
}

pub(super) async fn get_event(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id: i64 = path
        .parse()
        .map_err(|_| ApiError::NotFound(format!("Not found: event {path}.")))?;
    let detail = run(&state, move |a| a.event(id)).await?;
    Ok(ok(StatusCode::OK, json!(detail)))
}
