//! Planning the fixes of drift findings (`fix` in the policy, or a manager's "remove"), in the
//! caller's transaction: each user's record is set to what the system holds
//! ([`super::drift::corrected`]) and the users are re-planned as one change, so the ordinary
//! diff queues the corrections and the blast-radius guard judges them as one blast
//! ([`super::replan`]); orphans get their disable or delete (the connector's `on_leave`) queued
//! under a user id of their own, behind a hold when the guard trips.

use std::collections::BTreeMap;

use super::drift::{corrected, orphan_fix, orphan_user_id, Finding};
use super::outcome::{QueuedNotice, Recipients};
use super::plan::AccountRecord;
use super::replan::{self, Affected};
use super::Engine;
use super::{links, load_user_doc, manager_id, notices};
use crate::error::HubResult;
use crate::policy::OnLeave;
use crate::store::{engine_state, events, holds, outbox, DbConnection};

/// Plans the fixes: each user's record is set to what the system holds and the users are
/// re-planned as one change (one blast for the guard, see [`crate::engine::replan`]); orphans
/// get their disable or delete queued, behind a hold when the guard trips. Returns the users
/// re-planned and the hold, if any.
pub fn fix(
    engine: &Engine,
    c: &mut DbConnection,
    connector: &str,
    on_leave: OnLeave,
    fixes: &[Finding],
) -> HubResult<(usize, Option<String>)> {
    {
        {
            let now = engine.now();
            let mut by_user: BTreeMap<String, Vec<&Finding>> = BTreeMap::new();
            let mut orphans: Vec<&Finding> = Vec::new();
            for f in fixes {
                match (&f.user_id, f.kind) {
                    (Some(u), _) => by_user.entry(u.clone()).or_default().push(f),
                    (None, _) => orphans.push(f),
                }
            }
            // The users locked first, in id order, as a SCIM write of one of them locks its row
            // before its engine rows: locking each only when its re-plan reads it (after this
            // loop wrote its account) was the reverse order, a deadlock with a PATCH of the user.
            crate::store::lock_users_to_plan(c, by_user.keys().map(String::as_str))?;
            let mut users = Vec::new();
            for (user, fs) in &by_user {
                let Some(acc) = engine_state::accounts(c, user)?
                    .into_iter()
                    .find(|a| a.connector == connector)
                else {
                    continue;
                };
                let Ok(rec) = serde_json::from_str::<AccountRecord>(&acc.planned) else {
                    continue;
                };
                let held = corrected(&rec, fs);
                let text = serde_json::to_string(&held).unwrap_or_default();
                engine_state::put_account(c, user, connector, &text, &text, now)?;
                users.push(user.clone());
            }
            let replanned = users.len();
            if !users.is_empty() {
                replan::group_change(
                    engine,
                    c,
                    Affected::Users(users),
                    &format!("drift reconciliation of {connector}"),
                    None,
                )?;
            }
            let mut hold = None;
            if !orphans.is_empty() {
                let policy = engine.policy.current();
                let guard = replan::guard_in_force(c, &policy)?;
                if let Some(b) = &guard {
                    // Judged under the guard's lock, as a leaver and a group change are: two
                    // reconciliations (or one and a leaver) at once would each count only the
                    // losers committed before either.
                    crate::store::cluster::lock_blast_guard(c)?;
                    let since = now - b.window;
                    let losers = events::count_losers(c, since, None, None)?;
                    let population = events::guard_population(c, since, None)?;
                    let taken = orphans.len() as i64;
                    if crate::engine::decide::trips(b, losers + taken, population + taken) {
                        let id = uuid::Uuid::now_v7().to_string();
                        let reason = format!(
                            "drift reconciliation of {connector} would disable or delete \
                             {taken} orphan accounts"
                        );
                        holds::create(c, &id, &reason, now)?;
                        let key = links::key(&policy);
                        for n in crate::engine::decide::hold_notice(
                            &policy,
                            key.as_deref(),
                            &reason,
                            &id,
                            now,
                        ) {
                            crate::engine::commit::queue(c, &n, now)?;
                        }
                        hold = Some(id);
                    }
                }
                let plan_id = uuid::Uuid::now_v7().to_string();
                let guarded = guard.is_some();
                for f in orphans {
                    let user = orphan_user_id(connector, &f.account);
                    let (op, rec) = orphan_fix(f, on_leave);
                    if guarded {
                        // Counted as access taken away within the window, as a leaver is, so
                        // the next leaver, group change or reconciliation is judged with it.
                        events::record(
                            c,
                            &events::NewEvent {
                                at: now,
                                user_id: &user,
                                event: "drift",
                                plan_id: &plan_id,
                                ops: 1,
                                revokes: 1,
                                hold_id: hold.as_deref(),
                                sla_due: None,
                                unsupported: &[],
                            },
                        )?;
                    }
                    let text = serde_json::to_string(&rec).unwrap_or_default();
                    engine_state::put_planned(c, &user, connector, &text, now)?;
                    outbox::enqueue(
                        c,
                        &outbox::NewOp {
                            plan_id: &plan_id,
                            user_id: &user,
                            connector,
                            event: "drift",
                            priority: 100,
                            op: serde_json::to_string(&op).unwrap_or_default(),
                            hold_id: hold.as_deref(),
                        },
                        now,
                    )?;
                }
            }
            Ok((replanned, hold))
        }
    }
}

/// Asks the manager of the user a new `review` finding (`finding_id`) is about to keep or
/// remove it: a mail with two signed one-click links. False (the finding stays reported) when
/// the user has no manager the policy trusts, or one-click links are not configured; also for
/// a departed user's enabled account (keeping it would undo the leaver's plan on a manager's
/// word) and for an entitlement the policy grants only behind owner or security approval (its
/// review, a one-item certification, starts at that level instead).
pub fn ask_review(
    engine: &Engine,
    c: &mut DbConnection,
    connector: &str,
    finding_id: i64,
    f: &Finding,
) -> HubResult<bool> {
    let policy = engine.policy.current();
    let Some(user) = &f.user_id else {
        return Ok(false);
    };
    // Tracked as a one-item certification campaign (a micro-review), reported like the others.
    super::certification::open_micro(engine, c, connector, finding_id, f)?;
    let above_manager = f
        .entitlement
        .as_ref()
        .is_some_and(|e| super::certification::outside_ladder_start(&policy, connector, e) > 0);
    if f.kind == super::drift::Kind::Departed || above_manager {
        return Ok(false);
    }
    let doc = load_user_doc(c, user)?;
    let manager = doc.as_ref().and_then(manager_id);
    let (Some(manager), Some(key)) = (manager, links::person_key(&policy)) else {
        return Ok(false);
    };
    if !policy.manager_trusted() {
        return Ok(false);
    }
    let now = engine.now();
    let Some((keep, remove)) = links::drift_links(&policy, &key, user, finding_id, &manager, now)
    else {
        return Ok(false);
    };
    let attr = |a: &str| {
        doc.as_ref()
            .and_then(|d| super::desired::attr_str(d, a))
            .map(str::to_string)
    };
    let person = notices::person_label(
        user,
        attr("userName").as_deref(),
        attr("displayName").as_deref(),
    );
    let what = match &f.entitlement {
        Some(e) => format!(
            "{} {} on account {}",
            f.kind.as_str(),
            super::drift::entitlement_key(e),
            f.account
        ),
        None => format!("{} (account {})", f.kind.as_str(), f.account),
    };
    let until = (now + policy.drift.review_expiry)
        .format("%Y-%m-%d")
        .to_string();
    // The manager's copy is addressed to them (the sender resolves their id to their email);
    // the note names them by userName where the directory has one.
    let addressee = load_user_doc(c, &manager)?
        .as_ref()
        .and_then(|d| super::desired::attr_str(d, "userName").map(str::to_string))
        .unwrap_or_else(|| manager.clone());
    let notice = notices::drift_review(
        &person,
        connector,
        &what,
        &keep,
        &remove,
        &until,
        &addressee,
        now + policy.notify.link_ttl,
    );
    super::commit::queue(
        c,
        &QueuedNotice {
            user_id: Some(user.clone()),
            to: Recipients::to(vec![manager]),
            notice,
        },
        now,
    )?;
    Ok(true)
}
