//! Outages: the retry budget is set per connector (`max_attempts` in the policy); a connector
//! without one keeps the workers' default. After an outage one command resumes the connector's
//! parked and waiting operations, in their per-user order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use connectors::memory::MemoryConnector;
use connectors::{AccountRef, AccountSpec, Capabilities, Connector, ConnectorError, Entitlement};
use scim_server::admin::in_tx;
use scim_server::store::{incidents, outbox};

use super::{set_dept, user, Env, POLICY};

/// The memory stand-in behind a switch: while down every call fails as an unreachable system
/// does (retryable), and is counted.
#[derive(Debug, Clone)]
pub(super) struct Switchable {
    pub(super) inner: MemoryConnector,
    pub(super) down: Arc<AtomicBool>,
    pub(super) calls: Arc<AtomicUsize>,
}

impl Switchable {
    fn gate(&self) -> Result<(), ConnectorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
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
impl Connector for Switchable {
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
    async fn grant(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.grant(account, e).await
    }
    async fn revoke(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.revoke(account, e).await
    }
    async fn revoke_sessions(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.revoke_sessions(account).await
    }
    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.gate()?;
        self.inner.revoke_credentials(account).await
    }
}

/// The engine tests' policy with slack's budget cut to two attempts (github keeps the workers'
/// default, three in these tests). Their circuits open only after 100 failures in a row, so
/// these tests see the retry budget alone (tests/engine/circuit.rs tests the circuit).
fn policy() -> String {
    POLICY
        .replacen(
            "name = \"slack\"\ntype = \"memory\"\n",
            "name = \"slack\"\ntype = \"memory\"\nmax_attempts = 2\ncircuit_failures = 100\n",
            1,
        )
        .replacen(
            "name = \"github\"\ntype = \"memory\"\n",
            "name = \"github\"\ntype = \"memory\"\ncircuit_failures = 100\n",
            1,
        )
}

/// One test per backend, under [`policy`].
macro_rules! outage_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() {
            if let Some(e) = super::Env::new(false, &super::policy()) { super::$name(e) }
        } )* }
        mod postgres { $( #[test] fn $name() {
            if let Some(e) = super::Env::new(true, &super::policy()) { super::$name(e) }
        } )* }
    };
}

outage_backends!(
    per_connector_retry_budget,
    retry_by_connector_resumes_in_order
);

fn per_connector_retry_budget(env: Env) {
    assert!(
        policy().contains("max_attempts = 2"),
        "the policy was edited"
    );
    assert_eq!(env.workers.budget("slack"), 2);
    assert_eq!(env.workers.budget("github"), 3);
    let down = |app: &str| {
        env.app(app)
            .fail_next((0..20).map(|_| ConnectorError::retryable(app, "503 unavailable")));
    };
    down("slack");
    down("github");
    let ada = env.create_user(user("ada", "Employee", "Engineering", "Engineer"));
    // Past every backoff each round, so each round is one more attempt of each first operation.
    for _ in 0..6 {
        env.run();
        env.clock.advance(Duration::hours(1));
    }
    let failed = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(&ada), Some(outbox::OutboxStatus::Failed), 10)
    })
    .unwrap();
    // Each connector's create and grant of ada, every one parked after its budget.
    let attempts = |connector: &str| -> Vec<i64> {
        failed
            .iter()
            .filter(|r| r.connector == connector)
            .map(|r| r.attempts)
            .collect()
    };
    assert_eq!(
        attempts("slack"),
        vec![2, 2],
        "slack's own budget: {failed:?}"
    );
    assert_eq!(
        attempts("github"),
        vec![3, 3],
        "the workers' default: {failed:?}"
    );
    assert!(failed
        .iter()
        .filter(|r| r.connector == "slack")
        .all(|r| r.last_error.as_deref()
            == Some("retry budget exhausted after 2 attempts: 503 unavailable")));
    let inc = in_tx(&env.store, incidents::list_open).unwrap();
    assert_eq!(
        inc.iter().filter(|i| i.kind == "operation_failed").count(),
        4,
        "{inc:?}"
    );
}

/// Slack is down long enough that a user's grant and the later revoke of the same entitlement
/// are both parked, and another user's operation waits out a backoff. Once slack is back, one
/// retry by connector queues them all again: the grant runs before the revoke (the user ends
/// without the entitlement), the waiting one runs without waiting, and the incidents of the
/// re-queued operations are resolved.
fn retry_by_connector_resumes_in_order(env: Env) {
    let slack = Switchable {
        inner: env.app("slack").clone(),
        down: Arc::new(AtomicBool::new(true)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    env.engine
        .connectors
        .insert("slack", Arc::new(slack.clone()));
    let fay = env.create_user(user("fay", "Employee", "Support", "Agent"));
    let rounds = |n: usize| {
        for _ in 0..n {
            env.run();
            env.clock.advance(Duration::hours(1));
        }
    };
    rounds(6);
    env.patch_user(&fay, |d| set_dept(d, "Sales"));
    rounds(6);
    env.patch_user(&fay, |d| set_dept(d, "Support"));
    rounds(8);
    let parked = in_tx(&env.store, |c| {
        outbox::list_connector(c, "slack", outbox::OutboxStatus::Failed)
    })
    .unwrap();
    let kinds: Vec<&str> = parked
        .iter()
        .map(|r| {
            if r.op.contains("\"revoke\"") {
                "revoke"
            } else if r.op.contains("\"grant\"") {
                "grant"
            } else {
                "other"
            }
        })
        .collect();
    assert!(
        kinds.iter().position(|k| *k == "grant") < kinds.iter().position(|k| *k == "revoke")
            && kinds.contains(&"revoke"),
        "a grant then a revoke parked: {parked:?}"
    );
    assert!(parked.iter().all(|r| r.attempts == 2), "{parked:?}");
    let burnt = slack.calls.load(Ordering::SeqCst);
    assert_eq!(burnt, 2 * parked.len(), "two attempts per parked operation");
    // Another user's operation fails once and waits out its backoff.
    let _gus = env.create_user(user("gus", "Employee", "Support", "Agent"));
    env.run();
    assert_eq!(slack.calls.load(Ordering::SeqCst), burnt + 1);

    slack.down.store(false, Ordering::SeqCst);
    let out = env.admin.retry_connector("slack", "ops").unwrap();
    let ids: Vec<i64> = parked.iter().map(|r| r.id).collect();
    assert_eq!(out.requeued, ids, "all parked ones, oldest first");
    assert!(out.superseded.is_empty(), "{out:?}");
    assert_eq!(out.resumed, 1, "gus's operation waiting out a backoff");
    // The clock does not move: nothing waits for a backoff any more.
    env.run();
    assert_eq!(
        env.holds("slack", "fay"),
        Some((true, vec!["channel:general".into()])),
        "the grant of sales ran before its revoke"
    );
    let effects: Vec<String> = env
        .app("slack")
        .effects()
        .into_iter()
        .filter(|e| e.key == "fay" && e.detail.contains("sales"))
        .map(|e| e.op)
        .collect();
    assert_eq!(effects, vec!["grant", "revoke"], "in per-user order");
    assert_eq!(
        env.holds("slack", "gus"),
        Some((true, vec!["channel:general".into()]))
    );
    let open = in_tx(&env.store, incidents::list_open).unwrap();
    assert!(
        !open.iter().any(|i| i.connector.as_deref() == Some("slack")),
        "{open:?}"
    );
    let audit = in_tx(&env.store, |c| {
        scim_server::store::audit::list(c, Some(&fay))
    })
    .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "retry" && a.actor == "ops")
            .count(),
        parked.len(),
        "each re-queued operation audited with who asked"
    );
    assert!(env.admin.retry_connector("nope", "ops").is_err());
}
