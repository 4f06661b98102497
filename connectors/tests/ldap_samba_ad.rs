//! Active Directory flavour of the LDAP connector against a throwaway Samba AD domain controller
//! (Debian `samba-ad-dc`), provisioned by the test in a scratch directory (~7 s) with a throwaway
//! CA, so LDAPS and StartTLS are verified. Samba listens on the fixed ports 88/389/636/… of
//! 127.0.0.1, so this file holds a single test and needs root and those ports free. The DC is
//! started by [`stacks::SambaAd`], shared with `tests/lifecycle_e2e`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support_standins;

use std::time::Duration;

use connectors::ldap::{
    ActiveDirectory, AdLeave, LdapConfig, LdapConnector, LdapFlavor, LdapOwnership, LdapTls,
};
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Connector, Entitlement, ErrorKind};
use ldap3::{LdapConnAsync, LdapConnSettings};
use serde_json::json;
use support_standins::stacks::*;

const BASE: &str = AD_BASE;
const ADMIN_DN: &str = AD_ADMIN_DN;
const ADMIN_PW: &str = AD_ADMIN_PW;
const USER_PW: &str = "Us3r-Passw0rd!";

/// Result code of a simple bind as `upn` over LDAPS.
async fn bind_rc(upn: &str, pw: &str) -> (u32, String) {
    let (conn, mut ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new().set_no_tls_verify(true),
        "ldaps://127.0.0.1:636",
    )
    .await
    .unwrap();
    tokio::spawn(async move { conn.drive().await });
    let r = ldap.simple_bind(upn, pw).await.unwrap();
    (r.rc, r.text)
}

fn config(ca: &std::path::Path, tls: LdapTls, leave: AdLeave) -> LdapConfig {
    let url = match tls {
        LdapTls::Ldaps => "ldaps://127.0.0.1:636".to_owned(),
        _ => "ldap://127.0.0.1:389".to_owned(),
    };
    LdapConfig {
        name: "ad-test".into(),
        url,
        tls,
        ca_file: Some(ca.to_path_buf()),
        bind_dn: ADMIN_DN.into(),
        bind_password: Secret::new(ADMIN_PW),
        search_base: BASE.into(),
        users_dn: format!("OU=People,{BASE}"),
        groups_dn: format!("OU=Groups,{BASE}"),
        timeout: Duration::from_secs(10),
        page_size: 2,
        flavor: LdapFlavor::ActiveDirectory(ActiveDirectory {
            upn_suffix: "example.com".into(),
            leavers_ou: format!("OU=Leavers,{BASE}"),
            leave,
        }),
        ownership: LdapOwnership::default(),
    }
}

fn spec(key: &str, given: &str, family: &str) -> AccountSpec {
    let mut attributes = serde_json::Map::new();
    attributes.insert("userName".into(), json!(key));
    attributes.insert(
        "name".into(),
        json!({ "givenName": given, "familyName": family }),
    );
    attributes.insert("displayName".into(), json!(format!("{given} {family}")));
    attributes.insert(
        "emails".into(),
        json!([{ "value": format!("{key}@example.com"), "primary": true }]),
    );
    attributes.insert("password".into(), json!(USER_PW));
    AccountSpec {
        account: AccountRef::new(key),
        attributes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_lifecycle_against_samba_dc() {
    let samba = SambaAd::start().await;
    let ca = samba.ca();

    // fixtures: OUs, two security groups, a user created outside scimhub (disabled, no password)
    samba.add_ous(&["People", "Groups", "Leavers"]).await;
    samba
        .add_groups(
            &format!("OU=Groups,{BASE}"),
            &[("Engineering", "engineering"), ("Oncall", "oncall")],
        )
        .await;
    let mut a = samba.admin().await;
    a.add(
        &format!("CN=Legacy Person,OU=People,{BASE}"),
        vec![
            ("objectClass", ["user"].into()),
            ("sAMAccountName", ["legacy"].into()),
            ("sn", ["Person"].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let c = LdapConnector::new(config(&ca, LdapTls::Ldaps, AdLeave::DisableAndMove)).unwrap();

    // create with sAMAccountName, userPrincipalName and unicodePwd (over LDAPS) -> enabled
    let jdoe = c
        .create_or_adopt(&spec("jdoe", "Jane", "Doe"))
        .await
        .expect("create");
    assert_eq!(
        jdoe.id.as_deref(),
        Some("CN=Jane Doe,OU=People,DC=example,DC=com")
    );
    let st = c.read(&jdoe).await.unwrap().expect("exists");
    assert!(st.enabled);
    assert_eq!(st.attributes["userPrincipalName"], "jdoe@example.com");
    assert_eq!(st.attributes["userAccountControl"], "512");
    assert_eq!(
        bind_rc("jdoe@example.com", USER_PW).await.0,
        0,
        "the user can sign in"
    );
    // A second Jane Doe: the CN is taken, so she is named after her sAMAccountName too.
    let jdoe3 = c
        .create_or_adopt(&spec("jdoe3", "Jane", "Doe"))
        .await
        .expect("a second person with the same display name");
    assert_eq!(
        jdoe3.id.as_deref(),
        Some("CN=Jane Doe (jdoe3),OU=People,DC=example,DC=com")
    );
    let st2 = c.read(&jdoe3).await.unwrap().expect("exists");
    assert!(st2.enabled);
    assert_eq!(st2.attributes["userPrincipalName"], "jdoe3@example.com");
    assert_eq!(
        c.create_or_adopt(&spec("jdoe3", "Jane", "Doe"))
            .await
            .unwrap(),
        jdoe3,
        "found again by sAMAccountName"
    );

    // adopt: again, and an account made outside scimhub, disabled and unowned, inside OU=People
    // (converged, marked and enabled: the hub records adopted accounts as enabled)
    assert_eq!(
        c.create_or_adopt(&spec("jdoe", "Jane", "Doe"))
            .await
            .unwrap(),
        jdoe
    );
    let legacy = c
        .create_or_adopt(&spec("legacy", "Leg", "Acy"))
        .await
        .expect("adopt");
    assert_eq!(
        legacy.id.as_deref(),
        Some("CN=Legacy Person,OU=People,DC=example,DC=com")
    );
    let st = c.read(&legacy).await.unwrap().unwrap();
    assert_eq!(st.attributes["displayName"], "Leg Acy");
    assert_eq!(st.attributes["userPrincipalName"], "legacy@example.com");
    assert!(
        st.enabled,
        "adoption enables: {:?}",
        st.attributes["userAccountControl"]
    );

    // update
    c.update(&spec("jdoe", "Jane", "Roe"))
        .await
        .expect("update");
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert_eq!(st.attributes["name"]["familyName"], "Roe");
    assert_eq!(st.attributes["displayName"], "Jane Roe");

    // grant by cn and by sAMAccountName; AD computes memberOf, which read reports
    let eng = Entitlement::new("group", "Engineering");
    let oncall = Entitlement::new("group", "oncall");
    for e in [&eng, &oncall, &eng] {
        c.grant(&jdoe, e).await.expect("grant");
    }
    let mut ents = c.read(&jdoe).await.unwrap().unwrap().entitlements;
    ents.sort();
    assert_eq!(
        ents,
        vec![
            Entitlement::new("group", "Engineering"),
            Entitlement::new("group", "Oncall")
        ]
    );

    // revoke (twice) — AD has no minimum membership, the group may become empty
    for _ in 0..2 {
        c.revoke(&jdoe, &oncall).await.expect("revoke");
    }
    assert_eq!(
        c.read(&jdoe).await.unwrap().unwrap().entitlements,
        vec![Entitlement::new("group", "Engineering")]
    );

    // disable / enable through userAccountControl; a disabled account cannot bind (data 533)
    c.set_enabled(&jdoe, false).await.expect("disable");
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert!(!st.enabled);
    assert_eq!(st.attributes["userAccountControl"], "514");
    let (rc, text) = bind_rc("jdoe@example.com", USER_PW).await;
    assert_eq!(rc, 49);
    assert!(text.contains("data 533"), "{text}");
    c.set_enabled(&jdoe, true).await.expect("enable");
    assert!(c.read(&jdoe).await.unwrap().unwrap().enabled);
    assert_eq!(bind_rc("jdoe@example.com", USER_PW).await.0, 0);

    // list with the paged results control (page size 2)
    let mut keys = Vec::new();
    let mut page = None;
    let mut pages = 0;
    loop {
        let p = c.list_accounts(page.as_deref()).await.expect("list");
        pages += 1;
        keys.extend(p.accounts.iter().map(|x| x.account.key.clone()));
        match p.next {
            Some(n) => page = Some(n),
            None => break,
        }
    }
    for k in ["Administrator", "Guest", "jdoe", "legacy"] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
    assert!(pages >= 3, "{pages} pages for {keys:?}");

    // StartTLS on 389, verified against the same CA
    let st_conn =
        LdapConnector::new(config(&ca, LdapTls::StartTls, AdLeave::DisableAndMove)).unwrap();
    assert!(st_conn.read(&jdoe).await.unwrap().is_some());
    // plain ldap:// (explicitly configured): Samba, like AD, refuses a simple bind without TLS
    let plain =
        LdapConnector::new(config(&ca, LdapTls::PlainInsecure, AdLeave::DisableAndMove)).unwrap();
    let e = plain.read(&jdoe).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(
        e.message.contains("result 8"),
        "strongerAuthRequired expected: {e}"
    );

    // leave: disable, remove from groups, move to the leavers OU
    c.delete(&jdoe).await.expect("leave");
    let st = c.read(&jdoe).await.unwrap().expect("kept in leavers");
    assert!(!st.enabled);
    assert!(st.entitlements.is_empty());
    assert_eq!(
        st.account.id.as_deref(),
        Some("CN=Jane Doe,OU=Leavers,DC=example,DC=com")
    );
    c.delete(&jdoe).await.expect("leave again");
    // Another Jane Doe (the name is free in OU=People again) leaves too: the leavers OU has a
    // CN=Jane Doe already, so she moves in under her sAMAccountName.
    let jdoe4 = c
        .create_or_adopt(&spec("jdoe4", "Jane", "Doe"))
        .await
        .expect("create");
    assert_eq!(
        jdoe4.id.as_deref(),
        Some("CN=Jane Doe,OU=People,DC=example,DC=com")
    );
    c.delete(&jdoe4).await.expect("leave into a taken CN");
    let st4 = c.read(&jdoe4).await.unwrap().expect("kept in leavers");
    assert!(!st4.enabled);
    assert_eq!(
        st4.account.id.as_deref(),
        Some("CN=Jane Doe (jdoe4),OU=Leavers,DC=example,DC=com")
    );

    // delete mode removes the object; again is success
    let del = LdapConnector::new(config(&ca, LdapTls::Ldaps, AdLeave::Delete)).unwrap();
    del.delete(&jdoe).await.expect("delete");
    assert!(del.read(&jdoe).await.unwrap().is_none());
    del.delete(&jdoe).await.expect("delete again");

    // the domain's built-in Administrator: protected (and outside OU=People); nothing is
    // written, whatever the operation, and `adopt = "always"` changes nothing
    let admin_dn = format!("CN=Administrator,CN=Users,{BASE}");
    let read_admin = |a: &mut ldap3::Ldap| {
        let dn = admin_dn.clone();
        let mut a = a.clone();
        async move {
            let (e, _) = a
                .search(&dn, ldap3::Scope::Base, "(objectClass=*)", vec!["*"])
                .await
                .unwrap()
                .success()
                .unwrap();
            let mut attrs = ldap3::SearchEntry::construct(e.into_iter().next().unwrap()).attrs;
            attrs.remove("lastLogon");
            attrs.remove("logonCount");
            attrs.remove("lastLogonTimestamp");
            attrs.remove("badPasswordTime");
            attrs
        }
    };
    let before = read_admin(&mut a).await;
    let mut cfg = config(&ca, LdapTls::Ldaps, AdLeave::Delete);
    cfg.ownership.adopt = connectors::ownership::Adopt::Always;
    cfg.ownership.managed_ous = vec![BASE.into()];
    let always = LdapConnector::new(cfg).unwrap();
    let administrator = AccountRef::new("Administrator");
    for e in [
        always
            .create_or_adopt(&spec("Administrator", "Evil", "Mallory"))
            .await
            .unwrap_err(),
        always.set_enabled(&administrator, false).await.unwrap_err(),
        always.delete(&administrator).await.unwrap_err(),
        always
            .grant(&jdoe, &Entitlement::new("group", "Domain Admins"))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::Refused, "{e}");
        assert!(e.message.contains("protected"), "{e}");
    }
    assert_eq!(read_admin(&mut a).await, before, "Administrator untouched");

    // a CN with a comma (from displayName "Doe, John"): created, updated, disabled, enabled,
    // granted, and on leave moved to the leavers OU under its escaped RDN
    let mut comma = spec("jdoe2", "John", "Doe");
    comma
        .attributes
        .insert("displayName".into(), json!("Doe, John"));
    let acct = c.create_or_adopt(&comma).await.expect("create Doe, John");
    assert_eq!(
        acct.id.as_deref(),
        Some("CN=Doe\\2c John,OU=People,DC=example,DC=com")
    );
    comma.attributes.insert(
        "name".into(),
        json!({"givenName": "John", "familyName": "Doe-Smith"}),
    );
    c.update(&comma).await.expect("update");
    c.set_enabled(&acct, false).await.expect("disable");
    c.set_enabled(&acct, true).await.expect("enable");
    c.grant(&acct, &eng).await.expect("grant");
    c.delete(&acct).await.expect("leave");
    let st = c.read(&acct).await.unwrap().expect("in leavers");
    assert!(!st.enabled);
    assert!(st.entitlements.is_empty());
    assert_eq!(st.attributes["name"]["familyName"], "Doe-Smith");
    let dn = st.account.id.clone().unwrap();
    let parsed = connectors::dn::parse(&dn).unwrap();
    assert_eq!(parsed.first_value(), Some("Doe, John"), "{dn}");
    assert!(parsed.is_child_of(&connectors::dn::parse(&format!("OU=Leavers,{BASE}")).unwrap()));
    del.delete(&acct).await.expect("delete Doe, John");
    assert!(del.read(&acct).await.unwrap().is_none());

    // a wrong admin password: permanent, and never printed
    let mut cfg = config(&ca, LdapTls::Ldaps, AdLeave::Delete);
    let wrong = "Wr0ng-Admin-Passw0rd";
    cfg.bind_password = Secret::new(wrong);
    let bad = LdapConnector::new(cfg).unwrap();
    let e = bad.read(&legacy).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("result 49"), "{e}");
    assert!(!format!("{e} {e:?} {bad:?}").contains(wrong));
    drop(a);
    drop(samba);
}
