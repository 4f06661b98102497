//! Bulk onboarding confirmation: the joiner plans of one burst (a /Bulk request, a roster
//! import run, or one client's joiners close together; see `store::bursts`) and, once every
//! plan reached a final state, one mail to the policy's HR and IT leads saying who got what,
//! what waits for approval and from whom, and what failed.
//!
//! The engine records facts (which plan belongs to which burst: [`record_joiner`], called in the
//! joiner's own transaction); [`summary`] reads a burst's outcome as data, for this mail and for
//! any later report; [`complete_due`] (the timer loop) queues the mail; its wording is
//! `notices::onboarding_confirmation`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::desired::attr_str;
use super::plan::Operation;
use super::{load_user_doc, manager_id, notices};
use crate::error::HubResult;
use crate::policy::Policy;
use crate::store::approvals::{ApprovalKind, ApprovalLevel, ApprovalStatus};
use crate::store::bursts::{self, BurstSource};
use crate::store::outbox::OutboxStatus;
use crate::store::{approvals, notifications, outbox, DbConnection};

/// One access of a joiner: an account or an entitlement on a connector, as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The connector's name in the policy.
    pub connector: String,
    /// The connector as people read it: its policy `description` and name, or the name.
    pub system: String,
    /// `account`, or the entitlement ([`notices::entitlement_label`]).
    pub what: String,
}

/// An access that waits for an approval, and who may give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub access: Access,
    /// `manager`, `owner`, `security`.
    pub level: String,
    /// Who may decide, as people read them: the manager (`Display Name (userName)`, from the
    /// directory), the owners or security approvers (userNames from the policy).
    pub approvers: Vec<String>,
    /// The policy's approver addresses for the level (`[notify] approvers`).
    pub addresses: Vec<String>,
}

/// An access that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub access: Access,
    pub reason: String,
}

/// One joiner of a burst and where their access stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joiner {
    pub user_id: String,
    pub user_name: Option<String>,
    pub display_name: Option<String>,
    /// Done.
    pub granted: Vec<Access>,
    /// Not final yet: queued or running.
    pub in_progress: Vec<Access>,
    /// Held behind a blast-radius hold (an admin confirms or discards it).
    pub held: Vec<Access>,
    pub waiting: Vec<Waiting>,
    pub failed: Vec<Failed>,
}

/// A burst's joiners and their outcomes: the reusable data behind the confirmation mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingSummary {
    pub burst_id: String,
    pub source: BurstSource,
    pub client: String,
    pub started: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub joiners: Vec<Joiner>,
}

impl OnboardingSummary {
    /// Whether every plan reached a final state (done, waiting for approval, held, failed).
    pub fn complete(&self) -> bool {
        self.joiners.iter().all(|j| j.in_progress.is_empty())
    }
}

/// Records the joiner plan `plan_id` of `user_id`, written by `client`, in its burst (in the
/// plan's transaction).
pub fn record_joiner(
    c: &mut DbConnection,
    policy: &Policy,
    client: &str,
    user_id: &str,
    plan_id: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    bursts::join(
        c,
        client,
        plan_id,
        user_id,
        policy.notify.onboarding_window,
        now,
    )
    .map(|_| ())
}

fn system(policy: &Policy, connector: &str) -> String {
    match policy
        .connectors
        .get(connector)
        .and_then(|c| c.description.as_deref())
        .filter(|d| !d.trim().is_empty())
    {
        Some(d) => format!("{d} ({connector})"),
        None => connector.to_string(),
    }
}

fn access(policy: &Policy, connector: &str, what: String) -> Access {
    Access {
        connector: connector.to_string(),
        system: system(policy, connector),
        what,
    }
}

/// What an operation gives, for the summary; `None` for operations a joiner's summary does not
/// list (account updates, enabling).
fn gives(op: &Operation) -> Option<String> {
    match op {
        Operation::CreateOrAdopt { .. } => Some("account".into()),
        Operation::Grant { entitlement, .. } => Some(notices::entitlement_label(
            &serde_json::to_string(entitlement).unwrap_or_default(),
        )),
        _ => None,
    }
}

/// The outcome of burst `burst_id`: each joiner (in the order they were planned) with what
/// their plan's operations did, the approvals they wait for and from whom. `None` when there is
/// no such burst.
pub fn summary(
    c: &mut DbConnection,
    policy: &Policy,
    burst_id: &str,
) -> HubResult<Option<OnboardingSummary>> {
    let Some(burst) = bursts::get(c, burst_id)? else {
        return Ok(None);
    };
    let mut joiners = Vec::new();
    for p in bursts::plans(c, burst_id)? {
        let doc = load_user_doc(c, &p.user_id)?;
        let text = |k: &str| {
            doc.as_ref()
                .and_then(|d| attr_str(d, k))
                .map(str::to_string)
        };
        let mut j = Joiner {
            user_id: p.user_id.clone(),
            user_name: text("userName"),
            display_name: text("displayName"),
            granted: Vec::new(),
            in_progress: Vec::new(),
            held: Vec::new(),
            waiting: Vec::new(),
            failed: Vec::new(),
        };
        for row in outbox::list_plan(c, &p.plan_id)? {
            let Ok(op) = serde_json::from_str::<Operation>(&row.op) else {
                continue;
            };
            let Some(what) = gives(&op) else {
                continue;
            };
            let a = access(policy, &row.connector, what);
            match row.status {
                OutboxStatus::Done => j.granted.push(a),
                OutboxStatus::Pending | OutboxStatus::Running => j.in_progress.push(a),
                OutboxStatus::Held => j.held.push(a),
                OutboxStatus::Failed => j.failed.push(Failed {
                    access: a,
                    reason: row
                        .last_error
                        .unwrap_or_else(|| "failed without an error message".into()),
                }),
                OutboxStatus::Discarded => j.failed.push(Failed {
                    access: a,
                    reason: "discarded with its blast-radius hold".into(),
                }),
            }
        }
        let manager = match doc.as_ref().and_then(manager_id) {
            Some(m) => load_user_doc(c, &m)?.map(|d| {
                notices::person_label(&m, attr_str(&d, "userName"), attr_str(&d, "displayName"))
            }),
            None => None,
        };
        for a in approvals::for_user(c, &p.user_id)? {
            if a.kind != ApprovalKind::Entitlement {
                continue;
            }
            let connector = a.connector.clone().unwrap_or_default();
            let what = a
                .entitlement
                .as_deref()
                .map(notices::entitlement_label)
                .unwrap_or_else(|| "an entitlement".into());
            let acc = access(policy, &connector, what);
            match a.status {
                ApprovalStatus::Pending => {
                    let approvers = match a.level {
                        ApprovalLevel::Manager => manager.iter().cloned().collect(),
                        ApprovalLevel::Owner => a
                            .entitlement
                            .as_deref()
                            .and_then(|e| serde_json::from_str(e).ok())
                            .map(|e| policy.entitlement_owners(&connector, &e))
                            .unwrap_or_default(),
                        ApprovalLevel::Security => policy.approvals.security.clone(),
                    };
                    j.waiting.push(Waiting {
                        access: acc,
                        level: a.level.as_str().to_string(),
                        approvers,
                        addresses: policy
                            .notify
                            .approvers
                            .get(a.level.as_str())
                            .cloned()
                            .unwrap_or_default(),
                    });
                }
                ApprovalStatus::Rejected | ApprovalStatus::Blocked => j.failed.push(Failed {
                    access: acc,
                    reason: match (&a.decided_by, &a.reason) {
                        (Some(by), Some(r)) => format!("approval refused by {by}: {r}"),
                        (Some(by), None) => format!("approval refused by {by}"),
                        _ => "approval refused".into(),
                    },
                }),
                ApprovalStatus::Approved | ApprovalStatus::Ended => {}
            }
        }
        joiners.push(j);
    }
    Ok(Some(OnboardingSummary {
        burst_id: burst.id,
        source: burst.source,
        client: burst.client,
        started: burst.started,
        last_at: burst.last_at,
        joiners,
    }))
}

/// Queues the confirmation of every burst that ended (its request or run ended, or for a window
/// burst no joiner came for `onboarding_window`) and whose plans all reached a final state, to
/// the policy's HR and IT leads; a burst of fewer than `onboarding_min_joiners` joiners, or
/// with no lead to tell, closes without a mail. Returns how many mails were queued.
pub fn complete_due(c: &mut DbConnection, policy: &Policy, now: DateTime<Utc>) -> HubResult<usize> {
    let n = &policy.notify;
    let mut to: Vec<String> = Vec::new();
    for a in n.hr_leads.iter().chain(&n.it_leads) {
        if !to.iter().any(|t| t.eq_ignore_ascii_case(a)) {
            to.push(a.clone());
        }
    }
    let mut queued = 0;
    for b in bursts::open(c)? {
        if (!b.sealed && b.last_at + n.onboarding_window > now) || bursts::in_progress(c, &b.id)? {
            continue;
        }
        // Judged again under the burst's lock: a joiner that joined since the list was read
        // moved `last_at` (so it is not due yet), and one joining now waits for this
        // transaction and, finding the burst closed, starts a new one.
        let Some(b) = bursts::lock_open(c, &b.id)? else {
            continue;
        };
        if (!b.sealed && b.last_at + n.onboarding_window > now) || bursts::in_progress(c, &b.id)? {
            continue;
        }
        let Some(s) = summary(c, policy, &b.id)? else {
            continue;
        };
        if !s.complete() {
            continue;
        }
        let mail = !to.is_empty() && s.joiners.len() >= n.onboarding_min_joiners;
        if !bursts::close(c, &b.id, mail, now)? || !mail {
            continue;
        }
        let notice = notices::onboarding_confirmation(&s);
        notifications::enqueue(
            c,
            notice.kind,
            None,
            &to,
            &notice.subject,
            &notice.body,
            now,
        )?;
        queued += 1;
    }
    Ok(queued)
}

/// Counts of a summary's joiners by their worst outcome: (all granted, waiting, failed or held).
pub fn tally(s: &OnboardingSummary) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for j in &s.joiners {
        let k = if !j.failed.is_empty() || !j.held.is_empty() {
            "attention"
        } else if !j.waiting.is_empty() {
            "waiting"
        } else {
            "ready"
        };
        *out.entry(k).or_insert(0) += 1;
    }
    out
}
