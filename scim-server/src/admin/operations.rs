//! Outbox operations and incidents: listing them, putting a parked (failed) operation back in
//! the queue when nothing later has superseded it, and acknowledging or resolving incidents.

use serde_json::json;

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::store::{audit, connector_health, incidents, outbox, verifications, DbConnection};

/// What [`Admin::retry_connector`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorRetry {
    /// Parked operations put back in the queue, oldest first.
    pub requeued: Vec<i64>,
    /// Parked operations left parked: a later operation of their user and connector already ran.
    pub superseded: Vec<i64>,
    /// Operations that were waiting out a backoff and are due now.
    pub resumed: usize,
    /// The connector's circuit was open (or half-open): one operation is tried at once as its
    /// probe, and when it succeeds the circuit closes and the rest follow in order.
    pub probe: bool,
}

impl Admin {
    /// Outbox operations of `status` (`failed`: parked after the retry budget, with the
    /// reason), newest first.
    pub fn outbox(&self, status: Option<&str>, limit: i64) -> AdminResult<Vec<outbox::OutboxRow>> {
        // A status no operation can have matches none.
        let status = match status.map(outbox::OutboxStatus::parse) {
            Some(None) => return Ok(Vec::new()),
            other => other.flatten(),
        };
        Ok(in_tx(&self.store, |c| {
            outbox::list_ops(c, None, status, limit)
        })?)
    }

    /// Puts a parked (failed) operation back in the outbox with a fresh retry budget and
    /// resolves its incidents. 404 when unknown, 409 when it is not failed or a later operation
    /// on the same user and connector already ran (running the old one now could undo it).
    pub fn retry(&self, id: i64, by: &str) -> AdminResult<outbox::OutboxRow> {
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            let Some(row) = outbox::get_op(c, id)? else {
                return Ok(Err(AdminError::NotFound(format!("operation {id}"))));
            };
            if row.status != outbox::OutboxStatus::Failed {
                return Ok(Err(AdminError::Conflict(format!(
                    "operation {id} is {}, not failed",
                    row.status
                ))));
            }
            if outbox::later_done(c, &row)? {
                return Ok(Err(AdminError::Conflict(format!(
                    "operation {id} is superseded: a later operation on {} for this user already ran",
                    row.connector
                ))));
            }
            outbox::retry_failed(c, id, now)?;
            self.rearm_verification(c, &row.user_id, &row.plan_id, &row.connector, now)?;
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: by,
                    user_id: &row.user_id,
                    connector: Some(&row.connector),
                    action: "retry",
                    outcome: "queued",
                    detail: json!({"operation": id, "last_error": row.last_error}),
                },
            )?;
            Ok(Ok(outbox::get_op(c, id)?.unwrap_or(row)))
        })?
    }

    /// Resumes `connector` after an outage: its parked (failed) operations go back to the
    /// queue with a fresh retry budget and their incidents resolved, oldest first, and the ones
    /// waiting out a backoff become due now with a fresh budget. Per-user order holds because a
    /// re-queued operation keeps its place (its id): the claim runs no later operation of the
    /// same user and connector before it. A parked operation that a later one of its user and
    /// connector already superseded (it ran) stays parked and is listed as skipped, as
    /// [`Admin::retry`] refuses it. When the connector's circuit is open its probe is due at
    /// once (the operator says it is back): the first operation runs alone, and its success
    /// closes the circuit. 404 when the policy has no such connector.
    pub fn retry_connector(&self, connector: &str, by: &str) -> AdminResult<ConnectorRetry> {
        if !self
            .engine
            .policy
            .current()
            .connectors
            .contains_key(connector)
        {
            return Err(AdminError::NotFound(format!("connector {connector}")));
        }
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            // The circuit's row first, as the runner locks it before the connector's outbox
            // rows when a call closes the circuit: the same order, so no deadlock.
            let mut out = ConnectorRetry {
                probe: connector_health::probe_now(c, connector, now)?,
                ..ConnectorRetry::default()
            };
            let mut audited = Vec::new();
            for row in outbox::list_connector(c, connector, outbox::OutboxStatus::Failed)? {
                if outbox::later_done(c, &row)? {
                    out.superseded.push(row.id);
                } else if outbox::retry_failed(c, row.id, now)? {
                    out.requeued.push(row.id);
                    audited.push((row, "retry"));
                }
            }
            for row in outbox::list_connector(c, connector, outbox::OutboxStatus::Pending)? {
                if row.not_before > now || row.attempts > 0 {
                    audited.push((row, "resume"));
                }
            }
            out.resumed = outbox::resume_waiting(c, connector, now)?;
            // The plans of the operations put back, and those whose check found the system
            // unreadable, are read again once it answers (the check waits for the operations).
            let mut plans: Vec<(String, String)> = audited
                .iter()
                .map(|(r, _)| (r.user_id.clone(), r.plan_id.clone()))
                .collect();
            plans.extend(verifications::unreadable_on(c, connector)?);
            plans.sort();
            plans.dedup();
            for (user, plan) in &plans {
                self.rearm_verification(c, user, plan, connector, now)?;
            }
            for (row, action) in &audited {
                audit::append(
                    c,
                    &audit::AuditEntry {
                        at: now,
                        actor: by,
                        user_id: &row.user_id,
                        connector: Some(connector),
                        action,
                        outcome: "queued",
                        detail: json!({
                            "operation": row.id,
                            "last_error": row.last_error,
                            "by_connector": true,
                        }),
                    },
                )?;
            }
            Ok(Ok(out))
        })?
    }

    /// Arms the verification of `plan_id` on `connector` again, the connector's delay from now
    /// (see [`verifications::rearm`]): operations of the plan were put back after an outage.
    fn rearm_verification(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        plan_id: &str,
        connector: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::HubResult<bool> {
        let delay = {
            let policy = self.engine.policy.current();
            policy
                .verification
                .delay_for(policy.connectors.get(connector))
        };
        verifications::rearm(c, user_id, plan_id, connector, now + delay, now)
    }

    /// Open incidents.
    pub fn incidents(&self) -> AdminResult<Vec<incidents::Incident>> {
        Ok(in_tx(&self.store, incidents::list_open)?)
    }

    /// One incident with its notices and who acknowledged or resolved it; 404 when unknown.
    pub fn incident(&self, id: i64) -> AdminResult<incidents::IncidentDetail> {
        in_tx(&self.store, |c| incidents::get(c, id))?
            .ok_or_else(|| AdminError::NotFound(format!("incident {id}")))
    }

    /// Acknowledges an open incident as `by`: its reminders stop, it stays open until resolved.
    /// 404 when unknown, 409 when resolved or already acknowledged.
    pub fn acknowledge_incident(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
    ) -> AdminResult<incidents::IncidentDetail> {
        self.close_incident(id, by, note, false)
    }

    /// Resolves an open incident as `by`. 404 when unknown, 409 when already resolved.
    pub fn resolve_incident(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
    ) -> AdminResult<incidents::IncidentDetail> {
        self.close_incident(id, by, note, true)
    }

    fn close_incident(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
        resolve: bool,
    ) -> AdminResult<incidents::IncidentDetail> {
        let now = self.now();
        let (action, outcome) = if resolve {
            ("incident_resolve", "resolved")
        } else {
            ("incident_acknowledge", "acknowledged")
        };
        in_tx(&self.store, |c| {
            let Some(row) = incidents::get(c, id)? else {
                return Ok(Err(AdminError::NotFound(format!("incident {id}"))));
            };
            let done = if resolve {
                incidents::resolve(c, id, by, note, now)?
            } else {
                incidents::acknowledge(c, id, by, note, now)?
            };
            if !done {
                let why = if row.status != "open" {
                    "is resolved".to_string()
                } else {
                    format!(
                        "was already acknowledged by {}",
                        row.acknowledged_by.as_deref().unwrap_or("?")
                    )
                };
                return Ok(Err(AdminError::Conflict(format!("incident {id} {why}"))));
            }
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: by,
                    user_id: row.user_id.as_deref().unwrap_or(""),
                    connector: row.connector.as_deref(),
                    action,
                    outcome,
                    detail: json!({"incident": id, "kind": row.kind, "note": note}),
                },
            )?;
            Ok(Ok(incidents::get(c, id)?.unwrap_or(row)))
        })?
    }
}
