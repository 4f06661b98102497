//! Generic LDAP connector against a throwaway OpenLDAP slapd (Debian `slapd`), started per test
//! in a scratch directory on free 127.0.0.1 ports with a generated config (memberof, refint,
//! ppolicy) and a throwaway CA, so StartTLS and LDAPS are verified for real.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support_standins;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use connectors::ldap::{
    DisableMethod, GenericLdap, LdapConfig, LdapConnector, LdapFlavor, LdapOwnership, LdapTls,
};
use connectors::ownership::Adopt;
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Connector, Entitlement, ErrorKind};
use ldap3::{LdapConnAsync, LdapConnSettings};
use serde_json::json;
use support_standins::stacks::*;
use support_standins::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "cn=admin,dc=example,dc=com";
const ADMIN_PW: &str = "adminpw";
const PLACEHOLDER: &str = "cn=placeholder,ou=people,dc=example,dc=com";

impl Slapd {
    fn config(&self, tls: LdapTls, disable: DisableMethod) -> LdapConfig {
        let url = match tls {
            LdapTls::Ldaps => format!("ldaps://127.0.0.1:{}", self.sport),
            _ => format!("ldap://127.0.0.1:{}", self.port),
        };
        LdapConfig {
            name: "ldap-test".into(),
            url,
            tls,
            ca_file: Some(self.ca()),
            bind_dn: ADMIN.into(),
            bind_password: Secret::new(ADMIN_PW),
            search_base: "dc=example,dc=com".into(),
            users_dn: "ou=people,dc=example,dc=com".into(),
            groups_dn: "ou=groups,dc=example,dc=com".into(),
            timeout: Duration::from_secs(5),
            page_size: 2,
            flavor: LdapFlavor::Generic(GenericLdap {
                disable,
                disable_removes_groups: false,
                placeholder_member: PLACEHOLDER.into(),
            }),
            ownership: LdapOwnership::default(),
        }
    }

    /// Members of a group as the directory holds them (read with ldap3 directly, StartTLS).
    async fn members(&self, cn: &str) -> Vec<String> {
        let (conn, mut ldap) = LdapConnAsync::with_settings(
            LdapConnSettings::new().set_no_tls_verify(true),
            &format!("ldap://127.0.0.1:{}", self.port),
        )
        .await
        .unwrap();
        tokio::spawn(async move { conn.drive().await });
        ldap.simple_bind(ADMIN, ADMIN_PW)
            .await
            .unwrap()
            .success()
            .unwrap();
        let (entries, _) = ldap
            .search(
                &format!("cn={cn},ou=groups,dc=example,dc=com"),
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["member"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let e = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap());
        let mut m = e.attrs.get("member").cloned().unwrap_or_default();
        m.sort();
        m
    }

    /// An admin connection (StartTLS, no verification: test set-up only).
    async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = LdapConnAsync::with_settings(
            LdapConnSettings::new().set_no_tls_verify(true),
            &format!("ldap://127.0.0.1:{}", self.port),
        )
        .await
        .unwrap();
        tokio::spawn(async move { conn.drive().await });
        ldap.simple_bind(ADMIN, ADMIN_PW)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }

    /// Adds an entry as the directory's admin (pre-existing accounts the hub did not create).
    async fn add(&self, dn: &str, attrs: &[(&str, &[&str])]) {
        let attrs: Vec<(&str, std::collections::HashSet<&str>)> = attrs
            .iter()
            .map(|(a, v)| (*a, v.iter().copied().collect()))
            .collect();
        self.admin()
            .await
            .add(dn, attrs)
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    /// An entry's attributes as the directory holds them, read by its DN (`None`: no such entry).
    async fn entry(&self, dn: &str) -> Option<std::collections::HashMap<String, Vec<String>>> {
        let r = self
            .admin()
            .await
            .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec!["*"])
            .await
            .unwrap();
        if r.1.rc == 32 {
            return None;
        }
        let (entries, _) = r.success().unwrap();
        entries
            .into_iter()
            .next()
            .map(|e| ldap3::SearchEntry::construct(e).attrs)
    }

    /// Result code of a simple bind as `dn`.
    async fn bind_rc(&self, dn: &str, pw: &str) -> u32 {
        let (conn, mut ldap) = LdapConnAsync::new(&format!("ldap://127.0.0.1:{}", self.port))
            .await
            .unwrap();
        tokio::spawn(async move { conn.drive().await });
        ldap.simple_bind(dn, pw).await.unwrap().rc
    }
}

fn spec(key: &str, given: &str, family: &str, email: Option<&str>) -> AccountSpec {
    let mut attributes = serde_json::Map::new();
    attributes.insert("userName".into(), json!(key));
    attributes.insert(
        "name".into(),
        json!({ "givenName": given, "familyName": family }),
    );
    attributes.insert("displayName".into(), json!(format!("{given} {family}")));
    attributes.insert("externalId".into(), json!(format!("E-{key}")));
    attributes.insert("password".into(), json!("Us3r-Passw0rd!"));
    if let Some(e) = email {
        attributes.insert("emails".into(), json!([{ "value": e, "primary": true }]));
    }
    AccountSpec {
        account: AccountRef::new(key),
        attributes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_lifecycle_over_starttls_with_disabled_ou() {
    let s = Slapd::start();
    let c = LdapConnector::new(s.config(
        LdapTls::StartTls,
        DisableMethod::MoveToOu("ou=disabled,dc=example,dc=com".into()),
    ))
    .unwrap();
    assert!(c.capabilities().knows_kind("group"));

    // create
    let jdoe = c
        .create_or_adopt(&spec("jdoe", "Jane", "Doe", Some("jdoe@example.com")))
        .await
        .expect("create");
    assert_eq!(
        jdoe.id.as_deref(),
        Some("uid=jdoe,ou=people,dc=example,dc=com")
    );
    let st = c.read(&jdoe).await.unwrap().expect("exists");
    assert!(st.enabled);
    assert_eq!(st.attributes["displayName"], "Jane Doe");
    assert_eq!(st.attributes["name"]["familyName"], "Doe");
    assert_eq!(st.attributes["emails"][0]["value"], "jdoe@example.com");
    assert_eq!(st.attributes["externalId"], "E-jdoe");
    // the password was set: the user can bind
    assert_eq!(
        s.bind_rc("uid=jdoe,ou=people,dc=example,dc=com", "Us3r-Passw0rd!")
            .await,
        0
    );

    // create again adopts; adopting a pre-existing entry converges it
    assert_eq!(
        c.create_or_adopt(&spec("jdoe", "Jane", "Doe", Some("jdoe@example.com")))
            .await
            .unwrap(),
        jdoe
    );
    let legacy = c
        .create_or_adopt(&spec("legacy", "Leg", "Acy", Some("legacy@example.com")))
        .await
        .expect("adopt");
    assert_eq!(
        legacy.id.as_deref(),
        Some("uid=legacy,ou=people,dc=example,dc=com")
    );
    let st = c.read(&legacy).await.unwrap().unwrap();
    assert_eq!(st.attributes["cn"], "Leg Acy");
    assert_eq!(st.attributes["emails"][0]["value"], "legacy@example.com");

    // update: surname changes, email removed
    c.update(&spec("jdoe", "Jane", "Roe", None))
        .await
        .expect("update");
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert_eq!(st.attributes["name"]["familyName"], "Roe");
    assert!(st.attributes.get("emails").is_none());

    // grant: the placeholder leaves once a real member is in; twice is fine
    let eng = Entitlement::new("group", "engineering");
    let oncall = Entitlement::new("group", "cn=oncall,ou=groups,dc=example,dc=com");
    for e in [&eng, &oncall, &eng] {
        c.grant(&jdoe, e).await.expect("grant");
    }
    c.grant(&legacy, &eng).await.unwrap();
    assert_eq!(
        s.members("engineering").await,
        vec![
            "uid=jdoe,ou=people,dc=example,dc=com".to_owned(),
            "uid=legacy,ou=people,dc=example,dc=com".to_owned()
        ]
    );
    let mut ents = c.read(&jdoe).await.unwrap().unwrap().entitlements;
    ents.sort();
    assert_eq!(
        ents,
        vec![
            Entitlement::new("group", "engineering"),
            Entitlement::new("group", "oncall")
        ]
    );
    let e = c
        .grant(&jdoe, &Entitlement::new("group", "nope"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);

    // revoke: oncall's last real member goes -> placeholder comes back (groupOfNames needs one)
    for _ in 0..2 {
        c.revoke(&jdoe, &oncall).await.expect("revoke last member");
    }
    assert_eq!(s.members("oncall").await, vec![PLACEHOLDER.to_owned()]);
    c.revoke(&jdoe, &Entitlement::new("group", "no-such-group"))
        .await
        .unwrap();

    // disable: moved to the disabled OU, still found by key; enable moves it back
    c.set_enabled(&jdoe, false).await.expect("disable");
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert!(!st.enabled);
    assert_eq!(
        st.account.id.as_deref(),
        Some("uid=jdoe,ou=disabled,dc=example,dc=com")
    );
    // refint rewrote the membership to the new DN
    assert!(s
        .members("engineering")
        .await
        .contains(&"uid=jdoe,ou=disabled,dc=example,dc=com".to_owned()));
    c.set_enabled(&jdoe, false).await.expect("disable twice");
    c.set_enabled(&jdoe, true).await.expect("enable");
    assert!(c.read(&jdoe).await.unwrap().unwrap().enabled);

    // list with the paged results control (page size 2): every inetOrgPerson exactly once
    for i in 0..3 {
        c.create_or_adopt(&spec(&format!("bulk{i}"), "Bulk", &format!("N{i}"), None))
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut page = None;
    let mut pages = 0;
    loop {
        let p = c.list_accounts(page.as_deref()).await.expect("list");
        pages += 1;
        assert!(p.accounts.len() <= 2);
        keys.extend(p.accounts.iter().map(|a| a.account.key.clone()));
        match p.next {
            Some(n) => page = Some(n),
            None => break,
        }
    }
    keys.sort();
    assert_eq!(keys, vec!["bulk0", "bulk1", "bulk2", "jdoe", "legacy"]);
    assert!(pages >= 3, "{pages} pages");

    // delete: memberships removed first (the last one swaps the placeholder in), then the entry
    c.delete(&legacy).await.expect("delete");
    c.delete(&jdoe).await.expect("delete");
    assert!(c.read(&jdoe).await.unwrap().is_none());
    assert_eq!(s.members("engineering").await, vec![PLACEHOLDER.to_owned()]);
    c.delete(&jdoe).await.expect("delete again");
    c.revoke(&jdoe, &eng)
        .await
        .expect("revoke on a gone account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_ppolicy_disable_over_ldaps_blocks_bind() {
    let s = Slapd::start();
    let mut cfg = s.config(LdapTls::Ldaps, DisableMethod::PpolicyLock);
    if let LdapFlavor::Generic(g) = &mut cfg.flavor {
        g.disable_removes_groups = true;
    }
    let c = LdapConnector::new(cfg).unwrap();
    let u = c
        .create_or_adopt(&spec("locky", "Lock", "Y", None))
        .await
        .expect("create over LDAPS");
    let dn = "uid=locky,ou=people,dc=example,dc=com";
    c.grant(&u, &Entitlement::new("group", "engineering"))
        .await
        .unwrap();
    assert_eq!(s.bind_rc(dn, "Us3r-Passw0rd!").await, 0);
    c.set_enabled(&u, false).await.expect("lock");
    let st = c.read(&u).await.unwrap().unwrap();
    assert!(!st.enabled);
    assert!(st.entitlements.is_empty(), "disable removed groups");
    assert_eq!(
        s.bind_rc(dn, "Us3r-Passw0rd!").await,
        49,
        "locked account cannot bind"
    );
    c.set_enabled(&u, true).await.expect("unlock");
    assert!(c.read(&u).await.unwrap().unwrap().enabled);
    assert_eq!(s.bind_rc(dn, "Us3r-Passw0rd!").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_tls_is_verified_and_plain_needs_explicit_config() {
    let s = Slapd::start();
    // a CA that did not sign the server's certificate: permanent TLS error, both modes
    let other = Scratch::new("other-ca");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support_standins/make-certs.sh");
    assert!(Command::new("bash")
        .arg(script)
        .arg(other.path())
        .status()
        .unwrap()
        .success());
    for tls in [LdapTls::Ldaps, LdapTls::StartTls] {
        let mut cfg = s.config(tls, DisableMethod::PpolicyLock);
        cfg.ca_file = Some(other.path().join("ca.pem"));
        let c = LdapConnector::new(cfg).unwrap();
        let e = c.read(&AccountRef::new("x")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permanent, "{tls:?}: {e}");
        assert!(
            e.message.contains("TLS") || e.message.to_lowercase().contains("certificate"),
            "{e}"
        );
    }
    // TLS without a CA, or a mode that does not match the URL, is refused at construction
    let mut cfg = s.config(LdapTls::StartTls, DisableMethod::PpolicyLock);
    cfg.ca_file = None;
    assert!(LdapConnector::new(cfg).is_err());
    let mut cfg = s.config(LdapTls::Ldaps, DisableMethod::PpolicyLock);
    cfg.url = format!("ldap://127.0.0.1:{}", s.port);
    assert!(LdapConnector::new(cfg).is_err());
    // plain ldap:// works when configured explicitly, and sends no password
    let c =
        LdapConnector::new(s.config(LdapTls::PlainInsecure, DisableMethod::PpolicyLock)).unwrap();
    c.create_or_adopt(&spec("plain", "Pla", "In", None))
        .await
        .expect("plain");
    assert_eq!(
        s.bind_rc("uid=plain,ou=people,dc=example,dc=com", "Us3r-Passw0rd!")
            .await,
        49
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_bad_credentials_are_permanent_and_never_printed() {
    let s = Slapd::start();
    let mut cfg = s.config(LdapTls::StartTls, DisableMethod::PpolicyLock);
    let wrong = "not-the-admin-password-42";
    cfg.bind_password = Secret::new(wrong);
    let c = LdapConnector::new(cfg).unwrap();
    let e = c.read(&AccountRef::new("jdoe")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("49"), "{e}");
    let text = format!("{e} {e:?} {c:?}");
    assert!(!text.contains(wrong), "{text}");
}

/// A tiny LDAP responder that answers every request with result code `rc` (busy = 51,
/// unavailable = 52): slapd cannot be made to say "busy" on demand.
async fn ldap_responder(rc: u8) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n < 5 {
                        return;
                    }
                    // LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp ... }
                    let hdr = if buf[1] & 0x80 != 0 {
                        2 + (buf[1] & 0x7f) as usize
                    } else {
                        2
                    };
                    let id_len = buf[hdr + 1] as usize;
                    let id = &buf[hdr + 2..hdr + 2 + id_len];
                    let op = buf[hdr + 2 + id_len];
                    // answer with the matching response tag (bindRequest 0x60 -> bindResponse 0x61…)
                    let resp_tag = match op {
                        0x63 => 0x65, // search -> searchResDone
                        other => other + 1,
                    };
                    let text = b"server is busy";
                    let mut result = vec![0x0a, 0x01, rc, 0x04, 0x00, 0x04, text.len() as u8];
                    result.extend_from_slice(text);
                    let mut op_bytes = vec![resp_tag, result.len() as u8];
                    op_bytes.extend(result);
                    let mut body = vec![0x02, id_len as u8];
                    body.extend_from_slice(id);
                    body.extend(op_bytes);
                    let mut msg = vec![0x30, body.len() as u8];
                    msg.extend(body);
                    if sock.write_all(&msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn ldap_busy_and_unavailable_are_retryable() {
    for rc in [51u8, 52] {
        let addr = ldap_responder(rc).await;
        let cfg = LdapConfig {
            name: "ldap-test".into(),
            url: format!("ldap://{addr}"),
            tls: LdapTls::PlainInsecure,
            ca_file: None,
            bind_dn: ADMIN.into(),
            bind_password: Secret::new(ADMIN_PW),
            search_base: "dc=example,dc=com".into(),
            users_dn: "ou=people,dc=example,dc=com".into(),
            groups_dn: "ou=groups,dc=example,dc=com".into(),
            timeout: Duration::from_secs(5),
            page_size: 10,
            flavor: LdapFlavor::Generic(GenericLdap {
                disable: DisableMethod::PpolicyLock,
                disable_removes_groups: false,
                placeholder_member: PLACEHOLDER.into(),
            }),
            ownership: LdapOwnership::default(),
        };
        let c = LdapConnector::new(cfg).unwrap();
        let e = c.read(&AccountRef::new("x")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Retryable, "rc {rc}: {e}");
        assert!(e.message.contains(&format!("result {rc}")), "{e}");
    }
}

#[tokio::test]
async fn ldap_timeout_is_retryable() {
    let addr = silent_listener().await;
    let cfg = LdapConfig {
        name: "ldap-test".into(),
        url: format!("ldap://{addr}"),
        tls: LdapTls::PlainInsecure,
        ca_file: None,
        bind_dn: ADMIN.into(),
        bind_password: Secret::new(ADMIN_PW),
        search_base: "dc=example,dc=com".into(),
        users_dn: "ou=people,dc=example,dc=com".into(),
        groups_dn: "ou=groups,dc=example,dc=com".into(),
        timeout: Duration::from_millis(500),
        page_size: 10,
        flavor: LdapFlavor::Generic(GenericLdap {
            disable: DisableMethod::PpolicyLock,
            disable_removes_groups: false,
            placeholder_member: PLACEHOLDER.into(),
        }),
        ownership: LdapOwnership::default(),
    };
    let c = LdapConnector::new(cfg).unwrap();
    let start = Instant::now();
    let e = c.read(&AccountRef::new("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

const PEOPLE: &str = "ou=people,dc=example,dc=com";

fn person<'a>(uid: &'a str, cn: &'a str) -> Vec<(&'a str, &'a [&'a str])> {
    let mut v: Vec<(&str, &[&str])> = vec![
        ("objectClass", &["inetOrgPerson"]),
        ("sn", &["Before"]),
        ("mail", &["before@example.com"]),
    ];
    v.push(("uid", std::slice::from_ref(Box::leak(Box::new(uid)))));
    v.push(("cn", std::slice::from_ref(Box::leak(Box::new(cn)))));
    v
}

fn refused(r: Result<impl std::fmt::Debug, connectors::ConnectorError>) -> String {
    let e = r.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    e.message
}

/// Pre-existing accounts: protected ones (default list and configured globs) are never adopted
/// nor touched, out-of-scope and other-owned ones are refused, an unowned in-scope one is
/// adopted, marked and enabled; `never` refuses what the hub did not create, `always` takes
/// over another owner's account. Every refusal leaves the entry as it was (read back from slapd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_adoption_is_scoped_marked_and_spares_protected_accounts() {
    let s = Slapd::start();
    s.add(
        "ou=service,dc=example,dc=com",
        &[
            ("objectClass", &["organizationalUnit"]),
            ("ou", &["service"]),
        ],
    )
    .await;
    let admin_dn = format!("uid=Administrator,{PEOPLE}");
    let mut admin = person("Administrator", "Administrator");
    admin.push(("description", &["Built-in account"]));
    s.add(&admin_dn, &admin).await;
    let glass_dn = format!("uid=break-glass,{PEOPLE}");
    s.add(&glass_dn, &person("break-glass", "Break Glass"))
        .await;
    let outsider_dn = "uid=svc-ci,ou=service,dc=example,dc=com";
    s.add(outsider_dn, &person("svc-ci", "CI")).await;
    let owned_dn = format!("uid=owned,{PEOPLE}");
    let mut owned = person("owned", "Owned");
    owned.push(("description", &["scimhub:other-hub"]));
    s.add(&owned_dn, &owned).await;
    let idle_dn = "uid=idle,ou=disabled,dc=example,dc=com";
    s.add(idle_dn, &person("idle", "Idle")).await;

    let disable = DisableMethod::MoveToOu("ou=disabled,dc=example,dc=com".into());
    let mut cfg = s.config(LdapTls::StartTls, disable.clone());
    cfg.ownership.protected_accounts = vec!["BREAK*".into()];
    let c = LdapConnector::new(cfg).unwrap();

    let before_admin = s.entry(&admin_dn).await.unwrap();
    let a = AccountRef::new("Administrator");
    let why = refused(
        c.create_or_adopt(&spec("Administrator", "Evil", "Mallory", None))
            .await,
    );
    assert!(why.contains("protected"), "{why}");
    refused(
        c.update(&spec("administrator", "Evil", "Mallory", None))
            .await,
    );
    refused(c.set_enabled(&a, false).await);
    refused(c.grant(&a, &Entitlement::new("group", "engineering")).await);
    refused(c.delete(&a).await);
    assert_eq!(s.entry(&admin_dn).await.unwrap(), before_admin, "untouched");

    let before = s.entry(&glass_dn).await.unwrap();
    refused(
        c.create_or_adopt(&spec("break-glass", "X", "Y", None))
            .await,
    );
    refused(c.delete(&AccountRef::new("break-glass")).await);
    assert_eq!(s.entry(&glass_dn).await.unwrap(), before);

    let before = s.entry(outsider_dn).await.unwrap();
    let why = refused(c.create_or_adopt(&spec("svc-ci", "X", "Y", None)).await);
    assert!(why.contains("outside the scope"), "{why}");
    refused(c.delete(&AccountRef::new("svc-ci")).await);
    assert_eq!(s.entry(outsider_dn).await.unwrap(), before);

    let before = s.entry(&owned_dn).await.unwrap();
    let why = refused(c.create_or_adopt(&spec("owned", "X", "Y", None)).await);
    assert!(why.contains("another owner"), "{why}");
    refused(c.set_enabled(&AccountRef::new("owned"), false).await);
    assert_eq!(s.entry(&owned_dn).await.unwrap(), before);

    // a protected group is never granted, even to a managed account
    let jdoe = c
        .create_or_adopt(&spec("jdoe", "Jane", "Doe", None))
        .await
        .unwrap();
    let why = refused(
        c.grant(&jdoe, &Entitlement::new("group", "domain admins"))
            .await,
    );
    assert!(why.contains("protected"), "{why}");
    assert_eq!(
        s.entry(&format!("uid=jdoe,{PEOPLE}")).await.unwrap()["description"],
        vec!["scimhub:default"],
        "what the hub creates carries its mark"
    );

    // unowned, in scope (the disabled OU), disabled: adopted, marked, converged and enabled
    let idle = c
        .create_or_adopt(&spec("idle", "Ida", "Le", None))
        .await
        .expect("adopt");
    let now_dn = format!("uid=idle,{PEOPLE}");
    assert_eq!(idle.id.as_deref(), Some(now_dn.as_str()));
    assert!(s.entry(idle_dn).await.is_none());
    let e = s.entry(&now_dn).await.unwrap();
    assert_eq!(e["description"], vec!["scimhub:default"]);
    assert_eq!(e["sn"], vec!["Le"]);
    assert!(c.read(&idle).await.unwrap().unwrap().enabled);

    // never: the pre-existing `legacy` is refused; what this hub created is still its own
    let mut cfg = s.config(LdapTls::StartTls, disable.clone());
    cfg.ownership.adopt = Adopt::Never;
    let never = LdapConnector::new(cfg).unwrap();
    let before = s.entry(&format!("uid=legacy,{PEOPLE}")).await.unwrap();
    let why = refused(never.create_or_adopt(&spec("legacy", "X", "Y", None)).await);
    assert!(why.contains("never"), "{why}");
    assert_eq!(
        s.entry(&format!("uid=legacy,{PEOPLE}")).await.unwrap(),
        before
    );
    never
        .create_or_adopt(&spec("jdoe", "Jane", "Doe", None))
        .await
        .expect("its own mark");

    // always: another owner's in-scope account is taken over and re-marked
    let mut cfg = s.config(LdapTls::StartTls, disable);
    cfg.ownership.adopt = Adopt::Always;
    let always = LdapConnector::new(cfg).unwrap();
    always
        .create_or_adopt(&spec("owned", "Own", "Ed", None))
        .await
        .expect("always adopts");
    assert_eq!(
        s.entry(&owned_dn).await.unwrap()["description"],
        vec!["scimhub:default"]
    );
    refused(
        always
            .create_or_adopt(&spec("svc-ci", "X", "Y", None))
            .await,
    );
    refused(
        always
            .create_or_adopt(&spec("Administrator", "X", "Y", None))
            .await,
    );
    assert_eq!(s.entry(&admin_dn).await.unwrap(), before_admin);
}

/// An entry whose CN holds an escaped comma (`cn=Doe\, John`, as AD names accounts after their
/// display name) is updated, disabled (moved), enabled, granted and deleted; a group with a
/// comma in its name reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_dn_with_an_escaped_comma_goes_through_the_lifecycle() {
    let s = Slapd::start();
    let dn = format!("cn=Doe\\, John,{PEOPLE}");
    s.add(&dn, &person("jdoe", "Doe, John")).await;
    s.add(
        "cn=Eng\\, Ops,ou=groups,dc=example,dc=com",
        &[
            ("objectClass", &["groupOfNames"]),
            ("cn", &["Eng, Ops"]),
            ("member", &[PLACEHOLDER]),
        ],
    )
    .await;
    let c = LdapConnector::new(s.config(
        LdapTls::StartTls,
        DisableMethod::MoveToOu("ou=disabled,dc=example,dc=com".into()),
    ))
    .unwrap();
    let acct = c
        .create_or_adopt(&spec("jdoe", "John", "Doe", None))
        .await
        .expect("adopt");
    c.update(&spec("jdoe", "John", "Doe-Smith", None))
        .await
        .expect("update");
    c.grant(&acct, &Entitlement::new("group", "Eng, Ops"))
        .await
        .expect("grant");
    let st = c.read(&acct).await.unwrap().unwrap();
    assert_eq!(st.entitlements, vec![Entitlement::new("group", "Eng, Ops")]);
    assert_eq!(st.attributes["name"]["familyName"], "Doe-Smith");

    c.set_enabled(&acct, false).await.expect("disable");
    let st = c.read(&acct).await.unwrap().unwrap();
    assert!(!st.enabled);
    let moved = s
        .entry("cn=Doe\\, John,ou=disabled,dc=example,dc=com")
        .await;
    assert_eq!(moved.unwrap()["cn"], vec!["Doe, John"]);
    c.set_enabled(&acct, false).await.expect("disable twice");
    c.set_enabled(&acct, true).await.expect("enable");
    assert!(c.read(&acct).await.unwrap().unwrap().enabled);
    assert!(s.entry(&dn).await.is_some());

    c.delete(&acct).await.expect("delete");
    assert!(s.entry(&dn).await.is_none());
    assert!(c.read(&acct).await.unwrap().is_none());
}
