//! Replays of what Microsoft Entra ID and Okta send (their public docs), from
//! `tests/fixtures/entra-*.json` and `okta-*.json`, with the Strict counterparts that must fail.
#![allow(clippy::unwrap_used)]

#[path = "patch_rfc.rs"]
#[allow(dead_code)]
mod rfc;

use rfc::replay;
use scim_schema::dialect::Dialect;

macro_rules! fixtures {
    ($($test:ident => $file:literal),* $(,)?) => {
        $( #[test] fn $test() { replay($file); } )*
    };
}

fixtures! {
    entra_update_multivalued => "entra-update-multivalued.json",
    entra_update_single_valued => "entra-update-single-valued.json",
    entra_disable_user => "entra-disable-user.json",
    entra_string_boolean => "entra-string-boolean.json",
    entra_string_boolean_strict => "entra-string-boolean-strict.json",
    entra_capitalised_op_strict => "entra-capitalised-op-strict.json",
    entra_replace_pathless => "entra-replace-pathless.json",
    entra_add_work_email_missing => "entra-add-work-email-missing.json",
    entra_add_work_email_missing_strict => "entra-add-work-email-missing-strict.json",
    entra_manager_string => "entra-manager-string.json",
    entra_manager_array => "entra-manager-array.json",
    entra_remove_employee_number => "entra-remove-employee-number.json",
    entra_add_member => "entra-add-member.json",
    entra_remove_member_value => "entra-remove-member-value.json",
    entra_remove_member_value_strict => "entra-remove-member-value-strict.json",
    entra_update_group_name => "entra-update-group-name.json",
    entra_remove_member_already_gone => "entra-remove-member-already-gone.json",
    entra_remove_member_already_gone_strict => "entra-remove-member-already-gone-strict.json",
    entra_add_single_valued => "entra-add-single-valued.json",
    okta_deactivate => "okta-deactivate.json",
    okta_group_rename => "okta-group-rename.json",
    okta_group_members => "okta-group-members.json",
}

#[test]
fn detect_from_user_agent() {
    assert_eq!(
        Dialect::detect(Some("Okta SCIM Client 1.0.0")),
        Dialect::Okta
    );
    assert_eq!(
        Dialect::detect(Some("Microsoft Azure AD SCIM provisioning 1.0.0")),
        Dialect::EntraId
    );
    assert_eq!(
        Dialect::detect(Some("Microsoft Entra provisioning")),
        Dialect::EntraId
    );
    assert_eq!(Dialect::detect(Some("curl/8.5.0")), Dialect::Strict);
    assert_eq!(Dialect::detect(None), Dialect::Strict);
}

#[test]
fn every_client_fixture_is_listed() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let src = include_str!("dialect_replay.rs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("entra-") || name.starts_with("okta-") {
            assert!(
                src.contains(&format!("\"{name}\"")),
                "fixture {name} has no test"
            );
        }
    }
}
