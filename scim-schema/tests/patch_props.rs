//! Property test: arbitrary sequences of PATCH operations over a User never panic; they either
//! succeed with a resource that still holds the invariants, or fail leaving the input untouched.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use scim_schema::dialect::{normalize_patch, Dialect};
use scim_schema::message::{PatchOpRequest, RawPatchOperation};
use scim_schema::patch::apply_patch;
use scim_schema::schema::SchemaRegistry;
use serde_json::{json, Map, Value};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user() -> Map<String, Value> {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bjensen",
        "name": {"givenName": "Barbara"},
        "emails": [{"value": "a@example.com", "type": "work", "primary": true}, {"value": "b@example.com", "type": "home"}],
        "meta": {"resourceType": "User"}})
    .as_object()
    .unwrap()
    .clone()
}

fn op_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["add", "remove", "replace", "Replace", "Add", "move"])
        .prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = Option<String>> {
    let paths = vec![
        "userName",
        "nickName",
        "active",
        "name",
        "name.givenName",
        "name.familyName",
        "emails",
        "emails.value",
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "emails[type eq \"home\"].primary",
        "emails[type eq \"other\"].value",
        "emails[value co \"example\"]",
        "phoneNumbers",
        "id",
        "meta",
        "schemas",
        "groups",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "bogus",
        "emails[",
    ];
    prop::option::of(prop::sample::select(paths).prop_map(str::to_owned))
}

fn value() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        prop::sample::select(vec![
            "x",
            "True",
            "false",
            "a@example.com",
            "work",
            "home",
            ""
        ])
        .prop_map(|s| json!(s)),
    ];
    let v = leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "value",
                        "type",
                        "primary",
                        "givenName",
                        "active",
                        "userName",
                        "emails",
                        "id",
                        ENT
                    ]),
                    inner
                ),
                0..3
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    });
    prop::option::of(v)
}

fn raw_op() -> impl Strategy<Value = RawPatchOperation> {
    (op_name(), path(), value()).prop_map(|(op, path, value)| RawPatchOperation { op, path, value })
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop::sample::select(vec![
        Dialect::Strict,
        Dialect::EntraId,
        Dialect::Okta,
        Dialect::Lenient,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn patch_is_total_and_all_or_nothing(ops in prop::collection::vec(raw_op(), 1..6), d in dialect()) {
        let rs = SchemaRegistry::core().resource_schema("User").unwrap();
        let before = user();
        let input = before.clone();
        let Ok(typed) = normalize_patch(PatchOpRequest::new(ops), d, &rs) else { return Ok(()); };
        match apply_patch(&input, &typed, &rs, &d.patch_options()) {
            Err(_) => prop_assert_eq!(&input, &before),
            Ok(out) => {
                prop_assert_eq!(&input, &before);
                // Invariants: at most one primary, id/meta untouched, userName kept (required).
                if let Some(Value::Array(emails)) = out.get("emails") {
                    prop_assert!(emails.iter().filter(|e| e.get("primary") == Some(&json!(true))).count() <= 1);
                    prop_assert!(!emails.is_empty());
                }
                prop_assert_eq!(out.get("id"), before.get("id"));
                prop_assert_eq!(out.get("meta"), before.get("meta"));
                prop_assert!(out.get("userName").is_some_and(Value::is_string));
                // schemas lists the extension exactly when it is present.
                let listed = out["schemas"].as_array().unwrap().iter().any(|s| s == ENT);
                prop_assert_eq!(listed, out.contains_key(ENT));
                if let Some(ext) = out.get(ENT) {
                    prop_assert!(ext.as_object().is_some_and(|m| !m.is_empty()));
                }
            }
        }
    }
}
