//! Event SLAs (the policy's `[sla]`): the clock runs from the event that planned the operations
//! (the SCIM write, or the timer or decision that caused it) to the plan's last operation done.
//!
//! Planning records the deadline on the event and schedules a durable
//! [`super::timers::TimerKind::SlaDeadline`] timer in the same transaction. When the last
//! operation of the plan is done, [`operation_done`] records the completion time, how long it
//! took and the result (`met`, or `breached` when done after the deadline), and cancels the
//! timer. When the timer fires first, [`deadline`] marks the event `breached` and raises one
//! `sla_breach` incident naming what is still outstanding; the completion that follows records
//! the actual time.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::plan::Operation;
use super::timers::sla_deadline_key;
use crate::error::HubResult;
use crate::store::outbox::OutboxRow;
use crate::store::{audit, engine_state, events, incidents, outbox, timers, DbConnection};

/// The SLA of the event that planned `plan_id` ended at `now` (its deadline timer fired): when
/// the plan still has operations to do, the event is marked breached and an `sla_breach`
/// incident is raised (once per plan).
pub fn deadline(c: &mut DbConnection, plan_id: &str, now: DateTime<Utc>) -> HubResult<()> {
    let Some(event) = events::by_plan(c, plan_id)? else {
        return Ok(());
    };
    let open = outbox::outstanding(c, plan_id)?;
    if event.completed.is_some() || open.is_empty() {
        return Ok(());
    }
    // Conditional, and it waits for a worker recording the plan's last operation: when that
    // completed the event meanwhile, no breach is raised for a plan that met its SLA.
    if !events::mark_breached(c, plan_id)? {
        return Ok(());
    }
    let user_name = engine_state::get_user(c, &event.user_id)?.and_then(|u| {
        u.facts
            .get("userName")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let reason = breach_reason(&event, user_name.as_deref(), &open);
    // One connector named when everything outstanding is on it (the incident list filters by it).
    let connector = open
        .first()
        .map(|r| r.connector.as_str())
        .filter(|first| open.iter().all(|r| r.connector == *first));
    let raised = incidents::raise_once(
        c,
        &incidents::NewIncident {
            kind: "sla_breach",
            user_id: Some(&event.user_id),
            connector,
            reason: &reason,
            dedupe_key: &format!("sla_breach:{plan_id}"),
        },
        now,
    )?;
    if raised {
        crate::metrics::global().sla_result(&event.event, "breached");
        tracing::warn!(user = %event.user_id, plan = plan_id, event = %event.event, outstanding = open.len(), "SLA breached");
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor: "timer",
                user_id: &event.user_id,
                connector,
                action: "sla",
                outcome: events::SLA_BREACHED,
                detail: json!({
                    "event": event.event,
                    "plan_id": plan_id,
                    "event_at": event.at,
                    "sla_due": event.sla_due,
                    "outstanding": open.iter().map(describe).collect::<Vec<_>>(),
                }),
            },
        )?;
    }
    Ok(())
}

/// An operation of plan `plan_id` was done at `now` (the runner calls this in the transaction
/// that records it): when it was the plan's last, the event records its completion and SLA
/// result, and the deadline timer is cancelled. Returns the event it completed (the runner
/// archives a contractor's history when it is a contract expiry, `report::contractor`).
pub fn operation_done(
    c: &mut DbConnection,
    plan_id: &str,
    now: DateTime<Utc>,
) -> HubResult<Option<events::EventSla>> {
    // The event's row first: two workers recording the plan's last two operations at once
    // would each see the other's still outstanding, and neither complete the event. Locked,
    // the second sees the first's committed.
    match events::by_plan_for_update(c, plan_id)? {
        Some(e) if e.completed.is_none() => {}
        _ => return Ok(None),
    }
    if !outbox::outstanding(c, plan_id)?.is_empty() {
        return Ok(None);
    }
    let Some(event) = events::complete(c, plan_id, now)? else {
        return Ok(None);
    };
    timers::cancel_key_unless_firing(c, &sla_deadline_key(plan_id))?;
    if let Some(result) = &event.sla_result {
        crate::metrics::global().sla_result(
            &event.event,
            if result == events::SLA_BREACHED {
                "late"
            } else {
                "met"
            },
        );
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor: "worker",
                user_id: &event.user_id,
                connector: None,
                action: "sla",
                outcome: result,
                detail: json!({
                    "event": event.event,
                    "plan_id": plan_id,
                    "event_at": event.at,
                    "sla_due": event.sla_due,
                    "completed": now,
                    "seconds": event.sla_seconds,
                }),
            },
        )?;
    }
    Ok(Some(event))
}

/// What the incident says: the event, the user, the deadline and each operation outstanding.
fn breach_reason(event: &events::EventSla, user_name: Option<&str>, open: &[OutboxRow]) -> String {
    let who = match user_name {
        Some(n) => format!("{n} ({})", event.user_id),
        None => event.user_id.clone(),
    };
    let sla = event
        .sla_due
        .map(|due| crate::policy::fmt_duration(due - event.at))
        .unwrap_or_default();
    let ops: Vec<String> = open.iter().map(describe).collect();
    format!(
        "{} of {who} (plan {}) not complete at its SLA deadline {} ({sla} from the event at {}); \
         {} operation(s) outstanding: {}",
        event.event,
        event.plan_id,
        event.sla_due.map(|d| d.to_rfc3339()).unwrap_or_default(),
        event.at.to_rfc3339(),
        open.len(),
        ops.join("; ")
    )
}

/// One outstanding operation: connector, operation, status, attempts and last error.
fn describe(r: &OutboxRow) -> String {
    let op = serde_json::from_str::<Operation>(&r.op)
        .map(|o| o.describe())
        .unwrap_or_else(|_| r.op.clone());
    let mut s = format!(
        "{} {op} ({}, {} attempt(s)",
        r.connector,
        r.status.as_str(),
        r.attempts
    );
    if let Some(e) = &r.last_error {
        s.push_str(&format!(", last error: {e}"));
    }
    s.push(')');
    s
}
