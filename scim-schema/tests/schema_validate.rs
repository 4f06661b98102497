//! Validation in context (RFC 7643 §2, §3, §7; RFC 7644 §3.3, §3.5.1): the RFC examples pass,
//! and every rule has a passing and a failing case.
#![allow(clippy::unwrap_used)]

use scim_schema::schema::{
    validate, ResourceSchema, SchemaRegistry, ValidationContext, ValidationOptions,
};
use scim_schema::Error;
use serde_json::{json, Map, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn fixture(name: &str) -> Map<String, Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    obj(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn user() -> ResourceSchema {
    SchemaRegistry::core().resource_schema("User").unwrap()
}

fn group() -> ResourceSchema {
    SchemaRegistry::core().resource_schema("Group").unwrap()
}

fn create(r: Value) -> Result<Map<String, Value>, Error> {
    validate(
        &obj(r),
        &user(),
        ValidationContext::Create,
        ValidationOptions::default(),
    )
}

fn create_with(r: Value, opts: ValidationOptions) -> Result<Map<String, Value>, Error> {
    validate(&obj(r), &user(), ValidationContext::Create, opts)
}

fn invalid_value(r: Result<Map<String, Value>, Error>) -> String {
    match r {
        Err(Error::InvalidValue(m)) => m,
        other => panic!("expected invalidValue, got {other:?}"),
    }
}

// ---- RFC 7643 §8 examples -----------------------------------------------------------------

#[test]
fn rfc7643_8_1_minimal_user_validates_on_create() {
    let out = validate(
        &fixture("rfc7643-8.1-minimal-user.json"),
        &user(),
        ValidationContext::Create,
        Default::default(),
    )
    .unwrap();
    // id and meta are readOnly: ignored on input.
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "userName": "bjensen@example.com"})
    );
}

#[test]
fn rfc7643_8_2_full_user_validates_on_create() {
    let input = fixture("rfc7643-8.2-full-user.json");
    let out = validate(
        &input,
        &user(),
        ValidationContext::Create,
        Default::default(),
    )
    .unwrap();
    for dropped in ["id", "meta", "groups"] {
        assert!(
            !out.contains_key(dropped),
            "{dropped} is readOnly and must be dropped"
        );
    }
    assert_eq!(
        out["password"],
        json!("t1meMa$heen"),
        "writeOnly is kept on input"
    );
    assert_eq!(out["emails"], input["emails"]);
    assert_eq!(out["addresses"], input["addresses"]);
    assert_eq!(out["x509Certificates"], input["x509Certificates"]);
}

#[test]
fn rfc7643_8_3_enterprise_user_validates_on_create() {
    let out = validate(
        &fixture("rfc7643-8.3-enterprise-user.json"),
        &user(),
        ValidationContext::Create,
        Default::default(),
    )
    .unwrap();
    assert_eq!(out["schemas"], json!([USER, ENTERPRISE]));
    // manager.displayName is readOnly.
    assert_eq!(
        out[ENTERPRISE]["manager"],
        json!({"value": "26118915-6090-4610-87e4-49d8ca9f808d", "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d"})
    );
    assert_eq!(out[ENTERPRISE]["employeeNumber"], json!("701984"));
}

#[test]
fn rfc7643_8_4_group_validates_on_create() {
    let input = fixture("rfc7643-8.4-group.json");
    let out = validate(
        &input,
        &group(),
        ValidationContext::Create,
        Default::default(),
    )
    .unwrap();
    assert_eq!(out["schemas"], json!([GROUP]));
    assert_eq!(out["members"], input["members"]);
    assert!(!out.contains_key("id"));
}

#[test]
fn rfc7643_8_examples_validate_as_responses() {
    for (name, schema) in [
        ("rfc7643-8.1-minimal-user.json", user()),
        ("rfc7643-8.2-full-user.json", user()),
        ("rfc7643-8.3-enterprise-user.json", user()),
        ("rfc7643-8.4-group.json", group()),
    ] {
        let input = fixture(name);
        let out = validate(
            &input,
            &schema,
            ValidationContext::Response,
            Default::default(),
        )
        .unwrap();
        assert_eq!(out["id"], input["id"], "{name}");
        assert_eq!(out["meta"], input["meta"], "{name}");
        assert!(
            !out.contains_key("password"),
            "{name}: writeOnly never returned"
        );
    }
}

// ---- normalisation ---------------------------------------------------------------------------

#[test]
fn attribute_names_are_rewritten_to_the_schema_spelling() {
    let out = create(json!({
        "SCHEMAS": [USER.to_uppercase(), ENTERPRISE.to_lowercase()],
        "USERNAME": "bjensen",
        "Name": {"GIVENNAME": "Barbara"},
        "emails": [{"VALUE": "b@example.com", "Primary": true}],
        (ENTERPRISE.to_lowercase()): {"EMPLOYEENUMBER": "1"}
    }))
    .unwrap();
    assert_eq!(
        Value::Object(out),
        json!({
            "schemas": [USER, ENTERPRISE],
            "userName": "bjensen",
            "name": {"givenName": "Barbara"},
            "emails": [{"value": "b@example.com", "primary": true}],
            ENTERPRISE: {"employeeNumber": "1"}
        })
    );
}

#[test]
fn null_and_empty_values_are_unassigned() {
    let out = create(json!({
        "schemas": [USER], "userName": "u", "displayName": null, "emails": [], "name": {"givenName": null}
    }))
    .unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "userName": "u"})
    );
}

#[test]
fn the_same_attribute_twice_in_different_case_is_rejected() {
    let r = create(json!({"schemas": [USER], "userName": "a", "USERNAME": "b"}));
    assert!(matches!(r, Err(Error::InvalidSyntax(_))), "{r:?}");
}

/// Small objects are checked pairwise and large ones through a set: both find a repeat in
/// another case, at the top and inside a complex value, and name it by its path.
#[test]
fn repeats_in_another_case_are_found_in_small_and_large_objects() {
    let r = create(json!({"schemas": [USER], "userName": "a",
        "name": {"givenName": "b", "GIVENNAME": "c"}}));
    let Err(Error::InvalidSyntax(m)) = r else {
        panic!("{r:?}")
    };
    assert!(m.contains("name.GIVENNAME"), "{m}");
    let mut big = obj(json!({"schemas": [USER], "userName": "a"}));
    for i in 0..40 {
        big.insert(format!("k{i}"), Value::Bool(true));
    }
    big.insert("USERNAME".into(), json!("b"));
    let r = validate(
        &big,
        &user(),
        ValidationContext::Create,
        ValidationOptions::lenient(),
    );
    let Err(Error::InvalidSyntax(m)) = r else {
        panic!("{r:?}")
    };
    assert!(m.contains("'USERNAME'"), "{m}");
    // Without a repeat the large object validates.
    big.shift_remove("USERNAME");
    assert!(validate(
        &big,
        &user(),
        ValidationContext::Create,
        ValidationOptions::lenient()
    )
    .is_ok());
}

// ---- readOnly ------------------------------------------------------------------------------

#[test]
fn read_only_input_is_ignored_but_kept_in_responses() {
    let input = json!({"schemas": [USER], "id": "client-chosen", "userName": "u",
        "meta": {"resourceType": "User"}, "groups": [{"value": "g1"}]});
    let out = create(input.clone()).unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "userName": "u"})
    );
    let resp = validate(
        &obj(input),
        &user(),
        ValidationContext::Response,
        Default::default(),
    )
    .unwrap();
    assert_eq!(resp["id"], json!("client-chosen"));
    assert_eq!(resp["groups"], json!([{"value": "g1"}]));
}

// ---- immutable -----------------------------------------------------------------------------

fn immutable_registry() -> ResourceSchema {
    let mut reg = SchemaRegistry::core();
    reg.load_schema_json(
        r#"{"id": "urn:example:params:scim:schemas:extension:badge:2.0:User", "attributes": [
            {"name": "badgeId", "type": "string", "mutability": "immutable"},
            {"name": "card", "type": "complex", "subAttributes": [
                {"name": "serial", "type": "string", "mutability": "immutable", "caseExact": true},
                {"name": "label", "type": "string"}]}]}"#,
    )
    .unwrap();
    reg.add_extension(
        "User",
        "urn:example:params:scim:schemas:extension:badge:2.0:User",
        false,
    )
    .unwrap();
    reg.resource_schema("User").unwrap()
}

const BADGE: &str = "urn:example:params:scim:schemas:extension:badge:2.0:User";

#[test]
fn immutable_may_be_set_on_create_and_when_previously_unset() {
    let schema = immutable_registry();
    let input = obj(json!({"schemas": [USER, BADGE], "userName": "u", BADGE: {"badgeId": "B1"}}));
    assert!(validate(
        &input,
        &schema,
        ValidationContext::Create,
        Default::default()
    )
    .is_ok());
    let existing = obj(json!({"schemas": [USER], "userName": "u"}));
    let out = validate(
        &input,
        &schema,
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    )
    .unwrap();
    assert_eq!(out[BADGE]["badgeId"], json!("B1"));
}

#[test]
fn immutable_unchanged_passes_and_changed_fails_on_replace_and_patch() {
    let schema = immutable_registry();
    let existing = obj(json!({"schemas": [USER, BADGE], "id": "1", "userName": "u",
        BADGE: {"badgeId": "B1", "card": {"serial": "S1", "label": "x"}}}));
    // Same value (case-insensitively, since badgeId is not caseExact): fine.
    let same = obj(json!({"schemas": [USER, BADGE], "userName": "u2", BADGE: {"badgeId": "b1"}}));
    let out = validate(
        &same,
        &schema,
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    )
    .unwrap();
    // Omitted immutable sub-attribute of a single-valued complex is carried over.
    assert_eq!(out[BADGE]["card"], json!({"serial": "S1"}));

    let changed = obj(json!({"schemas": [USER, BADGE], "userName": "u", BADGE: {"badgeId": "B2"}}));
    for ctx in [
        ValidationContext::Replace {
            existing: &existing,
        },
        ValidationContext::Patch {
            existing: &existing,
        },
    ] {
        let r = validate(&changed, &schema, ctx, Default::default());
        assert!(
            matches!(r, Err(Error::Mutability(ref m)) if m.contains("badgeId")),
            "{r:?}"
        );
    }
    // caseExact sub-attribute: a case change is a change.
    let recased = obj(json!({"schemas": [USER, BADGE], "userName": "u",
        BADGE: {"badgeId": "B1", "card": {"serial": "s1"}}}));
    let r = validate(
        &recased,
        &schema,
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    );
    assert!(
        matches!(r, Err(Error::Mutability(ref m)) if m.contains("card.serial")),
        "{r:?}"
    );
}

#[test]
fn omitted_immutable_keeps_its_value() {
    let schema = immutable_registry();
    let existing =
        obj(json!({"schemas": [USER, BADGE], "userName": "u", BADGE: {"badgeId": "B1"}}));
    let input = obj(json!({"schemas": [USER], "userName": "u"}));
    let out = validate(
        &input,
        &schema,
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    )
    .unwrap();
    assert_eq!(out[BADGE], json!({"badgeId": "B1"}));
    assert_eq!(out["schemas"], json!([USER, BADGE]));
}

#[test]
fn group_members_may_change_although_their_sub_attributes_are_immutable() {
    let existing = fixture("rfc7643-8.4-group.json");
    let input = obj(json!({"schemas": [GROUP], "displayName": "Tour Guides",
        "members": [{"value": "someone-else", "type": "User"}]}));
    let out = validate(
        &input,
        &group(),
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        out["members"],
        json!([{"value": "someone-else", "type": "User"}])
    );
}

// ---- writeOnly / returned never ------------------------------------------------------------

#[test]
fn write_only_is_accepted_on_input_and_never_returned() {
    let input = json!({"schemas": [USER], "userName": "u", "password": "s3cret"});
    assert_eq!(create(input.clone()).unwrap()["password"], json!("s3cret"));
    let resp = validate(
        &obj(input),
        &user(),
        ValidationContext::Response,
        Default::default(),
    )
    .unwrap();
    assert!(!resp.contains_key("password"));
}

#[test]
fn errors_never_echo_a_write_only_value() {
    let secret = "hunter2-very-secret";
    for bad in [
        json!({"schemas": [USER], "userName": "u", "password": [secret]}),
        json!({"schemas": [USER], "password": secret}),
    ] {
        let err = create(bad).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
    }
    let err =
        create(json!({"schemas": [USER], "userName": "u", "password": [secret]})).unwrap_err();
    assert!(
        err.to_string().contains("password"),
        "the attribute is named: {err}"
    );
}

// ---- required ------------------------------------------------------------------------------

#[test]
fn required_attributes_are_enforced_on_create_and_replace() {
    let m = invalid_value(create(json!({"schemas": [USER], "displayName": "No Name"})));
    assert!(m.contains("userName"), "{m}");
    let existing = fixture("rfc7643-8.1-minimal-user.json");
    let r = validate(
        &obj(json!({"schemas": [USER]})),
        &user(),
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    );
    assert!(invalid_value(r).contains("userName"));
    // Null is no value; a blank required name is refused too (blank is no name).
    assert!(create(json!({"schemas": [USER], "userName": null})).is_err());
    for blank in ["", "   ", "\t"] {
        let m = invalid_value(create(json!({"schemas": [USER], "userName": blank})));
        assert!(m.contains("'userName' is empty"), "{m}");
    }
    let r = validate(
        &obj(json!({"schemas": [USER], "userName": " "})),
        &user(),
        ValidationContext::Patch {
            existing: &existing,
        },
        Default::default(),
    );
    assert!(invalid_value(r).contains("userName"));
    let m = invalid_value(validate(
        &obj(json!({"schemas": [GROUP], "displayName": ""})),
        &group(),
        ValidationContext::Create,
        Default::default(),
    ));
    assert!(m.contains("'displayName' is empty"), "{m}");
    // An optional string may be empty.
    assert!(create(json!({"schemas": [USER], "userName": "a", "nickName": ""})).is_ok());
    // Not enforced when returning.
    assert!(validate(
        &obj(json!({"id": "1"})),
        &user(),
        ValidationContext::Response,
        Default::default()
    )
    .is_ok());
}

#[test]
fn required_sub_attributes_and_required_extensions() {
    let mut reg = SchemaRegistry::core();
    let contractor = std::fs::read_to_string(format!(
        "{}/tests/fixtures/rfc7643-3.3-contractor-extension-schema.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    reg.load_schema_json(&contractor).unwrap();
    let urn = "urn:example:params:scim:schemas:extension:contractor:2.0:User";
    reg.add_extension("User", urn, true).unwrap();
    let schema = reg.resource_schema("User").unwrap();
    let ok = fixture("rfc7643-3.3-contractor-user.json");
    let out = validate(&ok, &schema, ValidationContext::Create, Default::default()).unwrap();
    assert_eq!(
        out[urn]["sponsor"],
        json!({"value": "2819c223-7f76-453a-919d-413861904646"})
    );

    let no_sponsor_value = obj(
        json!({"schemas": [USER, urn], "userName": "c", urn: {"sponsor": {"displayName": "x"}}}),
    );
    let r = validate(
        &no_sponsor_value,
        &schema,
        ValidationContext::Create,
        Default::default(),
    );
    assert!(invalid_value(r).contains("sponsor.value"));

    let no_extension = obj(json!({"schemas": [USER], "userName": "c"}));
    let r = validate(
        &no_extension,
        &schema,
        ValidationContext::Create,
        Default::default(),
    );
    assert!(invalid_value(r).contains(urn));
}

// ---- types ---------------------------------------------------------------------------------

fn typed_schema() -> ResourceSchema {
    let mut reg = SchemaRegistry::core();
    reg.load_schema_json(
        r#"{"id": "urn:example:types", "attributes": [
            {"name": "s", "type": "string"}, {"name": "b", "type": "boolean"},
            {"name": "d", "type": "decimal"}, {"name": "i", "type": "integer"},
            {"name": "t", "type": "dateTime"}, {"name": "r", "type": "reference", "referenceTypes": ["external"]},
            {"name": "bin", "type": "binary"}, {"name": "c", "type": "complex", "subAttributes": [{"name": "v", "type": "string"}]},
            {"name": "many", "type": "integer", "multiValued": true}]}"#,
    )
    .unwrap();
    reg.add_extension("User", "urn:example:types", false)
        .unwrap();
    reg.resource_schema("User").unwrap()
}

#[test]
fn types_are_checked() {
    let schema = typed_schema();
    let check = |attr: &str, v: Value| {
        let r = obj(
            json!({"schemas": [USER, "urn:example:types"], "userName": "u", "urn:example:types": {attr: v}}),
        );
        validate(&r, &schema, ValidationContext::Create, Default::default())
    };
    let good = [
        ("s", json!("x")),
        ("b", json!(false)),
        ("d", json!(1.5)),
        ("d", json!(2)),
        ("i", json!(-3)),
        ("t", json!("2008-01-23T04:56:22Z")),
        ("t", json!("2008-01-23T04:56:22.5+01:00")),
        ("r", json!("https://example.com/x")),
        ("bin", json!("TWFu")),
        ("c", json!({"v": "x"})),
        ("many", json!([1, 2])),
    ];
    for (attr, v) in good {
        assert!(check(attr, v.clone()).is_ok(), "{attr} = {v} should pass");
    }
    let bad = [
        ("s", json!(1)),
        ("b", json!("true")),
        ("d", json!("1.5")),
        ("i", json!(1.5)),
        ("i", json!("1")),
        ("t", json!("23 Jan 2008")),
        ("t", json!("2008-01-23")),
        ("r", json!(7)),
        ("bin", json!("not base64!")),
        ("c", json!("x")),
        ("many", json!(1)),
        ("many", json!(["1"])),
        ("s", json!(["x"])),
    ];
    for (attr, v) in bad {
        let m = invalid_value(check(attr, v.clone()));
        assert!(
            m.contains(&format!("urn:example:types.{attr}")),
            "{attr} = {v}: message names the path: {m}"
        );
    }
}

#[test]
fn multi_valued_attributes_require_arrays_in_strict_mode() {
    let m = invalid_value(create(
        json!({"schemas": [USER], "userName": "u", "emails": {"value": "a@example.com"}}),
    ));
    assert!(m.contains("emails"), "{m}");
    let m = invalid_value(create(
        json!({"schemas": [USER], "userName": "u", "emails": [{"value": 5}]}),
    ));
    assert!(m.contains("emails[0].value"), "{m}");
}

// ---- canonical values ----------------------------------------------------------------------

#[test]
fn canonical_values_only_when_enforced() {
    let r = json!({"schemas": [USER], "userName": "u", "emails": [{"value": "a@example.com", "type": "pager"}]});
    assert!(
        create(r.clone()).is_ok(),
        "RFC 7643 §2.3.1: servers MAY restrict; off by default"
    );
    let strict = ValidationOptions {
        enforce_canonical_values: true,
        ..Default::default()
    };
    let m = invalid_value(create_with(r, strict));
    assert!(m.contains("emails[0].type") && m.contains("work"), "{m}");
    let ok = json!({"schemas": [USER], "userName": "u", "emails": [{"value": "a@example.com", "type": "WORK"}]});
    assert!(create_with(ok, strict).is_ok(), "type is not caseExact");
}

// ---- unknown attributes --------------------------------------------------------------------

#[test]
fn unknown_attributes_rejected_when_strict_and_dropped_when_lenient() {
    let r = json!({"schemas": [USER], "userName": "u", "favouriteColour": "blue", "name": {"nick": "x", "givenName": "B"}});
    assert!(
        matches!(create(r.clone()), Err(Error::InvalidSyntax(ref m)) if m.contains("favouriteColour"))
    );
    let out = create_with(r, ValidationOptions::lenient()).unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "userName": "u", "name": {"givenName": "B"}})
    );
    let nested = json!({"schemas": [USER], "userName": "u", "name": {"nick": "x"}});
    assert!(matches!(create(nested), Err(Error::InvalidSyntax(ref m)) if m.contains("name.nick")));
}

// ---- schemas -------------------------------------------------------------------------------

#[test]
fn schemas_attribute_rules() {
    // Missing `schemas`.
    invalid_value(create(json!({"userName": "u"})));
    // Missing the core schema.
    invalid_value(create(
        json!({"schemas": [ENTERPRISE], "userName": "u", ENTERPRISE: {"employeeNumber": "1"}}),
    ));
    // Unknown schema URN.
    invalid_value(create(
        json!({"schemas": [USER, "urn:example:nope"], "userName": "u"}),
    ));
    // Extension present but not listed.
    invalid_value(create(
        json!({"schemas": [USER], "userName": "u", ENTERPRISE: {"employeeNumber": "1"}}),
    ));
    // Extension listed but absent.
    invalid_value(create(
        json!({"schemas": [USER, ENTERPRISE], "userName": "u"}),
    ));
    // Extension object under an unknown URN.
    invalid_value(create(
        json!({"schemas": [USER], "userName": "u", "urn:example:nope": {"x": 1}}),
    ));
    // Listed and present: fine; output lists exactly what is present.
    let out = create(json!({"schemas": [ENTERPRISE, USER], "userName": "u", ENTERPRISE: {"employeeNumber": "1"}})).unwrap();
    assert_eq!(out["schemas"], json!([USER, ENTERPRISE]));
    // Listed and present but all null: the extension is unassigned and leaves `schemas`.
    let out = create(json!({"schemas": [USER, ENTERPRISE], "userName": "u", ENTERPRISE: {"employeeNumber": null}})).unwrap();
    assert_eq!(out["schemas"], json!([USER]));
    assert!(!out.contains_key(ENTERPRISE));
}

#[test]
fn response_recomputes_schemas() {
    let r = obj(
        json!({"schemas": ["whatever"], "id": "1", "userName": "u", ENTERPRISE: {"department": "D"}}),
    );
    let out = validate(&r, &user(), ValidationContext::Response, Default::default()).unwrap();
    assert_eq!(out["schemas"], json!([USER, ENTERPRISE]));
}

// ---- primary -------------------------------------------------------------------------------

#[test]
fn at_most_one_primary_value() {
    let one = json!({"schemas": [USER], "userName": "u", "emails": [
        {"value": "a@example.com", "primary": true}, {"value": "b@example.com", "primary": false}]});
    assert!(create(one).is_ok());
    let two = json!({"schemas": [USER], "userName": "u", "emails": [
        {"value": "a@example.com", "primary": true}, {"value": "b@example.com", "primary": true}]});
    assert!(invalid_value(create(two)).contains("emails"));
}

#[test]
fn omitting_an_optional_extension_on_replace_clears_it() {
    let mut reg = SchemaRegistry::core();
    let contractor = std::fs::read_to_string(format!(
        "{}/tests/fixtures/rfc7643-3.3-contractor-extension-schema.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    reg.load_schema_json(&contractor).unwrap();
    let urn = "urn:example:params:scim:schemas:extension:contractor:2.0:User";
    reg.add_extension("User", urn, false).unwrap();
    let schema = reg.resource_schema("User").unwrap();
    let existing = fixture("rfc7643-3.3-contractor-user.json");
    let input = obj(json!({"schemas": [USER], "userName": "cwilson"}));
    let out = validate(
        &input,
        &schema,
        ValidationContext::Replace {
            existing: &existing,
        },
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "userName": "cwilson"})
    );
}

#[test]
fn responses_drop_unknown_attributes_and_extensions() {
    let r = obj(json!({"id": "1", "userName": "u", "legacy": 1, "urn:example:gone": {"x": 1}}));
    let out = validate(&r, &user(), ValidationContext::Response, Default::default()).unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"schemas": [USER], "id": "1", "userName": "u"})
    );
}

#[test]
fn patch_results_drop_read_only_values() {
    let existing = fixture("rfc7643-8.2-full-user.json");
    let patched = existing.clone();
    let out = validate(
        &patched,
        &user(),
        ValidationContext::Patch {
            existing: &existing,
        },
        Default::default(),
    )
    .unwrap();
    assert!(!out.contains_key("groups") && !out.contains_key("meta") && !out.contains_key("id"));
    assert_eq!(out["userName"], existing["userName"]);
}

/// Keys are attacker-controlled: a non-ASCII character straddling byte 4 must not panic
/// (the `urn:` prefix check once sliced `key[..4]`).
#[test]
fn non_ascii_keys_do_not_panic() {
    for key in ["abcé", "urné", "ü", "日本語のキー"] {
        let r = validate(
            &obj(json!({"schemas": [USER], "userName": "bjensen", key: "x"})),
            &user(),
            ValidationContext::Create,
            ValidationOptions::lenient(),
        );
        assert!(r.is_ok(), "{key}: {r:?}");
        let strict = create(json!({"schemas": [USER], "userName": "bjensen", key: "x"}));
        assert!(matches!(strict, Err(Error::InvalidSyntax(_))), "{key}");
    }
}

/// Many keys validate in linear time (case-insensitive duplicates were found by a quadratic scan).
#[test]
fn many_unknown_keys_are_cheap() {
    let mut m = obj(json!({"schemas": [USER], "userName": "bjensen"}));
    for i in 0..50_000 {
        m.insert(format!("k{i}"), Value::Bool(true));
    }
    let started = std::time::Instant::now();
    validate(
        &m,
        &user(),
        ValidationContext::Create,
        ValidationOptions::lenient(),
    )
    .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
