//! What planning a user decided, as data: the [`Decision`] [`super::decide::decide`] returns and
//! [`super::commit`] writes, kept apart from the rules that produce it so a reader sees the shape
//! of a plan's effects on one page.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::desired::Override;
use super::notices::Notice;
use super::plan::AccountRecord;
use super::timers::TimerChange;
use super::PlanOutcome;
use crate::store::approvals::{ApprovalKind, ApprovalLevel, ApprovalStatus};
use crate::store::engine_state::EngineUser;

/// Who receives a notice. The policy names approvers by userName; they become user ids when the
/// notice is written (the sender resolves ids to addresses when it sends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Addresses (or user ids) as they are, first.
    pub direct: Vec<String>,
    /// Users by userName, then.
    pub by_name: Vec<String>,
    /// Addresses after those.
    pub then: Vec<String>,
    /// Used when all of the above come to nobody.
    pub fallback: Vec<String>,
}

impl Recipients {
    /// These addresses (or user ids), nobody else.
    pub fn to(addresses: Vec<String>) -> Self {
        Recipients {
            direct: addresses,
            ..Default::default()
        }
    }
}

/// A notice to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    /// The user it is about.
    pub user_id: Option<String>,
    pub to: Recipients,
    pub notice: Notice,
}

/// An approval request to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    pub id: String,
    /// [`ApprovalKind::Entitlement`] or [`ApprovalKind::Sod`].
    pub kind: ApprovalKind,
    pub connector: String,
    /// The entitlement (JSON) or the SoD rule.
    pub entitlement: String,
    pub level: ApprovalLevel,
    pub detail: Value,
    /// Refused by the policy at once (a blocking SoD rule): recorded for audit, not decidable.
    pub blocked: bool,
}

/// A request on record that the user's role no longer asks: an approved entitlement no matched
/// profile grants at its level any more, a pending one asked at a level the role no longer
/// needs, or an SoD exception whose rule the user no longer meets. It ends, so a return to the
/// role asks again rather than restoring the access unasked.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedRequest {
    pub id: String,
    /// The status it had (`approved` or `pending`).
    pub was: ApprovalStatus,
    /// Why it ended (recorded as a pending request's reason; an approved one keeps its
    /// approver's, and the audit entry says why).
    pub reason: &'static str,
    /// Appended with the plan's other entries when the request still had status `was`.
    pub audit: Audit,
}

/// An override to record (legacy access kept for a mover's overlap window).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOverride {
    pub id: String,
    pub kept: Override,
}

/// The blast-radius hold the queued operations wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldDecision {
    /// Join the hold already pending.
    Join(String),
    /// Open a new hold.
    Open { id: String, reason: String },
}

impl HoldDecision {
    pub fn id(&self) -> &str {
        match self {
            HoldDecision::Join(id) | HoldDecision::Open { id, .. } => id,
        }
    }
}

/// An audit entry to write (at [`PlanInputs::now`], about the planned user).
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub actor: &'static str,
    pub connector: Option<String>,
    pub action: &'static str,
    pub outcome: &'static str,
    pub detail: Value,
}

/// An incident planning raises (once per `dedupe_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIncident {
    pub kind: &'static str,
    pub connector: Option<String>,
    pub reason: String,
    pub dedupe_key: String,
}

/// Every row planning writes, in the order it writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Writes {
    pub overrides: Vec<NewOverride>,
    pub approvals: Vec<ApprovalRequest>,
    pub hold: Option<HoldDecision>,
    pub plan_id: String,
    /// Planned accounts that changed.
    pub planned: Vec<(String, AccountRecord)>,
    pub user: EngineUser,
    /// Whether the event is recorded (anything but an update that does nothing).
    pub record_event: bool,
    /// When the event's SLA ends: the plan queued operations and the policy sets an `[sla]`
    /// for the event (its deadline timer is among `timers`).
    pub sla_due: Option<DateTime<Utc>>,
    /// Incidents to raise: a step the policy requires that a connector cannot do.
    pub incidents: Vec<PlanIncident>,
    pub audit: Vec<Audit>,
    pub timers: Vec<TimerChange>,
    pub notices: Vec<QueuedNotice>,
    /// The user left (or their contract expired): every override and grant ends, so a rehire
    /// starts from the new role only.
    pub end_grants: bool,
    /// Requests the user's role no longer asks (a mover's, or after a policy change).
    pub ended_requests: Vec<EndedRequest>,
}

/// The outcome of planning a user: what the caller gets back, and what to write (`None`:
/// nothing, for the deletion of a user the engine never provisioned).
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: PlanOutcome,
    pub writes: Option<Writes>,
}
