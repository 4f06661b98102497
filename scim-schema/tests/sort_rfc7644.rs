//! `sortBy` / `sortOrder` (RFC 7644 §3.4.2.3).
#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;

use scim_schema::schema::{ResourceSchema, SchemaRegistry};
use scim_schema::sort::{
    compare_resources, sort_key, sort_resources, SortKey, SortOrder, SortSpec,
};
use serde_json::{json, Map, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user() -> ResourceSchema {
    SchemaRegistry::core().resource_schema("User").unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("object"),
    }
}

fn ids(resources: &[Map<String, Value>]) -> Vec<&str> {
    resources
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

fn sorted(resources: Vec<Value>, sort_by: &str, order: Option<&str>) -> Vec<String> {
    sorted_with(resources, sort_by, order, &user())
}

fn sorted_with(
    resources: Vec<Value>,
    sort_by: &str,
    order: Option<&str>,
    schema: &ResourceSchema,
) -> Vec<String> {
    let mut rs: Vec<Map<String, Value>> = resources.into_iter().map(obj).collect();
    let spec = SortSpec::parse(sort_by, order).unwrap();
    sort_resources(&mut rs, &spec, schema);
    ids(&rs).into_iter().map(str::to_owned).collect()
}

#[test]
fn strings_case_insensitive_unless_case_exact() {
    let rs = vec![
        json!({"id": "b", "userName": "bob", "externalId": "bob"}),
        json!({"id": "A", "userName": "Alice", "externalId": "Alice"}),
        json!({"id": "c", "userName": "carol", "externalId": "carol"}),
    ];
    // userName is not caseExact: Alice < bob < carol.
    assert_eq!(sorted(rs.clone(), "userName", None), ["A", "b", "c"]);
    // externalId is caseExact: "Alice" < "bob" < "carol" too, so use ids for case-exact ordering.
    let rs2 = vec![
        json!({"id": "b", "externalId": "b"}),
        json!({"id": "Z", "externalId": "Z"}),
    ];
    assert_eq!(
        sorted(rs2.clone(), "externalId", None),
        ["Z", "b"],
        "caseExact: 'Z' < 'b'"
    );
    let rs3 = vec![
        json!({"id": "b", "userName": "b"}),
        json!({"id": "Z", "userName": "Z"}),
    ];
    assert_eq!(
        sorted(rs3, "userName", None),
        ["b", "Z"],
        "not caseExact: 'b' < 'z'"
    );
    assert_eq!(sorted(rs, "USERNAME", Some("Descending")), ["c", "b", "A"]);
}

#[test]
fn date_times_chronologically() {
    let rs = vec![
        json!({"id": "late", "meta": {"lastModified": "2011-05-13T04:42:34Z"}}),
        // Earlier instant, lexically larger string.
        json!({"id": "early", "meta": {"lastModified": "2011-05-13T05:00:00+02:00"}}),
        json!({"id": "mid", "meta": {"lastModified": "2011-05-13T04:00:00.5Z"}}),
    ];
    assert_eq!(
        sorted(rs.clone(), "meta.lastModified", None),
        ["early", "mid", "late"]
    );
    assert_eq!(
        sorted(rs, "meta.lastModified", Some("descending")),
        ["late", "mid", "early"]
    );
}

fn typed_schema() -> ResourceSchema {
    let mut reg = SchemaRegistry::core();
    reg.load_schema_json(r#"{"id": "urn:example:n", "attributes": [{"name": "n", "type": "decimal"}, {"name": "i", "type": "integer"}]}"#)
        .unwrap();
    reg.add_extension("User", "urn:example:n", false).unwrap();
    reg.resource_schema("User").unwrap()
}

#[test]
fn numbers_numerically() {
    let rs = vec![
        json!({"id": "ten", "urn:example:n": {"n": 10}}),
        json!({"id": "two", "urn:example:n": {"n": 2.5}}),
        json!({"id": "minus", "urn:example:n": {"n": -1}}),
    ];
    let schema = typed_schema();
    assert_eq!(
        sorted_with(rs.clone(), "n", None, &schema),
        ["minus", "two", "ten"]
    );
    assert_eq!(
        sorted_with(rs, "urn:example:n:n", Some("descending"), &schema),
        ["ten", "two", "minus"]
    );
}

#[test]
fn booleans_false_before_true() {
    let rs = vec![
        json!({"id": "on", "active": true}),
        json!({"id": "off", "active": false}),
    ];
    assert_eq!(sorted(rs.clone(), "active", None), ["off", "on"]);
    assert_eq!(sorted(rs, "active", Some("descending")), ["on", "off"]);
}

#[test]
fn multi_valued_sorts_by_primary_else_first() {
    let rs = vec![
        // Primary is the second value.
        json!({"id": "p", "emails": [{"value": "zed@example.com"}, {"value": "amy@example.com", "primary": true}]}),
        // No primary: first value.
        json!({"id": "f", "emails": [{"value": "bob@example.com"}, {"value": "aaa@example.com"}]}),
        json!({"id": "c", "emails": [{"value": "carl@example.com", "primary": true}]}),
    ];
    assert_eq!(sorted(rs.clone(), "emails", None), ["p", "f", "c"]);
    assert_eq!(sorted(rs.clone(), "emails.value", None), ["p", "f", "c"]);
    assert_eq!(
        sorted(rs, "emails.value", Some("descending")),
        ["c", "f", "p"]
    );
}

#[test]
fn rfc7644_3_4_2_3_absent_sorts_last_ascending_first_descending_and_the_sort_is_stable() {
    let rs = vec![
        json!({"id": "none1"}),
        json!({"id": "b", "name": {"familyName": "Baker"}}),
        json!({"id": "null", "name": {"familyName": null}}),
        json!({"id": "a", "name": {"familyName": "adams"}}),
        json!({"id": "none2", "name": {"givenName": "X"}}),
        json!({"id": "b2", "name": {"familyName": "BAKER"}}),
    ];
    assert_eq!(
        sorted(rs.clone(), "name.familyName", None),
        ["a", "b", "b2", "none1", "null", "none2"]
    );
    assert_eq!(
        sorted(rs, "name.familyName", Some("descending")),
        ["none1", "null", "none2", "b", "b2", "a"]
    );
}

#[test]
fn extension_attributes_qualified_or_not() {
    let rs = vec![
        json!({"id": "2", ENTERPRISE: {"employeeNumber": "2", "manager": {"value": "m2"}}}),
        json!({"id": "1", ENTERPRISE: {"employeeNumber": "1", "manager": {"value": "m1"}}}),
        json!({"id": "x"}),
    ];
    assert_eq!(
        sorted(rs.clone(), &format!("{ENTERPRISE}:employeeNumber"), None),
        ["1", "2", "x"]
    );
    assert_eq!(
        sorted(rs.clone(), "employeeNumber", Some("descending")),
        ["x", "2", "1"]
    );
    assert_eq!(
        sorted(rs, &format!("{ENTERPRISE}:manager"), None),
        ["1", "2", "x"]
    );
}

#[test]
fn compare_and_sort_key_for_the_server() {
    let schema = user();
    let a =
        obj(json!({"id": "a", "userName": "ALICE", "meta": {"created": "2010-01-23T04:56:22Z"}}));
    let b = obj(json!({"id": "b", "userName": "bob"}));
    let spec = SortSpec::parse("userName", None).unwrap();
    assert_eq!(compare_resources(&a, &b, &spec, &schema), Ordering::Less);
    let spec = SortSpec {
        order: SortOrder::Descending,
        ..spec
    };
    assert_eq!(compare_resources(&a, &b, &spec, &schema), Ordering::Greater);
    assert_eq!(
        sort_key(&a, &spec.path, &schema),
        Some(SortKey::String("alice".into()))
    );
    let created = SortSpec::parse("meta.created", None).unwrap();
    assert!(matches!(
        sort_key(&a, &created.path, &schema),
        Some(SortKey::DateTime(_))
    ));
    assert_eq!(sort_key(&b, &created.path, &schema), None);
    // Absent first in descending order.
    assert_eq!(
        compare_resources(
            &b,
            &a,
            &SortSpec {
                order: SortOrder::Descending,
                ..created
            },
            &schema
        ),
        Ordering::Less
    );
}
