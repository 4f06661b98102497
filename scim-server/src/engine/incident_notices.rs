//! Incident notices: every open incident, whatever raised it, is mailed to the policy's
//! security and helpdesk recipients at once, then again along the `[incidents] renotify`
//! ladder until someone acknowledges or resolves it; every notice is also posted to each
//! `[[incidents.chat]]` webhook (one queued delivery per channel and step).
//!
//! The ladder lives on the incident row (`notify_count`, `next_notify_at`), and the notice is
//! queued in `engine_notifications` in the same transaction that moves it, so a crash never
//! loses or doubles a step: each step is one notification row per incident.

use super::desired::attr_str;
use super::notices::{self, IncidentNotice};
use crate::error::HubResult;
use crate::policy::Policy;
use crate::store::{incidents, notifications, DbConnection};
use chrono::{DateTime, Utc};

/// Incidents handled per call (the rest on the next tick).
const BATCH: i64 = 100;

/// Queues the notices of the incidents due at `now` and moves each along its ladder; returns
/// how many incidents were notified.
pub fn queue_due(c: &mut DbConnection, policy: &Policy, now: DateTime<Utc>) -> HubResult<usize> {
    let due = incidents::due_for_notice(c, now, BATCH)?;
    let mut recipients: Vec<String> = Vec::new();
    for r in policy.notify.security.iter().chain(&policy.notify.helpdesk) {
        if !recipients.iter().any(|x| x.eq_ignore_ascii_case(r)) {
            recipients.push(r.clone());
        }
    }
    for i in &due {
        let count = i.notify_count + 1;
        let user_name = match i.user_id.as_deref() {
            Some(u) => super::load_user_doc(c, u)?
                .as_ref()
                .and_then(|d| attr_str(d, "userName"))
                .map(str::to_string),
            None => None,
        };
        let notice = IncidentNotice {
            id: i.id,
            kind: &i.kind,
            user_id: i.user_id.as_deref(),
            user_name: user_name.as_deref(),
            connector: i.connector.as_deref(),
            reason: &i.reason,
            opened: &i.created,
            notice: count,
        };
        let n = notices::incident(policy, notice);
        for ch in &policy.incidents.chat {
            let payload = notices::incident_chat(policy, ch.format, notice);
            notifications::enqueue_chat(
                c,
                n.kind,
                i.user_id.as_deref(),
                &ch.name,
                &n.subject,
                &payload,
                now,
            )?;
        }
        if !recipients.is_empty() {
            notifications::enqueue(
                c,
                n.kind,
                i.user_id.as_deref(),
                &recipients,
                &n.subject,
                &n.body,
                now,
            )?;
        }
        // With nobody to tell the ladder still moves, so adding recipients later does not
        // release a burst of every notice missed.
        incidents::noticed(c, i.id, count, now + policy.incidents.delay_after(count))?;
    }
    Ok(due.len())
}
