//! Incident notices: every open incident, whatever raised it, is mailed to the policy's
//! security and helpdesk recipients at once, then again along the `[incidents] renotify`
//! ladder until someone acknowledges or resolves it; every notice is also posted to each
//! `[[incidents.chat]]` webhook (one queued delivery per channel and step).
//!
//! The ladder lives on the incident row (`notify_count`, `next_notify_at`), and the notice is
//! queued in `engine_notifications` in the same transaction that moves it, so a crash never
//! loses or doubles a step: each step is one notification row per incident.

use super::desired::attr_str;
use super::links;
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
    // (address, the role its links are bound to): security first, so an address on both lists
    // is bound as security.
    let mut recipients: Vec<(String, &str)> = Vec::new();
    for (list, role) in [
        (&policy.notify.security, links::ROLE_SECURITY),
        (&policy.notify.helpdesk, links::ROLE_HELPDESK),
    ] {
        for r in list {
            if !recipients.iter().any(|(x, _)| x.eq_ignore_ascii_case(r)) {
                recipients.push((r.clone(), role));
            }
        }
    }
    let key = links::key(policy);
    let expires = now + policy.notify.link_ttl;
    for i in &due {
        let count = i.notify_count + 1;
        let doc = match i.user_id.as_deref() {
            Some(u) => super::load_user_doc(c, u)?,
            None => None,
        };
        let attr = |a: &str| {
            doc.as_ref()
                .and_then(|d| attr_str(d, a))
                .map(str::to_string)
        };
        let (user_name, display_name) = (attr("userName"), attr("displayName"));
        let notice = IncidentNotice {
            id: i.id,
            kind: &i.kind,
            user_id: i.user_id.as_deref(),
            user_name: user_name.as_deref(),
            display_name: display_name.as_deref(),
            connector: i.connector.as_deref(),
            reason: &i.reason,
            opened: &i.created,
            notice: count,
        };
        let n = notices::incident(notice, None);
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
        // Each address its own copy with links bound to it, when links are configured; else
        // one copy without links to all.
        let linked: Option<Vec<(String, notices::Notice)>> = match &key {
            Some(key) => recipients
                .iter()
                .map(|(address, role)| {
                    let (ack, resolve) = links::incident_links(
                        policy,
                        key,
                        i.id,
                        i.user_id.as_deref(),
                        address,
                        role,
                        now,
                    )?;
                    Some((
                        address.clone(),
                        notices::incident(
                            notice,
                            Some(notices::PairLinks {
                                addressee: address,
                                expires,
                                first: &ack,
                                second: &resolve,
                            }),
                        ),
                    ))
                })
                .collect(),
            None => None,
        };
        match linked {
            Some(copies) => {
                for (address, copy) in copies {
                    notifications::enqueue(
                        c,
                        copy.kind,
                        i.user_id.as_deref(),
                        &[address],
                        &copy.subject,
                        &copy.body,
                        now,
                    )?;
                }
            }
            None if !recipients.is_empty() => {
                let to: Vec<String> = recipients.iter().map(|(a, _)| a.clone()).collect();
                notifications::enqueue(
                    c,
                    n.kind,
                    i.user_id.as_deref(),
                    &to,
                    &n.subject,
                    &n.body,
                    now,
                )?;
            }
            None => {}
        }
        // With nobody to tell the ladder still moves, so adding recipients later does not
        // release a burst of every notice missed.
        incidents::noticed(c, i.id, count, now + policy.incidents.delay_after(count))?;
    }
    Ok(due.len())
}
