//! The evaluator against the real RFC 7643 User schema (`SchemaRegistry::core()`): common
//! attributes, caseExact from §8.7.1 and the enterprise extension.
#![allow(clippy::unwrap_used)]

use scim_schema::filter::{matches, parse_filter};
use scim_schema::schema::SchemaRegistry;
use serde_json::{json, Map, Value};

fn user() -> Map<String, Value> {
    let Value::Object(m) = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7F76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T06:42:34+02:00"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}}
    }) else {
        panic!("object")
    };
    m
}

fn check(filter: &str) -> bool {
    let rs = SchemaRegistry::core().resource_schema("User").unwrap();
    matches(&parse_filter(filter).unwrap(), &user(), Some(&rs))
}

#[test]
fn rfc7643_common_attributes_and_case_exact() {
    // RFC 7643 §3.1: `id` is caseExact.
    assert!(check(r#"id eq "2819c223-7F76-453a-919d-413861904646""#));
    assert!(!check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
    // userName is not caseExact (§4.1.1).
    assert!(check(r#"userName eq "BJENSEN@EXAMPLE.COM""#));
    // meta.lastModified is a dateTime: compared as an instant.
    assert!(check(r#"meta.lastModified eq "2011-05-13T04:42:34Z""#));
    assert!(!check(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#));
}

#[test]
fn rfc7643_enterprise_extension() {
    assert!(check(r#"employeeNumber eq "701984""#));
    assert!(check(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915""#
    ));
    assert!(check(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work" and primary eq true]"#
    ));
}
