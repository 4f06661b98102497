//! Group changes that re-plan many users: one blast for the guard, planned in the background
//! when large.
//!
//! A Group change can take access from everyone it covers at once (deleting an "Employees" group
//! that drives a birthright profile: every member becomes a mover who loses the grant). Judging
//! each user's plan alone, the guard would let the first ones through before it tripped, so a
//! change that re-plans more than one user is one blast:
//!
//! * its plans are written behind a *staging* hold ([`HoldStatus::Staging`]): queued, but held;
//! * when the last of them is planned, [`finalize`] counts the users the change takes access
//!   from (disable, delete or any revoke, whatever the event), with those who lost access within
//!   the window; over the policy's share the staging hold becomes a pending hold security is
//!   told about, else it dissolves and its operations run. Nothing is sent before that.
//!
//! Up to [`ReplanLimits::sync_max`] users are planned in the SCIM write (a member added or
//! removed stays as fast as before; a single user skips staging and is guarded as a user
//! write). Above it, the SCIM write only records who to plan (`engine_replan_users`) and
//! returns; [`run_batch`] plans them [`ReplanLimits::batch`] at a time, one transaction per batch,
//! so the single SQLite writer is never held for the whole directory. Each batch deletes the
//! rows of the users it planned in its own transaction: a crash loses or repeats nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

use super::commit::queue;
use super::decide::{hold_notice, trips};
use super::{load_user_doc_to_plan, notices, Cause, Engine};
use crate::error::HubResult;
use crate::policy::{BlastRadius, Policy};
use crate::store::holds::{self, HoldStatus};
use crate::store::{engine_state, events, replans, DbConnection};

/// When a group change is planned in the background, and how many users a batch plans.
#[derive(Debug)]
pub struct ReplanLimits {
    /// A group change affecting more users than this is planned in the background.
    sync_max: AtomicUsize,
    /// Users planned per background transaction.
    batch: AtomicUsize,
}

impl Default for ReplanLimits {
    /// 100 users in the write (a few tens of milliseconds of planning); batches of 200.
    fn default() -> Self {
        ReplanLimits {
            sync_max: AtomicUsize::new(100),
            batch: AtomicUsize::new(200),
        }
    }
}

impl ReplanLimits {
    pub fn sync_max(&self) -> usize {
        self.sync_max.load(Ordering::Relaxed)
    }

    pub fn batch(&self) -> usize {
        self.batch.load(Ordering::Relaxed).max(1)
    }

    pub fn set(&self, sync_max: usize, batch: usize) {
        self.sync_max.store(sync_max, Ordering::Relaxed);
        self.batch.store(batch.max(1), Ordering::Relaxed);
    }
}

/// Who a group change re-plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    /// These users.
    Users(Vec<String>),
    /// Every user the engine knows (a group deleted or emptied: its former members are no
    /// longer stored).
    Everyone,
}

/// Plans the users a group change affects: one by one when there is one, as one staged blast in
/// this transaction up to [`ReplanLimits::sync_max`], else recorded for [`run_batch`].
/// `what` names the change in the staging hold's reason; `client` the SCIM client that made it
/// (named in the audit of the plans made in its transaction).
pub fn group_change(
    engine: &Engine,
    c: &mut DbConnection,
    affected: Affected,
    what: &str,
    client: Option<&str>,
) -> HubResult<()> {
    change_judged(engine, c, affected, what, client, Judge::InForce)
}

/// The guard a change that re-plans many users is judged by. Either is recorded on the change's
/// staging hold when it begins, and [`finalize`] judges by the stricter of it and the guard in
/// force then: a reload while the change is planned cannot loosen it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Judge {
    /// The guard in force ([`guard_in_force`]) when the change begins (a group change).
    InForce,
    /// This one (`None`: no guard); a policy change's.
    Fixed(Option<BlastRadius>),
}

fn change_judged(
    engine: &Engine,
    c: &mut DbConnection,
    affected: Affected,
    what: &str,
    client: Option<&str>,
    judge: Judge,
) -> HubResult<()> {
    let count = match &affected {
        Affected::Users(ids) => ids.len(),
        Affected::Everyone => replans::known_users(c)? as usize,
    };
    if count == 0 {
        return Ok(());
    }
    let now = engine.now();
    let guard = match judge {
        Judge::InForce => guard_in_force(c, &engine.policy.current())?,
        Judge::Fixed(guard) => guard,
    };
    let guarded = guard.is_some();
    if count <= engine.replan.sync_max() {
        let ids = match affected {
            Affected::Users(ids) => ids,
            Affected::Everyone => engine_state::user_ids(c)?,
        };
        if count == 1 || !guarded {
            for id in &ids {
                plan_one(engine, c, id, None, client)?;
            }
            return Ok(());
        }
        let stage = open_stage(c, what, count, guard, now)?;
        for id in &ids {
            plan_one(engine, c, id, Some(&stage), client)?;
        }
        return finalize(engine, c, &stage);
    }
    let stage = open_stage(c, what, count, guard, now)?;
    match affected {
        Affected::Users(ids) => replans::enqueue(c, &stage, &ids)?,
        Affected::Everyone => {
            replans::enqueue_all(c, &stage)?;
        }
    }
    tracing::info!(hold = %stage, users = count, "group change re-planned in the background");
    Ok(())
}

fn open_stage(
    c: &mut DbConnection,
    what: &str,
    users: usize,
    guard: Option<BlastRadius>,
    now: DateTime<Utc>,
) -> HubResult<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let reason = format!("{what}: re-planning {users} users");
    let guard = guard_text(guard.as_ref());
    holds::create_judged(c, &id, &reason, HoldStatus::Staging, Some(&guard), now)?;
    Ok(id)
}

/// The stricter of two guards, setting by setting; one alone where the other is off.
fn strictest(a: Option<BlastRadius>, b: Option<BlastRadius>) -> Option<BlastRadius> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.stricter(&b)),
        (a, b) => a.or(b),
    }
}

/// The guard judged by when a guard `before` (as recorded) gives way to `new`: the stricter of
/// the two, so an edit that drops or loosens the guard cannot strip access under its own guard
/// before it is applied. Not recorded (applied by a release that did not record guards) or
/// unreadable: `new` alone.
fn policy_change_guard(before: Option<&str>, new: Option<BlastRadius>) -> Option<BlastRadius> {
    match before.and_then(guard_from_text) {
        Some(old) => strictest(old, new),
        None => new,
    }
}

/// The guard every plan, group change and clean-up is judged by: the stricter of the guard of
/// `policy` (the one this node runs) and that of the policy applied last. A reload that drops
/// or loosens `[blast_radius]` therefore loosens nothing until its policy change is applied
/// ([`policy_change`]), which waits for every live node to run the file and is itself judged by
/// the stricter of the two; a node left on an older file keeps the stricter too. Once the new
/// policy is applied, its guard is the one in force (and security was mailed about it).
pub fn guard_in_force(c: &mut DbConnection, policy: &Policy) -> HubResult<Option<BlastRadius>> {
    let applied = crate::store::policy_applied::current(c)?;
    Ok(policy_change_guard(
        applied.as_ref().and_then(|a| a.guard.as_deref()),
        policy.blast_radius,
    ))
}

/// A guard as the database records it: `off` without one, else its settings as JSON.
pub fn guard_text(guard: Option<&BlastRadius>) -> String {
    match guard {
        None => "off".into(),
        Some(_) => guard_value(guard).to_string(),
    }
}

/// A guard as the audit chain shows it: its settings, or `"off"`.
fn guard_value(guard: Option<&BlastRadius>) -> serde_json::Value {
    match guard {
        None => "off".into(),
        Some(b) => serde_json::json!({
            "max_share": b.max_share,
            "window_seconds": b.window.num_seconds(),
            "min_population": b.min_population,
        }),
    }
}

/// The audit chain's entry for a policy applied (`policy_applied`): whatever loaded it (a
/// reload by file watcher, SIGHUP or the API, or a start with an edited file), the hash, the
/// guard and, for a change, the guard before it and the one its re-plan is judged by. Outcome
/// `guard_loosened` when the new guard is looser than the one before in any setting.
fn audit_policy_applied(
    c: &mut DbConnection,
    now: DateTime<Utc>,
    node: &str,
    sha256: &str,
    guard: Option<&BlastRadius>,
    before: Option<(&str, Option<&str>)>,
    judged: Option<&BlastRadius>,
) -> HubResult<()> {
    let mut detail = serde_json::json!({
        "sha256": sha256,
        "node": node,
        "guard": guard_value(guard),
    });
    let mut outcome = "recorded";
    if let Some((previous_sha256, previous_guard)) = before {
        let previous = previous_guard.and_then(guard_from_text);
        detail["previous_sha256"] = previous_sha256.into();
        detail["previous_guard"] =
            previous.map_or(serde_json::Value::Null, |g| guard_value(g.as_ref()));
        detail["judged_by"] = guard_value(judged);
        outcome = if judged != guard {
            "guard_loosened"
        } else {
            "ok"
        };
    }
    crate::store::audit_chain::append(
        c,
        &crate::store::audit_chain::NewEntry {
            at: now,
            actor: "policy",
            user_id: "",
            connector: None,
            action: "policy_applied",
            outcome,
            detail: &detail,
        },
    )?;
    Ok(())
}

/// The guard [`guard_text`] recorded: `Some(None)` for `off`, `None` when the text is not one
/// (written by hand, or by another release), which the caller treats as not recorded.
fn guard_from_text(text: &str) -> Option<Option<BlastRadius>> {
    if text == "off" {
        return Some(None);
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let max_share = v.get("max_share")?.as_f64()?;
    let window = chrono::Duration::try_seconds(v.get("window_seconds")?.as_i64()?)?;
    let min_population = v.get("min_population")?.as_u64()?;
    (max_share.is_finite() && (0.0..=1.0).contains(&max_share)).then_some(Some(BlastRadius {
        max_share,
        window,
        min_population,
    }))
}

/// Plans `user_id` if they are stored or the engine knows them (a deleted user it planned).
fn plan_one(
    engine: &Engine,
    c: &mut DbConnection,
    user_id: &str,
    stage: Option<&str>,
    client: Option<&str>,
) -> HubResult<()> {
    let doc = load_user_doc_to_plan(c, user_id)?;
    if doc.is_some() || engine_state::get_user(c, user_id)?.is_some() {
        engine.plan_user_as(c, user_id, doc.as_ref(), Cause::Write, client, stage)?;
    }
    Ok(())
}

/// Plans the next batch of the oldest background re-plan in the caller's transaction, and
/// decides on the change when that was its last batch. Returns how many users it planned (0:
/// nothing to do).
pub fn run_batch(engine: &Engine, c: &mut DbConnection) -> HubResult<usize> {
    let Some(stage) = replans::next(c)? else {
        return Ok(0);
    };
    // Serialises runners on one change (PostgreSQL); it may have been decided meanwhile.
    if !holds::lock_staging(c, &stage)? {
        return Ok(0);
    }
    let users = replans::batch(c, &stage, engine.replan.batch() as i64)?;
    for id in &users {
        plan_one(engine, c, id, Some(&stage), None)?;
    }
    replans::done(c, &stage, &users)?;
    if replans::remaining(c, &stage)? == 0 {
        finalize(engine, c, &stage)?;
    }
    Ok(users.len())
}

/// The guard's decision on a whole group change, once all of it is planned: the users it takes
/// access from, with those who lost access within the window, as a share of the population.
/// Tripped: the staging hold becomes pending (security told); else it dissolves and its
/// operations run.
pub fn finalize(engine: &Engine, c: &mut DbConnection, stage: &str) -> HubResult<()> {
    let now = engine.now();
    let policy = engine.policy.current();
    // Judged by the guard recorded when the change began, or the one in force now when that is
    // stricter: a reload meanwhile cannot loosen it.
    let fixed = holds::guard(c, stage)?.and_then(|t| {
        let guard = guard_from_text(&t);
        if guard.is_none() {
            tracing::warn!(hold = %stage, guard = %t, "a staged change's guard is unreadable: judged by the guard in force");
        }
        guard
    });
    let in_force = guard_in_force(c, &policy)?;
    let guard = match fixed {
        Some(fixed) => strictest(fixed, in_force),
        None => in_force,
    };
    if let Some(b) = &guard {
        // The same lock as a single leaver's check: two group changes finalized at once (two
        // nodes, or two write connections) would each count only the losers committed before
        // either, and together take away more than the guard allows.
        crate::store::cluster::lock_blast_guard(c)?;
        let since = now - b.window;
        let taken = events::count_losers_behind(c, stage)?;
        if taken > 0 {
            let losers = events::count_losers(c, since, Some(stage), None)?;
            let population = events::guard_population(c, since, Some(stage))?;
            tracing::debug!(
                taken,
                losers,
                population,
                "blast-radius check of a group change"
            );
            if trips(b, losers, population) {
                let reason = format!(
                    "{} ({taken} by this one change)",
                    notices::hold_reason(b.max_share, population, b.window)
                );
                if holds::promote(c, stage, &reason)? {
                    tracing::warn!(hold = %stage, taken, population, "group change held");
                    let key = super::links::key(&policy);
                    for n in hold_notice(&policy, key.as_deref(), &reason, stage, now) {
                        queue(c, &n, now)?;
                    }
                }
                return Ok(());
            }
        }
    }
    // A staged plan ended no approval (the change might have been held, then discarded): now
    // that its operations run, planning these users again ends what their new role no longer
    // asks, before a later change could bring them back into the role still approved.
    let to_plan = holds::held_users_with_open_requests(c, stage)?;
    holds::dissolve(c, stage, now)?;
    events::clear_hold(c, stage)?;
    for u in &to_plan {
        engine.replan(c, u, Cause::Write)?;
    }
    Ok(())
}

/// Records `policy` (`sha256`) as applied when none is yet (a new database, or the first start
/// of a release that records policies): everyone is planned under it from now on, nobody
/// re-planned. Returns whether it recorded it.
pub fn record_first_policy(
    c: &mut DbConnection,
    policy: &Policy,
    sha256: &str,
    node: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    use crate::store::policy_applied;
    policy_applied::lock(c)?;
    if policy_applied::current(c)?.is_some() {
        return Ok(false);
    }
    record_first(c, policy, sha256, node, now)?;
    Ok(true)
}

/// Records the first policy applied, and audits it; the caller holds the lock.
fn record_first(
    c: &mut DbConnection,
    policy: &Policy,
    sha256: &str,
    node: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    record_applied(c, policy, sha256, node, now)?;
    audit_policy_applied(
        c,
        now,
        node,
        sha256,
        policy.blast_radius.as_ref(),
        None,
        None,
    )
}

/// Records `policy` (`sha256`) as applied now by `node`, with its guard and its security
/// addresses.
fn record_applied(
    c: &mut DbConnection,
    policy: &Policy,
    sha256: &str,
    node: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    crate::store::policy_applied::record(
        c,
        sha256,
        &guard_text(policy.blast_radius.as_ref()),
        &policy.notify.security,
        node,
        now,
    )
}

/// Mails security that `policy` (`sha256`) loosened the guard of the policy `before` it: its own
/// `[notify] security` addresses and those recorded for the policy before, since the edit that
/// loosened the guard may also have removed the addresses that would hear of it. The later
/// changes this guard judges have no stricter one behind them, so this mail is what tells
/// security that a step towards an unguarded mass removal was taken.
fn tell_security_guard_loosened(
    c: &mut DbConnection,
    policy: &Policy,
    sha256: &str,
    before: &crate::store::policy_applied::Applied,
    node: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let Some(Some(old)) = before.guard.as_deref().and_then(guard_from_text) else {
        return Ok(());
    };
    let mut to: Vec<String> = Vec::new();
    for address in before.security.iter().chain(&policy.notify.security) {
        if !to.contains(address) {
            to.push(address.clone());
        }
    }
    let notice = notices::guard_loosened(
        sha256,
        &before.sha256,
        node,
        &old,
        policy.blast_radius.as_ref(),
    );
    queue(
        c,
        &super::outcome::QueuedNotice {
            user_id: None,
            to: super::outcome::Recipients::to(to),
            notice,
        },
        now,
    )
}

/// What [`policy_change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChange {
    /// No policy was recorded as applied yet (a new database, or the first start of a release
    /// that records it): recorded, nobody re-planned.
    Recorded,
    /// Applied already (another node got there first, or nothing changed).
    Unchanged,
    /// Not yet: some live node still runs another policy. Asked again until every live node
    /// runs this one (a rolling deploy re-plans once its last old node is gone).
    NotYet,
    /// This node started with a policy that was applied before and has been replaced since
    /// (an old file): it re-plans nobody. Reloading it on purpose applies it.
    Stale,
    /// Everyone re-planned under it, as one change for the guard.
    Replanned,
}

/// A policy in force on this node (`sha256` of its bytes): unless it is the one every user was
/// last re-planned under, and once every node seen since `alive_since` runs it too, everyone is
/// re-planned now, as one change for the blast-radius guard ([`group_change`]), so a grant
/// added reaches everyone the profile matches and one removed leaves them, without waiting for
/// each person's next HR change. `as_started`: the policy this node loaded at its start (not
/// by a reload); such a policy that was applied before and replaced since is an old file and
/// re-plans nobody.
pub fn policy_change(
    engine: &Engine,
    c: &mut DbConnection,
    policy: &Policy,
    sha256: &str,
    node: &str,
    as_started: bool,
    alive_since: DateTime<Utc>,
) -> HubResult<PolicyChange> {
    use crate::store::{cluster, policy_applied};
    let now = engine.now();
    let guard = policy.blast_radius;
    policy_applied::lock(c)?;
    let Some(applied) = policy_applied::current(c)? else {
        record_first(c, policy, sha256, node, now)?;
        return Ok(PolicyChange::Recorded);
    };
    if applied.sha256 == sha256 {
        return Ok(PolicyChange::Unchanged);
    }
    let converged = cluster::nodes(c, alive_since)?
        .iter()
        .all(|n| n.node_id == node || n.policy_sha256.as_deref() == Some(sha256));
    if !converged {
        return Ok(PolicyChange::NotYet);
    }
    if as_started && policy_applied::applied_before(c, sha256)? {
        return Ok(PolicyChange::Stale);
    }
    record_applied(c, policy, sha256, node, now)?;
    let judged = policy_change_guard(applied.guard.as_deref(), guard);
    let loosened = judged != guard;
    if loosened {
        tracing::warn!(
            policy_sha256 = sha256,
            "the new policy loosens the blast-radius guard: its re-plan is judged by the guard before it"
        );
        tell_security_guard_loosened(c, policy, sha256, &applied, node, now)?;
    }
    audit_policy_applied(
        c,
        now,
        node,
        sha256,
        guard.as_ref(),
        Some((&applied.sha256, applied.guard.as_deref())),
        judged.as_ref(),
    )?;
    let short = sha256.get(..12).unwrap_or(sha256);
    // Security deciding a hold should see why it holds when the new file's guard would not.
    let what = match loosened {
        true => format!("policy change (sha256 {short}…, which loosens the guard: judged by the stricter of it and the guard before it)"),
        false => format!("policy change (sha256 {short}…)"),
    };
    tracing::info!(
        policy_sha256 = sha256,
        "a new policy: re-planning every user"
    );
    change_judged(
        engine,
        c,
        Affected::Everyone,
        &what,
        None,
        Judge::Fixed(judged),
    )?;
    Ok(PolicyChange::Replanned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn guard(max_share: f64, minutes: i64, min_population: u64) -> BlastRadius {
        BlastRadius {
            max_share,
            window: Duration::minutes(minutes),
            min_population,
        }
    }

    #[test]
    fn a_guard_reads_back_as_recorded() {
        let g = guard(0.25, 90, 7);
        assert_eq!(guard_from_text(&guard_text(Some(&g))), Some(Some(g)));
        assert_eq!(guard_text(None), "off");
        assert_eq!(guard_from_text("off"), Some(None));
    }

    #[test]
    fn an_unreadable_guard_is_not_taken_for_one() {
        for text in [
            "",
            "on",
            "{}",
            r#"{"max_share": 0.1, "window_seconds": 60}"#,
            r#"{"max_share": "0.1", "window_seconds": 60, "min_population": 5}"#,
            r#"{"max_share": 1.5, "window_seconds": 60, "min_population": 5}"#,
            r#"{"max_share": -0.1, "window_seconds": 60, "min_population": 5}"#,
            r#"{"max_share": 0.1, "window_seconds": 60, "min_population": -5}"#,
        ] {
            assert_eq!(guard_from_text(text), None, "{text}");
        }
    }

    #[test]
    fn a_policy_change_is_judged_by_the_stricter_of_the_guards_before_and_after() {
        let old = guard(0.1, 60, 20);
        let loose = guard(0.5, 10, 100);
        let before = guard_text(Some(&old));
        // Loosened or removed: the old guard still holds for this change.
        assert_eq!(
            policy_change_guard(Some(&before), Some(loose)),
            Some(guard(0.1, 60, 20))
        );
        assert_eq!(policy_change_guard(Some(&before), None), Some(old));
        // Each setting the stricter of the two.
        assert_eq!(
            policy_change_guard(Some(&before), Some(guard(0.05, 30, 50))),
            Some(guard(0.05, 60, 20))
        );
        // No guard before, or none recorded: the new policy's.
        assert_eq!(policy_change_guard(Some("off"), Some(loose)), Some(loose));
        assert_eq!(policy_change_guard(Some("off"), None), None);
        assert_eq!(policy_change_guard(None, Some(loose)), Some(loose));
        assert_eq!(policy_change_guard(Some("garbled"), None), None);
    }
}
