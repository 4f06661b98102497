//! The lifecycle engine: policy -> desired state -> plan -> outbox, inside the SCIM write.
//!
//! [`EngineHook`] is the store's [`WriteHook`]: for every committed-to-be User change (and the
//! users a Group change affects) it computes [`desired::desired`], diffs it against the planned
//! state ([`plan::diff`]), classifies the event ([`plan::classify`]) and writes the operations,
//! approval requests, overrides, timers, notifications and the new planned state with the same
//! connection, so the SCIM write and its plan commit or roll back together.
//!
//! Time comes from a [`Clock`]; tests use [`TestClock`] and move it.

pub mod connector_set;
pub mod desired;
pub mod links;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use connectors::{AccountRef, Entitlement};
use scim_schema::json::primary_email;
use serde::Serialize;
use serde_json::{json, Value};

use crate::policy::reload::PolicyHandle;
use crate::policy::{Policy, SodAction};
use crate::store::{
    approvals, load_groups, load_row, notifications, outbox, timers, Change, DbConnection, Doc,
    ResourceKind, Store, StoreError, StoreResult, WriteHook,
};
use desired::{attr_str, desired, Approvals, Desired, Lifecycle, Override};
use plan::{diff, AccountRecord, EventKind, Plan};

/// Where time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set and move.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        TestClock(Arc::new(Mutex::new(at)))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
}

/// Why a user is being planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Write,
    Timer,
    Approval,
    Admin,
}

fn ent_json(e: &Entitlement) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The user document stored for `id`, if it exists.
pub fn load_user_doc(c: &mut DbConnection, id: &str) -> StoreResult<Option<Doc>> {
    Ok(match load_row(c, ResourceKind::User, id)? {
        Some(row) => Some(serde_json::from_str(&row.1).map_err(backend)?),
        None => None,
    })
}

/// The SCIM ids of the users named by `user_names` (matched case-insensitively), in order; names
/// that match nobody are left out. Owners and approvers are declared by userName in the policy;
/// notifications address users by id (the sender resolves an id to the user's email).
pub fn user_ids_by_name(c: &mut DbConnection, user_names: &[String]) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    for name in user_names {
        if let Some(row) = crate::store::find_user_row_by_name(c, name)? {
            if !out.contains(&row.0) {
                out.push(row.0);
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
        };
        e.sync_connectors();
        e
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Wakes idle outbox workers: call after a transaction that queued operations has
    /// committed (SCIM writes through [`EngineHook::after_commit`], admin decisions directly).
    pub fn wake_workers(&self) {
        self.wake.notify_waiters();
    }

    /// Rebuilds connector instances if the policy changed.
    pub fn sync_connectors(&self) {
        self.connectors
            .sync(&self.policy.current(), self.policy.generation());
    }

    /// Loads what the engine knows about a user: planned records, approvals, overrides, groups.
    fn inputs(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Inputs> {
        let groups = if doc.is_some() {
            load_groups(c, &[user_id.to_string()])?
                .remove(user_id)
                .unwrap_or_default()
                .into_iter()
                .map(|(id, display, _)| (id, display))
                .collect()
        } else {
            Vec::new()
        };
        let mut planned = BTreeMap::new();
        for (connector, p, _) in outbox::accounts(c, user_id)? {
            let rec: AccountRecord = serde_json::from_str(&p).map_err(backend)?;
            planned.insert(connector, rec);
        }
        let rows = approvals::for_user(c, user_id)?;
        let mut appr = Approvals::default();
        for r in &rows {
            if r.status != "approved" {
                continue;
            }
            match (r.kind.as_str(), &r.connector, &r.entitlement) {
                ("entitlement", Some(conn), Some(e)) => {
                    if let Ok(e) = serde_json::from_str::<Entitlement>(e) {
                        appr.approved.insert((conn.clone(), e));
                    }
                }
                ("sod", _, Some(rule)) => {
                    appr.sod_approved.insert(rule.clone());
                }
                _ => {}
            }
        }
        let overrides = approvals::overrides(c, user_id)?
            .into_iter()
            .filter(|o| o.until > now)
            .filter_map(|o| {
                Some(Override {
                    connector: o.connector,
                    entitlement: serde_json::from_str(&o.entitlement).ok()?,
                    until: o.until,
                })
            })
            .collect();
        Ok(Inputs {
            groups,
            planned,
            approvals: appr,
            approval_rows: rows,
            overrides,
        })
    }

    /// The manager's account per connector (for ownership transfer).
    fn manager_accounts(
        &self,
        c: &mut DbConnection,
        manager: Option<&str>,
    ) -> StoreResult<BTreeMap<String, AccountRef>> {
        let mut out = BTreeMap::new();
        let Some(m) = manager else { return Ok(out) };
        for (connector, p, _) in outbox::accounts(c, m)? {
            if let Ok(rec) = serde_json::from_str::<AccountRecord>(&p) {
                if rec.exists && rec.enabled {
                    out.insert(connector, rec.account_ref());
                }
            }
        }
        Ok(out)
    }

    /// Computes the plan for a user without writing anything (simulation, explain).
    pub fn compute(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
    ) -> StoreResult<PlanOutcome> {
        let now = self.now();
        let policy = self.policy.current();
        let prev = outbox::get_user(c, user_id)?;
        let inputs = self.inputs(c, user_id, doc, now)?;
        self.compute_with(c, user_id, doc, now, &policy, prev.as_ref(), &inputs)
    }

    /// [`Engine::compute`] from inputs already loaded (planning loads them once).
    #[allow(clippy::too_many_arguments)]
    fn compute_with(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
        now: DateTime<Utc>,
        policy: &Policy,
        prev: Option<&outbox::EngineUser>,
        inputs: &Inputs,
    ) -> StoreResult<PlanOutcome> {
        let mut d = desired(
            doc,
            &inputs.groups,
            policy,
            now,
            &inputs.approvals,
            &inputs.overrides,
        );
        let event = plan::classify(prev.map(|u| (u.state.as_str(), u.profiles.as_slice())), &d);
        // Mover overlap: entitlements a profile we left granted stay for its overlap window.
        let new_overrides = self.overlap_overrides(policy, prev, &d, inputs, now);
        if !new_overrides.is_empty() {
            let mut all = inputs.overrides.clone();
            all.extend(new_overrides.iter().cloned());
            d = desired(doc, &inputs.groups, policy, now, &inputs.approvals, &all);
        }
        let manager = doc.and_then(manager_id).or_else(|| {
            prev.and_then(|u| u.facts.get("manager"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let manager_accounts = self.manager_accounts(c, manager.as_deref())?;
        let caps = self.connectors.capabilities(policy);
        let p = diff(&d, &inputs.planned, policy, &caps, &manager_accounts);
        Ok(PlanOutcome {
            user_id: user_id.to_string(),
            event,
            desired: d,
            plan: p,
            hold_id: None,
            new_approvals: Vec::new(),
        })
    }

    fn overlap_overrides(
        &self,
        policy: &Policy,
        prev: Option<&outbox::EngineUser>,
        d: &Desired,
        inputs: &Inputs,
        now: DateTime<Utc>,
    ) -> Vec<Override> {
        let Some(prev) = prev else { return Vec::new() };
        if prev.state != "active" || d.lifecycle != Lifecycle::Active {
            return Vec::new();
        }
        let now_profiles: BTreeSet<String> = d.profile_names().into_iter().collect();
        let mut out = Vec::new();
        for (connector, rec) in &inputs.planned {
            let kept = d.accounts.get(connector);
            for e in &rec.entitlements {
                if kept.is_some_and(|k| k.enabled && k.entitlements.contains(e)) {
                    continue;
                }
                if inputs
                    .overrides
                    .iter()
                    .any(|o| &o.connector == connector && &o.entitlement == e)
                {
                    continue;
                }
                let overlap = prev
                    .profiles
                    .iter()
                    .filter(|p| !now_profiles.contains(*p))
                    .filter_map(|p| policy.profile(p))
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
                        until: now + overlap,
                    });
                }
            }
        }
        out
    }

    /// Plans a user inside the caller's transaction and writes the result. `doc` is the stored
    /// document (`None`: deleted).
    pub fn plan_user(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        doc: Option<&Doc>,
        cause: Cause,
    ) -> StoreResult<PlanOutcome> {
        let now = self.now();
        let policy = self.policy.current();
        let prev = outbox::get_user(c, user_id)?;
        if prev.is_none() && doc.is_none() {
            // Deleting someone the engine never provisioned: nothing to undo.
            return Ok(PlanOutcome {
                user_id: user_id.into(),
                event: EventKind::Update,
                desired: desired(None, &[], &policy, now, &Approvals::default(), &[]),
                plan: Plan {
                    ops: Vec::new(),
                    next: BTreeMap::new(),
                    skipped: Vec::new(),
                },
                hold_id: None,
                new_approvals: Vec::new(),
            });
        }
        approvals::purge_overrides(c, user_id, now)?;
        let inputs = self.inputs(c, user_id, doc, now)?;
        let mut outcome =
            self.compute_with(c, user_id, doc, now, &policy, prev.as_ref(), &inputs)?;

        // Persist the overlap overrides the computation used, with their timers.
        let used: Vec<Override> = outcome
            .desired
            .kept
            .iter()
            .filter(|k| {
                !inputs
                    .overrides
                    .iter()
                    .any(|o| o.connector == k.connector && o.entitlement == k.entitlement)
            })
            .cloned()
            .collect();
        for o in &used {
            approvals::insert_override(
                c,
                &approvals::OverrideRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    user_id: user_id.into(),
                    connector: o.connector.clone(),
                    entitlement: ent_json(&o.entitlement),
                    until: o.until,
                    reason: "mover overlap".into(),
                },
                now,
            )?;
            timers::schedule(
                c,
                &format!("overlap_end:{user_id}:{}", o.until.timestamp()),
                user_id,
                "overlap_end",
                o.until,
                &json!({}),
                now,
            )?;
        }

        // Approval requests for entitlements that wait, and SoD exceptions.
        let mut new_approvals = Vec::new();
        for n in &outcome.desired.needs_approval {
            let ej = ent_json(&n.entitlement);
            let exists = inputs.approval_rows.iter().any(|r| {
                r.kind == "entitlement"
                    && r.connector.as_deref() == Some(n.connector.as_str())
                    && r.entitlement.as_deref() == Some(ej.as_str())
                    && r.status != "approved"
            });
            if exists {
                continue;
            }
            let id = uuid::Uuid::now_v7().to_string();
            approvals::insert(
                c,
                &approvals::NewApproval {
                    id: &id,
                    user_id,
                    kind: "entitlement",
                    connector: Some(&n.connector),
                    entitlement: Some(&ej),
                    level: n.level.as_str(),
                    detail: json!({"profile": n.profile}),
                },
                now,
            )?;
            new_approvals.push(id);
        }
        for f in &outcome.desired.sod {
            let exists = inputs
                .approval_rows
                .iter()
                .any(|r| r.kind == "sod" && r.entitlement.as_deref() == Some(f.rule.as_str()));
            if exists {
                continue;
            }
            let id = uuid::Uuid::now_v7().to_string();
            approvals::insert(
                c,
                &approvals::NewApproval {
                    id: &id,
                    user_id,
                    kind: "sod",
                    connector: Some(&f.connector),
                    entitlement: Some(&f.rule),
                    level: "security",
                    detail: json!({"withheld": f.withheld, "action": f.action}),
                },
                now,
            )?;
            if f.action == SodAction::Block {
                // Blocked outright: recorded for audit, not decidable.
                approvals::decide(
                    c,
                    &id,
                    "blocked",
                    &approvals::DecidedBy::policy(),
                    Some("separation of duties"),
                    now,
                )?;
            } else {
                new_approvals.push(id);
            }
            outbox::audit(
                c,
                &outbox::AuditEntry {
                    at: now,
                    actor: "engine",
                    user_id,
                    connector: Some(&f.connector),
                    action: "sod_violation",
                    outcome: if f.action == SodAction::Block {
                        "blocked"
                    } else {
                        "approval_required"
                    },
                    detail: json!({"rule": f.rule, "withheld": f.withheld}),
                },
            )?;
        }

        // Blast-radius guard.
        let mut hold_id = None;
        if outcome.event.deprovisions() && !outcome.plan.ops.is_empty() {
            if let Some(b) = &policy.blast_radius {
                // The population before the burst: users active now plus those deprovisioned
                // within the window.
                let recent = outbox::count_deprovisions_since(c, now - b.window)?;
                let population = outbox::count_active_users(c)? + recent;
                tracing::debug!(recent, population, "blast-radius check");
                if population as u64 >= b.min_population
                    && (recent + 1) as f64 / population as f64 > b.max_share
                {
                    {
                        let id = match outbox::open_hold(c)? {
                            Some(id) => id,
                            None => {
                                let id = uuid::Uuid::now_v7().to_string();
                                let reason = format!(
                                    "more than {:.0}% of {population} users deprovisioned within {}",
                                    b.max_share * 100.0,
                                    crate::policy::fmt_duration(b.window)
                                );
                                outbox::create_hold(c, &id, &reason, now)?;
                                let to = policy.notify.security.clone();
                                if !to.is_empty() {
                                    notifications::enqueue(
                                        c,
                                        "blast_radius_hold",
                                        None,
                                        &to,
                                        "scimhub: deprovisioning held for confirmation",
                                        &crate::admin::notice_hold(&policy, &reason, &id),
                                        now,
                                    )?;
                                }
                                id
                            }
                        };
                        hold_id = Some(id);
                    }
                }
            }
        }

        // The outbox and the new planned state.
        let plan_id = uuid::Uuid::now_v7().to_string();
        let event = outcome.event;
        for op in &outcome.plan.ops {
            outbox::enqueue(
                c,
                &outbox::NewOp {
                    plan_id: &plan_id,
                    user_id,
                    connector: &op.connector,
                    event: event.as_str(),
                    priority: event.priority(),
                    op: serde_json::to_string(&op.op).map_err(backend)?,
                    hold_id: hold_id.as_deref(),
                },
                now,
            )?;
        }
        for (connector, rec) in &outcome.plan.next {
            if inputs.planned.get(connector) != Some(rec) {
                let text = serde_json::to_string(rec).map_err(backend)?;
                outbox::put_planned(c, user_id, connector, &text, now)?;
            }
        }
        let d = &outcome.desired;
        let manager = doc.and_then(manager_id).or_else(|| {
            prev.as_ref()
                .and_then(|u| u.facts.get("manager"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let facts = json!({
            "manager": manager,
            "contractor": d.contractor,
            "start_date": d.start_date,
            "end_date": d.end_date,
            "email": doc.and_then(primary_email),
            "sponsor": doc.and_then(|u| policy.settings.sponsor_attribute.as_deref().and_then(|a| attr_str(u, a))),
            "userName": doc.and_then(|u| attr_str(u, "userName")),
        });
        outbox::put_user(
            c,
            &outbox::EngineUser {
                user_id: user_id.into(),
                state: d.lifecycle.state_name().into(),
                profiles: d.profile_names(),
                facts: facts.clone(),
                updated: now,
            },
        )?;
        if event != EventKind::Update || !outcome.plan.ops.is_empty() {
            outbox::record_event(
                c,
                now,
                user_id,
                event.as_str(),
                &plan_id,
                outcome.plan.ops.len() as i64,
                hold_id.as_deref(),
            )?;
            outbox::audit(
                c,
                &outbox::AuditEntry {
                    at: now,
                    actor: match cause {
                        Cause::Write => "scim",
                        Cause::Timer => "timer",
                        Cause::Approval => "approval",
                        Cause::Admin => "admin",
                    },
                    user_id,
                    connector: None,
                    action: "plan",
                    outcome: if hold_id.is_some() { "held" } else { "queued" },
                    detail: json!({
                        "event": event.as_str(),
                        "plan_id": plan_id,
                        "operations": outcome.plan.ops.len(),
                        "profiles": d.profile_names(),
                    }),
                },
            )?;
        }

        // Timers: start date, contract end and reminders.
        if let Lifecycle::NotStarted { start } = d.lifecycle {
            timers::schedule(
                c,
                &format!("start:{user_id}:{}", start.timestamp()),
                user_id,
                "start",
                start,
                &json!({}),
                now,
            )?;
        }
        let old_end = prev
            .as_ref()
            .and_then(|u| u.facts.get("end_date"))
            .and_then(|v| serde_json::from_value::<Option<DateTime<Utc>>>(v.clone()).ok())
            .flatten();
        if d.contractor && d.end_date != old_end {
            timers::cancel(c, user_id, "contract_end")?;
            timers::cancel(c, user_id, "reminder")?;
        }
        if let (true, Some(end), Lifecycle::Active) = (d.contractor, d.end_date, &d.lifecycle) {
            timers::schedule(
                c,
                &format!("contract_end:{user_id}:{}", end.timestamp()),
                user_id,
                "contract_end",
                end,
                &json!({}),
                now,
            )?;
            if let Some(rules) = &policy.contractor {
                for offset in &rules.reminders {
                    let due = end - *offset;
                    if due > now {
                        timers::schedule(
                            c,
                            &format!(
                                "reminder:{user_id}:{}:{}",
                                end.timestamp(),
                                offset.num_seconds()
                            ),
                            user_id,
                            "reminder",
                            due,
                            &json!({"end": end, "offset": crate::policy::fmt_duration(*offset)}),
                            now,
                        )?;
                    }
                }
            }
        }

        // Notifications: approvals to those who may decide them, the mover summary to the
        // manager and to security, one message each with links addressed to that recipient.
        let mgr_email = self.manager_email(c, manager.as_deref())?;
        for id in &new_approvals {
            let Some(row) = approvals::get(c, id)? else {
                continue;
            };
            let mut to: Vec<String> = match row.level.as_str() {
                "manager" => mgr_email.iter().cloned().collect(),
                "owner" => {
                    let owners = row
                        .entitlement
                        .as_deref()
                        .and_then(|e| serde_json::from_str::<Entitlement>(e).ok())
                        .map(|e| {
                            policy.entitlement_owners(row.connector.as_deref().unwrap_or(""), &e)
                        })
                        .unwrap_or_default();
                    user_ids_by_name(c, &owners)?
                }
                _ => user_ids_by_name(c, &policy.approvals.security)?,
            };
            to.extend(
                policy
                    .notify
                    .approvers
                    .get(row.level.as_str())
                    .cloned()
                    .unwrap_or_default(),
            );
            if to.is_empty() {
                to = policy.notify.security.clone();
            }
            if !to.is_empty() {
                notifications::enqueue(
                    c,
                    "approval_request",
                    Some(user_id),
                    &to,
                    &format!("scimhub: approval needed ({})", row.kind),
                    &crate::admin::notice_approval(&policy, &row),
                    now,
                )?;
            }
        }
        if event == EventKind::Mover {
            let mut body = format!(
                "User {user_id} moved: profiles now {}.\n\nChanges:\n",
                d.profile_names().join(", ")
            );
            for op in &outcome.plan.ops {
                body.push_str(&format!("  {}: {}\n", op.connector, op.op.describe()));
            }
            if !d.kept.is_empty() {
                body.push_str("\nLegacy access kept during the overlap window:\n");
                for k in &d.kept {
                    body.push_str(&format!(
                        "  {}: {}:{} until {}\n",
                        k.connector, k.entitlement.kind, k.entitlement.id, k.until
                    ));
                }
            }
            // (address, link addressee, role): the manager's links name the manager's id, which
            // is what following them checks against the user's current manager.
            let mut recipients: Vec<(String, String, &str)> = Vec::new();
            if let (Some(email), Some(m)) = (&mgr_email, &manager) {
                recipients.push((email.clone(), m.clone(), "manager"));
            }
            for a in &policy.notify.security {
                recipients.push((a.clone(), a.clone(), "security"));
            }
            for (address, addressee, role) in recipients {
                let mut text = body.clone();
                if !d.kept.is_empty() {
                    if let Some(l) = links::links_for(&policy, user_id, &addressee, role, now) {
                        text.push_str(&format!(
                            "\nThese links are for you ({address}) only; each opens a page to \
                             confirm the action.\nAcknowledge (remove legacy access now): {}\n\
                             Extend by 7 days: {}\n",
                            l.0, l.1
                        ));
                    }
                }
                notifications::enqueue(
                    c,
                    "mover_summary",
                    Some(user_id),
                    std::slice::from_ref(&address),
                    "scimhub: permission change summary",
                    &text,
                    now,
                )?;
            }
        }

        outcome.hold_id = hold_id;
        outcome.new_approvals = new_approvals;
        Ok(outcome)
    }

    fn manager_email(
        &self,
        c: &mut DbConnection,
        manager: Option<&str>,
    ) -> StoreResult<Option<String>> {
        let Some(m) = manager else { return Ok(None) };
        Ok(load_user_doc(c, m)?
            .as_ref()
            .and_then(primary_email)
            .map(str::to_string))
    }

    /// Re-plans a user from their stored document (timers, approvals, admin actions).
    pub fn replan(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        cause: Cause,
    ) -> StoreResult<PlanOutcome> {
        let doc = load_user_doc(c, user_id)?;
        self.plan_user(c, user_id, doc.as_ref(), cause)
    }

    /// Users affected by a Group change.
    fn affected_users(&self, c: &mut DbConnection, change: &Change) -> StoreResult<Vec<String>> {
        use crate::store::MemberRemoval;
        let everyone = matches!(change.members_removed, MemberRemoval::All)
            || change.op == crate::store::ChangeOp::Delete;
        if everyone {
            return outbox::user_ids(c);
        }
        let mut ids: Vec<String> = change.members_added.clone();
        if let MemberRemoval::Ids(r) = &change.members_removed {
            ids.extend(r.iter().cloned());
        }
        let renamed = change.before.as_ref().and_then(|b| b.get("displayName"))
            != change.after.as_ref().and_then(|a| a.get("displayName"));
        if renamed {
            // Everyone below the group (a match on groups.display may change).
            ids.extend(members_below(c, &change.id)?);
        }
        // Members that are groups stand for their users.
        let mut out = BTreeSet::new();
        for id in ids {
            match load_row(c, ResourceKind::User, &id)? {
                Some(_) => {
                    out.insert(id);
                }
                None => {
                    if load_row(c, ResourceKind::Group, &id)?.is_some() {
                        out.extend(members_below(c, &id)?);
                    } else {
                        out.insert(id);
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// User ids under a group, through nested groups.
fn members_below(c: &mut DbConnection, group: &str) -> StoreResult<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut users = BTreeSet::new();
    let mut stack = vec![group.to_string()];
    while let Some(g) = stack.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        for (id, kind) in outbox::group_members(c, &g)? {
            if kind == "Group" {
                stack.push(id);
            } else {
                users.insert(id);
            }
        }
    }
    Ok(users.into_iter().collect())
}

struct Inputs {
    groups: Vec<(String, Option<String>)>,
    planned: BTreeMap<String, AccountRecord>,
    approvals: Approvals,
    approval_rows: Vec<approvals::ApprovalRow>,
    overrides: Vec<Override>,
}

/// The store hook: plans every User change, and the users a Group change affects.
#[derive(Debug, Clone)]
pub struct EngineHook {
    pub engine: Arc<Engine>,
}

impl WriteHook for EngineHook {
    fn on_write(&self, conn: &mut DbConnection, change: &Change) -> StoreResult<()> {
        match change.kind {
            ResourceKind::User => {
                self.engine
                    .plan_user(conn, &change.id, change.after.as_ref(), Cause::Write)?;
            }
            ResourceKind::Group => {
                for id in self.engine.affected_users(conn, change)? {
                    let doc = load_user_doc(conn, &id)?;
                    if doc.is_some() || outbox::get_user(conn, &id)?.is_some() {
                        self.engine
                            .plan_user(conn, &id, doc.as_ref(), Cause::Write)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.engine.wake_workers();
    }
}

/// Opens a store with the engine hook installed.
pub fn install(store: Store, engine: Arc<Engine>) -> Store {
    store.with_hook(Arc::new(EngineHook { engine }))
}
