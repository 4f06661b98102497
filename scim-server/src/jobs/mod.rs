//! Outbox workers and durable timers.
//!
//! Each lane of workers claims operations from the outbox ([`crate::store::outbox::claim`]: the
//! first open operation of each (user, connector) pair, priority lane first,
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), only as many as it has
//! free call slots (`concurrency`), so nothing it holds waits in a local queue while its lease
//! runs. Each operation then runs on its own: the worker checks that it still holds the claim,
//! calls the connector while renewing the lease (a heartbeat every third of the lease), and
//! records the outcome as soon as the call returns, in its own transaction: done (actual state
//! updated, audit entry), retry later (exponential backoff with jitter, or the connector's
//! Retry-After), or parked as failed with an incident. A finished operation frees its slot and
//! the next claim at once.
//!
//! A claim is a lease with a fencing token, `(lease_owner, claim_seq)`: every state change
//! (renewal, done, retry, park) applies only under that claim, so a worker that stalled past
//! its lease and lost the operation to another worker writes nothing (logged). Before the call
//! the worker re-checks its lease (renewing it in the database if less than half is left) and
//! does not call once another worker has taken over; a heartbeat that finds the claim lost
//! abandons the call. Why a heartbeat rather than only claiming what runs now: a connector call
//! may take longer than a lease short enough for fast takeover (an LDAP bind, a rate-limited
//! API), and without renewal such a call would be run again by another worker while it is still
//! in flight. Order per pair holds under takeovers because an operation is claimable only after
//! every earlier operation of its pair is done or parked.
//!
//! After a crash: on SQLite the process is the database's only writer, so at start it releases
//! every claim that is not its own (they belong to the dead process) and their operations run
//! at once; on PostgreSQL several nodes may share the outbox, so a dead node's claims are taken
//! over when their (short, renewed) lease runs out. Operations are idempotent, so the one that
//! was in flight at the crash running again is harmless.
//!
//! Idle workers sleep `idle_poll`, or less: they are woken when a transaction that queued work
//! commits ([`Engine::wake_workers`]): every SCIM write (the engine hook's `after_commit`), every
//! admin decision that queues or releases operations (approvals, extension approvals, hold
//! confirmations, retries, legacy-access decisions) and every timer that fired. Work queued by
//! another node or process wakes them through PostgreSQL notifications ([`cluster`]). The poll
//! is only the safety net (e.g. operations due after a backoff, a listener reconnecting);
//! `SCIMHUB_ENGINE_IDLE_POLL_MS` sets it. The timer loop runs every second, or at once when
//! another node queued a timer that is already due.
//!
//! A connector that keeps failing opens its circuit ([`circuit`]): its operations then wait for
//! one probe at a time instead of using up their retries, and resume in order when it answers.
//!
//! Timers are claimed the same way and fired ([`crate::engine::timers::fire`]: what each kind does
//! is the engine's rule) in the transaction that marks them done, so each runs once across nodes.
//! Group changes planned in the background run from the timer loop, a batch per transaction
//! ([`Workers::run_replans`]).

pub mod audit_anchor;
pub mod circuit;
pub mod cluster;
pub mod reconcile;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use connectors::{ConnectorError, ErrorKind};
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::engine::plan::{settle, AccountRecord, Operation};
use crate::engine::{replan, Engine};
use crate::error::{HubError, HubResult};
use crate::store::audit_chain::appending_last;
use crate::store::outbox::OutboxRow;
use crate::store::{audit, connector_health, engine_state, incidents};
use crate::store::{outbox, timers, DbConnection, Store};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Connector calls run at once (per lane), and so operations claimed at once: a lane claims
    /// only what it can start now.
    pub concurrency: i64,
    /// How long a claim lasts unless renewed; the worker renews it every third of it while the
    /// call runs. Another worker takes the operation over only once it has run out (the holder
    /// died or stalled).
    pub lease: Duration,
    /// Attempts before an operation is parked as failed, unless its connector sets its own
    /// (`max_attempts` in the policy, [`Workers::budget`]).
    pub max_attempts: i64,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Sleep when there is nothing to do.
    pub idle_poll: StdDuration,
    /// This worker set's instance id, fresh for every process (host, pid and a random part, so a
    /// restarted container with the same host name and pid is still a new owner); each lane's
    /// claims are owned by `<owner>/lane<n>`.
    pub owner: String,
}

/// The lowest outbox priority the priority lane claims (leavers and expiries); the normal lane
/// claims everything.
pub const PRIORITY_LANE: i64 = 100;

/// The default lease, in seconds (`SCIMHUB_ENGINE_LEASE_SECS`): short, so a dead node's
/// operations are taken over quickly on PostgreSQL, and renewed, so a slow call keeps its claim.
pub const DEFAULT_LEASE_SECS: i64 = 15;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            lease: Duration::seconds(
                std::env::var("SCIMHUB_ENGINE_LEASE_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &i64| *s > 0)
                    .unwrap_or(DEFAULT_LEASE_SECS),
            ),
            max_attempts: 8,
            base_backoff: Duration::seconds(1),
            max_backoff: Duration::minutes(10),
            // SCIMHUB_ENGINE_IDLE_POLL_MS: tests set it very high to prove that work is started
            // by the wake-up, not by the poll.
            idle_poll: StdDuration::from_millis(
                std::env::var("SCIMHUB_ENGINE_IDLE_POLL_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(200),
            ),
            owner: instance_id(),
        }
    }
}

/// A fresh id for this worker set: `host-pid-random`.
pub fn instance_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        &random[..random.len().min(8)]
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "scimhub".into())
}

/// Where in running one operation a [`PausePoint`] is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Claimed, before the lease check that precedes the connector call.
    Claimed,
    /// The connector answered, before the outcome is recorded.
    Called,
}

/// The future a [`PausePoint`] returns.
pub type Pause = BoxFuture<'static, ()>;

/// Fault injection: the runner awaits it at each [`Stage`] of each operation, so a test can
/// stall one worker past its lease while another takes over. Production runs without one.
#[derive(Clone)]
pub struct PausePoint(pub Arc<PauseFn>);

/// What a [`PausePoint`] runs: given the stage and the operation, the pause to await.
pub type PauseFn = dyn Fn(Stage, &OutboxRow) -> Pause + Send + Sync;

impl std::fmt::Debug for PausePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PausePoint")
    }
}

/// The worker set of one process.
#[derive(Debug, Clone)]
pub struct Workers {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub config: WorkerConfig,
    /// Fault injection (tests); `None` in production.
    pub pause: Option<PausePoint>,
    /// The generation of the policy this process last settled against the one applied
    /// ([`Workers::apply_policy_change`]); `None` until then.
    policy_settled: Arc<std::sync::Mutex<Option<u64>>>,
    /// Whether this process left the cluster ([`Workers::membership`]).
    left: cluster::Left,
}

/// An operation this worker claimed, and when its claim ends unless renewed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub row: OutboxRow,
    pub lease_until: DateTime<Utc>,
}

/// The outcome of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    Done,
    Retry,
    /// A retryable failure while the connector's circuit is open: the operation waits for the
    /// circuit's probe, its attempt given back.
    Waiting,
    Failed,
    /// This worker's claim ran out and another worker took the operation over: this worker
    /// did not call the connector, or abandoned the call, or its outcome was not recorded.
    Lost,
}

impl OpOutcome {
    /// The `outcome` label of `scimhub_outbox_operation_outcomes_total`.
    pub fn label(&self) -> &'static str {
        match self {
            OpOutcome::Done => "done",
            OpOutcome::Retry => "retry",
            OpOutcome::Waiting => "waiting",
            OpOutcome::Failed => "parked",
            OpOutcome::Lost => "lost",
        }
    }
}

/// Backoff before attempt `attempts + 1` under `config` ([`crate::clock::backoff`]).
pub fn backoff(config: &WorkerConfig, attempts: i64) -> Duration {
    crate::clock::backoff(config.base_backoff, config.max_backoff, attempts)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> HubResult<T> + Send + 'static,
) -> HubResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HubError::Backend(format!("worker task failed: {e}")))?
}

async fn call(
    connector: &dyn connectors::Connector,
    op: &Operation,
) -> Result<Option<String>, ConnectorError> {
    match op {
        Operation::CreateOrAdopt { spec } => connector.create_or_adopt(spec).await.map(|r| r.id),
        Operation::Update { spec } => connector.update(spec).await.map(|_| None),
        Operation::SetEnabled { account, enabled } => {
            connector.set_enabled(account, *enabled).await.map(|_| None)
        }
        Operation::Grant {
            account,
            entitlement,
        } => connector.grant(account, entitlement).await.map(|_| None),
        Operation::Revoke {
            account,
            entitlement,
        } => connector.revoke(account, entitlement).await.map(|_| None),
        Operation::RevokeSessions { account } => {
            connector.revoke_sessions(account).await.map(|_| None)
        }
        Operation::RevokeCredentials { account } => {
            connector.revoke_credentials(account).await.map(|_| None)
        }
        Operation::TransferOwnership { account, to } => connector
            .transfer_ownership(account, to)
            .await
            .map(|_| None),
        Operation::Delete { account } => connector.delete(account).await.map(|_| None),
    }
}

/// What running one claimed operation gave, before it is recorded. Cloned into each run of
/// the recording transaction (PostgreSQL runs it again when it is a deadlock victim).
#[derive(Debug, Clone)]
pub struct Executed {
    /// The operation, or why it could not be read.
    op: Result<Operation, String>,
    result: Result<Option<String>, ConnectorError>,
}

/// Records a finished operation (the claim already marked done): actual state, planned id,
/// audit.
fn record_done(
    c: &mut DbConnection,
    row: &OutboxRow,
    op: &Operation,
    id: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> HubResult<()> {
    let (planned, actual) = engine_state::account_for_update(c, &row.user_id, &row.connector)?
        .map(|a| (a.planned, a.actual))
        .unwrap_or_else(|| ("{}".into(), None));
    let (planned, actual) = settle(&planned, actual.as_deref(), op, id);
    let text = |r: &AccountRecord| serde_json::to_string(r).unwrap_or_default();
    engine_state::put_account(
        c,
        &row.user_id,
        &row.connector,
        &text(&planned),
        &text(&actual),
        now,
    )?;
    audit::append(
        c,
        &audit::AuditEntry {
            at: now,
            actor: "worker",
            user_id: &row.user_id,
            connector: Some(&row.connector),
            action: op.name(),
            outcome: "done",
            detail: json!({
                "operation": op.describe(),
                "event": row.event,
                "plan_id": row.plan_id,
                "outbox_id": row.id,
                "attempts": row.attempts,
            }),
        },
    )
}

/// Records the outcome of one executed operation in the caller's transaction. The outbox row's
/// state change comes first and is fenced on the claim: when the claim was lost it changes
/// nothing and nothing else is written ([`OpOutcome::Lost`]). The outcome also moves the
/// connector's circuit ([`circuit`]); the flag is true when that closed it (waiting operations
/// were made due: the caller wakes the workers).
#[allow(clippy::too_many_arguments)]
fn record(
    c: &mut DbConnection,
    cfg: &WorkerConfig,
    max_attempts: i64,
    breaker: &circuit::CircuitConfig,
    row: &OutboxRow,
    ex: Executed,
    now: chrono::DateTime<chrono::Utc>,
    completed: &mut Option<crate::store::events::EventSla>,
) -> HubResult<(OpOutcome, bool)> {
    let answered = match (&ex.result, &ex.op) {
        // Reachable: it did the operation, or answered that it will not (a refusal, a bad
        // request). An operation that could not be read never reached it.
        (Ok(_), Ok(_)) => true,
        (Err(e), Ok(_)) => e.kind != ErrorKind::Retryable,
        (_, Err(_)) => false,
    };
    let closed = answered && circuit::answered(c, &row.connector, now)?;
    if let (Err(e), Ok(_)) = (&ex.result, &ex.op) {
        if e.kind == ErrorKind::Retryable {
            if let Some(until) = circuit::failed(c, &row.connector, breaker, &e.message, now)? {
                if !outbox::wait_for_circuit(c, row, until, &e.message)? {
                    return Ok((OpOutcome::Lost, false));
                }
                return Ok((OpOutcome::Waiting, false));
            }
        }
    }
    record_outcome(c, cfg, max_attempts, row, ex, now, completed).map(|o| (o, closed))
}

/// [`record`] once the circuit has had its say: done, retry later, or park.
fn record_outcome(
    c: &mut DbConnection,
    cfg: &WorkerConfig,
    max_attempts: i64,
    row: &OutboxRow,
    ex: Executed,
    now: chrono::DateTime<chrono::Utc>,
    completed: &mut Option<crate::store::events::EventSla>,
) -> HubResult<OpOutcome> {
    match (ex.result, ex.op) {
        (Ok(id), Ok(op)) => {
            if !outbox::finish(c, row, now)? {
                return Ok(OpOutcome::Lost);
            }
            record_done(c, row, &op, id, now)?;
            // The contractor history of a completed contract expiry is kept by the caller,
            // after this transaction's audit entries (see `run_claimed_inner`).
            *completed = crate::engine::sla::operation_done(c, &row.plan_id, now)?;
            Ok(OpOutcome::Done)
        }
        (Err(e), _) if e.kind == ErrorKind::Retryable && row.attempts < max_attempts => {
            let wait = backoff(cfg, row.attempts);
            let wait = match e.retry_after.and_then(|d| Duration::from_std(d).ok()) {
                Some(ra) if ra > wait => ra,
                _ => wait,
            };
            if !outbox::retry_later(c, row, now + wait, &e.message)? {
                return Ok(OpOutcome::Lost);
            }
            Ok(OpOutcome::Retry)
        }
        (Err(e), _) => {
            let reason = match e.kind {
                ErrorKind::Retryable => {
                    format!(
                        "retry budget exhausted after {} attempts: {}",
                        row.attempts, e.message
                    )
                }
                _ => e.message.clone(),
            };
            if !outbox::park(c, row, &reason, now)? {
                return Ok(OpOutcome::Lost);
            }
            incidents::raise(
                c,
                if e.kind == ErrorKind::Refused {
                    "operation_refused"
                } else {
                    "operation_failed"
                },
                Some(&row.user_id),
                Some(&row.connector),
                Some(row.id),
                &reason,
                now,
            )?;
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: "worker",
                    user_id: &row.user_id,
                    connector: Some(&row.connector),
                    action: "operation",
                    outcome: "failed",
                    detail: json!({"outbox_id": row.id, "reason": reason, "event": row.event}),
                },
            )?;
            Ok(OpOutcome::Failed)
        }
        (Ok(_), Err(_)) => Ok(OpOutcome::Failed),
    }
}

fn lost(row: &OutboxRow, when: &str) {
    tracing::warn!(
        outbox_id = row.id,
        owner = row.lease_owner.as_deref().unwrap_or(""),
        claim = row.claim_seq,
        "outbox claim lost {when}: another worker took the operation over after this one's \
         lease ran out; this worker leaves it alone"
    );
}

impl Workers {
    pub fn new(store: Store, engine: Arc<Engine>) -> Self {
        Workers {
            store,
            engine,
            config: WorkerConfig::default(),
            pause: None,
            policy_settled: Arc::default(),
            left: Arc::default(),
        }
    }

    /// This process's row in `cluster_nodes`, as [`WorkerConfig::owner`]: the heartbeat
    /// [`Workers::spawn`] starts writes it until [`cluster::Membership::leave`].
    pub fn membership(&self) -> cluster::Membership {
        cluster::Membership::new(
            self.store.clone(),
            self.config.owner.clone(),
            self.left.clone(),
        )
    }

    /// Records the policy in force as applied when none is yet (a new database, or the first
    /// start of a release that records it): everyone is planned under it from now on.
    pub fn record_first_policy(&self) -> HubResult<()> {
        let (policy, status) = self.engine.policy.snapshot();
        let Some(sha) = status.sha256 else {
            return Ok(());
        };
        let now = self.engine.now();
        self.store.write_tx_appending_last(|c, _| {
            replan::record_first_policy(c, &policy, &sha, &self.config.owner, now).map(|_| ())
        })
    }

    /// Re-plans everyone when the policy in force here is new ([`replan::policy_change`]):
    /// asked again for each new generation of the policy this process runs, and each round
    /// while some live node (seen within three heartbeats) still runs another. Returns whether
    /// everyone was re-planned.
    pub async fn apply_policy_change(&self) -> HubResult<bool> {
        use replan::PolicyChange;
        let (policy, status) = self.engine.policy.snapshot();
        let Some(sha) = status.sha256 else {
            return Ok(false);
        };
        let settled = *self
            .policy_settled
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if settled == Some(status.generation) {
            return Ok(false);
        }
        let (store, engine, node) = (
            self.store.clone(),
            self.engine.clone(),
            self.config.owner.clone(),
        );
        let as_started = status.generation <= 1;
        let alive_since =
            Utc::now() - Duration::from_std(3 * cluster::HEARTBEAT).unwrap_or_default();
        let checked = sha.clone();
        let done = blocking(move || {
            store.write_tx_appending_last(|c, _| {
                replan::policy_change(
                    &engine,
                    c,
                    &policy,
                    &checked,
                    &node,
                    as_started,
                    alive_since,
                )
            })
        })
        .await?;
        match done {
            PolicyChange::NotYet => return Ok(false),
            PolicyChange::Stale => tracing::warn!(
                policy_sha256 = %sha,
                "this node started with a policy that was applied before and replaced since (an old file?); nobody is re-planned under it, reload it to apply it"
            ),
            _ => {}
        }
        *self
            .policy_settled
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status.generation);
        if done == PolicyChange::Replanned {
            self.engine.wake_workers();
        }
        Ok(done == PolicyChange::Replanned)
    }

    /// The retry budget of `connector`'s operations: its policy's `max_attempts`, else the
    /// workers' default. Read from the current policy at each outcome, so a reload applies to
    /// operations already queued.
    pub fn budget(&self, connector: &str) -> i64 {
        self.engine
            .policy
            .current()
            .connectors
            .get(connector)
            .and_then(|c| c.max_attempts)
            .unwrap_or(self.config.max_attempts)
    }

    /// The circuit settings of `connector` (its policy's `circuit_failures` and
    /// `circuit_probe`, else the defaults), read from the current policy at each outcome.
    pub fn circuit(&self, connector: &str) -> circuit::CircuitConfig {
        circuit::CircuitConfig::of(self.engine.policy.current().connectors.get(connector))
    }

    /// The owner of lane `min_priority`'s claims.
    fn lane_owner(&self, min_priority: i64) -> String {
        format!("{}/lane{min_priority}", self.config.owner)
    }

    fn renew_every(&self) -> StdDuration {
        (self.config.lease / 3)
            .to_std()
            .unwrap_or(StdDuration::from_secs(1))
            .max(StdDuration::from_millis(10))
    }

    async fn pause_at(&self, stage: Stage, row: &OutboxRow) {
        if let Some(p) = &self.pause {
            (p.0)(stage, row).await;
        }
    }

    /// Claims up to `limit` operations of the lane `min_priority` (0: everything, priority
    /// first; 100: leavers and expiries only) for this lane; [`Workers::run_claimed`] runs each.
    /// The probes of open circuits that are due come first ([`circuit::claim_probes`]); the
    /// operations of connectors whose circuit is not closed are not claimed otherwise.
    pub async fn claim(&self, min_priority: i64, limit: usize) -> HubResult<Vec<Claimed>> {
        self.engine.sync_connectors();
        let store = self.store.clone();
        let now = self.engine.now();
        let lease = self.config.lease;
        let owner = self.lane_owner(min_priority);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = blocking(move || {
            store.write_tx(|c, _| {
                let mut rows = circuit::claim_probes(
                    c,
                    &owner,
                    now,
                    lease,
                    min_priority,
                    usize::try_from(limit).unwrap_or(0),
                )?;
                let rest = limit - i64::try_from(rows.len()).unwrap_or(0);
                if rest > 0 {
                    rows.extend(outbox::claim(c, &owner, now, lease, min_priority, rest)?);
                }
                Ok(rows)
            })
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| Claimed {
                row,
                lease_until: now + lease,
            })
            .collect())
    }

    /// Extends the lease of a claim, fenced; false when the claim was lost.
    async fn renew(&self, claimed: &mut Claimed) -> HubResult<bool> {
        let until = self.engine.now() + self.config.lease;
        let store = self.store.clone();
        let row = claimed.row.clone();
        let held = blocking(move || store.write_tx(|c, _| outbox::renew(c, &row, until))).await?;
        if held {
            claimed.lease_until = until;
        }
        Ok(held)
    }

    /// Whether this worker still holds `row`'s claim, checked right before the call: with more
    /// than half the lease left (by this process's clock) nobody else may have taken it;
    /// otherwise the lease is renewed in the database, fenced.
    async fn hold_lease(&self, claimed: &mut Claimed) -> HubResult<bool> {
        if (claimed.lease_until - self.engine.now()) * 2 > self.config.lease {
            return Ok(true);
        }
        self.renew(claimed).await
    }

    /// Claims and runs one batch of the lane `min_priority`: as many operations as there are
    /// call slots, each recording its outcome as it finishes. Returns how many were claimed.
    pub async fn run_batch(&self, min_priority: i64) -> HubResult<usize> {
        let width = usize::try_from(self.config.concurrency.max(1)).unwrap_or(1);
        let rows = self.claim(min_priority, width).await?;
        let n = rows.len();
        let results =
            futures_util::future::join_all(rows.into_iter().map(|c| self.run_claimed(c))).await;
        for r in results {
            r?;
        }
        Ok(n)
    }

    /// Runs one claimed operation: pause point (tests), lease check, the call under a
    /// heartbeat, and its outcome recorded at once in its own transaction, fenced on the claim.
    pub async fn run_claimed(&self, claimed: Claimed) -> HubResult<OpOutcome> {
        let connector = claimed.row.connector.clone();
        let kind =
            serde_json::from_str::<Operation>(&claimed.row.op).map_or("unreadable", |o| o.name());
        let outcome = self.run_claimed_inner(claimed).await;
        if let Ok(o) = &outcome {
            crate::metrics::global().operation_outcome(&connector, kind, o.label());
        }
        outcome
    }

    async fn run_claimed_inner(&self, mut claimed: Claimed) -> HubResult<OpOutcome> {
        self.pause_at(Stage::Claimed, &claimed.row).await;
        if !self.hold_lease(&mut claimed).await? {
            lost(&claimed.row, "before the call");
            return Ok(OpOutcome::Lost);
        }
        let Some(ex) = self.execute(&mut claimed).await else {
            lost(&claimed.row, "during the call (abandoned)");
            return Ok(OpOutcome::Lost);
        };
        let row = claimed.row;
        self.pause_at(Stage::Called, &row).await;
        let store = self.store.clone();
        let now = self.engine.now();
        let cfg = self.config.clone();
        let budget = self.budget(&row.connector);
        let breaker = self.circuit(&row.connector);
        let claim = row.clone();
        // Run again from the start when PostgreSQL picks it as a deadlock victim (the deadline
        // timer of the plan's SLA takes the event's row in the other order): failing here
        // would leave a call that was made unrecorded, to be made again after the lease.
        let (outcome, closed) = blocking(move || {
            store.write_tx_retry(|c, _| {
                let mut completed = None;
                let out = appending_last(c, |c| {
                    record(
                        c,
                        &cfg,
                        budget,
                        &breaker,
                        &claim,
                        ex.clone(),
                        now,
                        &mut completed,
                    )
                })?;
                // After the appends: a kept report names the chain's head, which is then this
                // transaction's own last entry, consistent with the completion it records.
                if let Some(done) = &completed {
                    crate::report::contractor::archive(c, done, now)?;
                }
                Ok(out)
            })
        })
        .await?;
        if closed {
            self.engine.wake_workers();
        }
        if outcome == OpOutcome::Lost {
            lost(&row, "after the call (its outcome was not recorded)");
        }
        Ok(outcome)
    }

    /// Calls the connector for one claimed operation (nothing is recorded), renewing the lease
    /// while the call runs. `None` when a renewal found the claim lost: the call is abandoned,
    /// since the operation belongs to another worker now.
    async fn execute(&self, claimed: &mut Claimed) -> Option<Executed> {
        let row = claimed.row.clone();
        let op: Result<Operation, _> = serde_json::from_str(&row.op);
        let result = match &op {
            Err(e) => Err(ConnectorError::permanent(
                &row.connector,
                format!("unreadable operation: {e}"),
            )),
            Ok(op) => match self.engine.connectors.get(&row.connector) {
                None => Err(
                    ConnectorError::retryable(&row.connector, "connector unavailable")
                        .with_retry_after(StdDuration::from_secs(30)),
                ),
                Some(conn) => {
                    // A panicking connector is a permanent failure of this operation, not of
                    // the worker.
                    let op = op.clone();
                    // the same id on every retry of this row (webhook event ids)
                    let op_id = format!("{}:{}", row.plan_id, row.id);
                    let mut task = tokio::spawn(connectors::operation::scope(op_id, async move {
                        call(conn.as_ref(), &op).await
                    }));
                    let every = self.renew_every();
                    let mut beat =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    loop {
                        tokio::select! {
                            r = &mut task => break r.unwrap_or_else(|_| Err(
                                ConnectorError::permanent(&row.connector, "connector panicked"),
                            )),
                            _ = beat.tick() => match self.renew(claimed).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    task.abort();
                                    return None;
                                }
                                // The database is unreachable: keep the call; its outcome is
                                // fenced anyway.
                                Err(e) => tracing::warn!(error = %e, outbox_id = row.id,
                                    "cannot renew an outbox lease"),
                            },
                        }
                    }
                }
            },
        };
        Some(Executed {
            op: op.map_err(|e| e.to_string()),
            result,
        })
    }

    /// Releases every claim that is not this worker set's (see
    /// [`outbox::release_foreign_claims`]), and the circuit probes they held (half-open
    /// circuits are open again with their probe due); for a single-node SQLite process at
    /// start.
    pub async fn release_foreign_claims(&self) -> HubResult<usize> {
        let store = self.store.clone();
        let owner = self.config.owner.clone();
        blocking(move || {
            store.write_tx(|c, _| {
                connector_health::release_probes(c)?;
                outbox::release_foreign_claims(c, &owner)
            })
        })
        .await
    }

    /// Gives every connector of the policy a circuit row (closed unless it has one), so that
    /// `scimhub_connector_circuit_state` reports each from the start.
    pub async fn seed_circuits(&self) -> HubResult<()> {
        let store = self.store.clone();
        let now = self.engine.now();
        let names: Vec<String> = self
            .engine
            .policy
            .current()
            .connectors
            .keys()
            .cloned()
            .collect();
        blocking(move || {
            store.write_tx(|c, _| {
                for n in &names {
                    connector_health::ensure(c, n, now)?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Fires due timers; returns how many fired.
    pub async fn fire_timers(&self) -> HubResult<usize> {
        let store = self.store.clone();
        let engine = self.engine.clone();
        blocking(move || {
            let now = engine.now();
            // Re-run (not failed) when PostgreSQL picks it as a deadlock victim: firing timers
            // plans several users in one transaction, and a leaver's PATCH of one of them may
            // hold that user's row while it waits for the guard a timer's plan took. Everything
            // it does is in the transaction, claims included.
            store.write_tx_appending_last(|c, _| {
                crate::engine::certification::ensure_schedule(c, &engine, now)?;
                let due = timers::claim_due(c, now, 100)?;
                for t in &due {
                    crate::engine::timers::fire(c, &engine, t, now)?;
                    timers::fired(c, t.id, now)?;
                }
                let policy = engine.policy.current();
                crate::engine::incident_notices::queue_due(c, &policy, now)?;
                let confirmations = crate::engine::onboarding::complete_due(c, &policy, now)?;
                Ok(due.len() + confirmations)
            })
        })
        .await
        .inspect(|n| {
            if *n > 0 {
                self.engine.wake_workers();
            }
        })
    }

    /// Plans group changes waiting in the background ([`crate::engine::replan`]) until none is
    /// left, one transaction per batch so SCIM writes run between batches; returns how many
    /// users were planned.
    pub async fn run_replans(&self) -> HubResult<usize> {
        let mut total = 0;
        loop {
            let store = self.store.clone();
            let engine = self.engine.clone();
            let n = blocking(move || {
                // Re-run on a deadlock, as `fire_timers` is: a batch plans several users.
                store.write_tx_appending_last(|c, _| crate::engine::replan::run_batch(&engine, c))
            })
            .await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            self.engine.wake_workers();
        }
    }

    /// Runs everything that is due now until nothing is left (tests, demo, `simulate`).
    pub async fn run_until_idle(&self) -> HubResult<usize> {
        let mut total = 0;
        loop {
            self.apply_policy_change().await?;
            let t = self.fire_timers().await?
                + self.run_replans().await?
                + self.run_verifications().await?
                + self.run_reconciles().await?;
            let n = self.run_batch(0).await?;
            total += n;
            if n == 0 && t == 0 {
                return Ok(total);
            }
        }
    }

    /// One lane: keeps up to `concurrency` operations running, claiming only into free slots,
    /// and claims again as soon as one finishes (its pair's next operation may be runnable).
    async fn run_lane(&self, min_priority: i64) {
        let width = usize::try_from(self.config.concurrency.max(1)).unwrap_or(1);
        let mut running = tokio::task::JoinSet::new();
        loop {
            // Registered before claiming, so a commit between an empty claim and the wait still
            // wakes this lane.
            let wake = self.engine.wake.clone();
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free = width.saturating_sub(running.len());
            if free > 0 {
                match self.claim(min_priority, free).await {
                    Ok(rows) => {
                        for row in rows {
                            let me = self.clone();
                            running.spawn(async move { me.run_claimed(row).await });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, lane = min_priority, "outbox worker error");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    match done {
                        Ok(Ok(_)) => {}
                        // The operation stays claimed; it is run again when its lease runs out.
                        Ok(Err(e)) => tracing::warn!(error = %e, lane = min_priority,
                            "cannot record an outbox outcome"),
                        Err(e) => tracing::warn!(error = %e, lane = min_priority,
                            "outbox operation task failed"),
                    }
                    // Its user's next operation on that connector may now be claimable, and it
                    // may belong to the other lane (a leaver's revoke here, a rehire's grant
                    // there), which is asleep: wake it rather than leave it to the idle poll.
                    // This lane claims again anyway on its next round.
                    self.engine.wake_workers();
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep(self.config.idle_poll) => {}
            }
        }
    }

    /// Runs the worker lanes, the timer loop and the notifier until the runtime stops. On
    /// SQLite this process is the database's only writer, so the claims of a process that died
    /// are released first instead of waiting out their lease.
    pub fn spawn(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.seed_circuits().await {
                tracing::warn!(error = %e, "cannot record the connectors' circuits");
            }
            if me.store.is_sqlite() {
                match me.release_foreign_claims().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        operations = n,
                        "released the outbox claims of a process that stopped"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot release stale outbox claims"),
                }
            }
            for lane in [PRIORITY_LANE, 0] {
                let me = me.clone();
                tokio::spawn(async move { me.run_lane(lane).await });
            }
        });
        cluster::spawn(self.engine.clone(), self.membership());
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // registered before the round, so a wake-up during it is not lost
                let wake = me.engine.timer_wake.clone();
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Err(e) = me.fire_timers().await {
                    tracing::warn!(error = %e, "timer error");
                }
                if let Err(e) = me.apply_policy_change().await {
                    tracing::warn!(error = %e, "policy change re-plan error");
                }
                if let Err(e) = me.run_replans().await {
                    tracing::warn!(error = %e, "group re-plan error");
                }
                if let Err(e) = me.run_verifications().await {
                    tracing::warn!(error = %e, "verification error");
                }
                if let Err(e) = me.run_reconciles().await {
                    tracing::warn!(error = %e, "reconciliation error");
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                }
            }
        });
    }
}

/// Counts of outbox rows by status for a user (tests and the admin API).
pub fn op_counts(store: &Store, user_id: Option<&str>) -> HubResult<BTreeMap<String, usize>> {
    let rows = store.write_tx(|c, _| outbox::list_ops(c, user_id, None, 1_000_000))?;
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r.status.to_string()).or_insert(0) += 1;
    }
    Ok(out)
}
