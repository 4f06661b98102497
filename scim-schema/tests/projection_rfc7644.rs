//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) and the `returned`
//! characteristic (RFC 7643 §7).
#![allow(clippy::unwrap_used)]

use scim_schema::filter::AttrPath;
use scim_schema::projection::{parse_attribute_list, project};
use scim_schema::schema::{ResourceSchema, SchemaRegistry};
use scim_schema::Error;
use serde_json::{json, Map, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn fixture(name: &str) -> Map<String, Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() {
        Value::Object(m) => m,
        _ => panic!("object"),
    }
}

fn user() -> ResourceSchema {
    SchemaRegistry::core().resource_schema("User").unwrap()
}

fn group() -> ResourceSchema {
    SchemaRegistry::core().resource_schema("Group").unwrap()
}

fn paths(s: &str) -> Vec<AttrPath> {
    parse_attribute_list(s).unwrap()
}

fn keys(m: &Map<String, Value>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn rfc7644_3_9_attributes_user_name() {
    let out = project(
        fixture("rfc7643-8.2-full-user.json"),
        &user(),
        &paths("userName"),
        &[],
    );
    assert_eq!(
        out,
        fixture("rfc7644-3.9-attributes-userName-response.json")
    );
}

#[test]
fn rfc7644_3_4_3_attributes_display_name_and_user_name() {
    // The search request example asks for ["displayName", "userName"].
    let out = project(
        fixture("rfc7643-8.2-full-user.json"),
        &user(),
        &paths("displayName,userName"),
        &[],
    );
    assert_eq!(keys(&out), ["schemas", "id", "userName", "displayName"]);
}

#[test]
fn default_projection_drops_never_and_keeps_default() {
    let input = fixture("rfc7643-8.2-full-user.json");
    let n = input.len();
    let out = project(input, &user(), &[], &[]);
    assert!(!out.contains_key("password"), "returned: never");
    assert_eq!(out.len(), n - 1);
}

#[test]
fn never_is_not_returned_even_when_requested() {
    let out = project(
        fixture("rfc7643-8.2-full-user.json"),
        &user(),
        &paths("password,userName"),
        &[],
    );
    assert_eq!(keys(&out), ["schemas", "id", "userName"]);
}

#[test]
fn always_is_returned_even_when_excluded() {
    let out = project(
        fixture("rfc7643-8.1-minimal-user.json"),
        &user(),
        &[],
        &paths("id,schemas,userName"),
    );
    assert_eq!(keys(&out), ["schemas", "id", "meta"]);
}

#[test]
fn rfc7644_3_4_2_5_excluded_members_of_a_group() {
    let out = project(
        fixture("rfc7643-8.4-group.json"),
        &group(),
        &[],
        &paths("members"),
    );
    assert_eq!(keys(&out), ["schemas", "id", "displayName", "meta"]);
}

#[test]
fn sub_attribute_selection() {
    let out = project(
        fixture("rfc7643-8.2-full-user.json"),
        &user(),
        &paths("name.givenName,emails.value"),
        &[],
    );
    assert_eq!(
        Value::Object(out),
        json!({
            "schemas": [USER],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "name": {"givenName": "Barbara"},
            "emails": [{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}]
        })
    );
}

#[test]
fn naming_a_complex_attribute_and_one_of_its_sub_attributes_keeps_it_whole() {
    let out = project(
        fixture("rfc7643-8.2-full-user.json"),
        &user(),
        &paths("name,name.givenName"),
        &[],
    );
    assert_eq!(out["name"].as_object().unwrap().len(), 6);
}

#[test]
fn excluded_sub_attributes() {
    let out = project(
        fixture("rfc7643-8.2-full-user.json"),
        &user(),
        &[],
        &paths("name.middleName,emails.type,meta.version"),
    );
    let name = out["name"].as_object().unwrap();
    assert!(!name.contains_key("middleName") && name.contains_key("givenName"));
    assert_eq!(
        out["emails"][0],
        json!({"value": "bjensen@example.com", "primary": true})
    );
    assert_eq!(out["emails"][1], json!({"value": "babs@jensen.org"}));
    assert!(out["meta"].get("version").is_none() && out["meta"].get("created").is_some());
}

#[test]
fn meta_sub_attributes() {
    let out = project(
        fixture("rfc7643-8.1-minimal-user.json"),
        &user(),
        &paths("meta.lastModified"),
        &[],
    );
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "id": "2819c223-7f76-453a-919d-413861904646",
               "meta": {"lastModified": "2011-05-13T04:42:34Z"}})
    );
}

#[test]
fn urn_qualified_extension_attributes() {
    let urn_path = format!("{ENTERPRISE}:employeeNumber,{ENTERPRISE}:manager.value,urn:ietf:params:scim:schemas:core:2.0:User:userName");
    let out = project(
        fixture("rfc7643-8.3-enterprise-user.json"),
        &user(),
        &paths(&urn_path),
        &[],
    );
    assert_eq!(
        Value::Object(out),
        json!({
            "schemas": [USER, ENTERPRISE],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "bjensen@example.com",
            ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}}
        })
    );
}

#[test]
fn unqualified_extension_attribute() {
    let out = project(
        fixture("rfc7643-8.3-enterprise-user.json"),
        &user(),
        &paths("costCenter"),
        &[],
    );
    assert_eq!(out[ENTERPRISE], json!({"costCenter": "4130"}));
}

#[test]
fn a_whole_extension_by_urn() {
    let input = fixture("rfc7643-8.3-enterprise-user.json");
    let expected = input[ENTERPRISE].clone();
    let out = project(input.clone(), &user(), &paths(ENTERPRISE), &[]);
    assert_eq!(keys(&out), ["schemas", "id", ENTERPRISE]);
    assert_eq!(out[ENTERPRISE], expected);
    let out = project(input, &user(), &[], &paths(&ENTERPRISE.to_lowercase()));
    assert!(!out.contains_key(ENTERPRISE));
    assert!(out.contains_key("userName"));
}

#[test]
fn a_large_group_is_projected_without_trouble() {
    let members: Vec<Value> = (0..20_000)
        .map(|i| json!({"value": format!("m{i}"), "display": format!("Member {i}")}))
        .collect();
    let mut g = fixture("rfc7643-8.4-group.json");
    g.insert("members".into(), Value::Array(members));
    let out = project(g, &group(), &paths("members.value"), &[]);
    let members = out["members"].as_array().unwrap();
    assert_eq!(members.len(), 20_000);
    assert_eq!(members[19_999], json!({"value": "m19999"}));
}

#[test]
fn bad_attribute_lists_are_invalid_path() {
    for bad in [
        "name..givenName",
        "userName,",
        "emails[type eq \"work\"]",
        "1abc",
    ] {
        assert!(
            matches!(parse_attribute_list(bad), Err(Error::InvalidPath(_))),
            "{bad}"
        );
    }
}
