//! Every PATCH example printed in RFC 7644 §3.5.2.1–§3.5.2.3, replayed from
//! `tests/fixtures/rfc7644-3.5.2.*.json` (before, request, expected after or error).
#![allow(clippy::unwrap_used)]

use scim_schema::dialect::{normalize_patch, Dialect};
use scim_schema::message::PatchOpRequest;
use scim_schema::patch::apply_patch;
use scim_schema::schema::SchemaRegistry;
use serde_json::{Map, Value};

/// Replays one fixture: requests apply in order; an expected error must leave the resource as it
/// was before the failing request.
pub fn replay(name: &str) {
    replay_as(name, None);
}

/// [`replay`] under `dialect` instead of the fixture's own.
pub fn replay_as(name: &str, dialect: Option<Dialect>) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let dialect = dialect.unwrap_or(match fx["dialect"].as_str().unwrap_or("Strict") {
        "EntraId" => Dialect::EntraId,
        "Okta" => Dialect::Okta,
        "Lenient" => Dialect::Lenient,
        "Standard" => Dialect::Standard,
        _ => Dialect::Strict,
    });
    let registry = SchemaRegistry::core();
    let rs = registry
        .resource_schema(fx["resourceType"].as_str().unwrap())
        .unwrap();
    let before: Map<String, Value> = fx["before"].as_object().unwrap().clone();
    let mut current = before.clone();
    let mut outcome = Ok(());
    for r in fx["requests"].as_array().unwrap() {
        let req: PatchOpRequest = serde_json::from_value(r.clone()).unwrap();
        let snapshot = current.clone();
        match normalize_patch(req, dialect, &rs)
            .and_then(|ops| apply_patch(&current, &ops, &rs, &dialect.patch_options()))
        {
            Ok(next) => current = next,
            Err(e) => {
                assert_eq!(
                    current, snapshot,
                    "{name}: a failed request must not change the resource"
                );
                outcome = Err(e);
                break;
            }
        }
    }
    match fx.get("error").and_then(Value::as_str) {
        Some(expected) => {
            let err = outcome.expect_err(&format!("{name}: expected a {expected} error"));
            assert_eq!(err.scim_type().as_str(), expected, "{name}: {err}");
        }
        None => {
            if let Err(e) = outcome {
                panic!("{name}: unexpected error {e:?}");
            }
            assert_eq!(Value::Object(current), fx["after"], "{name}");
        }
    }
}

macro_rules! fixtures {
    ($($test:ident => $file:literal),* $(,)?) => {
        $( #[test] fn $test() { replay($file); } )*
    };
}

fixtures! {
    add_members => "rfc7644-3.5.2.1-add-members.json",
    add_existing_member_is_noop => "rfc7644-3.5.2.1-add-existing-member.json",
    add_pathless => "rfc7644-3.5.2.1-add-pathless.json",
    remove_single_member => "rfc7644-3.5.2.2-remove-single-member.json",
    remove_all_members => "rfc7644-3.5.2.2-remove-all-members.json",
    remove_email_by_filter => "rfc7644-3.5.2.2-remove-email-filter.json",
    remove_then_add_members => "rfc7644-3.5.2.2-remove-and-add-members.json",
    remove_without_path => "rfc7644-3.5.2.2-remove-no-path.json",
    replace_members => "rfc7644-3.5.2.3-replace-members.json",
    replace_work_address => "rfc7644-3.5.2.3-replace-work-address.json",
    replace_street_address => "rfc7644-3.5.2.3-replace-street-address.json",
    replace_pathless => "rfc7644-3.5.2.3-replace-pathless.json",
    replace_filter_no_match => "rfc7644-3.5.2.3-replace-filter-no-match.json",
}

#[test]
fn every_rfc_fixture_is_listed() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let src = include_str!("patch_rfc.rs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("rfc7644-3.5.2") {
            assert!(
                src.contains(&format!("\"{name}\"")),
                "fixture {name} has no test"
            );
        }
    }
}
