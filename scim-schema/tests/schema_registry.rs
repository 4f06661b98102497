//! The core schemas as `/Schemas` serves them, and custom extensions loaded from JSON
//! (RFC 7643 §3.3, §7, §8.7).
#![allow(clippy::unwrap_used)]

use scim_schema::schema::{validate, AttrType, SchemaRegistry, ValidationContext};
use serde_json::{json, Value};

const CONTRACTOR: &str = "urn:example:params:scim:schemas:extension:contractor:2.0:User";

fn read(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn rfc7643_8_7_core_schemas_snapshot() {
    let reg = SchemaRegistry::core();
    let schemas: Vec<_> = reg.schemas().collect();
    insta::assert_json_snapshot!("core_schemas", schemas);
}

#[test]
fn rfc7643_8_6_core_resource_types_snapshot() {
    let reg = SchemaRegistry::core();
    insta::assert_json_snapshot!("core_resource_types", reg.resource_types());
}

#[test]
fn schemas_round_trip_through_their_json_representation() {
    let reg = SchemaRegistry::core();
    for schema in reg.schemas() {
        let json = serde_json::to_string(schema).unwrap();
        let mut other = SchemaRegistry::empty();
        // The §8.7.2 Schema schema nests complex attributes, which custom schemas may not.
        if schema
            .id
            .eq_str("urn:ietf:params:scim:schemas:core:2.0:Schema")
        {
            assert!(other.load_schema_json(&json).is_err());
            continue;
        }
        other.load_schema_json(&json).unwrap();
        assert_eq!(other.schema(schema.id.as_str()), Some(schema));
    }
}

#[test]
fn rfc7643_3_3_contractor_extension_loaded_without_code() {
    let mut reg = SchemaRegistry::core();
    reg.load_schema_json(&read("rfc7643-3.3-contractor-extension-schema.json"))
        .unwrap();
    reg.add_extension("User", CONTRACTOR, false).unwrap();
    assert!(
        reg.schemas().any(|s| s.id.eq_str(CONTRACTOR)),
        "listed by /Schemas"
    );
    let rt = reg
        .resource_types()
        .iter()
        .find(|r| r.id == "User")
        .unwrap();
    assert_eq!(rt.schema_extensions.len(), 2);

    let user = reg.resource_schema("User").unwrap();
    let end = user
        .top_level(Some(CONTRACTOR), "contractEndDate")
        .unwrap()
        .1;
    assert_eq!(end.attr_type, AttrType::DateTime);

    let input =
        match serde_json::from_str::<Value>(&read("rfc7643-3.3-contractor-user.json")).unwrap() {
            Value::Object(m) => m,
            _ => panic!("object"),
        };
    let out = validate(&input, &user, ValidationContext::Create, Default::default()).unwrap();
    assert_eq!(
        out[CONTRACTOR],
        json!({"contractEndDate": "2026-06-30T00:00:00Z", "sponsor": {"value": "2819c223-7f76-453a-919d-413861904646"}})
    );
    // A bad date in the extension is caught by the same validator.
    let mut bad = input.clone();
    bad[CONTRACTOR]["contractEndDate"] = json!("next June");
    let err = validate(&bad, &user, ValidationContext::Create, Default::default()).unwrap_err();
    assert!(err.to_string().contains("contractEndDate"), "{err}");
}

/// RFC 7643 §4.2 prose makes Group `displayName` REQUIRED while the §8.7.1 JSON says false; the
/// core registry follows the prose (see `schema::core`).
#[test]
fn rfc7643_4_2_group_display_name_is_required() {
    let rs = SchemaRegistry::core().resource_schema("Group").unwrap();
    assert!(rs.main_attribute("displayName").unwrap().required);
}
