//! Fault injection for the outbox workers: a worker stalls past its lease while another takes
//! the operation over. A Grant and then a Revoke are queued for the same user and connector;
//! the downstream (the memory connector, which counts every call and records every change)
//! must see each operation exactly once and in order, and the stalled worker must write
//! nothing. On SQLite and PostgreSQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use connectors::ConnectorError;
use scim_server::admin::in_tx;
use scim_server::engine::plan::Operation;
use scim_server::jobs::{OpOutcome, Pause, PausePoint, Stage, Workers};
use scim_server::store::audit;
use scim_server::store::outbox::{self, OutboxRow, OutboxStatus};
use tokio::sync::{oneshot, Semaphore};

use super::{set_dept, user, Env};

macro_rules! takeover_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, super::super::POLICY) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, super::super::POLICY) { super::$name(e) } } )* }
    };
}

takeover_backends!(
    worker_stalled_before_the_call_does_not_call,
    worker_stalled_before_recording_writes_nothing,
    a_slow_call_keeps_its_claim,
);

/// A pause point that stalls the first operation reaching `stage`: it reports that it is
/// stalled, then waits until the test releases it.
fn stall_once(stage: Stage) -> (PausePoint, oneshot::Receiver<()>, Arc<Semaphore>) {
    let (tx, rx) = oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let release = Arc::new(Semaphore::new(0));
    let fired = AtomicBool::new(false);
    let gate = release.clone();
    let point = PausePoint(Arc::new(move |at: Stage, _row: &OutboxRow| -> Pause {
        if at != stage || fired.swap(true, Ordering::SeqCst) {
            return Box::pin(async {});
        }
        let tx = tx.lock().unwrap().take();
        let gate = gate.clone();
        Box::pin(async move {
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
            let _ = gate.acquire().await;
        })
    }));
    (point, rx, release)
}

/// Ada, joined and settled, then moved into Sales and straight back out: a Grant of
/// `channel:sales` and then its Revoke wait in the outbox for (ada, slack).
fn grant_then_revoke_queued(env: &Env) -> String {
    let ada = env.create_user(user("ada", "Employee", "Marketing", "Analyst"));
    env.run();
    env.patch_user(&ada, |d| set_dept(d, "Sales"));
    env.patch_user(&ada, |d| set_dept(d, "Marketing"));
    let open: Vec<String> = ops(env, &ada)
        .into_iter()
        .filter(|o| o.status == OutboxStatus::Pending)
        .map(|o| format!("{} {}", o.connector, op_name(&o)))
        .collect();
    assert_eq!(open, vec!["slack grant", "slack revoke"]);
    ada
}

fn ops(env: &Env, user_id: &str) -> Vec<OutboxRow> {
    let mut rows = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(user_id), None, 100)
    })
    .unwrap();
    rows.reverse();
    rows
}

fn op_name(o: &OutboxRow) -> &'static str {
    serde_json::from_str::<Operation>(&o.op).unwrap().name()
}

fn worker(env: &Env, owner: &str, pause: Option<PausePoint>) -> Workers {
    let mut w = env.workers.clone();
    w.config.owner = owner.into();
    w.pause = pause;
    w
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What the downstream saw after `effects_before`: each change as `op detail`.
fn changes_since(env: &Env, effects_before: usize) -> Vec<String> {
    env.app("slack").effects()[effects_before..]
        .iter()
        .map(|e| format!("{} {}", e.op, e.detail))
        .collect()
}

/// Worker A claims the Grant and stalls before calling; its lease runs out; worker B takes the
/// Grant over and runs it, then the Revoke. Released, A finds its claim gone and does not call:
/// the downstream sees one Grant, then one Revoke.
fn worker_stalled_before_the_call_does_not_call(env: Env) {
    let ada = grant_then_revoke_queued(&env);
    let slack = env.app("slack");
    let (calls_before, effects_before) = (slack.state().calls, slack.effects().len());
    let (point, stalled, release) = stall_once(Stage::Claimed);
    let a = worker(&env, "node-a", Some(point));
    let b = worker(&env, "node-b", None);
    let lease = a.config.lease;
    let rt = runtime();
    let a_outcome = rt.block_on(async {
        let a_run = tokio::spawn({
            let a = a.clone();
            async move {
                let rows = a.claim(0, 16).await.unwrap();
                assert_eq!(
                    rows.len(),
                    1,
                    "A claims the Grant only (the Revoke waits for it)"
                );
                a.run_claimed(rows.into_iter().next().unwrap())
                    .await
                    .unwrap()
            }
        });
        stalled.await.unwrap();
        // While A's lease runs, B takes nothing: not the Grant (claimed), not the Revoke (after
        // it).
        assert_eq!(b.run_batch(0).await.unwrap(), 0);
        env.clock.advance(lease + Duration::seconds(1));
        assert_eq!(b.run_until_idle().await.unwrap(), 2);
        release.add_permits(1);
        a_run.await.unwrap()
    });
    assert_eq!(
        changes_since(&env, effects_before),
        vec!["grant channel:sales", "revoke channel:sales"]
    );
    assert_eq!(
        slack.state().calls - calls_before,
        2,
        "one call per operation"
    );
    assert_eq!(a_outcome, OpOutcome::Lost);
    assert_settled(&env, &ada);
}

/// Worker A claims the Grant, gets a retryable error from the downstream and stalls before
/// recording it; B takes over and runs the Grant and the Revoke. Released, A's "retry later"
/// applies to nothing: the Grant is not put back to pending behind the Revoke, and no Grant
/// runs again.
fn worker_stalled_before_recording_writes_nothing(env: Env) {
    let ada = grant_then_revoke_queued(&env);
    let slack = env.app("slack");
    let (calls_before, effects_before) = (slack.state().calls, slack.effects().len());
    slack.fail_next([ConnectorError::retryable("slack", "503 from the stand-in")]);
    let (point, stalled, release) = stall_once(Stage::Called);
    let a = worker(&env, "node-a", Some(point));
    let b = worker(&env, "node-b", None);
    let lease = a.config.lease;
    let rt = runtime();
    let a_outcome = rt.block_on(async {
        let a_run = tokio::spawn({
            let a = a.clone();
            async move {
                let rows = a.claim(0, 16).await.unwrap();
                a.run_claimed(rows.into_iter().next().unwrap())
                    .await
                    .unwrap()
            }
        });
        stalled.await.unwrap();
        env.clock.advance(lease + Duration::seconds(1));
        assert_eq!(b.run_until_idle().await.unwrap(), 2);
        release.add_permits(1);
        let outcome = a_run.await.unwrap();
        // Past any backoff, another round finds the Grant was not put back.
        env.clock.advance(Duration::hours(1));
        b.run_until_idle().await.unwrap();
        outcome
    });
    assert_eq!(
        changes_since(&env, effects_before),
        vec!["grant channel:sales", "revoke channel:sales"]
    );
    // A's failed call, then B's Grant and Revoke.
    assert_eq!(slack.state().calls - calls_before, 3);
    assert_eq!(a_outcome, OpOutcome::Lost);
    assert_settled(&env, &ada);
}

/// Every operation of the user is done, the Grant and Revoke each recorded once (by B), and
/// the hub's view of the account has no Sales channel.
fn assert_settled(env: &Env, ada: &str) {
    let rows = ops(env, ada);
    assert!(
        rows.iter().all(|o| o.status == OutboxStatus::Done),
        "{:?}",
        rows.iter().map(|o| (o.id, o.status)).collect::<Vec<_>>()
    );
    for o in rows.iter().filter(|o| o.connector == "slack").rev().take(2) {
        assert_eq!(o.lease_owner.as_deref(), Some("node-b/lane0"));
    }
    let audit = in_tx(&env.store, |c| audit::list(c, Some(ada))).unwrap();
    let done = |action: &str| {
        audit
            .iter()
            .filter(|e| e.actor == "worker" && e.action == action && e.outcome == "done")
            .filter(|e| e.detail.contains("channel:sales"))
            .count()
    };
    assert_eq!((done("grant"), done("revoke")), (1, 1));
    assert_eq!(
        env.holds("slack", "ada"),
        Some((true, vec!["channel:general".into()]))
    );
}

/// A call that lasts longer than the lease keeps its claim: the worker renews the lease while
/// the call runs (a third of the lease apart; the test clock moves at most at the real pace), so
/// the other worker never takes the Grant over and the downstream sees one call.
fn a_slow_call_keeps_its_claim(env: Env) {
    grant_then_revoke_queued(&env);
    // The same downstream state, slower.
    let slow = env
        .app("slack")
        .clone()
        .with_delay(std::time::Duration::from_millis(2500));
    env.engine.connectors.insert("slack", Arc::new(slow));
    let calls_before = env.app("slack").state().calls;
    let mut a = worker(&env, "node-a", None);
    a.config.lease = Duration::seconds(1);
    let b = worker(&env, "node-b", None);
    let rt = runtime();
    let (outcome, taken_over) = rt.block_on(async {
        let claimed = a.claim(0, 16).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let grant = claimed[0].row.id;
        let a_run = tokio::spawn({
            let a = a.clone();
            let claimed = claimed.into_iter().next().unwrap();
            async move { a.run_claimed(claimed).await.unwrap() }
        });
        let mut taken_over = 0;
        while !a_run.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            env.clock.advance(Duration::milliseconds(100));
            // (Once A is done, B may claim the Revoke: only the Grant counts.)
            let took = b.claim(0, 16).await.unwrap();
            taken_over += took.iter().filter(|c| c.row.id == grant).count();
        }
        (a_run.await.unwrap(), taken_over)
    });
    assert_eq!(
        taken_over, 0,
        "the other worker took the running Grant over"
    );
    assert_eq!(outcome, OpOutcome::Done);
    assert_eq!(env.app("slack").state().calls - calls_before, 1);
}
