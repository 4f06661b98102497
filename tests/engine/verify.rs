//! Post-change verification with a moved clock: the systems are read back a delay after a
//! leaver; a revocation a system silently did not apply is caught, raised and queued again; an
//! unreachable system is retried and then raised, never reported verified.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use connectors::ldap::{
    DisableMethod, GenericLdap, LdapConfig, LdapConnector, LdapFlavor, LdapOwnership, LdapTls,
};
use connectors::secret::Secret;
use connectors::{
    AccountPage, AccountRef, AccountSpec, AccountState, Capabilities, Connector, ConnectorError,
    Entitlement,
};
use scim_server::admin::in_tx;
use scim_server::store::verifications;
use serde_json::json;

use super::support_standins::stacks::Slapd;
use super::{incidents, outbox, user, Env, POLICY};

backends!(
    applied_leaver_is_verified_per_system,
    silently_kept_account_is_caught_and_disabled_again,
    unreachable_system_is_retried_then_raised,
    slapd_keeping_an_account_is_caught_and_disabled_again,
);

/// A system that answers a disable with success and keeps the account enabled while `deaf`.
#[derive(Debug, Clone)]
struct KeepsAccounts {
    inner: Arc<dyn Connector>,
    deaf: Arc<AtomicBool>,
}

#[async_trait]
impl Connector for KeepsAccounts {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        self.inner.create_or_adopt(spec).await
    }
    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.inner.update(spec).await
    }
    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        if !enabled && self.deaf.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.set_enabled(account, enabled).await
    }
    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.inner.delete(account).await
    }
    async fn grant(&self, a: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.inner.grant(a, e).await
    }
    async fn revoke(&self, a: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.inner.revoke(a, e).await
    }
    async fn revoke_sessions(&self, a: &AccountRef) -> Result<(), ConnectorError> {
        self.inner.revoke_sessions(a).await
    }
    async fn revoke_credentials(&self, a: &AccountRef) -> Result<(), ConnectorError> {
        self.inner.revoke_credentials(a).await
    }
    async fn transfer_ownership(
        &self,
        a: &AccountRef,
        to: &AccountRef,
    ) -> Result<(), ConnectorError> {
        self.inner.transfer_ownership(a, to).await
    }
    async fn read(&self, a: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        self.inner.read(a).await
    }
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        self.inner.list_accounts(page).await
    }
}

fn outcomes(env: &Env, user: &str) -> Vec<(String, String)> {
    in_tx(&env.store, |c| verifications::list(c, Some(user)))
        .unwrap()
        .into_iter()
        .map(|v| (v.connector, v.outcome))
        .collect()
}

fn open_incidents(env: &Env, kind: &str) -> Vec<incidents::Incident> {
    in_tx(&env.store, incidents::list_open)
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == kind)
        .collect()
}

fn verify_now(env: &Env) -> usize {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(env.workers.run_verifications())
        .unwrap()
}

/// Ann, an engineer (slack and github accounts), leaves; her leaver plan runs.
fn leaver(env: &Env) -> String {
    let ann = env.create_user(user("ann", "Employee", "Engineering", "Engineer"));
    env.run();
    env.patch_user(&ann, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    ann
}

fn applied_leaver_is_verified_per_system(env: Env) {
    let ann = leaver(&env);
    // Nothing is read before the delay.
    env.clock.advance(Duration::minutes(14));
    env.run();
    assert_eq!(outcomes(&env, &ann), vec![]);
    env.clock.advance(Duration::minutes(2));
    env.run();
    assert_eq!(
        outcomes(&env, &ann),
        vec![
            ("github".to_string(), "verified".to_string()),
            ("slack".to_string(), "verified".to_string())
        ]
    );
    let text = scim_server::metrics::render(&env.store, true, 100).unwrap();
    assert!(
        text.contains(
            "scimhub_verification_outcomes_total{connector=\"slack\",outcome=\"verified\"}"
        ),
        "{text}"
    );
    let rows = in_tx(&env.store, |c| verifications::list(c, Some(&ann))).unwrap();
    assert!(rows[0]
        .detail
        .contains("session revocation cannot be read back"));
    assert!(open_incidents(&env, "verification_mismatch").is_empty());
    // A joiner is not verified by default.
    let bob = env.create_user(user("bob", "Employee", "Sales", "Rep"));
    env.run();
    env.clock.advance(Duration::hours(1));
    env.run();
    assert_eq!(outcomes(&env, &bob), vec![]);
}

fn silently_kept_account_is_caught_and_disabled_again(env: Env) {
    let deaf = Arc::new(AtomicBool::new(true));
    env.engine.connectors.insert(
        "github",
        Arc::new(KeepsAccounts {
            inner: Arc::new(env.app("github").clone()),
            deaf: deaf.clone(),
        }),
    );
    let ann = leaver(&env);
    // The disable was answered with success, and the account is still enabled.
    assert!(env.app("github").account("ann").unwrap().enabled);
    env.clock.advance(Duration::minutes(16));
    assert!(verify_now(&env) >= 2);
    assert_eq!(
        outcomes(&env, &ann),
        vec![
            ("github".to_string(), "mismatch".to_string()),
            ("slack".to_string(), "verified".to_string())
        ]
    );
    let raised = open_incidents(&env, "verification_mismatch");
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].connector.as_deref(), Some("github"));
    assert!(
        raised[0].reason.contains("account is still enabled"),
        "{}",
        raised[0].reason
    );
    // The disable is queued again.
    let pending: Vec<String> = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(&ann), Some(outbox::OutboxStatus::Pending), 100)
    })
    .unwrap()
    .into_iter()
    .filter(|r| r.connector == "github")
    .map(|r| r.op)
    .collect();
    assert!(
        pending
            .iter()
            .any(|o| o.contains("\"set_enabled\"") && o.contains("\"enabled\":false")),
        "{pending:?}"
    );
    // Once the system applies it, the next check verifies.
    deaf.store(false, Ordering::SeqCst);
    env.run();
    assert!(!env.app("github").account("ann").unwrap().enabled);
    env.clock.advance(Duration::minutes(16));
    env.run();
    assert_eq!(
        outcomes(&env, &ann).last(),
        Some(&("github".to_string(), "verified".to_string()))
    );
    // One incident for review, not one per check.
    assert_eq!(open_incidents(&env, "verification_mismatch").len(), 1);
}

fn unreachable_system_is_retried_then_raised(env: Env) {
    let ann = leaver(&env);
    env.app("slack")
        .fail_next((0..4).map(|_| ConnectorError::retryable("slack", "connection refused")));
    env.clock.advance(Duration::minutes(16));
    env.run();
    for _ in 0..3 {
        // Retried with backoff: no outcome and no incident yet, and never "verified".
        assert!(!outcomes(&env, &ann).iter().any(|(c, _)| c == "slack"));
        assert!(open_incidents(&env, "verification_unreadable").is_empty());
        env.clock.advance(Duration::minutes(11));
        env.run();
    }
    let slack: Vec<String> = outcomes(&env, &ann)
        .into_iter()
        .filter(|(c, _)| c == "slack")
        .map(|(_, o)| o)
        .collect();
    assert_eq!(slack, vec!["unreadable"]);
    let raised = open_incidents(&env, "verification_unreadable");
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].connector.as_deref(), Some("slack"));
    assert!(outcomes(&env, &ann).contains(&("github".to_string(), "verified".to_string())));
}

/// The `erp` system is a real OpenLDAP slapd (the LDAP connector, accounts disabled by a move to
/// `ou=disabled`) that answers the leaver's disable with success but keeps the account where it
/// was; the verification reads slapd back, finds it enabled, and the disable queued again moves it.
fn slapd_keeping_an_account_is_caught_and_disabled_again(env: Env) {
    let slapd = Slapd::start();
    let config = || LdapConfig {
        name: "erp".into(),
        url: format!("ldap://127.0.0.1:{}", slapd.port),
        tls: LdapTls::StartTls,
        ca_file: Some(slapd.ca()),
        bind_dn: "cn=admin,dc=example,dc=com".into(),
        bind_password: Secret::new("adminpw"),
        search_base: "dc=example,dc=com".into(),
        users_dn: "ou=people,dc=example,dc=com".into(),
        groups_dn: "ou=groups,dc=example,dc=com".into(),
        timeout: std::time::Duration::from_secs(5),
        page_size: 50,
        flavor: LdapFlavor::Generic(GenericLdap {
            disable: DisableMethod::MoveToOu("ou=disabled,dc=example,dc=com".into()),
            disable_removes_groups: false,
            placeholder_member: "cn=placeholder,ou=people,dc=example,dc=com".into(),
        }),
        ownership: LdapOwnership::default(),
    };
    let ldap: Arc<dyn Connector> = Arc::new(LdapConnector::new(config()).unwrap());
    // The test reads through its own instance: a pooled LDAP connection is driven by the
    // runtime that opened it, and the workers run on another.
    let probe = LdapConnector::new(config()).unwrap();
    let deaf = Arc::new(AtomicBool::new(true));
    env.engine.connectors.insert(
        "erp",
        Arc::new(KeepsAccounts {
            inner: ldap.clone(),
            deaf: deaf.clone(),
        }),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let read = |key: &str| rt.block_on(probe.read(&AccountRef::new(key))).unwrap();
    let mut doc = user("fay", "Employee", "Finance", "Accounts Payable");
    doc["name"] = json!({"givenName": "Fay", "familyName": "Ng"});
    let fay = env.create_user(doc);
    env.run();
    assert!(read("fay").expect("created on slapd").enabled);
    env.patch_user(&fay, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    assert!(read("fay").unwrap().enabled, "slapd kept the account");
    env.clock.advance(Duration::minutes(16));
    env.run();
    let erp: Vec<String> = outcomes(&env, &fay)
        .into_iter()
        .filter(|(c, _)| c == "erp")
        .map(|(_, o)| o)
        .collect();
    assert_eq!(erp, vec!["mismatch"]);
    let raised = open_incidents(&env, "verification_mismatch");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(
        raised[0].reason.contains("account is still enabled"),
        "{}",
        raised[0].reason
    );
    // slapd applies the disable queued again (the last run already tried it, deaf).
    deaf.store(false, Ordering::SeqCst);
    env.clock.advance(Duration::minutes(16));
    env.run();
    env.clock.advance(Duration::minutes(16));
    env.run();
    assert!(!read("fay").unwrap().enabled, "moved to ou=disabled");
    let erp: Vec<String> = outcomes(&env, &fay)
        .into_iter()
        .filter(|(c, _)| c == "erp")
        .map(|(_, o)| o)
        .collect();
    assert_eq!(erp.last().map(String::as_str), Some("verified"), "{erp:?}");
}
