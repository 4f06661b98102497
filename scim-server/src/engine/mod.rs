//! The lifecycle engine: policy -> desired state -> plan -> outbox, inside the SCIM write.
//!
//! [`hook::EngineHook`] is the store's write hook: every User change (and every user a Group
//! change affects) is planned by [`Engine::plan_user`] with the same connection, so the SCIM
//! write and its plan commit or roll back together. Planning is read -> compute -> commit:
//!
//! * [`load`] reads what the decision needs (previous state, accounts, approvals, overrides,
//!   the manager, the policy and the time);
//! * [`decide`] computes, without I/O, the desired state ([`desired`]), the event and the plan
//!   ([`plan`]) and every row to write ([`outcome`]);
//! * [`commit`] writes them.
//!
//! A Group change that affects many users is one blast for the guard, and above
//! [`replan::ReplanLimits::sync_max`] users it is planned in the background in batches
//! ([`replan`]) rather than in the SCIM write.
//!
//! [`timers`] says what each durable timer does when it fires, [`grants`] runs the life of
//! time-bound emergency grants, [`sla`] keeps each event's SLA, [`notices`] words every mail,
//! [`links`] signs one-click links, [`registry`] builds the connectors. Time comes from the
//! engine's [`Clock`].

pub mod certification;
pub mod commit;
pub mod connector_set;
pub mod decide;
pub mod desired;
pub mod drift;
pub mod grants;
pub mod hook;
pub mod incident_notices;
pub mod links;
pub mod load;
pub mod notices;
pub mod onboarding;
pub mod outcome;
pub mod plan;
pub mod reconcile;
pub mod replan;
pub mod sla;
pub mod timers;
pub mod verify;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Clock;
use crate::error::{HubError, HubResult};
use crate::policy::reload::PolicyHandle;
use crate::store::{load_row, DbConnection, Doc, ResourceKind};
use desired::{attr_str, Desired};
use plan::{EventKind, Plan};

/// The enterprise extension URN.
const ENTERPRISE: &str = scim_schema::schema::core::ENTERPRISE_USER;

/// The engine: the policy in force, the clock and the connectors.
#[derive(Debug, Clone)]
pub struct Engine {
    pub policy: PolicyHandle,
    pub clock: Arc<dyn Clock>,
    pub connectors: connector_set::ConnectorSet,
    /// Signalled after a transaction that planned operations has committed; idle workers wait on
    /// it (besides their poll interval) so new operations start at once.
    pub wake: Arc<tokio::sync::Notify>,
    /// Signalled when a timer was queued already due on another node (PostgreSQL notification,
    /// [`crate::store::cluster`]); the timer loop waits on it besides its one-second poll.
    pub timer_wake: Arc<tokio::sync::Notify>,
    /// When a group change is planned in the background, and in batches of how many users.
    pub replan: Arc<replan::ReplanLimits>,
}

/// What planning one user produced (also the simulation output).
#[derive(Debug, Clone, Serialize)]
pub struct PlanOutcome {
    pub user_id: String,
    pub event: EventKind,
    pub desired: Desired,
    pub plan: Plan,
    pub hold_id: Option<String>,
    pub new_approvals: Vec<String>,
    /// The approval requests the plan ends: the user's role no longer asks them (what
    /// `scimhub simulate` shows before a move).
    pub ended_approvals: Vec<String>,
}

/// Why a user is being planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Write,
    Timer,
    Approval,
    Admin,
}

fn backend(e: impl std::fmt::Display) -> HubError {
    HubError::Backend(e.to_string())
}

/// The user document stored for `id`, read to plan the user outside a SCIM write of them (an
/// approval, a timer, an admin action, a group change), with the user locked for the plan
/// ([`crate::store::user_row_to_plan`]). Without it a replan and a PATCH of one user on two
/// connections each planned from what the other had not committed yet (an approval's grant
/// planned beside a leaver's revoke-all, the grant then never revoked).
pub fn load_user_doc_to_plan(c: &mut DbConnection, id: &str) -> HubResult<Option<Doc>> {
    crate::store::user_row_to_plan(c, id)?
        .map(|row| serde_json::from_str(&row.doc).map_err(backend))
        .transpose()
}

/// The user document stored for `id`, if it exists.
pub fn load_user_doc(c: &mut DbConnection, id: &str) -> HubResult<Option<Doc>> {
    Ok(match load_row(c, ResourceKind::User, id)? {
        Some(row) => Some(serde_json::from_str(&row.doc).map_err(backend)?),
        None => None,
    })
}

/// The SCIM ids of the users named by `user_names` (matched case-insensitively), in order; names
/// that match nobody are left out. Owners and approvers are declared by userName in the policy;
/// notifications address users by id (the sender resolves an id to the user's email).
pub fn user_ids_by_name(c: &mut DbConnection, user_names: &[String]) -> HubResult<Vec<String>> {
    let mut out = Vec::new();
    for name in user_names {
        if let Some(row) = crate::store::find_user_row_by_name(c, name)? {
            if !out.contains(&row.id) {
                out.push(row.id);
            }
        }
    }
    Ok(out)
}

/// The id of a user's manager: the enterprise extension's `manager.value`.
pub fn manager_id(doc: &Doc) -> Option<String> {
    attr_str(doc, &format!("{ENTERPRISE}:manager.value")).map(str::to_string)
}

impl Engine {
    pub fn new(
        policy: PolicyHandle,
        clock: Arc<dyn Clock>,
        connectors: connector_set::ConnectorSet,
    ) -> Self {
        let e = Engine {
            policy,
            clock,
            connectors,
            wake: Arc::new(tokio::sync::Notify::new()),
            timer_wake: Arc::new(tokio::sync::Notify::new()),
            replan: Arc::new(replan::ReplanLimits::default()),
        };
        e.sync_connectors();
        e
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Wakes idle outbox workers: call after a transaction that queued operations has
    /// committed (SCIM writes through [`hook::EngineHook`], admin decisions directly).
    pub fn wake_workers(&self) {
        self.wake.notify_waiters();
    }

    /// Rebuilds connector instances if the policy changed.
    pub fn sync_connectors(&self) {
        self.connectors
            .sync(&self.policy.current(), self.policy.generation());
    }

    /// Computes the plan for a user without writing anything (simulation, explain).
    pub fn compute(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
    ) -> HubResult<PlanOutcome> {
        // The cause only names the actor of the audit entry, which a projection does not write.
        let inputs = load::inputs(c, self, user_id, doc, Cause::Admin)?;
        let p = decide::project(&inputs);
        Ok(PlanOutcome {
            user_id: user_id.to_string(),
            event: p.event,
            desired: p.desired,
            plan: p.plan,
            hold_id: None,
            new_approvals: Vec::new(),
            ended_approvals: Vec::new(),
        })
    }

    /// Plans a user inside the caller's transaction and writes the result. `doc` is the stored
    /// document (`None`: deleted). Read ([`load`]), compute ([`decide`]), commit ([`commit`]).
    pub fn plan_user(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
        cause: Cause,
    ) -> HubResult<PlanOutcome> {
        self.plan_user_as(c, user_id, doc, cause, None, None)
    }

    /// [`Engine::plan_user`] for a write by the SCIM client `client` (token name or JWT
    /// client): every audit entry of the plan names it (`detail.client`), so what a client's
    /// write caused is traceable to that client.
    pub fn plan_user_for(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
        cause: Cause,
        client: Option<&str>,
    ) -> HubResult<PlanOutcome> {
        self.plan_user_as(c, user_id, doc, cause, client, None)
    }

    /// Plans a user for the write of `client` (if a SCIM client caused it), as part of the group
    /// change whose staging hold is `stage` (if any: its operations wait behind the hold and the
    /// guard decides on the change as a whole).
    pub fn plan_user_as(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
        cause: Cause,
        client: Option<&str>,
        stage: Option<&str>,
    ) -> HubResult<PlanOutcome> {
        let inputs = load::inputs(c, self, user_id, doc, cause)?;
        let projection = decide::project(&inputs);
        let extra = load::contingent(c, &inputs, &projection, stage)?;
        let mut decision = decide::decide(&inputs, projection, &extra, &mut || {
            uuid::Uuid::now_v7().to_string()
        });
        if let (Some(client), Some(w)) = (client, decision.writes.as_mut()) {
            let ended = w.ended_requests.iter_mut().map(|r| &mut r.audit);
            for a in w.audit.iter_mut().chain(ended) {
                if let serde_json::Value::Object(d) = &mut a.detail {
                    d.insert("client".into(), client.into());
                }
            }
        }
        // A client's joiner belongs to a bulk onboarding (the confirmation to the HR and IT
        // leads, see `onboarding`). Before the commit, whose audit appends take the chain head
        // where this write does not hold them back: joining may wait for the client's window
        // lock, whose holder (another writer) waits for the head before it commits.
        if let (Some(client), Some(w), plan::EventKind::Joiner) =
            (client, decision.writes.as_ref(), decision.outcome.event)
        {
            if w.record_event {
                onboarding::record_joiner(
                    c,
                    &inputs.policy,
                    client,
                    user_id,
                    &w.plan_id,
                    inputs.now,
                )?;
            }
        }
        commit::commit(c, &decision, inputs.now)?;
        Ok(decision.outcome)
    }

    /// Re-plans a user from their stored document (timers, approvals, admin actions).
    pub fn replan(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        cause: Cause,
    ) -> HubResult<PlanOutcome> {
        let doc = load_user_doc_to_plan(c, user_id)?;
        self.plan_user(c, user_id, doc.as_ref(), cause)
    }
}
