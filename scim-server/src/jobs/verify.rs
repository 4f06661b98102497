//! The post-change verification runner: claims due `verify` timers, reads each system back
//! through [`connectors::Connector::read`] outside any transaction, and records what the pure
//! comparison ([`crate::engine::verify`]) says.
//!
//! * Operations of the user on the connector still to run (pending, running, held): the check
//!   waits (the timer moves on by the connector's delay), since the plan is not complete.
//! * A read that fails is retried with the one backoff ([`super::backoff`]); after
//!   [`MAX_READS`] failed reads the outcome is `unreadable` and a `verification_unreadable`
//!   incident opens; the next successful read of that user on that system resolves it. Nothing
//!   is recorded `verified` without a successful read.
//! * A mismatch opens a `verification_mismatch` incident (one open per user and connector),
//!   records what the system holds as the planned and actual state, and plans the user again,
//!   so the normal diff queues what did not take effect; a new check follows that re-plan,
//!   up to [`MAX_ROUNDS`] re-plans per original plan.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use connectors::{AccountState, Capability, ConnectorError, ErrorKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{backoff, blocking, Workers};
use crate::engine::plan::{AccountRecord, Operation};
use crate::engine::timers::{self as engine_timers, Timer, TimerKind, VerifyTimer};
use crate::engine::verify::{compare, reconcile, Check, Outcome};
use crate::engine::Cause;
use crate::error::HubResult;
use crate::store::verifications::{self, NewVerification};
use crate::store::{audit, engine_state, incidents, timers};

/// Reads tried before a system is reported unreadable.
pub const MAX_READS: i64 = 4;
/// Re-plans after a mismatch before the check stops coming back (the incident stays open).
pub const MAX_ROUNDS: i64 = 3;
/// How long a claimed check is held before another node may take it; renewed while the check
/// waits for its turn or its read takes long.
const LEASE_MINUTES: i64 = 5;
/// Reads of one connector run at once at most (other connectors' checks do not wait on them).
pub const READS_PER_CONNECTOR: usize = 8;
/// Checks claimed per run.
const BATCH: i64 = 200;

/// What the read gave.
enum Read {
    State(Option<AccountState>),
    Failed(ConnectorError),
    /// The connector cannot read accounts back.
    NotSupported,
}

impl Workers {
    /// Runs the due verifications; returns how many were claimed. The claimed checks run at
    /// once, each reading its system outside any transaction and recording its outcome as it
    /// finishes; reads of one connector are bounded by [`READS_PER_CONNECTOR`], so a slow
    /// system holds back only its own checks.
    pub async fn run_verifications(&self) -> HubResult<usize> {
        let store = self.store.clone();
        let now = self.engine.now();
        let lease = now + Duration::minutes(LEASE_MINUTES);
        let due = blocking(move || {
            store.write_tx(|c, _| timers::lease_due(c, "verify", now, lease, BATCH))
        })
        .await?;
        let n = due.len();
        let mut gates: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let mut set = JoinSet::new();
        for row in due {
            let connector = row
                .payload
                .get("connector")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let gate = gates
                .entry(connector)
                .or_insert_with(|| Arc::new(Semaphore::new(READS_PER_CONNECTOR)))
                .clone();
            let me = self.clone();
            set.spawn(async move { me.verify_one(row, gate, now).await });
        }
        let mut first_err = None;
        while let Some(done) = set.join_next().await {
            let res = done.unwrap_or_else(|e| {
                Err(crate::error::HubError::Backend(format!(
                    "verification task failed: {e}"
                )))
            });
            if let Err(e) = res {
                tracing::warn!(error = %e, "verification error");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    async fn verify_one(
        &self,
        row: timers::Timer,
        gate: Arc<Semaphore>,
        leased_at: DateTime<Utc>,
    ) -> HubResult<()> {
        let store = self.store.clone();
        let Some(TimerKind::Verify(v)) = TimerKind::from_row(&row.kind, &row.payload) else {
            tracing::warn!(
                timer = row.id,
                "unreadable verification timer payload; dropped"
            );
            let now = self.engine.now();
            return blocking(move || store.write_tx(|c, _| timers::fired(c, row.id, now))).await;
        };
        let (user, conn) = (row.user_id.clone(), v.connector.clone());
        let (plan_id, connector) = (v.plan_id.clone(), v.connector.clone());
        let (open, planned, ops) = blocking(move || {
            store.write_tx(|c, _| {
                let open = verifications::open_ops(c, &user, &conn)?;
                let planned: AccountRecord = engine_state::accounts(c, &user)?
                    .into_iter()
                    .find(|a| a.connector == conn)
                    .and_then(|a| serde_json::from_str(&a.planned).ok())
                    .unwrap_or_default();
                let ops: Vec<Operation> = verifications::plan_ops(c, &plan_id, &conn)?
                    .iter()
                    .filter_map(|o| serde_json::from_str(o).ok())
                    .collect();
                Ok((open, planned, ops))
            })
        })
        .await?;
        let delay = {
            let policy = self.engine.policy.current();
            policy
                .verification
                .delay_for(policy.connectors.get(&connector))
        };
        if open > 0 {
            // The plan is not complete: check once its operations have run.
            let (store, now) = (self.store.clone(), self.engine.now());
            return blocking(move || {
                store.write_tx(|c, _| timers::reschedule(c, row.id, now + delay, &row.payload))
            })
            .await;
        }
        // At most READS_PER_CONNECTOR reads of this connector at a time; the claim is renewed
        // while a check waits for its turn or its read takes long.
        let _permit = gate.acquire_owned().await.ok();
        self.renew_if_half_gone(&row, leased_at).await?;
        let read = match self.engine.connectors.get(&connector) {
            None => Read::Failed(ConnectorError::permanent(
                &connector,
                "connector is not configured",
            )),
            Some(c) if !c.capabilities().supports(Capability::ReadAccount) => Read::NotSupported,
            Some(c) => {
                let account = planned.account_ref();
                let read = c.read(&account);
                tokio::pin!(read);
                let half = (Duration::minutes(LEASE_MINUTES) / 2)
                    .to_std()
                    .unwrap_or(std::time::Duration::from_secs(150));
                let answer = loop {
                    tokio::select! {
                        r = &mut read => break r,
                        _ = tokio::time::sleep(half) => self.renew_check(&row).await?,
                    }
                };
                match answer {
                    Ok(s) => Read::State(s),
                    Err(e) if e.kind == ErrorKind::Unsupported => Read::NotSupported,
                    Err(e) => Read::Failed(e),
                }
            }
        };
        drop(_permit);
        let now = self.engine.now();
        let retry_at = now + backoff(&self.config, v.attempt + 1);
        let engine = self.engine.clone();
        let store = self.store.clone();
        let woke = blocking(move || {
            store.write_tx(|c, _| {
                let record = |c: &mut _, check: &Check, attempts: i64| {
                    crate::metrics::global()
                        .verification_outcome(&v.connector, check.outcome.as_str());
                    verifications::record(
                        c,
                        &NewVerification {
                            plan_id: &v.plan_id,
                            user_id: &row.user_id,
                            connector: &v.connector,
                            event: &v.event,
                            outcome: check.outcome.as_str(),
                            detail: check.detail(),
                            attempts,
                            checked_at: now,
                        },
                    )
                };
                let audit_outcome = |c: &mut _, outcome: Outcome, detail| {
                    audit::append(
                        c,
                        &audit::AuditEntry {
                            at: now,
                            actor: "verifier",
                            user_id: &row.user_id,
                            connector: Some(&v.connector),
                            action: "verify",
                            outcome: outcome.as_str(),
                            detail,
                        },
                    )
                };
                // The user's row before anything else, the order a SCIM write of the user
                // takes (user, then its timers and account records): a mismatch below resets
                // the account record and re-plans the user, and two verifications of one user
                // (rearmed together when a circuit closes) take turns on the incident check.
                crate::store::lock_users_to_plan(c, [row.user_id.as_str()])?;
                match read {
                    Read::NotSupported => {
                        let check = Check {
                            outcome: Outcome::NotVerifiable,
                            differences: Vec::new(),
                            notes: vec!["the connector cannot read accounts back".into()],
                        };
                        record(c, &check, 0)?;
                        audit_outcome(c, check.outcome, check.detail())?;
                        timers::fired(c, row.id, now)?;
                        Ok(false)
                    }
                    Read::Failed(e) if v.attempt + 1 < MAX_READS => {
                        let next = VerifyTimer {
                            attempt: v.attempt + 1,
                            ..v.clone()
                        };
                        tracing::info!(user = %row.user_id, connector = %v.connector, error = %e, "verification read failed; retrying");
                        timers::reschedule(c, row.id, retry_at, &TimerKind::Verify(next).payload())?;
                        Ok(false)
                    }
                    Read::Failed(e) => {
                        let check = Check {
                            outcome: Outcome::Unreadable,
                            differences: Vec::new(),
                            notes: vec![e.to_string()],
                        };
                        record(c, &check, v.attempt + 1)?;
                        audit_outcome(c, check.outcome, check.detail())?;
                        incidents::raise_unless_open(
                            c,
                            "verification_unreadable",
                            &row.user_id,
                            &v.connector,
                            &format!(
                                "plan {} ({}) could not be verified after {} reads: {e}",
                                v.plan_id,
                                v.event,
                                v.attempt + 1
                            ),
                            now,
                        )?;
                        timers::fired(c, row.id, now)?;
                        Ok(false)
                    }
                    Read::State(state) => {
                        let check = compare(&planned, &ops, state.as_ref());
                        record(c, &check, v.attempt + 1)?;
                        audit_outcome(c, check.outcome, check.detail())?;
                        timers::fired(c, row.id, now)?;
                        // The system answered: an earlier "could not be read" is over.
                        incidents::resolve_open_for(
                            c,
                            "verification_unreadable",
                            &row.user_id,
                            &v.connector,
                            "verifier",
                            &format!(
                                "read back for plan {} ({}): {}",
                                v.plan_id,
                                v.event,
                                check.outcome.as_str()
                            ),
                            now,
                        )?;
                        if check.outcome != Outcome::Mismatch {
                            return Ok(false);
                        }
                        incidents::raise_unless_open(
                            c,
                            "verification_mismatch",
                            &row.user_id,
                            &v.connector,
                            &format!(
                                "plan {} ({}): {}",
                                v.plan_id,
                                v.event,
                                check.differences.join("; ")
                            ),
                            now,
                        )?;
                        // Plan from what the system holds, so the diff queues again what did
                        // not take effect. The planned record is read again under the user's
                        // lock: a plan committed since the comparison's read (a mover's new
                        // access) is what the reset starts from, not the record it replaced.
                        let planned = engine_state::accounts(c, &row.user_id)?
                            .into_iter()
                            .find(|a| a.connector == v.connector)
                            .and_then(|a| serde_json::from_str::<AccountRecord>(&a.planned).ok())
                            .unwrap_or(planned);
                        let held = reconcile(&planned, &ops, state.as_ref());
                        let text = serde_json::to_string(&held).unwrap_or_default();
                        engine_state::put_account(c, &row.user_id, &v.connector, &text, &text, now)?;
                        let out = engine.replan(c, &row.user_id, Cause::Timer)?;
                        tracing::warn!(user = %row.user_id, connector = %v.connector, differences = ?check.differences, ops = out.plan.ops.len(), "verification mismatch; re-planned");
                        if v.round < MAX_ROUNDS {
                            engine_timers::schedule(
                                c,
                                &Timer {
                                    user_id: row.user_id.clone(),
                                    kind: TimerKind::Verify(VerifyTimer {
                                        attempt: 0,
                                        round: v.round + 1,
                                        ..v.clone()
                                    }),
                                    due: now + delay,
                                },
                                now,
                            )?;
                        }
                        Ok(!out.plan.ops.is_empty())
                    }
                }
            })
        })
        .await?;
        if woke {
            self.engine.wake_workers();
        }
        Ok(())
    }

    /// Renews the claim on a check whose wait for its turn used half its lease.
    async fn renew_if_half_gone(
        &self,
        row: &timers::Timer,
        leased_at: DateTime<Utc>,
    ) -> HubResult<()> {
        if self.engine.now() - leased_at >= Duration::minutes(LEASE_MINUTES) / 2 {
            self.renew_check(row).await?;
        }
        Ok(())
    }

    /// Moves a claimed check's lease a full [`LEASE_MINUTES`] on from now (its payload kept).
    async fn renew_check(&self, row: &timers::Timer) -> HubResult<()> {
        let (store, id, payload) = (self.store.clone(), row.id, row.payload.clone());
        let until = self.engine.now() + Duration::minutes(LEASE_MINUTES);
        blocking(move || store.write_tx(|c, _| timers::reschedule(c, id, until, &payload))).await
    }
}
