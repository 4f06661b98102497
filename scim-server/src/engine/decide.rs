//! The pure planner: from everything [`super::load`] read about a user, the whole outcome of
//! planning them, as data.
//!
//! [`project`] computes the desired state, the event and the plan (what simulation shows);
//! [`decide`] turns that into every row planning writes: overrides kept for a mover's overlap,
//! approval requests, the blast-radius hold, the operations to queue, the new planned and engine
//! state, the event and audit entries, timers to set or cancel and the notices to queue.
//! [`super::commit`] writes the [`Decision`] as it is. Nothing here touches the database, reads
//! the clock (time is [`PlanInputs::now`]) or makes ids itself (the caller passes a generator),
//! so the rules are tested table-driven below, one row per lifecycle case.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use connectors::{AccountRef, Capabilities, Entitlement};
use serde_json::{json, Value};

use super::desired::{
    apply_revocations, attr_str, desired, Approvals, Desired, EmergencyGrant, Lifecycle, Override,
    Revocation,
};
use super::notices;
use super::outcome::{
    ApprovalRequest, Audit, Decision, EndedRequest, HoldDecision, NewOverride, PlanIncident,
    QueuedNotice, Recipients, Writes,
};
use super::plan::{classify, diff, AccountRecord, EventKind, Plan};
use super::timers::{Timer, TimerChange, TimerKind, VerifyTimer};
use super::{links, manager_id, Cause, PlanOutcome};
use crate::policy::{Approval, BlastRadius, Policy, SodAction};
use crate::store::approvals::{ApprovalKind, ApprovalLevel, ApprovalRow, ApprovalStatus};
use crate::store::{engine_state::EngineUser, Doc};
use scim_schema::json::primary_email;

/// Everything planning one user reads, loaded before anything is decided.
#[derive(Debug, Clone)]
pub struct PlanInputs<'a> {
    pub user_id: String,
    /// The stored document (`None`: deleted).
    pub doc: Option<&'a Doc>,
    pub cause: Cause,
    pub now: DateTime<Utc>,
    pub policy: Arc<Policy>,
    /// Each connector's capabilities.
    pub capabilities: BTreeMap<String, Capabilities>,
    /// The engine's previous state of the user (`None`: never planned).
    pub prev: Option<EngineUser>,
    /// The user's groups `(id, displayName)`.
    pub groups: Vec<(String, Option<String>)>,
    /// The planned account per connector.
    pub planned: BTreeMap<String, AccountRecord>,
    /// Approved entitlements and SoD exceptions.
    pub approvals: Approvals,
    /// Every approval row of the user (to not ask twice).
    pub approval_rows: Vec<ApprovalRow>,
    /// Whether operations of the user wait behind a hold (pending or staging): what their role
    /// no longer asks is not ended until the hold is decided (read only for users with open
    /// requests).
    pub held_ops: bool,
    /// Overrides still in force.
    pub overrides: Vec<Override>,
    /// Emergency grants in force (active, not yet expired).
    pub grants: Vec<EmergencyGrant>,
    /// Certification revocations in force (`engine_revocations`).
    pub revocations: Vec<Revocation>,
    /// The manager's user id: the document's, else the one planning last recorded.
    pub manager: Option<String>,
    /// The manager's enabled account per connector (ownership transfer).
    pub manager_accounts: BTreeMap<String, AccountRef>,
    /// The manager's email (mover summaries, manager approvals).
    pub manager_email: Option<String>,
}

/// Inputs only some plans need, read once [`project`] shows they are needed: counting every
/// user for the blast-radius guard on each write would make every write cost O(users).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contingent {
    /// Present when [`Projection::needs_blast_check`] and a guard is in force.
    pub blast: Option<BlastFacts>,
    /// The one-click link key, when [`Projection::needs_links`] and links are configured.
    pub link_key: Option<Vec<u8>>,
    /// The staging hold of the group change this plan is part of: its operations wait behind
    /// it, and the guard decides on the whole change once all of it is planned
    /// ([`super::replan`]), not user by user.
    pub stage: Option<String>,
    /// The connectors for which a `records_kept` incident was ever raised about the user, when
    /// [`Projection::keeps_a_disabled_account`].
    pub records_kept_raised: BTreeSet<String>,
}

/// What the blast-radius guard counts, and the guard that judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlastFacts {
    /// The guard in force (`replan::guard_in_force`): the stricter of the node's policy's and
    /// the one applied last.
    pub guard: BlastRadius,
    /// Other users who lost access within the window (a plan of theirs disabled, deleted or
    /// revoked anything, whatever the event).
    pub recent: i64,
    /// The users the burst is a share of: those active now and those who lost access within
    /// the window and are no longer active.
    pub population: i64,
    /// The hold pending now, which a new deprovisioning joins.
    pub open_hold: Option<String>,
}

/// The desired state, the event and the plan of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub event: EventKind,
    pub desired: Desired,
    pub plan: Plan,
}

impl Projection {
    /// Whether the blast-radius guard must count users, when one is in force: a plan that
    /// takes access away (whatever the event).
    pub fn needs_blast_check(&self) -> bool {
        self.plan.revocations() > 0
    }

    /// Whether the plan keeps for its records an account that is disabled already (kept by an
    /// earlier plan, or disabled before the connector came to delete leavers' accounts): its
    /// incident is raised only if none ever was for that connector ([`records_kept`]).
    pub fn keeps_a_disabled_account(&self, planned: &BTreeMap<String, AccountRecord>) -> bool {
        self.plan
            .kept_for_records
            .iter()
            .any(|(connector, _)| planned.get(connector).is_some_and(|r| !r.enabled))
    }

    /// Whether notices may carry one-click links: a mover who keeps legacy access, or a user
    /// with access waiting for approval (the request mails carry approve / reject links).
    pub fn needs_links(&self) -> bool {
        (self.event == EventKind::Mover && !self.desired.kept.is_empty())
            || !self.desired.needs_approval.is_empty()
            || !self.desired.sod.is_empty()
    }
}

/// The desired state, event and plan of a user.
pub fn project(i: &PlanInputs<'_>) -> Projection {
    let policy = &*i.policy;
    let mut d = desired(
        i.doc,
        &i.groups,
        policy,
        i.now,
        &i.approvals,
        &i.overrides,
        &i.grants,
    );
    let prev = i.prev.as_ref();
    let event = classify(prev.map(|u| (u.state.as_str(), u.profiles.as_slice())), &d);
    if event == EventKind::Rehire && !i.overrides.is_empty() {
        // A rehire starts from the new role: overrides from before the user left (a mover's
        // overlap still open) are not theirs any more. Leaving ends them; this covers those
        // recorded before it did.
        d = desired(
            i.doc,
            &i.groups,
            policy,
            i.now,
            &i.approvals,
            &[],
            &i.grants,
        );
    }
    // Mover overlap: entitlements a profile we left granted stay for its overlap window.
    let new_overrides = overlap_overrides(i, &d);
    if !new_overrides.is_empty() {
        let mut all = i.overrides.clone();
        all.extend(new_overrides);
        d = desired(
            i.doc,
            &i.groups,
            policy,
            i.now,
            &i.approvals,
            &all,
            &i.grants,
        );
    }
    // Certification revocations: what a reviewer revoked stays out (docs/certification.md).
    apply_revocations(&mut d, &i.revocations);
    let plan = diff(&d, &i.planned, policy, &i.capabilities, &i.manager_accounts);
    Projection {
        event,
        desired: d,
        plan,
    }
}

/// Overrides for the entitlements a mover loses that a profile they left keeps for its overlap.
fn overlap_overrides(i: &PlanInputs<'_>, d: &Desired) -> Vec<Override> {
    let Some(prev) = &i.prev else {
        return Vec::new();
    };
    if prev.state != "active" || d.lifecycle != Lifecycle::Active {
        return Vec::new();
    }
    let now_profiles: BTreeSet<String> = d.profile_names().into_iter().collect();
    let mut out = Vec::new();
    for (connector, rec) in &i.planned {
        let kept = d.accounts.get(connector);
        for e in &rec.entitlements {
            if kept.is_some_and(|k| k.enabled && k.entitlements.contains(e)) {
                continue;
            }
            if i.overrides
                .iter()
                .any(|o| &o.connector == connector && &o.entitlement == e)
            {
                continue;
            }
            let overlap = prev
                .profiles
                .iter()
                .filter(|p| !now_profiles.contains(*p))
                .filter_map(|p| i.policy.profile(p))
                .filter(|p| {
                    p.grants
                        .iter()
                        .any(|g| &g.connector == connector && g.entitlement.as_ref() == Some(e))
                })
                .map(|p| p.overlap)
                .max()
                .unwrap_or_else(Duration::zero);
            if overlap > Duration::zero() {
                out.push(Override {
                    connector: connector.clone(),
                    entitlement: e.clone(),
                    until: i.now + overlap,
                });
            }
        }
    }
    out
}

fn ent_json(e: &Entitlement) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// The whole outcome of planning a user. `new_id` makes the ids of new rows (overrides,
/// approvals, a hold, the plan), in that order.
pub fn decide(
    i: &PlanInputs<'_>,
    projection: Projection,
    extra: &Contingent,
    new_id: &mut dyn FnMut() -> String,
) -> Decision {
    let policy = &*i.policy;
    let (user_id, now) = (i.user_id.as_str(), i.now);
    let prev = i.prev.as_ref();
    if prev.is_none() && i.doc.is_none() {
        // Deleting someone the engine never provisioned: nothing to undo.
        return Decision {
            outcome: PlanOutcome {
                user_id: user_id.into(),
                event: EventKind::Update,
                desired: desired(None, &[], policy, now, &Approvals::default(), &[], &[]),
                plan: Plan {
                    ops: Vec::new(),
                    next: BTreeMap::new(),
                    skipped: Vec::new(),
                    unsupported: Vec::new(),
                    kept_for_records: Vec::new(),
                },
                hold_id: None,
                new_approvals: Vec::new(),
                ended_approvals: Vec::new(),
            },
            writes: None,
        };
    }
    let Projection {
        event,
        desired: d,
        plan,
    } = projection;

    // New rows take their ids in this order: overrides, approvals, a hold, the plan.
    let overrides = overlap_kept(i, &d, new_id);
    let (approvals, mut audit) = approval_requests(i, &d, new_id);
    let (hold, hold_notice) = blast_hold(i, &plan, extra, new_id);
    let plan_id = new_id();
    // A held or staged plan may yet be discarded (a bogus feed reverted), and so may an
    // earlier one still waiting: what the user's role no longer asks ends only with a plan that
    // goes ahead (a confirmed hold re-plans its users, see `admin::holds`, and so does a staged
    // change that runs, `replan::finalize`). A staged plan without operations joins no hold: it
    // has nothing to discard, and the change's decision re-plans only users with operations, so
    // it ends what it ends now, as a single user's plan would.
    let ended_requests = if hold.is_none() && !i.held_ops {
        ended_requests(i, &d)
    } else {
        Vec::new()
    };

    let hold_id = hold.as_ref().map(|h| h.id().to_string());
    let record_event = event != EventKind::Update || !plan.ops.is_empty();
    if record_event {
        audit.push(Audit {
            actor: match i.cause {
                Cause::Write => "scim",
                Cause::Timer => "timer",
                Cause::Approval => "approval",
                Cause::Admin => "admin",
            },
            connector: None,
            action: "plan",
            outcome: match (&extra.stage, &hold_id) {
                (Some(_), Some(_)) => "staged",
                (None, Some(_)) => "held",
                (_, None) => "queued",
            },
            detail: json!({
                "event": event.as_str(),
                "plan_id": plan_id,
                "operations": plan.ops.len(),
                "profiles": d.profile_names(),
            }),
        });
    }

    // Timers: overlap ends, then the start date, contract end and reminders.
    let mut timers: Vec<TimerChange> = overrides
        .iter()
        .map(|o| {
            TimerChange::Schedule(Timer {
                user_id: user_id.into(),
                kind: TimerKind::OverlapEnd,
                due: o.kept.until,
            })
        })
        .collect();
    if event.deprovisions() {
        // Leaving ends every override, so its overlap timers have nothing left to end.
        timers.push(TimerChange::CancelOverlap);
    }
    timers.extend(contract_timers(i, &d));
    timers.extend(verify_timers(i, event, &plan, &plan_id));
    // The SLA clock runs from the event (this planning: the SCIM write, the timer or the
    // decision that caused it) to the plan's last operation; its deadline is a durable timer.
    let sla_due = (record_event && !plan.ops.is_empty())
        .then(|| policy.sla_for(event.as_str()))
        .flatten()
        .map(|sla| now + sla);
    if let Some(due) = sla_due {
        timers.push(TimerChange::Schedule(Timer {
            user_id: user_id.into(),
            kind: TimerKind::SlaDeadline {
                plan_id: plan_id.clone(),
            },
            due,
        }));
    }
    let mut incidents = required_but_unsupported(policy, event, &plan, user_id, &plan_id);
    incidents.extend(records_kept(
        &plan,
        &plan_id,
        &i.planned,
        &extra.records_kept_raised,
    ));

    // Notices: the hold to security, approvals to those who may decide them, the mover summary
    // to the manager and to security.
    let mut notices: Vec<QueuedNotice> = hold_notice;
    notices.extend(approval_notices(i, extra, &approvals));
    if event == EventKind::Mover {
        notices.extend(mover_summaries(i, &d, &plan, extra, &plan_id));
    }

    let planned: Vec<(String, AccountRecord)> = plan
        .next
        .iter()
        .filter(|(connector, rec)| i.planned.get(*connector) != Some(rec))
        .map(|(c, r)| (c.clone(), r.clone()))
        .collect();
    let user = engine_user(i, &d);
    let ended_approvals = ended_requests
        .iter()
        .map(|r: &EndedRequest| r.id.clone())
        .collect();
    let new_approvals = approvals
        .iter()
        .filter(|a| !a.blocked)
        .map(|a| a.id.clone())
        .collect();
    Decision {
        outcome: PlanOutcome {
            user_id: user_id.into(),
            event,
            desired: d,
            plan,
            hold_id,
            new_approvals,
            ended_approvals,
        },
        writes: Some(Writes {
            overrides,
            approvals,
            hold,
            plan_id,
            planned,
            user,
            record_event,
            sla_due,
            incidents,
            audit,
            timers,
            notices,
            end_grants: event.deprovisions(),
            ended_requests,
        }),
    }
}

/// One verification per connector a plan changes, when the policy verifies this event
/// (`[verification] after`), its connector's delay after now.
fn verify_timers(
    i: &PlanInputs<'_>,
    event: EventKind,
    plan: &Plan,
    plan_id: &str,
) -> Vec<TimerChange> {
    let v = &i.policy.verification;
    if !v.after.iter().any(|e| e == event.as_str()) {
        return Vec::new();
    }
    let connectors: BTreeSet<&String> = plan.ops.iter().map(|o| &o.connector).collect();
    connectors
        .into_iter()
        .map(|c| {
            TimerChange::Schedule(Timer {
                user_id: i.user_id.clone(),
                kind: TimerKind::Verify(VerifyTimer {
                    plan_id: plan_id.to_string(),
                    connector: c.clone(),
                    event: event.as_str().to_string(),
                    attempt: 0,
                    round: 0,
                }),
                due: i.now + v.delay_for(i.policy.connectors.get(c)),
            })
        })
        .collect()
}

/// An `unsupported_step` incident for each step of a leaver's (or expired contractor's) plan
/// that the policy marks required (`[leaver] required`) and a connector cannot do.
fn required_but_unsupported(
    policy: &Policy,
    event: EventKind,
    plan: &Plan,
    user_id: &str,
    plan_id: &str,
) -> Vec<PlanIncident> {
    if !event.deprovisions() {
        return Vec::new();
    }
    plan.unsupported
        .iter()
        .filter(|u| policy.leaver.requires(u.step))
        .map(|u| PlanIncident {
            kind: "unsupported_step",
            connector: Some(u.connector.clone()),
            reason: format!(
                "{} plan {plan_id} of user {user_id}: step {} is required by the policy \
                 ([leaver] required) but {}",
                event.as_str(),
                u.step,
                u.note()
            ),
            dedupe_key: format!("unsupported_step:{plan_id}:{}:{}", u.connector, u.step),
        })
        .collect()
}

/// A `records_kept` incident for each leaver's account kept disabled because nobody could take
/// its records: a person hands them over (or deletes the account) by hand.
///
/// An account this plan disables is a new keeping and always raises one. One kept disabled
/// already raises one only if no `records_kept` incident was ever raised about the user for
/// that connector (`raised`): an account disabled before its connector came to delete leavers'
/// accounts (its `on_leave` changed, or the user left while suspended) is then reported once,
/// and one an earlier plan kept is not reported again on each later plan.
fn records_kept(
    plan: &Plan,
    plan_id: &str,
    planned: &BTreeMap<String, AccountRecord>,
    raised: &BTreeSet<String>,
) -> Vec<PlanIncident> {
    // (The incident names the user; its notices name them as the directory does.)
    plan.kept_for_records
        .iter()
        .map(|(connector, key)| {
            let disabled_now = planned.get(connector).is_some_and(|r| r.enabled);
            (connector, key, disabled_now)
        })
        .filter(|(connector, _, disabled_now)| *disabled_now || !raised.contains(*connector))
        .map(|(connector, key, disabled_now)| PlanIncident {
            kind: "records_kept",
            connector: Some(connector.clone()),
            reason: if disabled_now {
                format!(
                    "plan {plan_id}: account {key} on {connector} was disabled, \
                     not deleted: the connector hands a leaver's records to the manager, and \
                     no manager a [[source]] vouches for has an enabled account there. Hand \
                     its records over, then delete it."
                )
            } else {
                format!(
                    "account {key} on {connector}, disabled already, is kept, not deleted: \
                     the connector hands a leaver's records to the manager, and no manager a \
                     [[source]] vouches for has an enabled account there. Hand its records \
                     over, then delete it."
                )
            },
            dedupe_key: format!("records_kept:{plan_id}:{connector}"),
        })
        .collect()
}

/// The overrides the projection used that are not recorded yet (a mover's overlap).
fn overlap_kept(
    i: &PlanInputs<'_>,
    d: &Desired,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<NewOverride> {
    d.kept
        .iter()
        .filter(|k| {
            !i.overrides
                .iter()
                .any(|o| o.connector == k.connector && o.entitlement == k.entitlement)
        })
        .map(|o| NewOverride {
            id: new_id(),
            kept: o.clone(),
        })
        .collect()
}

/// The policy's level of a stored request's level.
pub(super) fn policy_level(l: ApprovalLevel) -> Approval {
    match l {
        ApprovalLevel::Manager => Approval::Manager,
        ApprovalLevel::Owner => Approval::Owner,
        ApprovalLevel::Security => Approval::Security,
    }
}

/// The approved and pending requests of an active user that their role no longer asks, each
/// with its audit entry (written only if the request still had that status):
/// - an approved entitlement that no matched profile grants and no override keeps any more, or
///   that a profile grants only behind a stricter level than the one approved (a return to the
///   role, or a later move under the stricter profile, asks again);
/// - a pending entitlement request that is not what the role asks now (no longer granted,
///   granted without approval, covered by an approval, or asked at another level: the planner
///   asks the right one beside it);
/// - an approved or pending SoD exception whose two sides the user no longer holds.
///
/// A leaver's requests all end through [`Writes::end_grants`] instead; a user not yet started
/// keeps theirs (nothing is planned for them).
fn ended_requests(i: &PlanInputs<'_>, d: &Desired) -> Vec<EndedRequest> {
    if d.lifecycle != Lifecycle::Active {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in &i.approval_rows {
        if !matches!(r.status, ApprovalStatus::Approved | ApprovalStatus::Pending) {
            continue;
        }
        let (why, connector, what) = match r.kind {
            ApprovalKind::Entitlement => {
                let (Some(connector), Some(ej)) = (&r.connector, &r.entitlement) else {
                    continue;
                };
                // An entitlement this build cannot read is left alone rather than guessed at.
                let Ok(e) = serde_json::from_str::<Entitlement>(ej) else {
                    continue;
                };
                let level = policy_level(r.level);
                let asked = d.grant_levels.get(&(connector.clone(), e.clone())).copied();
                // A mover's overlap (or a manager's extension of it) still holds the access
                // the approval gave: it ends when the access does.
                let kept = d
                    .kept
                    .iter()
                    .any(|o| &o.connector == connector && o.entitlement == e);
                let why = match (r.status, asked) {
                    (ApprovalStatus::Approved, None) if kept => continue,
                    (_, None) => "no profile the user matches grants it",
                    (ApprovalStatus::Approved, Some(a)) if a <= level => continue,
                    (ApprovalStatus::Approved, Some(_)) => {
                        "the user's role now asks a stricter approval for it"
                    }
                    (_, Some(Approval::None)) => "the user's role grants it without approval",
                    _ if d.needs_approval.iter().any(|n| {
                        &n.connector == connector && n.entitlement == e && n.level == level
                    }) =>
                    {
                        continue
                    }
                    _ => "the user's role no longer asks this approval",
                };
                (why, Some(connector.clone()), ej.clone())
            }
            ApprovalKind::Sod => {
                let Some(rule) = &r.entitlement else { continue };
                if d.sod_rules_met.contains(rule) {
                    continue;
                }
                (
                    "the user no longer holds both sides of the rule",
                    r.connector.clone(),
                    rule.clone(),
                )
            }
            ApprovalKind::Extension | ApprovalKind::Grant => continue,
        };
        out.push(EndedRequest {
            id: r.id.clone(),
            was: r.status,
            reason: why,
            audit: Audit {
                actor: "engine",
                connector,
                action: "approval_ended",
                outcome: "ended",
                detail: json!({
                    "approval_id": r.id,
                    "kind": r.kind.as_str(),
                    "entitlement": what,
                    "level": r.level.as_str(),
                    "was": r.status.as_str(),
                    "reason": why,
                }),
            },
        });
    }
    out
}

/// Requests for the entitlements that wait for approval and for SoD exceptions, each asked once
/// (a request already recorded is not asked again), with the audit entry of each SoD finding.
fn approval_requests(
    i: &PlanInputs<'_>,
    d: &Desired,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<ApprovalRequest>, Vec<Audit>) {
    let mut approvals = Vec::new();
    let mut audit = Vec::new();
    for n in &d.needs_approval {
        let ej = ent_json(&n.entitlement);
        // `desired` asks approval only for a level that has one (never `none`).
        let Some(level) = ApprovalLevel::parse(n.level.as_str()) else {
            continue;
        };
        // A request at another level does not count: a manager's decision on it would not
        // cover the level asked now.
        let exists = i.approval_rows.iter().any(|r| {
            r.kind == ApprovalKind::Entitlement
                && r.connector.as_deref() == Some(n.connector.as_str())
                && r.entitlement.as_deref() == Some(ej.as_str())
                && r.level == level
                && r.status != ApprovalStatus::Approved
                && r.status != ApprovalStatus::Ended
        });
        if !exists {
            approvals.push(ApprovalRequest {
                id: new_id(),
                kind: ApprovalKind::Entitlement,
                connector: n.connector.clone(),
                entitlement: ej,
                level,
                detail: json!({"profile": n.profile}),
                blocked: false,
            });
        }
    }
    for f in &d.sod {
        let exists = i.approval_rows.iter().any(|r| {
            r.kind == ApprovalKind::Sod
                && r.entitlement.as_deref() == Some(f.rule.as_str())
                && r.status != ApprovalStatus::Ended
        });
        if exists {
            continue;
        }
        let blocked = f.action == SodAction::Block;
        approvals.push(ApprovalRequest {
            id: new_id(),
            kind: ApprovalKind::Sod,
            connector: f.connector.clone(),
            entitlement: f.rule.clone(),
            level: ApprovalLevel::Security,
            detail: json!({"withheld": f.withheld, "action": f.action}),
            blocked,
        });
        audit.push(Audit {
            actor: "engine",
            connector: Some(f.connector.clone()),
            action: "sod_violation",
            outcome: if blocked {
                "blocked"
            } else {
                "approval_required"
            },
            detail: json!({"rule": f.rule, "withheld": f.withheld}),
        });
    }
    (approvals, audit)
}

/// The blast-radius guard. A plan that is part of a group change waits behind that change's
/// staging hold (the guard decides on the change as a whole, [`super::replan`]). Otherwise a
/// plan that takes access away (any event) and would take the share of users who lost access
/// within the window over the policy's limit waits for a hold (the pending one, else a new one
/// security is told about).
fn blast_hold(
    i: &PlanInputs<'_>,
    plan: &Plan,
    extra: &Contingent,
    new_id: &mut dyn FnMut() -> String,
) -> (Option<HoldDecision>, Vec<QueuedNotice>) {
    if let Some(stage) = &extra.stage {
        return match plan.ops.is_empty() {
            true => (None, Vec::new()),
            false => (Some(HoldDecision::Join(stage.clone())), Vec::new()),
        };
    }
    let policy = &*i.policy;
    let (Some(facts), true) = (&extra.blast, plan.revocations() > 0) else {
        return (None, Vec::new());
    };
    let b = &facts.guard;
    if !trips(b, facts.recent + 1, facts.population) {
        return (None, Vec::new());
    }
    if let Some(id) = &facts.open_hold {
        return (Some(HoldDecision::Join(id.clone())), Vec::new());
    }
    let id = new_id();
    let reason = notices::hold_reason(b.max_share, facts.population, b.window);
    let notice = hold_notice(policy, extra.link_key.as_deref(), &reason, &id, i.now);
    (Some(HoldDecision::Open { id, reason }), notice)
}

/// Whether `losers` users losing access out of `population` trips the guard `b`.
pub fn trips(b: &BlastRadius, losers: i64, population: i64) -> bool {
    population > 0
        && population as u64 >= b.min_population
        && losers as f64 / population as f64 > b.max_share
}

/// The notices to security about hold `id`: one copy per security address, each with its own
/// confirm / discard links when one-click links are configured (`key`, and the policy's base
/// URL), else one copy without links to every address. None when security has no address.
pub fn hold_notice(
    policy: &Policy,
    key: Option<&[u8]>,
    reason: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Vec<QueuedNotice> {
    let security = &policy.notify.security;
    if security.is_empty() {
        return Vec::new();
    }
    if let Some(key) = key {
        let expires = now + policy.notify.link_ttl;
        let linked: Option<Vec<QueuedNotice>> = security
            .iter()
            .map(|address| {
                let (confirm, discard) = links::hold_links(policy, key, id, address, now)?;
                Some(QueuedNotice {
                    user_id: None,
                    to: Recipients::to(vec![address.clone()]),
                    notice: notices::hold(
                        reason,
                        id,
                        Some(notices::PairLinks {
                            addressee: address,
                            expires,
                            first: &confirm,
                            second: &discard,
                        }),
                    ),
                })
            })
            .collect();
        if let Some(linked) = linked {
            return linked;
        }
    }
    vec![QueuedNotice {
        user_id: None,
        to: Recipients::to(security.clone()),
        notice: notices::hold(reason, id, None),
    }]
}

/// The engine's new record of the user: lifecycle state, profiles, and the facts timers and
/// notices read later (manager, contract dates, email, sponsor, userName).
fn engine_user(i: &PlanInputs<'_>, d: &Desired) -> EngineUser {
    let policy = &*i.policy;
    let facts = json!({
        "manager": i.manager,
        "contractor": d.contractor,
        "start_date": d.start_date,
        "end_date": d.end_date,
        "email": i.doc.and_then(primary_email),
        "sponsor": i.doc.and_then(|u| policy.settings.sponsor_attribute.as_deref().and_then(|a| attr_str(u, a))),
        "userName": i.doc.and_then(|u| attr_str(u, "userName")),
    });
    EngineUser {
        user_id: i.user_id.clone(),
        state: d.lifecycle.state_name().into(),
        profiles: d.profile_names(),
        facts,
        updated: i.now,
    }
}

/// A notice per decidable request, to those who may decide it: the manager's address, the
/// entitlement's owners or the security approvers (by userName), then the approver addresses
/// of that level; security when that is nobody.
///
/// With one-click links configured, every person who may decide (the manager, each owner or
/// security approver) gets their own copy whose approve / reject links are bound to them
/// (following one decides as that person, with the authority the admin API checks); the
/// level's approver addresses and the security fallback get a copy without links, since a
/// shared address is no person to decide as.
pub fn approval_notices(
    i: &PlanInputs<'_>,
    extra: &Contingent,
    approvals: &[ApprovalRequest],
) -> Vec<QueuedNotice> {
    let policy = &*i.policy;
    let user_name = i.doc.and_then(|u| attr_str(u, "userName"));
    let display_name = i.doc.and_then(|u| attr_str(u, "displayName"));
    let mut out = Vec::new();
    for a in approvals.iter().filter(|a| !a.blocked) {
        let (direct, by_name) = match a.level.as_str() {
            "manager" => (i.manager_email.iter().cloned().collect(), Vec::new()),
            "owner" => {
                let owners = serde_json::from_str::<Entitlement>(&a.entitlement)
                    .ok()
                    .map(|e| policy.entitlement_owners(&a.connector, &e))
                    .unwrap_or_default();
                (Vec::new(), owners)
            }
            _ => (Vec::new(), policy.approvals.security.clone()),
        };
        let what = match a.kind {
            ApprovalKind::Sod => a.entitlement.clone(),
            ApprovalKind::Grant => match a.detail.get("expires").and_then(Value::as_str) {
                Some(until) => format!(
                    "{} (emergency grant until {until})",
                    policy.entitlement_text(&a.connector, &a.entitlement)
                ),
                None => policy.entitlement_text(&a.connector, &a.entitlement),
            },
            _ => policy.entitlement_text(&a.connector, &a.entitlement),
        };
        let row = notices::ApprovalRequest {
            id: &a.id,
            user_id: &i.user_id,
            user_name,
            display_name,
            kind: a.kind.as_str(),
            entitlement: Some(&what),
            connector: Some(&a.connector),
            level: a.level.as_str(),
        };
        let then = policy
            .notify
            .approvers
            .get(a.level.as_str())
            .cloned()
            .unwrap_or_default();
        // (recipients, link addressee, role, how the mail names the addressee)
        let mut people: Vec<(Recipients, String, &str, String)> = Vec::new();
        // Every link here goes to a person's own address (see `links::person_key`).
        let person_key = extra
            .link_key
            .as_ref()
            .filter(|_| policy.person_email_trusted());
        if let Some(key) = person_key {
            if let (Some(email), Some(m), true) = (&i.manager_email, &i.manager, !direct.is_empty())
            {
                people.push((
                    Recipients::to(vec![email.clone()]),
                    m.clone(),
                    "manager",
                    email.clone(),
                ));
            }
            for name in &by_name {
                people.push((
                    Recipients {
                        direct: Vec::new(),
                        by_name: vec![name.clone()],
                        then: Vec::new(),
                        fallback: Vec::new(),
                    },
                    name.clone(),
                    links::ROLE_APPROVER,
                    name.clone(),
                ));
            }
            let expires = i.now + policy.notify.link_ttl;
            let mut linked = Vec::new();
            for (to, addressee, role, label) in &people {
                let Some((approve, reject)) =
                    links::decision_links(policy, key, &i.user_id, &a.id, addressee, role, i.now)
                else {
                    linked.clear();
                    break;
                };
                linked.push(QueuedNotice {
                    user_id: Some(i.user_id.clone()),
                    to: to.clone(),
                    notice: notices::approval_request(
                        row,
                        Some(notices::AddressedLinks {
                            addressee: label,
                            expires,
                            approve: &approve,
                            reject: &reject,
                        }),
                    ),
                });
            }
            if !linked.is_empty() {
                out.extend(linked);
                if !then.is_empty() {
                    out.push(QueuedNotice {
                        user_id: Some(i.user_id.clone()),
                        to: Recipients {
                            direct: Vec::new(),
                            by_name: Vec::new(),
                            then,
                            fallback: Vec::new(),
                        },
                        notice: notices::approval_request(row, None),
                    });
                }
                continue;
            }
        }
        out.push(QueuedNotice {
            user_id: Some(i.user_id.clone()),
            to: Recipients {
                direct,
                by_name,
                then,
                fallback: policy.notify.security.clone(),
            },
            notice: notices::approval_request(row, None),
        });
    }
    out
}

/// The start-date timer, and a contractor's end and reminders (cancelled first when the end
/// date moved).
fn contract_timers(i: &PlanInputs<'_>, d: &Desired) -> Vec<TimerChange> {
    let (user_id, now) = (i.user_id.as_str(), i.now);
    let timer = |kind, due| {
        TimerChange::Schedule(Timer {
            user_id: user_id.into(),
            kind,
            due,
        })
    };
    let mut out = Vec::new();
    if let Lifecycle::NotStarted { start } = d.lifecycle {
        out.push(timer(TimerKind::Start, start));
    }
    let old_end = i
        .prev
        .as_ref()
        .and_then(|u| u.facts.get("end_date"))
        .and_then(|v| serde_json::from_value::<Option<DateTime<Utc>>>(v.clone()).ok())
        .flatten();
    if d.contractor && d.end_date != old_end {
        out.push(TimerChange::CancelContract);
    }
    if let (true, Some(end), Lifecycle::Active) = (d.contractor, d.end_date, &d.lifecycle) {
        out.push(timer(TimerKind::ContractEnd, end));
        if let Some(rules) = &i.policy.contractor {
            for offset in &rules.reminders {
                let due = end - *offset;
                if due > now {
                    out.push(timer(
                        TimerKind::Reminder {
                            end,
                            offset: *offset,
                        },
                        due,
                    ));
                }
            }
        }
    }
    out
}

/// A mover summary for the manager and for each security address; their one-click links name
/// the mover plan `plan_id`.
fn mover_summaries(
    i: &PlanInputs<'_>,
    d: &Desired,
    plan: &Plan,
    extra: &Contingent,
    plan_id: &str,
) -> Vec<QueuedNotice> {
    let policy = &*i.policy;
    let changes: Vec<(&str, String)> = plan
        .ops
        .iter()
        .map(|op| (op.connector.as_str(), op.op.describe()))
        .collect();
    let kept: Vec<notices::KeptAccess<'_>> = d
        .kept
        .iter()
        .map(|k| notices::KeptAccess {
            connector: &k.connector,
            kind: &k.entitlement.kind,
            id: &k.entitlement.id,
            description: policy.entitlement_description(&k.connector, &k.entitlement),
            until: k.until,
        })
        .collect();
    let person = notices::person_label(
        &i.user_id,
        i.doc.and_then(|u| attr_str(u, "userName")),
        i.doc.and_then(|u| attr_str(u, "displayName")),
    );
    let body = notices::mover_summary_body(&person, &d.profile_names(), &changes, &kept);
    let expires = i.now + policy.notify.link_ttl;
    // (address, link addressee, role): the manager's links name the manager's id, which is what
    // following them checks against the user's current manager.
    let mut recipients: Vec<(String, String, &str)> = Vec::new();
    if let (Some(email), Some(m)) = (&i.manager_email, &i.manager) {
        recipients.push((email.clone(), m.clone(), "manager"));
    }
    for a in &policy.notify.security {
        recipients.push((a.clone(), a.clone(), "security"));
    }
    recipients
        .into_iter()
        .map(|(address, addressee, role)| {
            // The manager's copy goes to their own address (see `links::person_key`).
            let key = extra
                .link_key
                .as_ref()
                .filter(|_| role != "manager" || policy.person_email_trusted());
            let links = match (key, d.kept.is_empty()) {
                (Some(key), false) => {
                    links::links_for(policy, key, &i.user_id, plan_id, &addressee, role, i.now)
                }
                _ => None,
            };
            QueuedNotice {
                user_id: Some(i.user_id.clone()),
                notice: notices::mover_summary(
                    &body,
                    &address,
                    links.as_ref(),
                    expires,
                    !d.kept.is_empty(),
                ),
                to: Recipients::to(vec![address]),
            }
        })
        .collect()
}

/// The manager named by the document, else by the engine's last record of the user.
pub fn manager_of(doc: Option<&Doc>, prev: Option<&EngineUser>) -> Option<String> {
    doc.and_then(manager_id).or_else(|| {
        prev.and_then(|u| u.facts.get("manager"))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests;
