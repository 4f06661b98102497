//! Thin handlers for /Users, /Groups, /.search, /Bulk and /Me: parse, call [`crate::service`],
//! render.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use scim_schema::filter::{
    check_filter, check_sort_by, parse_attr_path, parse_filter_as, FilterSyntax,
};
use scim_schema::json::get_ci;
use scim_schema::message::ListResponse;
use scim_schema::projection::project;
use scim_schema::sort::{compare_keys, sort_key, SortKey};
use serde_json::Value;

use crate::error::HubError;
use crate::service::{self, Schemas};
use crate::store::{Doc, LoadedResource, ResourceKind, Store, StoredResource};

use super::body::ScimJson;
use super::error::{ApiError, ApiResult};
use super::query::{projection_from_query, ListParams, Projection, SortOrder};
use super::{scim_response, AppState};

fn kind(segment: &str, req: &HttpRequest) -> ApiResult<ResourceKind> {
    service::kind_of_endpoint(segment)
        .ok_or_else(|| ApiError::NotFound(format!("No endpoint at {}.", req.path())))
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Fills in what depends on the address the client used: `meta.location` and the `$ref` of
/// Group members and User groups (RFC 7643 §3.1, §4.1.2, §4.2).
fn add_locations(doc: &mut Doc, kind: ResourceKind, id: &str, base: &str) {
    if let Some(Value::Object(meta)) = doc.get_mut("meta") {
        if !meta.contains_key("location") {
            meta.insert(
                "location".into(),
                Value::String(format!("{base}/{}/{id}", kind.endpoint())),
            );
        }
    }
    let (key, default_kind) = match kind {
        ResourceKind::Group => ("members", None),
        ResourceKind::User => ("groups", Some(ResourceKind::Group)),
    };
    if let Some(Value::Array(items)) = doc.get_mut(key) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if item.contains_key("$ref") {
                continue;
            }
            let target = default_kind.or_else(|| {
                get_ci(item, "type")
                    .and_then(Value::as_str)
                    .and_then(ResourceKind::parse)
            });
            let value = get_ci(item, "value").and_then(Value::as_str);
            if let (Some(k), Some(v)) = (target, value) {
                let r = format!("{base}/{}/{v}", k.endpoint());
                item.insert("$ref".into(), Value::String(r));
            }
        }
    }
}

/// The representation of a resource under a projection (`returned` characteristics applied).
pub fn render(r: StoredResource, p: &Projection, schemas: &Schemas, base: &str) -> Value {
    let mut doc = r.doc;
    add_locations(&mut doc, r.kind, &r.id, base);
    Value::Object(project(doc, schemas.of(r.kind), &p.attributes, &p.excluded))
}

/// A resource response with ETag and Location.
fn resource_response(
    status: StatusCode,
    r: StoredResource,
    p: &Projection,
    state: &AppState,
    req: &HttpRequest,
) -> HttpResponse {
    let etag = r.etag();
    let base = super::base_url(req);
    let location = super::render::location(&base, r.kind, &r.id);
    let mut resp = scim_response(status, &render(r, p, &state.schemas, &base));
    add_resource_headers(&mut resp, &etag, &location);
    resp
}

fn projection(req: &HttpRequest) -> ApiResult<Projection> {
    Ok(projection_from_query(req.query_string())?)
}

/// Whether an `If-None-Match` header matches the current ETag (weak comparison).
fn none_match(req: &HttpRequest, r: &LoadedResource) -> bool {
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    header_str(req, header::IF_NONE_MATCH).is_some_and(|h| {
        let etag = strip(&r.etag());
        h.split(',').any(|t| t.trim() == "*" || strip(t) == etag)
    })
}

/// The `If-Match` a PUT, PATCH or DELETE goes ahead under. Without `If-None-Match` it is the
/// client's own. With it (RFC 9110 §13.1.2: a state-changing request whose `If-None-Match` is
/// false answers 412), the stored version is read: `*` or a listed ETag that matches it (weak
/// comparison) answers 412, and otherwise the write is made conditional on that version, so a
/// write landing between the check and this one fails 412 rather than being judged against a
/// version the check never saw. A resource that does not exist is left to the write (404).
async fn write_condition(
    state: &AppState,
    req: &HttpRequest,
    kind: ResourceKind,
    id: &str,
) -> ApiResult<Option<String>> {
    let if_match = header_str(req, header::IF_MATCH).map(str::to_string);
    let Some(none_match) = header_str(req, header::IF_NONE_MATCH).map(str::to_string) else {
        return Ok(if_match);
    };
    let id = id.to_string();
    let version = match state
        .read(kind == ResourceKind::User, move |s| {
            s.get_loaded(kind, &id, false).map(|r| r.version)
        })
        .await
    {
        Ok(v) => v,
        Err(ApiError::NotFound(_)) => return Ok(if_match),
        Err(e) => return Err(e),
    };
    // The version part: a User's groups digest says nothing about what a write changes.
    if none_match
        .split(',')
        .any(|t| t.trim() == "*" || crate::store::etag_version(t) == Some(version))
    {
        return Err(ApiError::PreconditionFailed(
            "The resource exists in a version If-None-Match names; nothing was changed.".into(),
        ));
    }
    if !crate::store::if_match_ok(if_match.as_deref(), version) {
        return Err(HubError::PreconditionFailed {
            current_version: version,
        }
        .into());
    }
    Ok(Some(format!("W/\"{version}\"")))
}

/// A HEAD answer: the GET one (or its error) without a body and without `Content-Length`
/// (optional for HEAD, RFC 9110 §9.3.2). actix-http drops a HEAD answer's body only while its
/// codec still remembers the request was a HEAD, and a request pipelined behind it, decoded
/// while this handler awaited the database, made it forget (seen on PostgreSQL: the body went
/// out and broke the connection's framing). A middleware's refusal (401, 429) is left to actix.
pub(super) fn without_body(answer: ApiResult<HttpResponse>) -> HttpResponse {
    let resp = answer.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
    let (mut head, _) = resp.into_parts();
    head.headers_mut().remove(header::CONTENT_LENGTH);
    head.set_body(actix_web::body::BoxBody::new(actix_web::body::None::new()))
}

/// HEAD of a resource by id.
pub async fn head(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    without_body(get(state, req, path).await)
}

/// HEAD of an endpoint (a list).
pub async fn head_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    without_body(list(state, req, path).await)
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
    // PostgreSQL: over this worker's own connection, without leaving the worker.
    if let Some(r) = state
        .store
        .get_loaded_on_worker(kind, &id, with_members)
        .await
    {
        return read_response(r?, &p, &state, &req);
    }
    let in_place = state.store.reads_in_place();
    // Elsewhere than on a SQLite file (see `AppState::read`): a User, or a Group without its
    // members, is a point read done here when a pooled reader is idle (see
    // `Store::try_get_loaded`); a Group's members can be many, so they load on the pool.
    let inline = match (!in_place && (kind == ResourceKind::User || !with_members))
        .then(|| state.store.try_get_loaded(kind, &id, with_members))
        .flatten()
    {
        Some(r) => Some(r?),
        None => None,
    };
    let max_members = state.config.max_group_members;
    let r = match inline {
        Some(r) => r,
        None => {
            // A Group's members are read on this worker only when few (counted, up to the
            // bound, first); a big group goes to the blocking pool.
            let bounded = in_place
                && (kind == ResourceKind::User
                    || !with_members
                    || state
                        .store
                        .read_here(|s| s.members_within(&id, crate::store::BOUNDED_MAX_MEMBERS))?);
            state
                .read(bounded, move |s| {
                    // A Group's members are bounded work: counted (up to the bound) first.
                    if kind == ResourceKind::Group && with_members {
                        s.check_member_bound(std::slice::from_ref(&id), max_members)?;
                    }
                    s.get_loaded(kind, &id, with_members)
                })
                .await?
        }
    };
    read_response(r, &p, &state, &req)
}

/// A GET's (or HEAD's) answer: `412` when the client's `If-Match` names another version
/// (RFC 9110 §13.1.1, compared as writes compare it), `304` when its `If-None-Match` holds the
/// version, else the resource.
fn read_response(
    r: LoadedResource,
    p: &Projection,
    state: &AppState,
    req: &HttpRequest,
) -> ApiResult<HttpResponse> {
    crate::store::check_if_match(header_str(req, header::IF_MATCH), r.version)?;
    Ok(read_response_unconditional(r, p, state, req))
}

fn read_response_unconditional(
    r: LoadedResource,
    p: &Projection,
    state: &AppState,
    req: &HttpRequest,
) -> HttpResponse {
    if none_match(req, &r) {
        let mut resp = HttpResponse::NotModified().finish();
        if let Ok(v) = header::HeaderValue::from_str(&r.etag()) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return resp;
    }
    loaded_response(StatusCode::OK, r, p, state, req)
}

/// A resource response from a row as loaded or written: straight from the stored text for the
/// default projection ([`super::render`]), else through the general path.
fn loaded_response(
    status: StatusCode,
    r: LoadedResource,
    p: &Projection,
    state: &AppState,
    req: &HttpRequest,
) -> HttpResponse {
    let base = super::base_url(req);
    let mut body = Vec::with_capacity(super::render::size_hint(&r, &base));
    if default_projection(p, state)
        && super::render::write_default(&mut body, &r, state.schemas.of(r.kind), &base)
    {
        let mut resp = HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, super::error::SCIM_JSON))
            .body(body);
        add_resource_headers(
            &mut resp,
            &r.etag(),
            &super::render::location(&base, r.kind, &r.id),
        );
        return resp;
    }
    let r = state.store.assemble_loaded(r);
    resource_response(status, r, p, state, req)
}

/// Whether a read can be written straight from stored text ([`super::render`]): the default
/// projection, and a store that leaves `meta.location` to the HTTP layer.
fn default_projection(p: &Projection, state: &AppState) -> bool {
    p.attributes.is_empty() && p.excluded.is_empty() && state.store.base_url().is_none()
}

fn add_resource_headers(resp: &mut HttpResponse, etag: &str, location: &str) {
    let headers = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = header::HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
}

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let kind = kind(&path, &req)?;
    let p = projection(&req)?;
    let caller = Arc::new(state.caller(&req)?);
    let schemas = state.schemas.clone();
    let heavy = service::prepare_is_heavy(&body.0);
    let doc = state
        .prepare(heavy, {
            let caller = caller.clone();
            move || service::prepare_create(&schemas, kind, body.0, &caller)
        })
        .await?;
    let r = state
        .write_create(move |s| service::create_prepared_loaded(s, kind, doc.clone(), &caller))
        .await?;
    Ok(loaded_response(StatusCode::CREATED, r, &p, &state, &req))
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
    let caller = state.caller(&req)?;
    let schemas = state.schemas.clone();
    let if_match = write_condition(&state, &req, kind, &id).await?;
    let heavy = service::prepare_is_heavy(&body.0);
    let caller = Arc::new(caller);
    let prepared = state
        .prepare(heavy, {
            let (schemas, caller, id) = (schemas.clone(), caller.clone(), id.clone());
            move || service::prepare_replace(&schemas, kind, &id, body.0, &caller)
        })
        .await?;
    let user_id = id.clone();
    let replace = move |s: &Store| {
        service::replace_prepared(
            s,
            &schemas,
            kind,
            &id,
            &prepared,
            if_match.as_deref(),
            &caller,
        )
    };
    let r = if kind == ResourceKind::User {
        state.write_user(&user_id, replace).await?
    } else {
        state.write(replace).await?
    };
    Ok(resource_response(StatusCode::OK, r, &p, &state, &req))
}

/// The `Prefer` header's `return=` preference (RFC 7240 §4.2), if any.
fn prefer_return(req: &HttpRequest) -> Option<&'static str> {
    let v = header_str(req, header::HeaderName::from_static("prefer"))?;
    v.split(',').find_map(|p| {
        let p = p.trim();
        if p.eq_ignore_ascii_case("return=minimal") {
            Some("minimal")
        } else if p.eq_ignore_ascii_case("return=representation") {
            Some("representation")
        } else {
            None
        }
    })
}

/// PATCH answers 200 with the resource (RFC 7644 §3.5.2), except:
/// - `Prefer: return=minimal` (RFC 7240) answers 204;
/// - a PATCH that changes a Group's members answers 204 unless the client asks for a
///   representation (`attributes`, `excludedAttributes` or `Prefer: return=representation`).
///   Echoing every member would make adding one member to a 100,000-member group cost
///   megabytes; Entra ID and Okta document 204 for exactly these requests.
///
/// Member ids that name no resource are skipped; they are listed in the
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
    let caller = state.caller(&req)?;
    let schemas = state.schemas.clone();
    let if_match = write_condition(&state, &req, kind, &id).await?;
    let prefer = prefer_return(&req);
    let reply = if prefer == Some("minimal") {
        service::PatchReply::Minimal
    } else if prefer == Some("representation") || !p.attributes.is_empty() || !p.excluded.is_empty()
    {
        service::PatchReply::Representation {
            members: !p.excludes("members"),
        }
    } else {
        service::PatchReply::Default
    };
    let max_members = state.config.max_group_members;
    let heavy = service::prepare_is_heavy(&body.0);
    let caller = Arc::new(caller);
    let prepared = state
        .prepare(heavy, {
            let (schemas, caller) = (schemas.clone(), caller.clone());
            move || service::prepare_patch(&schemas, kind, body.0, &caller)
        })
        .await?;
    let user_id = id.clone();
    let patch = move |s: &Store| {
        // A representation with members echoes every member: bounded like a read, and
        // checked before the write so that a refused answer changed nothing.
        if kind == ResourceKind::Group
            && reply == (service::PatchReply::Representation { members: true })
        {
            s.check_member_bound(std::slice::from_ref(&id), max_members)?;
        }
        service::patch_prepared(
            s,
            &schemas,
            kind,
            &id,
            &prepared,
            if_match.as_deref(),
            &caller,
            reply,
        )
    };
    // A Group PATCH may fall back to read-then-replace through a reader connection, which a
    // shared (group-commit) transaction would hide from it.
    let out = if kind == ResourceKind::User {
        state.write_user(&user_id, patch).await?
    } else {
        state.db(patch).await?
    };
    let group_id = out.resource.id.clone();
    let mut resp = if reply == service::PatchReply::Minimal || out.no_content {
        let mut resp = HttpResponse::NoContent().finish();
        if let Ok(v) = header::HeaderValue::from_str(&out.resource.etag()) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        resp
    } else {
        resource_response(StatusCode::OK, out.resource, &p, &state, &req)
    };
    if !out.unknown_members.is_empty() {
        tracing::warn!(group = %group_id, count = out.unknown_members.len(), "PATCH skipped unknown members");
        let (listed, count) = unknown_members_headers(&out.unknown_members);
        let headers = resp.headers_mut();
        headers.insert(
            header::HeaderName::from_static("x-scimhub-unknown-members-count"),
            header::HeaderValue::from(count),
        );
        if let Ok(v) = header::HeaderValue::from_str(&listed) {
            headers.insert(
                header::HeaderName::from_static("x-scimhub-unknown-members"),
                v,
            );
        }
    }
    Ok(resp)
}

/// At most this many skipped member ids are listed in a response header.
const UNKNOWN_MEMBERS_LISTED: usize = 20;

/// The skipped member ids a PATCH answer lists (`X-Scimhub-Unknown-Members`: the first
/// [`UNKNOWN_MEMBERS_LISTED`] that are header-safe, printable ASCII without commas of at most
/// 128 bytes), and how many there were in all (`X-Scimhub-Unknown-Members-Count`). Bounded:
/// thousands of ids in one header would break clients and proxies after the write committed,
/// and an id that cannot stand in a header would have dropped the whole list.
fn unknown_members_headers(ids: &[String]) -> (String, usize) {
    let listed: Vec<&str> = ids
        .iter()
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        })
        .take(UNKNOWN_MEMBERS_LISTED)
        .map(String::as_str)
        .collect();
    (listed.join(","), ids.len())
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (segment, id) = path.into_inner();
    let kind = kind(&segment, &req)?;
    let caller = state.caller(&req)?;
    let if_match = write_condition(&state, &req, kind, &id).await?;
    state
        .write(move |s| service::delete(s, kind, &id, if_match.as_deref(), &caller))
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

fn search_query(
    params: &ListParams,
    kind: ResourceKind,
    state: &AppState,
    syntax: FilterSyntax,
) -> ApiResult<crate::store::SearchQuery> {
    let max = state.config.max_results as u64;
    let schema = state.schemas.of(kind);
    params.check_start_index(state.config.max_start_index)?;
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
            .map(|f| {
                let filter = parse_filter_as(f, syntax)?;
                check_filter(&filter, schema)?;
                Ok::<_, scim_schema::Error>(filter)
            })
            .transpose()?,
        sort_by: params
            .sort_by
            .as_deref()
            .map(|s| {
                let path = parse_attr_path(s)?;
                check_sort_by(&path, schema)?;
                Ok::<_, scim_schema::Error>(path)
            })
            .transpose()?,
        descending: params.sort_order == SortOrder::Descending,
        start_index: params.start_index,
        count: params.page_size(max),
        cursor: params.cursor.clone(),
        with_members,
        max_members: Some(state.config.max_group_members),
    })
}

fn list_response(body: ListResponse<Value>) -> HttpResponse {
    super::scim_response_of(StatusCode::OK, &body)
}

/// Runs a search over one resource type and renders the ListResponse.
async fn run_search(
    state: &AppState,
    req: &HttpRequest,
    kind: ResourceKind,
    params: ListParams,
) -> ApiResult<HttpResponse> {
    let syntax = state.request_dialect(req).filter_syntax();
    let q = search_query(&params, kind, state, syntax)?;
    let schemas = state.schemas.clone();
    // PostgreSQL: an index lookup over this worker's own connection, without leaving the worker.
    let on_worker = state
        .store
        .search_loaded_on_worker(kind, &q, schemas.of(kind))
        .await
        .transpose()?;
    let in_place = state.store.reads_in_place();
    // Elsewhere than on a SQLite file (see `AppState::read`): index lookups (userName eq …, the
    // commonest query) run here when a pooled reader is idle, like point reads in `get`.
    let inline = match on_worker {
        Some(page) => Some(page),
        None => match (!in_place && q.is_index_lookup())
            .then(|| state.store.try_search_loaded(kind, &q, schemas.of(kind)))
            .flatten()
        {
            Some(page) => Some(page?),
            None => None,
        },
    };
    let page = match inline {
        Some(page) => page,
        None => {
            // Anything whose cost grows with the table or a group goes to the blocking pool.
            let bounded = in_place && state.store.search_is_bounded(kind, &q, schemas.of(kind));
            state
                .read(bounded, move |s| {
                    s.search_loaded(kind, &q, schemas.of(kind))
                })
                .await?
        }
    };
    let base = super::base_url(req);
    let schema = state.schemas.of(kind);
    // Resources written straight from stored text where possible (see `render`), the rest
    // assembled and projected; spliced into the ListResponse's `Resources` array.
    let mut resources = Vec::with_capacity(
        page.resources
            .iter()
            .map(|r| super::render::size_hint(r, &base) + 1)
            .sum(),
    );
    let fast = default_projection(&params.projection, state);
    let n = page.resources.len();
    for (i, r) in page.resources.into_iter().enumerate() {
        if i > 0 {
            resources.push(b',');
        }
        if fast && super::render::write_default(&mut resources, &r, schema, &base) {
            continue;
        }
        let doc = render(
            state.store.assemble_loaded(r),
            &params.projection,
            &state.schemas,
            &base,
        );
        if let Err(e) = serde_json::to_writer(&mut resources, &doc) {
            return Err(ApiError::internal(format!(
                "response not serialisable: {e}"
            )));
        }
    }
    let envelope: ListResponse<Value> = match params.cursor {
        Some(_) => ListResponse::cursored(
            Vec::new(),
            page.total_results,
            page.next_cursor,
            page.previous_cursor,
        ),
        None => ListResponse::indexed(Vec::new(), page.total_results, page.start_index),
    };
    let envelope = ListResponse {
        items_per_page: Some(n as u64),
        ..envelope
    };
    let body = splice_resources(&envelope, &resources)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, super::error::SCIM_JSON))
        .body(body))
}

/// The ListResponse `envelope` (with no resources) serialised with `resources` (the JSON texts
/// of the items, comma-separated) inside its `Resources` array. `Resources` is the last member
/// ListResponse serialises, and is always written.
fn splice_resources(envelope: &ListResponse<Value>, resources: &[u8]) -> ApiResult<Vec<u8>> {
    let mut body = serde_json::to_vec(envelope)
        .map_err(|e| ApiError::internal(format!("response not serialisable: {e}")))?;
    const TAIL: &[u8] = b"\"Resources\":[]}";
    if !body.ends_with(TAIL) {
        return Err(ApiError::internal(
            "ListResponse does not end with Resources",
        ));
    }
    body.truncate(body.len() - 2);
    body.reserve(resources.len() + 2);
    body.extend_from_slice(resources);
    body.extend_from_slice(b"]}");
    Ok(body)
}

/// How deep a sorted `POST /.search` across types pages: the merge reads `startIndex + count - 1`
/// resources of each type (without members) to cut its page, so that sum is bounded, like
/// Elasticsearch's `max_result_window`. Deeper pages: one type at a time
/// (`/Users/.search`, `/Groups/.search`), where sorting and paging run in SQL, or cursors.
pub const MAX_MERGE_WINDOW: u64 = 10_000;

/// `POST /.search` (RFC 7644 §3.4.3) over Users and Groups. Without `sortBy` the result is the
/// Users followed by the Groups, and a page is cut from that concatenation with two queries
/// (each asking only for its part of the page). With `sortBy` both types are fetched up to the
/// end of the page (at most [`MAX_MERGE_WINDOW`], without members) and merged by the sort key;
/// the page's members are read for the page alone. Cursor paging is per resource type only.
async fn search_both(
    state: &AppState,
    req: &HttpRequest,
    params: ListParams,
) -> ApiResult<HttpResponse> {
    if params.cursor.is_some() {
        return Err(scim_schema::Error::InvalidValue(
            "Cursor paging is supported per resource type (/Users/.search, /Groups/.search), not across types.".into(),
        )
        .into());
    }
    let max = state.config.max_results as u64;
    let size = params.page_size(max);
    let offset = params.start_index.max(1) - 1;
    let kinds = [ResourceKind::User, ResourceKind::Group];
    let syntax = state.request_dialect(req).filter_syntax();
    let mut queries = Vec::new();
    for kind in kinds {
        queries.push(search_query(&params, kind, state, syntax)?);
    }
    let schemas = state.schemas.clone();
    let sorted = params.sort_by.is_some();
    let window = MAX_MERGE_WINDOW.min(state.config.max_start_index);
    if sorted && offset.saturating_add(size) > window {
        return Err(scim_schema::Error::InvalidValue(format!(
            "A sorted search across resource types pages to result {window} at most \
             (startIndex + count - 1); search /Users/.search or /Groups/.search for deeper pages."
        ))
        .into());
    }
    // Unsorted, both parts bounded: on this worker (see `AppState::read`). A sorted merge reads
    // a window of up to `MAX_MERGE_WINDOW` rows per type, on the blocking pool.
    let bounded = !sorted
        && state.store.reads_in_place()
        && kinds
            .iter()
            .zip(&queries)
            .all(|(k, q)| state.store.search_is_bounded(*k, q, schemas.of(*k)));
    let (total, resources) = state
        .read(bounded, move |s| {
            let [mut uq, mut gq] = [queries[0].clone(), queries[1].clone()];
            let with_members = [uq.with_members, gq.with_members];
            let max_members = gq.max_members;
            // Sorting by `members` or `groups` needs them in the window (bounded all the same).
            let sorts_by_members = uq
                .sort_by
                .as_ref()
                .is_some_and(|p| p.name.eq_str("members") || p.name.eq_str("groups"));
            if sorted {
                // The window (bounded above) without members; the page's are read below.
                for q in [&mut uq, &mut gq] {
                    q.start_index = 1;
                    q.count = offset + size;
                    q.with_members &= sorts_by_members;
                }
            } else {
                uq.start_index = offset + 1;
                uq.count = size;
            }
            let users = s.search(ResourceKind::User, &uq, schemas.of(ResourceKind::User))?;
            let n_users = users.total_results;
            if !sorted {
                gq.start_index = offset.saturating_sub(n_users) + 1;
                gq.count = size - users.resources.len() as u64;
            }
            let groups = s.search(ResourceKind::Group, &gq, schemas.of(ResourceKind::Group))?;
            let total = n_users + groups.total_results;
            if !sorted {
                let mut all = users.resources;
                all.extend(groups.resources);
                return Ok((total, all));
            }
            let path = uq.sort_by.clone();
            let key = |r: &StoredResource| {
                path.as_ref()
                    .and_then(|p| sort_key(&r.doc, p, schemas.of(r.kind)))
            };
            let mut merged: Vec<(Option<SortKey>, StoredResource)> = users
                .resources
                .into_iter()
                .chain(groups.resources)
                .map(|r| (key(&r), r))
                .collect();
            // The order the store returns a sorted page in (RFC 7644 §3.4.2.3: absent last ascending).
            let order = if uq.descending {
                scim_schema::sort::SortOrder::Descending
            } else {
                scim_schema::sort::SortOrder::Ascending
            };
            merged.sort_by(|a, b| compare_keys(a.0.as_ref(), b.0.as_ref(), order));
            let page: Vec<StoredResource> = merged
                .into_iter()
                .skip(offset as usize)
                .take(size as usize)
                .map(|(_, r)| r)
                .collect();
            if with_members == [false, false] {
                return Ok((total, page));
            }
            // Re-read the page's resources with their members, each type in one query, and
            // put them back in the merged order.
            let mut reread: std::collections::HashMap<String, StoredResource> =
                std::collections::HashMap::new();
            for (i, kind) in [ResourceKind::User, ResourceKind::Group]
                .into_iter()
                .enumerate()
            {
                let ids: Vec<String> = page
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| r.id.clone())
                    .collect();
                for r in s.read_many(kind, &ids, with_members[i], max_members)? {
                    reread.insert(r.id.clone(), r);
                }
            }
            let page = page
                .into_iter()
                .filter_map(|r| reread.remove(&r.id))
                .collect();
            Ok((total, page))
        })
        .await?;
    let base = super::base_url(req);
    let items: Vec<Value> = resources
        .into_iter()
        .map(|r| render(r, &params.projection, &state.schemas, &base))
        .collect();
    Ok(list_response(ListResponse::indexed(
        items,
        total,
        offset + 1,
    )))
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let kind = kind(&path, &req)?;
    let params = ListParams::from_query(req.query_string(), state.config.max_results as u64)?;
    run_search(&state, &req, kind, params).await
}

pub async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let kind = kind(&path, &req)?;
    let params = ListParams::from_search_body(
        &body.0,
        state.config.max_results as u64,
        state.request_dialect(&req),
    )?;
    run_search(&state, &req, kind, params).await
}

pub async fn search_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let params = ListParams::from_search_body(
        &body.0,
        state.config.max_results as u64,
        state.request_dialect(&req),
    )?;
    search_both(&state, &req, params).await
}

pub async fn bulk(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ScimJson,
) -> ApiResult<HttpResponse> {
    let request = service::bulk::parse(body.0, state.request_dialect(&req))?;
    let n = request.operations.len();
    let max = state.config.bulk_max_operations;
    if n > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "The bulk request has {n} operations; the maximum is {max}."
        )));
    }
    let caller = state.caller(&req)?;
    let schemas = state.schemas.clone();
    let base = super::base_url(&req);
    let outcomes = state
        .db(move |s| Ok(service::bulk::run(s, &schemas, request, &caller, &base)))
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
        &serde_json::json!({"schemas": [scim_schema::message::BULK_RESPONSE], "Operations": ops}),
    ))
}

fn clone_store_error(e: &crate::error::HubError) -> crate::error::HubError {
    use crate::error::HubError as S;
    match e {
        S::NotFound => S::NotFound,
        S::PreconditionFailed { current_version } => S::PreconditionFailed {
            current_version: *current_version,
        },
        S::Uniqueness(m) => S::Uniqueness(m.clone()),
        S::UnknownMembers(ids) => S::UnknownMembers(ids.clone()),
        S::Scim(e) => S::Scim(e.clone()),
        S::NotOwner { attribute, owner } => S::NotOwner {
            attribute: attribute.clone(),
            owner: owner.clone(),
        },
        S::NotDeleter { owner } => S::NotDeleter {
            owner: owner.clone(),
        },
        S::BulkCycle { bulk_ids } => S::BulkCycle {
            bulk_ids: bulk_ids.clone(),
        },
        S::Unavailable(m) => S::Unavailable(m.clone()),
        S::TxConflict(m) => S::TxConflict(m.clone()),
        S::StatementTimeout(m) => S::StatementTimeout(m.clone()),
        S::OutcomeUnknown(m) => S::OutcomeUnknown(m.clone()),
        S::Config(m) => S::Config(m.clone()),
        S::Backend(m) => S::Backend(m.clone()),
        S::NotHere => S::NotHere,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_members_are_listed_in_bounded_header_safe_form() {
        let ids: Vec<String> = (0..4000)
            .map(|i| format!("{}{i}", "x".repeat(200)))
            .collect();
        // None is short enough to list, all are counted.
        assert_eq!(unknown_members_headers(&ids), (String::new(), 4000));
        let mut ids: Vec<String> = (0..30).map(|i| format!("id-{i}")).collect();
        ids.insert(0, "bad\r\nid".into());
        ids.insert(1, "a,b".into());
        let (listed, count) = unknown_members_headers(&ids);
        assert_eq!(count, 32);
        let listed: Vec<&str> = listed.split(',').collect();
        assert_eq!(listed.len(), UNKNOWN_MEMBERS_LISTED);
        assert_eq!(listed[0], "id-0");
        assert!(header::HeaderValue::from_str(&listed.join(",")).is_ok());
    }
}
