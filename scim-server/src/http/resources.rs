//! Thin handlers for /Users, /Groups, /.search, /Bulk and /Me: parse, call [`crate::service`],
//! render.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::auth::Principal;
use crate::service::{self, glue};
use crate::store::{ResourceKind, StoredResource};

use super::body::ScimJson;
use super::error::{ApiError, ApiResult};
use super::query::{projection_from_query, Projection};
use super::{scim_response, AppState};

fn kind(segment: &str, req: &HttpRequest) -> ApiResult<ResourceKind> {
    service::kind_of_endpoint(segment)
        .ok_or_else(|| ApiError::NotFound(format!("No endpoint at {}.", req.path())))
}

fn caller(req: &HttpRequest) -> ApiResult<Principal> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no principal on an authenticated route"))
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The representation of a resource under a projection.
pub fn render(r: &StoredResource, p: &Projection) -> Value {
    Value::Object(glue::project(r.doc.clone(), p))
}

fn location(r: &StoredResource, req: &HttpRequest) -> String {
    format!("{}/{}/{}", super::base_url(req), r.kind.endpoint(), r.id)
}

/// A resource response with ETag (and Location for 201).
fn resource_response(
    status: StatusCode,
    r: &StoredResource,
    p: &Projection,
    req: &HttpRequest,
) -> HttpResponse {
    let mut resp = scim_response(status, &render(r, p));
    let headers = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&r.etag()) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&location(r, req)) {
        headers.insert(header::LOCATION, v);
    }
    resp
}

fn projection(req: &HttpRequest) -> ApiResult<Projection> {
    Ok(projection_from_query(req.query_string())?)
}

/// Whether an `If-None-Match` header matches the current ETag (weak comparison).
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    header_str(req, header::IF_NONE_MATCH).is_some_and(|h| {
        h.split(',')
            .any(|t| t.trim() == "*" || strip(t) == strip(etag))
    })
}

pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (segment, id) = path.into_inner();
    let kind = kind(&segment, &req)?;
    let p = projection(&req)?;
    let with_members = !p.excludes(if kind == ResourceKind::Group {
        "members"
    } else {
        "groups"
    });
    let r = state.db(move |s| s.get(kind, &id, with_members)).await?;
    if none_match(&req, &r.etag()) {
        let mut resp = HttpResponse::NotModified().finish();
        if let Ok(v) = header::HeaderValue::from_str(&r.etag()) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return Ok(resp);
    }
    Ok(resource_response(StatusCode::OK, &r, &p, &req))
}

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let kind = kind(&path, &req)?;
    let p = projection(&req)?;
    let client = caller(&req)?.client;
    let r = state
        .db(move |s| service::create(s, kind, body.0, &client))
        .await?;
    Ok(resource_response(StatusCode::CREATED, &r, &p, &req))
}

pub async fn replace(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let (segment, id) = path.into_inner();
    let kind = kind(&segment, &req)?;
    let p = projection(&req)?;
    let client = caller(&req)?.client;
    let if_match = header_str(&req, header::IF_MATCH).map(str::to_string);
    let r = state
        .db(move |s| service::replace(s, kind, &id, body.0, if_match.as_deref(), &client))
        .await?;
    Ok(resource_response(StatusCode::OK, &r, &p, &req))
}

/// PATCH answers 200 with the resource, or 204 when the client sends `Prefer: return=minimal`
/// (RFC 7240). Member ids that name no resource are skipped; they are listed in the
/// `X-Scimhub-Unknown-Members` response header and logged.
pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let (segment, id) = path.into_inner();
    let kind = kind(&segment, &req)?;
    let p = projection(&req)?;
    let client = caller(&req)?.client;
    let if_match = header_str(&req, header::IF_MATCH).map(str::to_string);
    let out = state
        .db(move |s| service::patch(s, kind, &id, &body.0, if_match.as_deref(), &client))
        .await?;
    let minimal = header_str(&req, header::HeaderName::from_static("prefer")).is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
    });
    let mut resp = if minimal {
        let mut resp = HttpResponse::NoContent().finish();
        if let Ok(v) = header::HeaderValue::from_str(&out.resource.etag()) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        resp
    } else {
        resource_response(StatusCode::OK, &out.resource, &p, &req)
    };
    if !out.unknown_members.is_empty() {
        tracing::warn!(group = %out.resource.id, count = out.unknown_members.len(), "PATCH skipped unknown members");
        if let Ok(v) = header::HeaderValue::from_str(&out.unknown_members.join(",")) {
            resp.headers_mut().insert(
                header::HeaderName::from_static("x-scimhub-unknown-members"),
                v,
            );
        }
    }
    Ok(resp)
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (segment, id) = path.into_inner();
    let kind = kind(&segment, &req)?;
    let if_match = header_str(&req, header::IF_MATCH).map(str::to_string);
    state
        .db(move |s| s.delete(kind, &id, if_match.as_deref()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// /Me (RFC 7644 §3.11): scimhub's credentials belong to clients, not to User resources, so every
/// /Me request is answered 501 Not Implemented with a SCIM error.
pub async fn me() -> ApiResult<HttpResponse> {
    Err(ApiError::NotImplemented(
        "/Me is not supported: bearer tokens identify SCIM clients, not users.".into(),
    ))
}

const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

fn search_query(
    params: &super::query::ListParams,
    kind: ResourceKind,
    max: u64,
) -> ApiResult<crate::store::SearchQuery> {
    let with_members = !params.projection.excludes(if kind == ResourceKind::Group {
        "members"
    } else {
        "groups"
    });
    Ok(crate::store::SearchQuery {
        filter: params
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(glue::parse_filter)
            .transpose()?,
        sort_by: params
            .sort_by
            .as_deref()
            .map(glue::parse_attr_path)
            .transpose()?,
        descending: params.sort_order == super::query::SortOrder::Descending,
        start_index: params.start_index,
        count: params.page_size(max),
        cursor: params.cursor.clone(),
        with_members,
    })
}

/// Runs a search over `kinds` and renders the ListResponse. Several kinds (`/.search`) are
/// concatenated in kind order; paging then applies to the concatenation.
async fn run_search(
    state: &AppState,
    kinds: Vec<ResourceKind>,
    params: super::query::ListParams,
) -> ApiResult<HttpResponse> {
    let max = state.config.max_results as u64;
    let mut resources = Vec::new();
    let mut total = 0u64;
    let mut next_cursor = None;
    let single = kinds.len() == 1;
    for kind in kinds {
        let mut q = search_query(&params, kind, max)?;
        if !single {
            // Across types: fetch enough of each type to cut the requested page from the union.
            q.start_index = 1;
            q.count = params.start_index.saturating_sub(1) + params.page_size(max);
            q.cursor = None;
        }
        let schema = glue::resource_schema(&state.registry, kind);
        let page = state.db(move |s| s.search(kind, &q, &schema)).await?;
        total += page.total_results;
        next_cursor = page.next_cursor;
        resources.extend(page.resources);
    }
    if !single {
        let skip = params.start_index.saturating_sub(1) as usize;
        resources = resources
            .into_iter()
            .skip(skip)
            .take(params.page_size(max) as usize)
            .collect();
        next_cursor = None;
    }
    let items: Vec<Value> = resources
        .iter()
        .map(|r| render(r, &params.projection))
        .collect();
    let mut body = serde_json::json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "itemsPerPage": items.len(),
        "startIndex": params.start_index,
        "Resources": items,
    });
    if let (Some(c), Some(obj)) = (next_cursor, body.as_object_mut()) {
        obj.insert("nextCursor".into(), Value::String(c));
    }
    Ok(scim_response(StatusCode::OK, &body))
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let kind = kind(&path, &req)?;
    let params =
        super::query::ListParams::from_query(req.query_string(), state.config.max_results as u64)?;
    run_search(&state, vec![kind], params).await
}

pub async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let kind = kind(&path, &req)?;
    let params =
        super::query::ListParams::from_search_body(&body.0, state.config.max_results as u64)?;
    run_search(&state, vec![kind], params).await
}

pub async fn search_all(state: web::Data<AppState>, body: ScimJson) -> ApiResult<HttpResponse> {
    let params =
        super::query::ListParams::from_search_body(&body.0, state.config.max_results as u64)?;
    run_search(
        &state,
        vec![ResourceKind::User, ResourceKind::Group],
        params,
    )
    .await
}

pub async fn bulk(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let Value::Object(body) = body.0 else {
        return Err(scim_schema::Error::InvalidSyntax(
            "A BulkRequest must be a JSON object.".into(),
        )
        .into());
    };
    let n = scim_schema::json::get_ci(&body, "Operations")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let max = state.config.bulk_max_operations;
    if n > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "The bulk request has {n} operations; the maximum is {max}."
        )));
    }
    let client = caller(&req)?.client;
    let base = super::base_url(&req);
    let outcomes = state
        .db(move |s| Ok(service::bulk::run(s, &body, &client, &base)))
        .await??;
    let ops: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            service::bulk::response_entry(o, |e| {
                let api: ApiError = clone_store_error(e).into();
                (
                    actix_web::ResponseError::status_code(&api).as_u16(),
                    api.body(),
                )
            })
        })
        .collect();
    Ok(scim_response(
        StatusCode::OK,
        &serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": ops}),
    ))
}

fn clone_store_error(e: &crate::store::StoreError) -> crate::store::StoreError {
    use crate::store::StoreError as S;
    match e {
        S::NotFound => S::NotFound,
        S::PreconditionFailed { current_version } => S::PreconditionFailed {
            current_version: *current_version,
        },
        S::Uniqueness(m) => S::Uniqueness(m.clone()),
        S::UnknownMembers(ids) => S::UnknownMembers(ids.clone()),
        S::Scim(e) => S::Scim(e.clone()),
        S::Unavailable(m) => S::Unavailable(m.clone()),
        S::Config(m) => S::Config(m.clone()),
        S::Backend(m) => S::Backend(m.clone()),
    }
}
