//! End-to-end lifecycle: the real `scimhub` binary with a policy using the SCIM, AWS IAM, Active
//! Directory, LDAP, GitHub and webhook connectors; a joiner, a mover and a leaver pushed over
//! SCIM; every stand-in read back through its own API (see `world.rs` for what runs where).
//!
//! Needs the stand-ins (`bash connectors/tests/support_standins/install.sh`), root, and
//! 127.0.0.1:389/636 free for Samba AD: this binary holds this one test that starts a `World`,
//! and fails (never skips) when those ports are taken. `outage.rs` holds the outage proof
//! (slapd stopped and restarted, SLA breach mailed and posted, resume, verification, the event
//! record); it starts its own stand-ins on free ports (no Samba), so it runs beside this one.
//! `nodes.rs` holds the several-nodes proof of issue 17 (three nodes on PostgreSQL, one
//! killed and restarted), on free ports and a database of its own.
//! `approval_link.rs` holds the proof of issue 16 (an approval decided by following the mailed
//! link from aiosmtpd with no bearer token), on free ports as well. `guard_loosened.rs` holds
//! the mail and the metrics of a policy edit that loosens the blast-radius guard.

#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

mod approval_link;
mod guard_loosened;
mod nodes;
mod outage;
#[path = "../../connectors/tests/support_standins/mod.rs"]
mod support_standins;
mod world;

use std::time::Duration;

use serde_json::json;
use world::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SETTLE: Duration = Duration::from_secs(90);

/// The AD user is where and what the `ad` connector's settings say: `sAMAccountName` = userName,
/// `userPrincipalName` = userName@upn_suffix, in `ou`, `userAccountControl` = `uac`, and in
/// exactly `groups` (by the user's `memberOf` and by the groups' `member`).
fn assert_ad(st: &AdState, user: &str, ou: &str, uac: u32, groups: &[&str]) {
    assert_eq!(st.sam_account_name, user, "{st:?}");
    assert_eq!(
        st.user_principal_name,
        format!("{user}@example.com"),
        "{st:?}"
    );
    assert!(
        st.ou.eq_ignore_ascii_case(ou),
        "{user} in {ou} expected: {st:?}"
    );
    assert_eq!(st.user_account_control, uac, "{st:?}");
    assert_eq!(st.member_of, sorted(groups), "memberOf: {st:?}");
    assert_eq!(st.group_members, sorted(groups), "groups' member: {st:?}");
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joiner_mover_leaver_end_in_the_expected_state_everywhere() {
    let w = World::start(None).await;

    // ---- joiners: jdoe in Engineering, rroe in Sales ------------------------------------------
    let jdoe = w
        .scim
        .post("/Users", person("jdoe", "Jane", "Doe", "Engineering"))
        .await;
    let jdoe_id = jdoe["id"].as_str().unwrap().to_owned();
    w.scim
        .post("/Users", person("rroe", "Richard", "Roe", "Sales"))
        .await;
    w.settle(SETTLE).await;

    assert_eq!(
        w.scim_state("jdoe").await,
        Some((true, sorted(&["engineering"])))
    );
    assert_eq!(w.scim_state("rroe").await, Some((true, sorted(&["sales"]))));
    let iam = w.iam_state("jdoe").await.expect("IAM user jdoe");
    assert_eq!(iam.path, "/scimhub/");
    assert_eq!(iam.groups, sorted(&["developers"]));
    assert_eq!(iam.policies, sorted(&[IAM_POLICY]));
    assert!(iam.tags.contains(&"ManagedBy".to_string()), "{iam:?}");
    assert_eq!(
        w.iam_state("rroe").await.expect("rroe").groups,
        sorted(&["sales"])
    );
    let (dn, groups) = w.ldap_state("jdoe").await;
    assert_eq!(dn.as_deref(), Some("uid=jdoe,ou=people,dc=example,dc=com"));
    assert_eq!(groups, sorted(&["engineering"]));
    assert_eq!(w.ldap_state("rroe").await.1, sorted(&["oncall"]));
    // AD: created in OU=People, enabled (512 = NORMAL_ACCOUNT), in the role's group
    let ad = w.ad_state("jdoe").await.expect("AD user jdoe");
    assert_ad(&ad, "jdoe", AD_PEOPLE, 512, &["engineering"]);
    assert!(!ad.disabled());
    let ad_rroe = w.ad_state("rroe").await.expect("AD user rroe");
    assert_ad(&ad_rroe, "rroe", AD_PEOPLE, 512, &["sales"]);
    assert_eq!(
        w.github_state("jdoe").await,
        (Some("member".into()), sorted(&["engineering"]))
    );
    assert_eq!(
        w.github_state("rroe").await,
        (Some("member".into()), sorted(&["oncall"]))
    );
    let events = w.webhook_events("jdoe");
    assert_eq!(
        events,
        vec![
            "account.create".to_string(),
            "entitlement.grant:staff".to_string()
        ],
        "{events:?}"
    );

    // the person gets credentials of their own in IAM (what a leaver must lose)
    let iam_api = w.iam();
    iam_api
        .call("CreateAccessKey", &[("UserName", "jdoe")])
        .await
        .expect("CreateAccessKey");
    iam_api
        .call(
            "CreateLoginProfile",
            &[("UserName", "jdoe"), ("Password", "Sup3r-Secret-Pw!")],
        )
        .await
        .expect("CreateLoginProfile");
    let iam = w.iam_state("jdoe").await.unwrap();
    assert_eq!((iam.access_keys.len(), iam.login_profile), (1, true));

    // ---- mover: jdoe Engineering -> Sales: exactly the delta --------------------------------
    w.scim
        .patch(
            &format!("/Users/{jdoe_id}"),
            json!([{ "op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales" }]),
        )
        .await;
    w.settle(SETTLE).await;
    assert_eq!(w.scim_state("jdoe").await, Some((true, sorted(&["sales"]))));
    let iam = w.iam_state("jdoe").await.unwrap();
    assert_eq!(iam.groups, sorted(&["sales"]));
    assert!(iam.policies.is_empty(), "{iam:?}");
    assert_eq!(
        (iam.access_keys.len(), iam.login_profile),
        (1, true),
        "a move keeps credentials"
    );
    assert_eq!(w.ldap_state("jdoe").await.1, sorted(&["oncall"]));
    // AD: the old group is gone, the new one there; same object, still enabled in OU=People
    let moved = w.ad_state("jdoe").await.expect("AD user jdoe");
    assert_ad(&moved, "jdoe", AD_PEOPLE, 512, &["sales"]);
    assert_eq!(moved.dn, ad.dn, "a move keeps the AD object");
    assert_eq!(
        w.github_state("jdoe").await,
        (Some("member".into()), sorted(&["oncall"]))
    );

    // ---- leaver: jdoe active=false ----------------------------------------------------------
    w.scim
        .patch(
            &format!("/Users/{jdoe_id}"),
            json!([{ "op": "replace", "path": "active", "value": false }]),
        )
        .await;
    w.settle(SETTLE).await;

    assert_eq!(
        w.scim_state("jdoe").await,
        Some((false, vec![])),
        "SCIM: disabled, no groups"
    );
    let iam = w
        .iam_state("jdoe")
        .await
        .expect("disabled users stay (on_leave = disable)");
    assert!(iam.groups.is_empty() && iam.policies.is_empty(), "{iam:?}");
    assert!(iam.access_keys.is_empty(), "access keys gone: {iam:?}");
    assert!(!iam.login_profile, "console password gone: {iam:?}");
    assert!(
        iam.tags
            .contains(&connectors::aws_iam::SUSPENDED_TAG.to_string()),
        "{iam:?}"
    );
    let (dn, groups) = w.ldap_state("jdoe").await;
    assert_eq!(
        dn.as_deref(),
        Some("uid=jdoe,ou=disabled,dc=example,dc=com")
    );
    assert!(groups.is_empty(), "{groups:?}");
    // AD (on_leave = "delete", leave = "disable_and_move"): kept, disabled (514 = NORMAL_ACCOUNT
    // | ACCOUNTDISABLE), in no group, moved to OU=Leavers
    let left = w.ad_state("jdoe").await.expect("AD leavers are kept");
    assert_ad(&left, "jdoe", AD_LEAVERS, 514, &[]);
    assert!(left.disabled());
    assert!(
        left.dn.to_lowercase().ends_with(&AD_LEAVERS.to_lowercase()),
        "{left:?}"
    );
    assert_eq!(w.github_state("jdoe").await, (None, vec![]));
    let events = w.webhook_events("jdoe");
    assert!(
        events.ends_with(&[
            "account.disable".to_string(),
            "entitlement.revoke:staff".to_string()
        ]) || events.contains(&"account.disable".to_string())
            && events.contains(&"entitlement.revoke:staff".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"account.revoke_credentials".to_string()),
        "{events:?}"
    );

    // the other person is untouched
    assert_eq!(w.scim_state("rroe").await, Some((true, sorted(&["sales"]))));
    assert_eq!(
        w.iam_state("rroe").await.unwrap().groups,
        sorted(&["sales"])
    );
    assert_eq!(w.ldap_state("rroe").await.1, sorted(&["oncall"]));
    assert_eq!(w.ad_state("rroe").await.as_ref(), Some(&ad_rroe));
    assert_eq!(
        w.github_state("rroe").await,
        (Some("member".into()), sorted(&["oncall"]))
    );
    assert_eq!(
        w.rejected.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every webhook delivery verified"
    );
    w.github.assert_no_violations();
}
