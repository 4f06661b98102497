//! Lifecycle events as recorded: the list (paged, by user, kind and time) and one event's whole
//! record — when the SCIM request that caused it came, every operation planned per system with
//! when it was requested and done and how it ended, the SLA result with the actual completion
//! time, the post-change verification per system, and the incidents it raised. What
//! `GET /admin/v1/events`, `scimhub events`, the reports (`report`) and the coming console read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::engine::plan::Operation;
use crate::error::HubResult;
use crate::store::events::{self, EventRecord, RecordFilter};
use crate::store::{engine_state, incidents, outbox, verifications, DbConnection};

/// The most events one page returns.
pub const MAX_PAGE: i64 = 1000;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// A user's id or userName.
    pub user: Option<String>,
    /// The event kind: joiner, mover, leaver, rehire, contractor-expiry, update.
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The page after the one whose last event had this id.
    pub before: Option<i64>,
    /// Page size (1 to [`MAX_PAGE`]).
    pub limit: i64,
}

/// One page of events, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// An event in a list.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub id: i64,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub plan_id: String,
    pub operations: i64,
    pub sla_due: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub sla_result: Option<String>,
}

impl From<&EventRecord> for EventSummary {
    fn from(e: &EventRecord) -> Self {
        EventSummary {
            id: e.id,
            kind: e.event.clone(),
            at: e.at,
            user_id: e.user_id.clone(),
            plan_id: e.plan_id.clone(),
            operations: e.ops,
            sla_due: e.sla_due,
            completed: e.completed,
            sla_result: e.sla_result.clone(),
        }
    }
}

/// One event's whole record.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    pub id: i64,
    pub kind: String,
    /// When the request that caused the event came (the SCIM write, timer or decision).
    pub at: DateTime<Utc>,
    pub user_id: String,
    /// The user's userName as the engine last knew it.
    pub user_name: Option<String>,
    pub plan_id: String,
    /// The blast-radius hold the plan waited (or waits) behind.
    pub hold_id: Option<String>,
    pub sla: EventSlaResult,
    /// "not supported by CONNECTOR: STEP" for each step the policy expected and a connector
    /// cannot do.
    pub unsupported: Vec<String>,
    /// Per system, in the order the plan first named them.
    pub systems: Vec<SystemRecord>,
    /// Incidents the event raised (SLA breach, parked operations, verification), oldest first.
    pub incidents: Vec<IncidentRef>,
}

/// The event's SLA: due, when the plan completed, and the result.
#[derive(Debug, Clone, Serialize)]
pub struct EventSlaResult {
    pub due: Option<DateTime<Utc>>,
    /// When the plan's last operation was done (also after a breach: the actual time).
    pub completed: Option<DateTime<Utc>>,
    /// `met` or `breached` (`breached` from the deadline on when the plan was not complete);
    /// absent while the plan runs within its SLA or when the policy sets none.
    pub result: Option<String>,
    /// Seconds from the event to completion.
    pub seconds: Option<i64>,
}

/// What happened on one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemRecord {
    pub connector: String,
    /// When the first operation on it was requested.
    pub requested: DateTime<Utc>,
    /// When its last operation was done; absent until every one of them is.
    pub done: Option<DateTime<Utc>>,
    /// `done` when every operation is done, else the least advanced status (`failed` = parked,
    /// `held`, `running`, `pending`, `discarded`).
    pub outcome: String,
    pub operations: Vec<OperationRecord>,
    /// Post-change verifications of the system, oldest first (a check read again after an
    /// outage adds one).
    pub verifications: Vec<VerificationRecord>,
    /// The latest verification outcome (`verified`, `mismatch`, `unreadable`,
    /// `not_verifiable`): what the system was last found to hold; absent before any check.
    pub verification: Option<String>,
}

/// One planned operation.
#[derive(Debug, Clone, Serialize)]
pub struct OperationRecord {
    /// The outbox id (`scimhub outbox retry ID`).
    pub id: i64,
    /// e.g. `set_enabled jdoe false`.
    pub operation: String,
    pub status: String,
    pub attempts: i64,
    pub requested: DateTime<Utc>,
    pub done: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// One verification of a system.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationRecord {
    /// `verified`, `mismatch`, `unreadable` or `not_verifiable`.
    pub outcome: String,
    pub checked_at: String,
    pub attempts: i64,
    /// The differences, the error, or notes.
    pub detail: Value,
}

/// An incident the event raised.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRef {
    pub id: i64,
    pub kind: String,
    pub connector: Option<String>,
    pub created: String,
    pub status: String,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub reason: String,
}

/// The least advanced of a system's operation statuses (`done` only when all are).
fn system_outcome(ops: &[outbox::OutboxRow]) -> String {
    use outbox::OutboxStatus as S;
    let rank = |s: S| match s {
        S::Failed => 0,
        S::Held => 1,
        S::Running => 2,
        S::Pending => 3,
        S::Discarded => 4,
        S::Done => 5,
    };
    ops.iter()
        .map(|o| o.status)
        .min_by_key(|s| rank(*s))
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "done".into())
}

fn systems(
    ops: Vec<outbox::OutboxRow>,
    checks: Vec<verifications::Verification>,
) -> Vec<SystemRecord> {
    let mut order: Vec<String> = Vec::new();
    for o in &ops {
        if !order.contains(&o.connector) {
            order.push(o.connector.clone());
        }
    }
    for v in &checks {
        if !order.contains(&v.connector) {
            order.push(v.connector.clone());
        }
    }
    order
        .into_iter()
        .map(|connector| {
            let mine: Vec<outbox::OutboxRow> = ops
                .iter()
                .filter(|o| o.connector == connector)
                .cloned()
                .collect();
            let all_done = mine.iter().all(|o| o.status == outbox::OutboxStatus::Done);
            let requested = mine.iter().map(|o| o.created).min().unwrap_or_default();
            let done = if all_done && !mine.is_empty() {
                mine.iter().filter_map(|o| o.finished).max()
            } else {
                None
            };
            SystemRecord {
                outcome: system_outcome(&mine),
                requested,
                done,
                operations: mine
                    .iter()
                    .map(|o| OperationRecord {
                        id: o.id,
                        operation: serde_json::from_str::<Operation>(&o.op)
                            .map(|op| op.describe())
                            .unwrap_or_else(|_| o.op.clone()),
                        status: o.status.as_str().to_string(),
                        attempts: o.attempts,
                        requested: o.created,
                        done: o.finished,
                        last_error: o.last_error.clone(),
                    })
                    .collect(),
                verification: checks
                    .iter()
                    .rfind(|v| v.connector == connector)
                    .map(|v| v.outcome.clone()),
                verifications: checks
                    .iter()
                    .filter(|v| v.connector == connector)
                    .map(|v| VerificationRecord {
                        outcome: v.outcome.clone(),
                        checked_at: v.checked_at.clone(),
                        attempts: v.attempts,
                        detail: serde_json::from_str(&v.detail)
                            .unwrap_or_else(|_| Value::String(v.detail.clone())),
                    })
                    .collect(),
                connector,
            }
        })
        .collect()
}

impl Admin {
    /// Events matching `q`, newest first, one page. A `user` that names no current user by id
    /// or userName is taken as a user id (a deleted user's events stay readable by id).
    pub fn events(&self, q: &EventQuery) -> AdminResult<EventPage> {
        if !(1..=MAX_PAGE).contains(&q.limit) {
            return Err(AdminError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        if let (Some(s), Some(u)) = (q.since, q.until) {
            if s >= u {
                return Err(AdminError::Invalid("since must be before until".into()));
            }
        }
        let user_id = match &q.user {
            None => None,
            Some(u) => Some(match self.find_user(u) {
                Ok((id, _)) => id,
                Err(AdminError::NotFound(_)) => u.clone(),
                Err(e) => return Err(e),
            }),
        };
        let filter = RecordFilter {
            user_id,
            event: q.kind.clone(),
            since: q.since,
            until: q.until,
            before_id: q.before,
        };
        // One more than the page tells whether another page follows.
        let mut rows = in_tx(&self.store, |c| events::records(c, &filter, q.limit + 1))?;
        let more = rows.len() as i64 > q.limit;
        rows.truncate(q.limit as usize);
        Ok(EventPage {
            next_before: if more {
                rows.last().map(|e| e.id)
            } else {
                None
            },
            events: rows.iter().map(EventSummary::from).collect(),
        })
    }

    /// One event's whole record; 404 when unknown.
    pub fn event(&self, id: i64) -> AdminResult<EventDetail> {
        in_tx(&self.store, |c| event_detail(c, id))?
            .ok_or_else(|| AdminError::NotFound(format!("event {id}")))
    }
}

/// One event's whole record read on `c` (in the caller's transaction: the reports read it in
/// one snapshot with the audit chain head); `None` when unknown.
pub fn event_detail(c: &mut DbConnection, id: i64) -> HubResult<Option<EventDetail>> {
    let Some(e) = events::record_by_id(c, id)? else {
        return Ok(None);
    };
    let ops = outbox::list_plan(c, &e.plan_id)?;
    let checks = verifications::for_plan(c, &e.plan_id)?;
    let raised = incidents::for_plan(c, &e.plan_id)?;
    let user_name = engine_state::get_user(c, &e.user_id)?.and_then(|u| {
        u.facts
            .get("userName")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(Some(EventDetail {
        id: e.id,
        kind: e.event,
        at: e.at,
        user_id: e.user_id,
        user_name,
        plan_id: e.plan_id,
        hold_id: e.hold_id,
        sla: EventSlaResult {
            due: e.sla_due,
            completed: e.completed,
            result: e.sla_result,
            seconds: e.sla_seconds,
        },
        unsupported: e.unsupported,
        systems: systems(ops, checks),
        incidents: raised
            .into_iter()
            .map(|i| IncidentRef {
                id: i.id,
                kind: i.kind,
                connector: i.connector,
                created: i.created,
                status: i.status,
                acknowledged_by: i.acknowledged_by,
                resolved_at: i.resolved_at,
                reason: i.reason,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn op(
        id: i64,
        connector: &str,
        status: outbox::OutboxStatus,
        fin: Option<i64>,
    ) -> outbox::OutboxRow {
        let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        outbox::OutboxRow {
            id,
            plan_id: "p".into(),
            user_id: "u".into(),
            connector: connector.into(),
            event: "leaver".into(),
            priority: 0,
            op: "{}".into(),
            status,
            hold_id: None,
            attempts: 1,
            not_before: t(id),
            last_error: None,
            created: t(id),
            finished: fin.map(t),
            lease_owner: None,
            claim_seq: 1,
        }
    }

    #[test]
    fn a_system_is_done_only_when_all_its_operations_are() {
        use outbox::OutboxStatus as S;
        let out = systems(
            vec![
                op(1, "dir", S::Done, Some(10)),
                op(2, "apps", S::Done, Some(3)),
                op(3, "dir", S::Failed, None),
                op(4, "apps", S::Done, Some(5)),
            ],
            Vec::new(),
        );
        let names: Vec<&str> = out.iter().map(|s| s.connector.as_str()).collect();
        assert_eq!(names, ["dir", "apps"]);
        assert_eq!(out[0].outcome, "failed");
        assert_eq!(out[0].done, None);
        assert_eq!(
            out[0].requested,
            Utc.timestamp_opt(1_700_000_001, 0).unwrap()
        );
        assert_eq!(out[1].outcome, "done");
        assert_eq!(
            out[1].done,
            Some(Utc.timestamp_opt(1_700_000_005, 0).unwrap())
        );
        assert_eq!(out[1].operations.len(), 2);
    }
}
