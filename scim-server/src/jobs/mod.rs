//! Outbox workers and durable timers.
//!
//! Workers claim operations from the outbox ([`crate::store::outbox::claim`]: the first open
//! operation of each (user, connector) pair, priority lane first, `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the single writer on SQLite), call the connector (up to `concurrency` calls at
//! once), and record the outcomes of the batch in one transaction, each in its own savepoint:
//! done (actual state updated, audit entry), retry later (exponential backoff with
//! jitter, or the connector's Retry-After), or parked as failed with an incident. A claim is a
//! lease: if the process dies, the lease expires and another worker runs the operation again,
//! which is harmless because operations are idempotent.
//!
//! Idle workers sleep `idle_poll`, or less: they are woken when a transaction that queued work
//! commits ([`Engine::wake_workers`]): every SCIM write (the engine hook's `after_commit`), every
//! admin decision that queues or releases operations (approvals, extension approvals, hold
//! confirmations, retries, legacy-access decisions) and every timer that fired. The poll is
//! only the safety net (e.g. operations queued by another node, or due after a backoff);
//! `SCIMHUB_ENGINE_IDLE_POLL_MS` sets it.
//!
//! Timers are claimed the same way and fired ([`crate::engine::timers::fire`]: what each kind does
//! is the engine's rule) in the transaction that marks them done, so each runs once across nodes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use connectors::{ConnectorError, ErrorKind};
use diesel::Connection;
use serde_json::json;

use crate::engine::plan::{settle, AccountRecord, Operation};
use crate::engine::Engine;
use crate::error::{HubError, HubResult};
use crate::store::{audit, engine_state, incidents};
use crate::store::{outbox, timers, DbConnection, Store};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Connector calls run at once (per lane).
    pub concurrency: i64,
    /// Operations claimed at once (per lane); their outcomes are recorded in one transaction.
    /// At most one operation per (user, connector) pair is ever claimed, so a batch runs in any
    /// order.
    pub batch: i64,
    /// How long a claim lasts before another worker may take the operation over.
    pub lease: Duration,
    /// Attempts before an operation is parked as failed.
    pub max_attempts: i64,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Sleep when there is nothing to do.
    pub idle_poll: StdDuration,
    /// Name of this worker set in leases.
    pub owner: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            batch: 64,
            // SCIMHUB_ENGINE_LEASE_SECS shortens takeover after a crash (tests).
            lease: Duration::seconds(
                std::env::var("SCIMHUB_ENGINE_LEASE_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60),
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
            owner: format!("{}-{}", hostname(), std::process::id()),
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "scimhub".into())
}

/// The worker set of one process.
#[derive(Debug, Clone)]
pub struct Workers {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub config: WorkerConfig,
}

/// The outcome of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    Done,
    Retry,
    Failed,
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

/// What running one claimed operation gave, before it is recorded.
#[derive(Debug)]
pub struct Executed {
    op: Result<Operation, serde_json::Error>,
    result: Result<Option<String>, ConnectorError>,
}

/// Records a finished operation: actual state, planned id, outbox status, audit.
fn record_done(
    c: &mut DbConnection,
    row: &outbox::OutboxRow,
    op: &Operation,
    id: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> HubResult<()> {
    let accounts = engine_state::accounts(c, &row.user_id)?;
    let (planned, actual) = accounts
        .into_iter()
        .find(|a| a.connector == row.connector)
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
    outbox::finish(c, row.id, now)?;
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

/// Records the outcome of one executed operation in the caller's transaction.
fn record(
    c: &mut DbConnection,
    cfg: &WorkerConfig,
    row: &outbox::OutboxRow,
    ex: Executed,
    now: chrono::DateTime<chrono::Utc>,
) -> HubResult<OpOutcome> {
    match (ex.result, ex.op) {
        (Ok(id), Ok(op)) => {
            record_done(c, row, &op, id, now)?;
            Ok(OpOutcome::Done)
        }
        (Err(e), _) if e.kind == ErrorKind::Retryable && row.attempts < cfg.max_attempts => {
            let wait = backoff(cfg, row.attempts);
            let wait = match e.retry_after.and_then(|d| Duration::from_std(d).ok()) {
                Some(ra) if ra > wait => ra,
                _ => wait,
            };
            outbox::retry_later(c, row.id, now + wait, &e.message)?;
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
            outbox::park(c, row.id, &reason, now)?;
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

impl Workers {
    pub fn new(store: Store, engine: Arc<Engine>) -> Self {
        Workers {
            store,
            engine,
            config: WorkerConfig::default(),
        }
    }

    /// Claims and runs one batch of the lane `min_priority` (0: everything, priority first;
    /// 100: leavers and expiries only) and records its outcomes in one transaction. Returns how
    /// many operations ran.
    pub async fn run_batch(&self, min_priority: i64) -> HubResult<usize> {
        use futures_util::StreamExt;
        self.engine.sync_connectors();
        let store = self.store.clone();
        let now = self.engine.now();
        let cfg = self.config.clone();
        let rows = blocking(move || {
            store.write_tx(|c, _| {
                outbox::claim(
                    c,
                    &cfg.owner,
                    now,
                    cfg.lease,
                    min_priority,
                    cfg.batch.max(1),
                )
            })
        })
        .await?;
        let n = rows.len();
        if n == 0 {
            return Ok(0);
        }
        let width = usize::try_from(self.config.concurrency.max(1)).unwrap_or(1);
        let ran: Vec<(outbox::OutboxRow, Executed)> = futures_util::stream::iter(rows)
            .map(|row| async move {
                let ex = self.execute(&row).await;
                (row, ex)
            })
            .buffer_unordered(width)
            .collect()
            .await;
        let store = self.store.clone();
        let now = self.engine.now();
        let cfg = self.config.clone();
        let results = blocking(move || {
            store.write_tx(|c, _| {
                // One savepoint per operation: a failure to record one leaves it running (its
                // lease expires and it runs again) without undoing the others.
                Ok(ran
                    .into_iter()
                    .map(|(row, ex)| {
                        c.transaction::<_, HubError, _>(|c| record(c, &cfg, &row, ex, now))
                    })
                    .collect::<Vec<_>>())
            })
        })
        .await?;
        for r in results {
            r?;
        }
        Ok(n)
    }

    /// Runs one claimed operation and records its outcome.
    pub async fn run_one(&self, row: outbox::OutboxRow) -> HubResult<OpOutcome> {
        let ex = self.execute(&row).await;
        let store = self.store.clone();
        let now = self.engine.now();
        let cfg = self.config.clone();
        blocking(move || store.write_tx(|c, _| record(c, &cfg, &row, ex, now))).await
    }

    /// Calls the connector for one claimed operation (nothing is recorded).
    pub async fn execute(&self, row: &outbox::OutboxRow) -> Executed {
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
                    let task = tokio::spawn(connectors::operation::scope(op_id, async move {
                        call(conn.as_ref(), &op).await
                    }));
                    match task.await {
                        Ok(r) => r,
                        Err(_) => Err(ConnectorError::permanent(
                            &row.connector,
                            "connector panicked",
                        )),
                    }
                }
            },
        };
        Executed { op, result }
    }

    /// Fires due timers; returns how many fired.
    pub async fn fire_timers(&self) -> HubResult<usize> {
        let store = self.store.clone();
        let engine = self.engine.clone();
        blocking(move || {
            let now = engine.now();
            store.write_tx(|c, _| {
                let due = timers::claim_due(c, now, 100)?;
                for t in &due {
                    crate::engine::timers::fire(c, &engine, t, now)?;
                    timers::fired(c, t.id, now)?;
                }
                Ok(due.len())
            })
        })
        .await
        .inspect(|n| {
            if *n > 0 {
                self.engine.wake_workers();
            }
        })
    }

    /// Runs everything that is due now until nothing is left (tests, demo, `simulate`).
    pub async fn run_until_idle(&self) -> HubResult<usize> {
        let mut total = 0;
        loop {
            let t = self.fire_timers().await?;
            let n = self.run_batch(0).await?;
            total += n;
            if n == 0 && t == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs the worker lanes, the timer loop and the notifier until the runtime stops.
    pub fn spawn(&self) {
        for lane in [100, 0] {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    // Registered before claiming, so a commit between an empty claim and the
                    // sleep still wakes this lane.
                    let wake = me.engine.wake.clone();
                    let notified = wake.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    match me.run_batch(lane).await {
                        Ok(0) => {
                            tokio::select! {
                                _ = &mut notified => {}
                                _ = tokio::time::sleep(me.config.idle_poll) => {}
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, lane, "outbox worker error");
                            tokio::time::sleep(StdDuration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.fire_timers().await {
                    tracing::warn!(error = %e, "timer error");
                }
                tokio::time::sleep(StdDuration::from_secs(1)).await;
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
