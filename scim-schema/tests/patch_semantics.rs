//! PATCH rules beyond the printed RFC examples: mutability, primary, required, extensions,
//! all-or-nothing, and the Group member delta.
#![allow(clippy::unwrap_used)]

use scim_schema::dialect::{normalize_patch, Dialect};
use scim_schema::message::PatchOpRequest;
use scim_schema::patch::{apply_patch, group_member_delta, PatchOperation, RemoveSpec};
use scim_schema::schema::{ResourceSchema, SchemaRegistry};
use scim_schema::ScimType;
use serde_json::{json, Map, Value};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn rs(t: &str) -> ResourceSchema {
    SchemaRegistry::core().resource_schema(t).unwrap()
}

fn ops(rs: &ResourceSchema, ops: Value) -> Vec<PatchOperation> {
    let req: PatchOpRequest = serde_json::from_value(
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}),
    )
    .unwrap();
    normalize_patch(req, Dialect::Strict, rs).unwrap()
}

fn user() -> Map<String, Value> {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "u1", "userName": "bjensen",
        "emails": [{"value": "a@example.com", "type": "work", "primary": true}, {"value": "b@example.com", "type": "home"}],
        "meta": {"resourceType": "User"}
    })
    .as_object()
    .unwrap()
    .clone()
}

fn patch(ops_json: Value) -> Result<Map<String, Value>, scim_schema::Error> {
    let rs = rs("User");
    let ops = ops(&rs, ops_json);
    apply_patch(&user(), &ops, &rs, &Default::default())
}

fn err(ops_json: Value) -> ScimType {
    patch(ops_json).unwrap_err().scim_type()
}

#[test]
fn read_only_attributes_are_mutability_errors() {
    assert_eq!(
        err(json!([{"op": "replace", "path": "id", "value": "other"}])),
        ScimType::Mutability
    );
    assert_eq!(
        err(json!([{"op": "remove", "path": "meta"}])),
        ScimType::Mutability
    );
    assert_eq!(
        err(json!([{"op": "replace", "path": "schemas", "value": []}])),
        ScimType::Mutability
    );
    assert_eq!(
        err(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
        ScimType::Mutability
    );
    // Writing the current value is not a modification.
    assert!(patch(json!([{"op": "replace", "value": {"id": "u1", "userName": "x"}}])).is_ok());
}

#[test]
fn required_attribute_cannot_be_removed() {
    assert_eq!(
        err(json!([{"op": "remove", "path": "userName"}])),
        ScimType::InvalidValue
    );
}

#[test]
fn unknown_paths_and_bad_values() {
    assert_eq!(
        err(json!([{"op": "add", "path": "nope", "value": 1}])),
        ScimType::InvalidPath
    );
    assert_eq!(
        err(json!([{"op": "add", "path": "name.nope", "value": "x"}])),
        ScimType::InvalidPath
    );
    assert_eq!(
        err(json!([{"op": "add", "path": "active", "value": "yes"}])),
        ScimType::InvalidValue
    );
    assert_eq!(
        err(json!([{"op": "add", "path": "active"}])),
        ScimType::InvalidValue
    );
    assert_eq!(
        err(json!([{"op": "add", "value": {"nope": 1}}])),
        ScimType::InvalidValue
    );
    assert_eq!(
        err(json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])),
        ScimType::NoTarget
    );
}

#[test]
fn setting_primary_clears_the_others() {
    let out = patch(json!([{"op": "add", "path": "emails", "value": [{"value": "c@example.com", "type": "other", "primary": true}]}])).unwrap();
    let emails = out["emails"].as_array().unwrap();
    assert_eq!(
        emails
            .iter()
            .filter(|e| e["primary"] == json!(true))
            .count(),
        1
    );
    assert_eq!(emails[2]["primary"], json!(true));
    let out = patch(
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    )
    .unwrap();
    assert_eq!(out["emails"][0]["primary"], json!(false));
    assert_eq!(out["emails"][1]["primary"], json!(true));
    let two = json!([{"op": "replace", "path": "emails", "value": [{"value": "x@y", "primary": true}, {"value": "z@y", "primary": true}]}]);
    assert_eq!(err(two), ScimType::InvalidValue);
}

#[test]
fn add_does_not_duplicate_case_insensitive_values() {
    let out = patch(json!([{"op": "add", "path": "emails", "value": [{"value": "A@EXAMPLE.COM", "type": "work"}]}])).unwrap();
    assert_eq!(out["emails"].as_array().unwrap().len(), 2);
}

#[test]
fn extension_paths_create_the_extension_and_list_its_urn() {
    let out = patch(json!([
        {"op": "add", "path": format!("{ENT}:employeeNumber"), "value": "701984"},
        {"op": "add", "path": format!("{ENT}:manager.value"), "value": "26118915"}
    ]))
    .unwrap();
    assert_eq!(
        out[ENT],
        json!({"employeeNumber": "701984", "manager": {"value": "26118915"}})
    );
    assert_eq!(
        out["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENT])
    );
    // manager.displayName is readOnly.
    assert_eq!(
        err(json!([{"op": "add", "path": format!("{ENT}:manager.displayName"), "value": "x"}])),
        ScimType::Mutability
    );
}

#[test]
fn failed_operation_rolls_back_everything() {
    let before = user();
    let rs = rs("User");
    let o = ops(
        &rs,
        json!([{"op": "replace", "path": "userName", "value": "changed"}, {"op": "replace", "path": "id", "value": "x"}]),
    );
    let e = apply_patch(&before, &o, &rs, &Default::default()).unwrap_err();
    assert!(e.detail().starts_with("Operations[1]"), "{e}");
    assert_eq!(before, user());
}

#[test]
fn immutable_may_be_set_once() {
    // members.value is immutable: a member's id cannot be changed, but members can be added.
    let rs = rs("Group");
    let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g", "displayName": "G", "members": [{"value": "1"}]});
    let g = g.as_object().unwrap();
    let add = ops(
        &rs,
        json!([{"op": "add", "path": "members", "value": [{"value": "2"}]}]),
    );
    assert!(apply_patch(g, &add, &rs, &Default::default()).is_ok());
    let change = ops(
        &rs,
        json!([{"op": "replace", "path": "members[value eq \"1\"].value", "value": "3"}]),
    );
    assert_eq!(
        apply_patch(g, &change, &rs, &Default::default())
            .unwrap_err()
            .scim_type(),
        ScimType::Mutability
    );
}

#[test]
fn group_member_delta_nets_operations() {
    let rs = rs("Group");
    let o = ops(
        &rs,
        json!([
            {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
            {"op": "remove", "path": "members[value eq \"a\" or value eq \"c\"]"},
            {"op": "replace", "path": "displayName", "value": "New"}
        ]),
    );
    let d = group_member_delta(&o, &rs).unwrap();
    assert_eq!(d.add, vec![json!({"value": "b"})]);
    assert_eq!(d.remove, RemoveSpec::Values(vec!["a".into(), "c".into()]));
    assert_eq!(d.other_ops.len(), 1);
    let o = ops(
        &rs,
        json!([{"op": "replace", "path": "members", "value": [{"value": "z"}]}]),
    );
    let d = group_member_delta(&o, &rs).unwrap();
    assert_eq!(
        (d.remove, d.add),
        (RemoveSpec::All, vec![json!({"value": "z"})])
    );
    let o = ops(
        &rs,
        json!([{"op": "replace", "path": "displayName", "value": "New"}]),
    );
    assert!(group_member_delta(&o, &rs).is_none());
    let o = ops(
        &rs,
        json!([{"op": "remove", "path": "members[display eq \"x\"]"}]),
    );
    assert!(
        group_member_delta(&o, &rs).is_none(),
        "not expressible as a delta"
    );
}

#[test]
fn lenient_normalises_resources() {
    let rs = rs("User");
    let doc = json!({"userName": "x", "active": "True", "emails": {"value": "a@b"}, ENT: {"manager": "m1"}});
    let out = scim_schema::dialect::normalize_resource(
        doc.as_object().unwrap().clone(),
        Dialect::EntraId,
        &rs,
    )
    .unwrap();
    assert_eq!(out["active"], json!(true));
    assert_eq!(out["emails"], json!([{"value": "a@b"}]));
    assert_eq!(out[ENT]["manager"], json!({"value": "m1"}));
}

/// A bare extension URN as the path addresses the extension object: add/replace act like a
/// path-less operation scoped to it (attributes not named are kept), remove drops it.
#[test]
fn bare_extension_urn_path() {
    let rs = rs("User");
    let mut start = user();
    start.insert(
        ENT.into(),
        json!({"employeeNumber": "1", "department": "Tour"}),
    );
    start.insert(
        "schemas".into(),
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENT]),
    );
    let run = |d: Dialect, body: Value| {
        let req: PatchOpRequest = serde_json::from_value(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": body}),
        )
        .unwrap();
        let o = normalize_patch(req, d, &rs)?;
        apply_patch(&start, &o, &rs, &d.patch_options())
    };
    for op in ["replace", "add"] {
        let out = run(
            Dialect::Strict,
            json!([{"op": op, "path": ENT, "value": {"employeeNumber": "7"}}]),
        )
        .unwrap();
        assert_eq!(
            out[ENT],
            json!({"employeeNumber": "7", "department": "Tour"})
        );
    }
    // The URN in another case, and Entra's spelling of the op and of its manager.
    let out = run(
        Dialect::EntraId,
        json!([{"op": "Replace", "path": ENT.to_uppercase(), "value": {"manager": "m1"}}]),
    )
    .unwrap();
    assert_eq!(out[ENT]["manager"], json!({"value": "m1"}));
    let out = run(Dialect::Strict, json!([{"op": "remove", "path": ENT}])).unwrap();
    assert!(out.get(ENT).is_none());
    assert_eq!(
        out["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    assert_eq!(
        run(
            Dialect::Strict,
            json!([{"op": "replace", "path": ENT, "value": "7"}])
        )
        .unwrap_err()
        .scim_type(),
        ScimType::InvalidValue
    );
}

/// Entra's remove-with-value-list becomes one filter; a huge list must not build a tree so deep
/// that evaluating or dropping it overflows a worker thread's stack.
#[test]
fn huge_remove_value_list_does_not_overflow_the_stack() {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let rs = rs("Group");
            let values: Vec<Value> = (0..20_000)
                .map(|i| json!({"value": format!("id{i}")}))
                .collect();
            let req: PatchOpRequest = serde_json::from_value(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Remove", "path": "members", "value": values.clone()}]
            }))
            .unwrap();
            let o = normalize_patch(req, Dialect::EntraId, &rs).unwrap();
            let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g",
                "displayName": "g", "members": [{"value": "id3"}, {"value": "id19999"}, {"value": "keep"}]});
            let out = apply_patch(
                group.as_object().unwrap(),
                &o,
                &rs,
                &Dialect::EntraId.patch_options(),
            )
            .unwrap();
            assert_eq!(out["members"], json!([{"value": "keep"}]));
            let delta = group_member_delta(&o, &rs).unwrap();
            match delta.remove {
                RemoveSpec::Values(ids) => assert_eq!(ids.len(), 20_000),
                RemoveSpec::All => panic!("expected values"),
            }
            // Adding as many members is as cheap (the delta once searched its list per member).
            let o = ops(&rs, json!([{"op": "add", "path": "members", "value": values}]));
            assert_eq!(group_member_delta(&o, &rs).unwrap().add.len(), 20_000);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Errors from normalising and from applying name the failing operation the same way, whatever
/// their scimType.
#[test]
fn errors_name_the_failing_operation() {
    let rs = rs("User");
    let req: PatchOpRequest = serde_json::from_value(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "title", "value": "x"}, {"op": "move", "path": "title"}]
    }))
    .unwrap();
    let e = normalize_patch(req, Dialect::Strict, &rs).unwrap_err();
    assert!(e.detail().starts_with("Operations[1]: "), "{e}");
    let e = patch(json!([{"op": "add", "path": "title", "value": "x"}, {"op": "replace", "path": "id", "value": "y"}]))
        .unwrap_err();
    assert!(e.detail().starts_with("Operations[1]: "), "{e}");
}

/// An operation split by normalising (Entra's dotted keys) or set aside (Group members) still
/// counts as one: a later operation's error names its place in the request, not in the result.
#[test]
fn errors_name_the_request_operation_after_splits_and_deltas() {
    let rs_user = rs("User");
    let req: PatchOpRequest = serde_json::from_value(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "value": {"name.givenName": "x", "name.familyName": "y", "displayName": "z"}},
            {"op": "replace", "path": "nope", "value": 1}
        ]
    }))
    .unwrap();
    let o = normalize_patch(req, Dialect::EntraId, &rs_user).unwrap();
    assert!(o.len() > 2, "the dotted keys are operations of their own");
    let e = apply_patch(&user(), &o, &rs_user, &Dialect::EntraId.patch_options()).unwrap_err();
    assert_eq!(e.detail(), "Operations[1]: unknown attribute 'nope'");

    let rs_group = rs("Group");
    let o = ops(
        &rs_group,
        json!([
            {"op": "add", "path": "members", "value": [{"value": "a"}]},
            {"op": "replace", "path": "displayName", "value": "New"},
            {"op": "add", "value": {"members": [{"value": "b"}], "externalId": "e"}},
            {"op": "replace", "path": "id", "value": "other"}
        ]),
    );
    let d = group_member_delta(&o, &rs_group).unwrap();
    let at: Vec<_> = d.other_ops.iter().map(|o| o.request_index).collect();
    assert_eq!(at, [Some(1), Some(2), Some(3)]);
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "G"});
    let e = apply_patch(
        group.as_object().unwrap(),
        &d.other_ops,
        &rs_group,
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.detail().starts_with("Operations[3]: "), "{e}");
}

/// RFC 7643 §2.5: a multi-valued value of only nulls is unassigned, like `[]`: `replace` removes
/// the attribute rather than leaving an empty list (found by the patch_props property test).
#[test]
fn rfc7643_2_5_replace_with_only_nulls_unassigns() {
    let out = patch(json!([{"op": "replace", "path": "emails", "value": [null]}])).unwrap();
    assert!(out.get("emails").is_none(), "{out:?}");
    let out = patch(json!([{"op": "add", "path": "emails", "value": [null, null]}])).unwrap();
    assert_eq!(out.get("emails"), user().get("emails"));
}

/// A path-less value that names one attribute twice (in another case, by its URN-qualified
/// name, or inside and outside its extension object) is refused as POST refuses it, in every
/// dialect, instead of the later key winning silently.
#[test]
fn a_path_less_value_naming_one_attribute_twice_is_invalid_syntax() {
    let rs = rs("User");
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let mut twice_in_ext = Map::new();
    twice_in_ext.insert(ent.into(), json!({"department": "x"}));
    twice_in_ext.insert(format!("{ent}:department"), json!("y"));
    for dialect in [Dialect::Strict, Dialect::Standard, Dialect::EntraId] {
        let mut values = vec![json!({"title": "a", "Title": "b"})];
        // Strict reads no URN-qualified key in a path-less value (invalidValue already).
        if dialect != Dialect::Strict {
            values.push(
                json!({"title": "a", "urn:ietf:params:scim:schemas:core:2.0:User:title": "b"}),
            );
            values.push(Value::Object(twice_in_ext.clone()));
        }
        for value in values {
            let req: PatchOpRequest = serde_json::from_value(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "value": value.clone()}],
            }))
            .unwrap();
            let got = normalize_patch(req, dialect, &rs)
                .and_then(|ops| apply_patch(&user(), &ops, &rs, &Default::default()));
            assert_eq!(
                got.map(|_| ()).map_err(|e| e.scim_type()),
                Err(ScimType::InvalidSyntax),
                "{dialect:?} {value}"
            );
        }
    }
    // Each attribute once: applied.
    let done = patch(json!([{"op": "add", "value": {"title": "a", "nickName": "b"}}])).unwrap();
    assert_eq!(
        (done["title"].as_str(), done["nickName"].as_str()),
        (Some("a"), Some("b"))
    );
}
