//! The circuit breaker per connector (issue #14, outages): a connector that keeps failing opens
//! its circuit, its operations wait without using up attempts while one probe at a time asks
//! whether it is back, and when it answers the waiting operations complete in per-user order.
//! The state is durable (a new worker set keeps it) and the probe is claimed once even with two
//! runners racing (PostgreSQL: two connections).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Duration;
use connectors::ConnectorError;
use scim_server::admin::in_tx;
use scim_server::jobs::Workers;
use scim_server::store::connector_health::{self, CircuitState};
use scim_server::store::{incidents, outbox};

use super::outages::Switchable;
use super::{set_dept, user, Env, POLICY};

/// Slack's circuit opens after three failures in a row and probes every 30 seconds; its budget
/// (ten attempts) is well above that.
fn policy() -> String {
    POLICY.replacen(
        "name = \"slack\"\ntype = \"memory\"\n",
        "name = \"slack\"\ntype = \"memory\"\nmax_attempts = 10\ncircuit_failures = 3\n\
         circuit_probe = \"30s\"\n",
        1,
    )
}

macro_rules! circuit_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() {
            if let Some(e) = super::Env::new(false, &super::policy()) { super::$name(e) }
        } )* }
        mod postgres { $( #[test] fn $name() {
            if let Some(e) = super::Env::new(true, &super::policy()) { super::$name(e) }
        } )* }
    };
}

circuit_backends!(
    outage_opens_the_circuit_probes_one_at_a_time_and_resumes_in_order,
    operator_retry_probes_at_once,
    refusals_do_not_open_the_circuit,
    half_open_probe_is_claimed_once_by_racing_runners,
);

/// Slack behind a switch, down.
fn slack_down(env: &Env) -> Switchable {
    let slack = Switchable {
        inner: env.app("slack").clone(),
        down: Arc::new(AtomicBool::new(true)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    env.engine
        .connectors
        .insert("slack", Arc::new(slack.clone()));
    slack
}

fn health(env: &Env) -> Option<connector_health::Health> {
    in_tx(&env.store, |c| connector_health::get(c, "slack")).unwrap()
}

fn unhealthy_open(env: &Env) -> usize {
    in_tx(&env.store, incidents::list_open)
        .unwrap()
        .iter()
        .filter(|i| i.kind == "connector_unhealthy" && i.connector.as_deref() == Some("slack"))
        .count()
}

/// (id, status, attempts) of every slack operation, in id order.
fn slack_ops(env: &Env) -> Vec<(i64, String, i64)> {
    let mut ops: Vec<_> = in_tx(&env.store, |c| outbox::list_ops(c, None, None, 10_000))
        .unwrap()
        .into_iter()
        .filter(|r| r.connector == "slack")
        .map(|r| (r.id, r.status.to_string(), r.attempts))
        .collect();
    ops.sort();
    ops
}

fn gauge(env: &Env) -> String {
    let text = scim_server::metrics::render(
        &env.store,
        scim_server::metrics::EngineGauges::On { guard: None },
        100,
    )
    .unwrap();
    text.lines()
        .find(|l| l.starts_with("scimhub_connector_circuit_state{connector=\"slack\"}"))
        .unwrap_or("")
        .to_string()
}

/// Three users join while slack is down: three failures open the circuit.
fn open_circuit(env: &Env, slack: &Switchable) -> Vec<String> {
    let users: Vec<String> = ["ann", "bob", "cat"]
        .iter()
        .map(|n| env.create_user(user(n, "Employee", "Support", "Agent")))
        .collect();
    env.run();
    let h = health(env).expect("a health row");
    assert_eq!(h.state, CircuitState::Open, "{h:?}");
    assert_eq!(h.consecutive_failures, 3);
    assert_eq!(h.last_error.as_deref(), Some("connection refused"));
    assert_eq!(
        slack.calls.load(Ordering::SeqCst),
        3,
        "then nothing is called"
    );
    users
}

fn outage_opens_the_circuit_probes_one_at_a_time_and_resumes_in_order(env: Env) {
    assert_eq!(gauge(&env), "", "no row before the workers ran");
    let slack = slack_down(&env);
    let users = open_circuit(&env, &slack);
    assert_eq!(unhealthy_open(&env), 1);
    assert!(gauge(&env).ends_with(" 2.0"), "open: {}", gauge(&env));
    // ann moves to Sales and back while slack is down: a grant then a revoke of #sales wait.
    env.patch_user(&users[0], |d| set_dept(d, "Sales"));
    env.patch_user(&users[0], |d| set_dept(d, "Support"));
    env.run();
    assert_eq!(
        slack.calls.load(Ordering::SeqCst),
        3,
        "open: nothing claimed"
    );
    let before = slack_ops(&env);
    assert!(before.iter().all(|(_, s, _)| s == "pending"), "{before:?}");
    // Each probe interval exactly one operation is tried; it fails, the circuit opens again,
    // and no operation's attempts change nor does any park.
    for round in 1..=4 {
        env.clock.advance(Duration::seconds(31));
        env.run();
        assert_eq!(slack.calls.load(Ordering::SeqCst), 3 + round, "one probe");
        assert_eq!(slack_ops(&env), before, "attempts unchanged");
        assert_eq!(health(&env).unwrap().state, CircuitState::Open);
    }
    assert_eq!(unhealthy_open(&env), 1, "one incident per outage");

    // A new worker set (a restart) keeps the circuit open: nothing is claimed before the probe.
    let mut restarted = Workers::new(env.store.clone(), env.engine.clone());
    restarted.config = env.workers.config.clone();
    restarted.config.owner = "restarted".into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        restarted.release_foreign_claims().await.unwrap();
        restarted.run_until_idle().await.unwrap();
    });
    assert_eq!(slack.calls.load(Ordering::SeqCst), 7);
    assert_eq!(health(&env).unwrap().state, CircuitState::Open);

    // Slack is back: the next probe succeeds, the circuit closes and everything completes.
    slack.down.store(false, Ordering::SeqCst);
    env.clock.advance(Duration::seconds(31));
    rt.block_on(restarted.run_until_idle()).unwrap();
    let h = health(&env).unwrap();
    assert_eq!(
        (h.state, h.consecutive_failures, h.opened_at),
        (CircuitState::Closed, 0, None)
    );
    assert!(gauge(&env).ends_with(" 0.0"), "closed: {}", gauge(&env));
    assert_eq!(unhealthy_open(&env), 0, "resolved when it closed");
    assert!(
        slack_ops(&env).iter().all(|(_, s, _)| s == "done"),
        "{:?}",
        slack_ops(&env)
    );
    let effects: Vec<String> = env
        .app("slack")
        .effects()
        .into_iter()
        .filter(|e| e.key == "ann" && e.detail.contains("sales"))
        .map(|e| e.op)
        .collect();
    assert_eq!(effects, vec!["grant", "revoke"], "in per-user order");
    for n in ["ann", "bob", "cat"] {
        assert_eq!(
            env.holds("slack", n),
            Some((true, vec!["channel:general".into()])),
            "{n}"
        );
    }
}

fn operator_retry_probes_at_once(env: Env) {
    let slack = slack_down(&env);
    open_circuit(&env, &slack);
    slack.down.store(false, Ordering::SeqCst);
    // The probe is not due for 30 seconds, but the operator says slack is back.
    let out = env.admin.retry_connector("slack", "ops").unwrap();
    assert!(out.probe, "{out:?}");
    env.run();
    assert_eq!(health(&env).unwrap().state, CircuitState::Closed);
    assert!(slack_ops(&env).iter().all(|(_, s, _)| s == "done"));
    assert_eq!(unhealthy_open(&env), 0);
    // On a closed circuit the retry has nothing to probe.
    assert!(!env.admin.retry_connector("slack", "ops").unwrap().probe);
}

fn refusals_do_not_open_the_circuit(env: Env) {
    env.app("slack")
        .fail_next((0..6).map(|_| ConnectorError::permanent("slack", "invalid_auth: bad request")));
    for n in ["ann", "bob", "cat", "dan", "eve", "fay"] {
        env.create_user(user(n, "Employee", "Support", "Agent"));
    }
    env.run();
    let parked = slack_ops(&env)
        .iter()
        .filter(|(_, s, _)| s == "failed")
        .count();
    // Each create refused, and each grant after it (no account to grant on).
    assert_eq!(parked, 12, "{:?}", slack_ops(&env));
    assert!(
        health(&env).is_none_or(|h| h.state == CircuitState::Closed),
        "{:?}",
        health(&env)
    );
    assert_eq!(unhealthy_open(&env), 0);
}

/// Two runners (two worker sets, two connections on PostgreSQL) claim at the same moment, each
/// probe interval: exactly one of them gets the probe, always the first waiting operation.
fn half_open_probe_is_claimed_once_by_racing_runners(env: Env) {
    let slack = slack_down(&env);
    open_circuit(&env, &slack);
    let first = slack_ops(&env)[0].0;
    let runner = |owner: &str| {
        let mut w = Workers::new(env.store.clone(), env.engine.clone());
        w.config = env.workers.config.clone();
        w.config.owner = owner.into();
        w
    };
    let (a, b) = (runner("a"), runner("b"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..6 {
        // Past the probe time and past the lease of the previous (never finished) probe.
        env.clock.advance(Duration::seconds(31));
        let (ra, rb) = rt.block_on(async { tokio::join!(a.claim(0, 16), b.claim(0, 16)) });
        let probes: Vec<i64> = ra
            .unwrap()
            .into_iter()
            .chain(rb.unwrap())
            .filter(|c| c.row.connector == "slack")
            .map(|c| c.row.id)
            .collect();
        assert_eq!(
            probes,
            vec![first],
            "round {round}: one probe, the first in order"
        );
        assert_eq!(health(&env).unwrap().state, CircuitState::HalfOpen);
    }
    if env.store.is_sqlite() {
        // A restarted single-node process releases the dead one's probe at start: the circuit
        // is open with its probe due, and the next claim takes it again at once.
        let c = runner("c");
        let again = rt.block_on(async {
            c.release_foreign_claims().await.unwrap();
            assert_eq!(health(&env).unwrap().state, CircuitState::Open);
            c.claim(0, 16).await.unwrap()
        });
        let probes: Vec<i64> = again
            .iter()
            .filter(|c| c.row.connector == "slack")
            .map(|c| c.row.id)
            .collect();
        assert_eq!(probes, vec![first]);
    }
    slack.down.store(false, Ordering::SeqCst);
    env.clock.advance(Duration::seconds(31));
    env.run();
    assert!(slack_ops(&env).iter().all(|(_, s, _)| s == "done"));
    assert_eq!(health(&env).unwrap().state, CircuitState::Closed);
}
