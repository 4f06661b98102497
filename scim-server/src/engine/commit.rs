//! Writing a [`Decision`] in the caller's transaction, row by row in the order planning has
//! always written them; nothing here decides anything. The one lookup is the policy's approvers
//! named by userName, which become user ids as their notices are queued.

use chrono::{DateTime, Utc};

use super::outcome::{Decision, HoldDecision, QueuedNotice};
use super::timers;
use super::user_ids_by_name;
use crate::error::{HubError, HubResult};
use crate::store::approvals::ApprovalStatus;
use crate::store::{approvals, notifications, outbox, DbConnection};
use crate::store::{audit, engine_state, events, holds, incidents};

fn backend(e: impl std::fmt::Display) -> HubError {
    HubError::Backend(e.to_string())
}

/// Writes what `decision` says about `user_id` at `now`.
pub fn commit(c: &mut DbConnection, decision: &Decision, now: DateTime<Utc>) -> HubResult<()> {
    let Some(w) = &decision.writes else {
        return Ok(());
    };
    let outcome = &decision.outcome;
    let user_id = outcome.user_id.as_str();
    approvals::purge_overrides(c, user_id, now)?;
    if w.end_grants {
        approvals::end_grants(c, user_id, now)?;
    }
    // A request decided meanwhile (another node) is left alone and not audited as ended.
    let mut ended = Vec::new();
    for r in &w.ended_requests {
        if approvals::end_request(c, &r.id, r.was, r.reason, now)? > 0 {
            ended.push(&r.audit);
        }
    }
    for o in &w.overrides {
        approvals::insert_override(
            c,
            &approvals::OverrideRow {
                id: o.id.clone(),
                user_id: user_id.into(),
                connector: o.kept.connector.clone(),
                entitlement: serde_json::to_string(&o.kept.entitlement).unwrap_or_default(),
                until: o.kept.until,
                reason: "mover overlap".into(),
            },
            now,
        )?;
    }
    for a in &w.approvals {
        approvals::insert(
            c,
            &approvals::NewApproval {
                id: &a.id,
                user_id,
                kind: a.kind,
                connector: Some(&a.connector),
                entitlement: Some(&a.entitlement),
                level: a.level,
                detail: a.detail.clone(),
            },
            now,
        )?;
        if a.blocked {
            approvals::decide(
                c,
                &a.id,
                ApprovalStatus::Blocked,
                &approvals::DecidedBy::policy(),
                Some("separation of duties"),
                now,
            )?;
        }
    }
    if let Some(HoldDecision::Open { id, reason }) = &w.hold {
        holds::create(c, id, reason, now)?;
    }
    let hold_id = w.hold.as_ref().map(HoldDecision::id);
    let event = outcome.event;
    let ops = outcome
        .plan
        .ops
        .iter()
        .map(|op| {
            Ok(outbox::NewOp {
                plan_id: &w.plan_id,
                user_id,
                connector: &op.connector,
                event: event.as_str(),
                priority: event.priority(),
                op: serde_json::to_string(&op.op).map_err(backend)?,
                hold_id,
            })
        })
        .collect::<HubResult<Vec<_>>>()?;
    outbox::enqueue_all(c, &ops, now)?;
    let planned = w
        .planned
        .iter()
        .map(|(connector, rec)| {
            Ok((
                connector.as_str(),
                serde_json::to_string(rec).map_err(backend)?,
            ))
        })
        .collect::<HubResult<Vec<_>>>()?;
    let planned: Vec<(&str, &str)> = planned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    engine_state::put_planned_all(c, user_id, &planned, now)?;
    engine_state::put_user(c, &w.user)?;
    // A role change lifts the certification revocations made under the old role.
    let mut profiles = w.user.profiles.clone();
    profiles.sort();
    let profiles = serde_json::to_string(&profiles).map_err(backend)?;
    crate::store::certification::lift_on_role_change(c, user_id, &profiles, now)?;
    if w.record_event {
        events::record(
            c,
            &events::NewEvent {
                at: now,
                user_id,
                event: event.as_str(),
                plan_id: &w.plan_id,
                ops: outcome.plan.ops.len() as i64,
                revokes: outcome.plan.revocations() as i64,
                hold_id,
                sla_due: w.sla_due,
                unsupported: &outcome
                    .plan
                    .unsupported
                    .iter()
                    .map(|u| u.note())
                    .collect::<Vec<_>>(),
            },
        )?;
    }
    // An account kept for its records is dealt with once a plan hands them over, deletes it or
    // gives it back to its user (a rehire): its `records_kept` incident is over.
    for op in &outcome.plan.ops {
        use super::plan::Operation as Op;
        let done = match &op.op {
            Op::TransferOwnership { .. } => Some("the records go to the manager's account"),
            Op::Delete { .. } => Some("the account is deleted"),
            Op::SetEnabled { enabled: true, .. } => Some("the account is enabled again"),
            _ => None,
        };
        if let Some(why) = done {
            incidents::resolve_open_for(
                c,
                "records_kept",
                user_id,
                &op.connector,
                "scimhub",
                &format!("plan {}: {why}", w.plan_id),
                now,
            )?;
        }
    }
    for i in &w.incidents {
        incidents::raise_once(
            c,
            &incidents::NewIncident {
                kind: i.kind,
                user_id: Some(user_id),
                connector: i.connector.as_deref(),
                reason: &i.reason,
                dedupe_key: &i.dedupe_key,
            },
            now,
        )?;
    }
    for t in &w.timers {
        timers::apply(c, user_id, t, now)?;
    }
    for n in &w.notices {
        queue(c, n, now)?;
    }
    // Last: an audit append holds the chain head until commit (see `store::audit_chain`).
    for a in w.audit.iter().chain(ended) {
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor: a.actor,
                user_id,
                connector: a.connector.as_deref(),
                action: a.action,
                outcome: a.outcome,
                detail: a.detail.clone(),
            },
        )?;
    }
    if w.end_grants {
        super::grants::end_for_leaver(c, user_id, now)?;
    }
    Ok(())
}

/// Queues a notice to its recipients: the direct ones, the named users' ids, the others; else
/// the fallback; nothing when that is empty too.
pub fn queue(c: &mut DbConnection, n: &QueuedNotice, now: DateTime<Utc>) -> HubResult<()> {
    let mut to = n.to.direct.clone();
    if !n.to.by_name.is_empty() {
        to.extend(user_ids_by_name(c, &n.to.by_name)?);
    }
    to.extend(n.to.then.iter().cloned());
    if to.is_empty() {
        to = n.to.fallback.clone();
    }
    if to.is_empty() {
        return Ok(());
    }
    notifications::enqueue(
        c,
        n.notice.kind,
        n.user_id.as_deref(),
        &to,
        &n.notice.subject,
        &n.notice.body,
        now,
    )
}
