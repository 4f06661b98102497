//! Serde round trips of the protocol messages, and bulkId resolution/ordering with the
//! RFC 7644 §3.7 examples.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use scim_schema::message::bulk::bulk_id_references;
use scim_schema::message::*;
use scim_schema::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, v, "serialised form differs");
    let again: T = serde_json::from_value(back).unwrap();
    assert_eq!(again, typed);
    typed
}

#[test]
fn list_response_rfc7644_3_4_2() {
    let v = json!({"schemas": [LIST_RESPONSE], "totalResults": 2, "itemsPerPage": 2, "startIndex": 1,
        "Resources": [{"id": "2819c223", "userName": "bjensen"}, {"id": "c75ad752", "userName": "jsmith"}]});
    let l: ListResponse<Value> = round_trip(v);
    assert_eq!(l.resources.len(), 2);
    let cursor = json!({"schemas": [LIST_RESPONSE], "totalResults": 100, "itemsPerPage": 1,
        "nextCursor": "VZUTiyhEQJ94IR", "previousCursor": "ze7L30kMiiLX6x", "Resources": [{"id": "x"}]});
    let l: ListResponse<Value> = round_trip(cursor);
    assert_eq!(l.next_cursor.as_deref(), Some("VZUTiyhEQJ94IR"));
    let empty = serde_json::to_value(ListResponse::<Value>::indexed(vec![], 0, 1)).unwrap();
    assert_eq!(empty["Resources"], json!([]));
}

#[test]
fn error_rfc7644_3_12_status_is_a_string() {
    let v = json!({"schemas": [ERROR], "scimType": "mutability", "detail": "Attribute 'id' is readOnly", "status": "400"});
    let e: ErrorResponse = round_trip(v);
    assert_eq!(e.status_code(), Some(400));
    let v = serde_json::to_value(ErrorResponse::from(Error::Uniqueness("taken".into()))).unwrap();
    assert_eq!(
        v,
        json!({"schemas": [ERROR], "status": "409", "scimType": "uniqueness", "detail": "taken"})
    );
    let lenient: ErrorResponse =
        serde_json::from_value(json!({"status": 404, "detail": "x"})).unwrap();
    assert_eq!(lenient.status, "404");
}

#[test]
fn patch_op_keeps_raw_op_and_null_values() {
    let v = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "Replace", "path": "active", "value": false},
        {"op": "replace", "path": "nickName", "value": null},
        {"op": "remove", "path": "members[value eq \"2819c223\"]"}]});
    let p: PatchOpRequest = round_trip(v);
    assert_eq!(p.operations[0].op, "Replace");
    assert_eq!(p.operations[1].value, Some(Value::Null));
    assert_eq!(p.operations[2].value, None);
}

#[test]
fn search_request_rfc7644_3_4_3() {
    let v = json!({"schemas": [SEARCH_REQUEST], "attributes": ["displayName", "userName"],
        "filter": "displayName sw \"smith\"", "startIndex": 1, "count": 10});
    let s: SearchRequest = round_trip(v);
    assert_eq!((s.start_index(), s.count()), (1, Some(10)));
    let s: SearchRequest = round_trip(
        json!({"schemas": [SEARCH_REQUEST], "sortBy": "userName", "sortOrder": "descending", "startIndex": -3, "count": -1, "cursor": ""}),
    );
    assert_eq!(
        (s.start_index(), s.count(), s.sort_order),
        (1, Some(0), Some(SortOrder::Descending))
    );
}

/// RFC 7644 §3.7.2: a User created with bulkId "qwerty", then a Group whose member refers to it.
fn rfc_3_7_2_request() -> Value {
    json!({"schemas": [BULK_REQUEST], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "qwerty", "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "Alice"}},
        {"method": "POST", "path": "/Groups", "bulkId": "ytrewq", "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Tour Guides",
            "members": [{"type": "User", "value": "bulkId:qwerty"}]}}]})
}

#[test]
fn bulk_request_and_response_rfc7644_3_7() {
    let r: BulkRequest = round_trip(rfc_3_7_2_request());
    assert_eq!(r.operations[1].method, BulkMethod::Post);
    let with_fail = json!({"schemas": [BULK_REQUEST], "failOnErrors": 1, "Operations": [
        {"method": "DELETE", "path": "/Users/b7c14771-226c-4d05-8860-134711653041", "version": "W/\"0ee8add0a938e1a\""}]});
    let _: BulkRequest = round_trip(with_fail);
    let resp = json!({"schemas": [BULK_RESPONSE], "Operations": [
        {"location": "https://example.com/v2/Users/92b725cd-9465-4e7d-8c16-01f8e146b87a", "method": "POST", "bulkId": "qwerty",
         "version": "W/\"oY4m4wn58tkVjJxK\"", "status": "201"},
        {"method": "POST", "bulkId": "ytrewq", "status": "400",
         "response": {"schemas": [ERROR], "scimType": "invalidSyntax", "detail": "Request is unparsable", "status": "400"}}]});
    let b: BulkResponse = round_trip(resp);
    assert_eq!(b.operations[0].status, "201");
}

#[test]
fn bulk_ids_resolve_everywhere_and_report_unknowns() {
    let mut v = json!({"members": [{"value": "bulkId:qwerty"}, {"value": "bulkId:nope"}], "x": ["bulkId:qwerty"], "manager": {"value": "bulkId:qwerty"}});
    let ids = HashMap::from([("qwerty".to_owned(), "92b725cd".to_owned())]);
    let e = resolve_bulk_ids(&mut v, &ids).unwrap_err();
    assert_eq!(e.bulk_ids, vec!["nope".to_owned()]);
    assert_eq!(v["members"][0]["value"], "92b725cd");
    assert_eq!(v["x"][0], "92b725cd");
    assert_eq!(v["manager"]["value"], "92b725cd");
    let mut ok = json!({"members": [{"value": "bulkId:qwerty"}]});
    assert!(resolve_bulk_ids(&mut ok, &ids).is_ok());
}

#[test]
fn bulk_order_follows_references() {
    // The §3.7.2 example, with the Group listed first: the User must run first.
    let mut r: BulkRequest = serde_json::from_value(rfc_3_7_2_request()).unwrap();
    r.operations.reverse();
    assert_eq!(
        order_bulk_operations(&r.operations).unwrap().order,
        vec![1, 0]
    );
    assert_eq!(
        bulk_id_references(&r.operations[0]),
        vec!["qwerty".to_owned()]
    );
}

#[test]
fn bulk_cycle_rfc7644_3_7_1() {
    // §3.7.1: Group A contains Group B and Group B contains Group A.
    let r: BulkRequest = serde_json::from_value(json!({"schemas": [BULK_REQUEST], "Operations": [
        {"method": "POST", "path": "/Groups", "bulkId": "qwerty", "data": {"displayName": "Group A",
            "members": [{"type": "Group", "value": "bulkId:ytrewq"}]}},
        {"method": "POST", "path": "/Groups", "bulkId": "ytrewq", "data": {"displayName": "Group B",
            "members": [{"type": "Group", "value": "bulkId:qwerty"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "free", "data": {"userName": "x"}}]}))
    .unwrap();
    // The cycle is reported and ordered after the free operation; nothing fails the ordering.
    let order = order_bulk_operations(&r.operations).unwrap();
    assert_eq!(order.order, vec![2, 0, 1]);
    let cycle = ["qwerty".to_owned(), "ytrewq".to_owned()];
    assert_eq!(order.cycle(0), Some(&cycle[..]));
    assert_eq!(order.cycle(1), Some(&cycle[..]));
    assert_eq!(order.cycle(2), None);
    // A dangling reference is no dependency: the operation is orderable, and fails when run.
    let mut dangling = r.operations.clone();
    dangling.truncate(1);
    assert_eq!(order_bulk_operations(&dangling).unwrap().order, vec![0]);
}

/// Typed operations serialise to the RFC 7644 §3.5.2 wire form, the path printed by the filter
/// printer, so connectors can send what they built; normalising the result gives them back.
#[test]
fn patch_operation_serialises_to_the_wire_form() {
    use scim_schema::dialect::{normalize_patch, Dialect};
    use scim_schema::filter::parse_patch_path;
    use scim_schema::patch::{PatchOpKind, PatchOperation};
    use scim_schema::schema::SchemaRegistry;

    let ops = vec![
        PatchOperation::new(
            PatchOpKind::Replace,
            Some(parse_patch_path(r#"emails[type eq "work" and value co "\"q\""].value"#).unwrap()),
            Some(json!("b@example.com")),
        ),
        PatchOperation::new(PatchOpKind::Add, None, Some(json!({"nickName": "Babs"}))),
        PatchOperation::new(
            PatchOpKind::Remove,
            Some(parse_patch_path(r#"members[value eq "2819c223"]"#).unwrap()),
            None,
        ),
        PatchOperation::new(
            PatchOpKind::Replace,
            Some(parse_patch_path("title").unwrap()),
            Some(Value::Null),
        ),
    ];
    let wire = serde_json::to_value(&ops).unwrap();
    assert_eq!(
        wire,
        json!([
            {"op": "replace", "path": "emails[type eq \"work\" and value co \"\\\"q\\\"\"].value", "value": "b@example.com"},
            {"op": "add", "value": {"nickName": "Babs"}},
            {"op": "remove", "path": "members[value eq \"2819c223\"]"},
            {"op": "replace", "path": "title", "value": null}
        ])
    );
    let body = serde_json::to_value(PatchOpRequest::from_operations(&ops)).unwrap();
    assert_eq!(body["schemas"], json!([PATCH_OP]));
    let req: PatchOpRequest = serde_json::from_value(body).unwrap();
    let rs = SchemaRegistry::core().resource_schema("User").unwrap();
    assert_eq!(normalize_patch(req, Dialect::Strict, &rs).unwrap(), ops);
}
