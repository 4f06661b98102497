//! Post-change verification with a moved clock: the systems are read back a delay after a
//! leaver; a revocation a system silently did not apply is caught, raised and queued again; an
//! unreachable system is retried and then raised, never reported verified.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
use scim_server::store::{outbox, verifications};
use serde_json::json;

use super::support_standins::stacks::Slapd;
use super::{incidents, user, Env, POLICY};

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
    // Checks of different systems run concurrently: recorded in either order.
    let mut got = outcomes(&env, &ann);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("github".to_string(), "verified".to_string()),
            ("slack".to_string(), "verified".to_string())
        ]
    );
    let text = scim_server::metrics::render(
        &env.store,
        scim_server::metrics::EngineGauges::On { guard: None },
        100,
    )
    .unwrap();
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
    let mut got = outcomes(&env, &ann);
    got.sort();
    assert_eq!(
        got,
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

/// The engine tests' policy with the circuits out of the way (they open only after 100
/// failures in a row), so an outage parks the operations after their retry budget.
fn outage_policy() -> String {
    POLICY.replacen(
        "name = \"slack\"\ntype = \"memory\"\n",
        "name = \"slack\"\ntype = \"memory\"\ncircuit_failures = 100\n",
        1,
    )
}

mod outage {
    macro_rules! outage_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite { $( #[test] fn $name() {
                if let Some(e) = super::super::Env::new(false, &super::super::outage_policy()) {
                    super::super::$name(e)
                }
            } )* }
            mod postgres { $( #[test] fn $name() {
                if let Some(e) = super::super::Env::new(true, &super::super::outage_policy()) {
                    super::super::$name(e)
                }
            } )* }
        };
    }
    outage_backends!(
        unreadable_after_an_outage_is_read_again_once_the_operator_retries,
        reads_run_concurrently_and_a_slow_system_does_not_hold_back_others,
    );
}

/// Counters a [`Probe`]'s reads share.
#[derive(Debug, Default)]
struct Reads {
    /// Reads started and not yet answered, and the most at once.
    in_flight: AtomicUsize,
    most: AtomicUsize,
    started: AtomicUsize,
    /// Reads answered.
    done: AtomicUsize,
    /// Held reads let go by the deadline rather than by their condition.
    gave_up: AtomicUsize,
}

/// A system in front of a memory stand-in: while `down` every call fails as an unreachable
/// system does; its reads are counted, and when `hold` is set a read is answered only once
/// `hold` says so (no time involved but a deadline against hanging).
#[derive(Clone)]
struct Probe {
    inner: Arc<dyn Connector>,
    down: Arc<AtomicBool>,
    reads: Arc<Reads>,
    hold: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("name", &self.inner.name())
            .finish()
    }
}

impl Probe {
    fn new(inner: Arc<dyn Connector>) -> Self {
        Probe {
            inner,
            down: Arc::new(AtomicBool::new(false)),
            reads: Arc::new(Reads::default()),
            hold: None,
        }
    }
    fn gate(&self) -> Result<(), ConnectorError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ConnectorError::retryable(
                self.inner.name(),
                "connection refused",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Connector for Probe {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        self.gate()?;
        self.inner.create_or_adopt(spec).await
    }
    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.update(spec).await
    }
    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.set_enabled(account, enabled).await
    }
    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.delete(account).await
    }
    async fn grant(&self, a: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.grant(a, e).await
    }
    async fn revoke(&self, a: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.revoke(a, e).await
    }
    async fn revoke_sessions(&self, a: &AccountRef) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.revoke_sessions(a).await
    }
    async fn revoke_credentials(&self, a: &AccountRef) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.revoke_credentials(a).await
    }
    async fn transfer_ownership(
        &self,
        a: &AccountRef,
        to: &AccountRef,
    ) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.transfer_ownership(a, to).await
    }
    async fn read(&self, a: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        self.gate()?;
        let r = &self.reads;
        r.started.fetch_add(1, Ordering::SeqCst);
        let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        r.most.fetch_max(now, Ordering::SeqCst);
        if let Some(hold) = &self.hold {
            // A guard against hanging, not a timing assertion: the test checks the counters.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !hold() {
                if std::time::Instant::now() >= deadline {
                    r.gave_up.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        let out = self.inner.read(a).await;
        r.in_flight.fetch_sub(1, Ordering::SeqCst);
        r.done.fetch_add(1, Ordering::SeqCst);
        out
    }
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        self.gate()?;
        self.inner.list_accounts(page).await
    }
}

/// Slack is down through ann's leaver: its operations are parked after their budget and its
/// check, due meanwhile, reports `unreadable` after its reads and raises its incident. Slack
/// comes back and the operator retries its parked operations: they run, and the check is armed
/// again, reads slack back and records `verified`, the event showing that as slack's latest.
fn unreadable_after_an_outage_is_read_again_once_the_operator_retries(env: Env) {
    let ann = env.create_user(user("ann", "Employee", "Engineering", "Engineer"));
    env.run();
    let slack = Probe::new(Arc::new(env.app("slack").clone()));
    env.engine
        .connectors
        .insert("slack", Arc::new(slack.clone()));
    slack.down.store(true, Ordering::SeqCst);
    env.patch_user(&ann, |d| {
        d.insert("active".into(), json!(false));
    });
    let slack_outcomes = |env: &Env| -> Vec<String> {
        outcomes(env, &ann)
            .into_iter()
            .filter(|(c, _)| c == "slack")
            .map(|(_, o)| o)
            .collect()
    };
    // Each slack operation parks after its budget, in order; the check waits for them and then
    // tries its reads, with backoff.
    for _ in 0..40 {
        env.run();
        if !slack_outcomes(&env).is_empty() {
            break;
        }
        env.clock.advance(Duration::minutes(30));
    }
    let parked = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(&ann), Some(outbox::OutboxStatus::Failed), 100)
    })
    .unwrap();
    assert!(
        !parked.is_empty() && parked.iter().all(|r| r.connector == "slack"),
        "{parked:?}"
    );
    assert_eq!(slack_outcomes(&env), vec!["unreadable"]);
    let open = open_incidents(&env, "verification_unreadable");
    assert_eq!(open.len(), 1);
    let raised_id = open[0].id;
    assert!(env.app("slack").account("ann").unwrap().enabled);

    slack.down.store(false, Ordering::SeqCst);
    let out = env.admin.retry_connector("slack", "ops").unwrap();
    assert_eq!(out.requeued.len(), parked.len(), "{out:?}");
    env.run();
    assert!(
        !env.app("slack").account("ann").unwrap().enabled,
        "disabled"
    );
    // Read again the connector's delay after the retry, not at once.
    assert_eq!(slack_outcomes(&env), vec!["unreadable"]);
    env.clock.advance(Duration::minutes(16));
    env.run();
    assert_eq!(slack_outcomes(&env), vec!["unreadable", "verified"]);
    // Slack answered: its "could not be read" incident is resolved, with what the read found.
    assert!(open_incidents(&env, "verification_unreadable").is_empty());
    let closed = in_tx(&env.store, |c| incidents::get(c, raised_id))
        .unwrap()
        .unwrap();
    assert_eq!(closed.status, "resolved");
    assert_eq!(closed.resolved_by.as_deref(), Some("verifier"));
    assert!(
        closed
            .note
            .as_deref()
            .is_some_and(|n| n.ends_with(": verified")),
        "{closed:?}"
    );
    // The event shows slack's latest outcome.
    let page = env
        .admin
        .events(&scim_server::admin::events::EventQuery {
            user: Some(ann.clone()),
            kind: Some("leaver".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let detail = env.admin.event(page.events[0].id).unwrap();
    let sys = detail
        .systems
        .iter()
        .find(|s| s.connector == "slack")
        .unwrap();
    assert_eq!(sys.verification.as_deref(), Some("verified"));
    assert_eq!(sys.verifications.len(), 2);
    // No further check comes back.
    env.clock.advance(Duration::hours(2));
    env.run();
    assert_eq!(slack_outcomes(&env), vec!["unreadable", "verified"]);
}

/// Four leavers' checks come due together. Github's reads are held until all four of them are
/// in flight at once and slack's four checks have all been answered: the runner reads github's
/// systems concurrently and slack's checks do not wait behind github's slow reads.
fn reads_run_concurrently_and_a_slow_system_does_not_hold_back_others(env: Env) {
    let users: Vec<String> = ["ann", "bob", "cat", "dan"]
        .iter()
        .map(|n| {
            let id = env.create_user(user(n, "Employee", "Engineering", "Engineer"));
            env.run();
            env.patch_user(&id, |d| {
                d.insert("active".into(), json!(false));
            });
            id
        })
        .collect();
    env.run();
    let slack = Probe::new(Arc::new(env.app("slack").clone()));
    let mut github = Probe::new(Arc::new(env.app("github").clone()));
    let (fast, slow) = (slack.reads.clone(), github.reads.clone());
    github.hold = Some(Arc::new(move || {
        slow.started.load(Ordering::SeqCst) >= 4 && fast.done.load(Ordering::SeqCst) >= 4
    }));
    env.engine
        .connectors
        .insert("slack", Arc::new(slack.clone()));
    env.engine
        .connectors
        .insert("github", Arc::new(github.clone()));
    env.clock.advance(Duration::minutes(16));
    assert_eq!(verify_now(&env), 8);
    assert_eq!(
        github.reads.most.load(Ordering::SeqCst),
        4,
        "github's four reads were in flight at once"
    );
    assert_eq!(
        github.reads.gave_up.load(Ordering::SeqCst),
        0,
        "github's reads were let go because slack's four were answered meanwhile"
    );
    assert_eq!(slack.reads.done.load(Ordering::SeqCst), 4);
    for u in &users {
        let mut got = outcomes(&env, u);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("github".to_string(), "verified".to_string()),
                ("slack".to_string(), "verified".to_string())
            ]
        );
    }
}
