//! Discovery endpoints (RFC 7644 §4): /ServiceProviderConfig, /ResourceTypes, /Schemas.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{base_url, scim_response, AppState};

const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The ServiceProviderConfig document (RFC 7643 §5, RFC 9865 §4 for cursor paging).
pub fn service_provider_config(state: &AppState, base: &str) -> Value {
    let c = &state.config;
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": c.bulk_max_operations, "maxPayloadSize": c.bulk_max_payload_bytes},
        "filter": {"supported": true, "maxResults": c.max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": c.max_results,
            "maxPageSize": c.max_results,
            "cursorTimeout": 3600
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token (an API token issued by `scimhub token issue`, or a JWT from the configured issuer).",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig")
        }
    })
}

fn resource_type_json(rt: &scim_schema::schema::ResourceType, base: &str) -> Value {
    let mut v = serde_json::to_value(rt).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "schemas".into(),
            json!(["urn:ietf:params:scim:schemas:core:2.0:ResourceType"]),
        );
        obj.insert("meta".into(), json!({"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", rt.id)}));
    }
    v
}

fn schema_json(s: &scim_schema::schema::Schema, base: &str) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "schemas".into(),
            json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]),
        );
        obj.insert("meta".into(), json!({"resourceType": "Schema", "location": format!("{base}/Schemas/{}", s.id.as_str())}));
    }
    v
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_URN],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

fn no_filter(req: &HttpRequest) -> ApiResult<()> {
    // RFC 7644 §4: filtering discovery endpoints is not supported.
    let has_filter = serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .unwrap_or_default()
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("filter"));
    if has_filter {
        return Err(ApiError::Forbidden(
            "Filtering is not supported on discovery endpoints (RFC 7644 §4).".into(),
        ));
    }
    Ok(())
}

pub async fn get_service_provider_config(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    Ok(scim_response(
        actix_web::http::StatusCode::OK,
        &service_provider_config(&state, &base_url(&req)),
    ))
}

pub async fn list_resource_types(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    no_filter(&req)?;
    let base = base_url(&req);
    let items = state
        .schemas
        .registry
        .resource_types()
        .iter()
        .map(|rt| resource_type_json(rt, &base))
        .collect();
    Ok(scim_response(actix_web::http::StatusCode::OK, &list(items)))
}

pub async fn get_resource_type(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let base = base_url(&req);
    let name = name.into_inner();
    let rt = state
        .schemas
        .registry
        .resource_types()
        .iter()
        .find(|rt| rt.id.eq_ignore_ascii_case(&name) || rt.name.eq_ignore_ascii_case(&name))
        .ok_or_else(|| ApiError::NotFound(format!("Resource type {name:?} not found.")))?;
    Ok(scim_response(
        actix_web::http::StatusCode::OK,
        &resource_type_json(rt, &base),
    ))
}

pub async fn list_schemas(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    no_filter(&req)?;
    let base = base_url(&req);
    let items = state
        .schemas
        .registry
        .schemas()
        .map(|s| schema_json(s, &base))
        .collect();
    Ok(scim_response(actix_web::http::StatusCode::OK, &list(items)))
}

pub async fn get_schema(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let base = base_url(&req);
    let id = id.into_inner();
    let s = state
        .schemas
        .registry
        .schema(&id)
        .ok_or_else(|| ApiError::NotFound(format!("Schema {id:?} not found.")))?;
    Ok(scim_response(
        actix_web::http::StatusCode::OK,
        &schema_json(s, &base),
    ))
}
