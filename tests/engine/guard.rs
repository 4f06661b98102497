//! The blast-radius guard on group changes (a group that drives a birthright profile deleted
//! or emptied), group changes planned in the background in batches, and a rehire while a
//! mover's overlap was still open.

use chrono::{DateTime, Duration, Utc};
use scim_server::admin::in_tx;
use scim_server::clock::Clock;
use scim_server::engine::replan;
use scim_server::error::HubError;
use scim_server::store::approvals::ApprovalStatus;
use scim_server::store::holds::HoldStatus;
use scim_server::store::{approvals, engine_state, replans, timers, MemberRemoval, ResourceKind};
use serde_json::json;

use super::{set_dept, until_waiting_in, user, Env, POLICY};

backends!(
    group_delete_is_one_blast,
    emptying_a_group_is_one_blast,
    group_change_below_the_share_proceeds_and_counts,
    large_group_change_planned_in_batches_resumes_after_a_crash,
    rehire_during_overlap_starts_from_the_new_role,
    a_group_change_is_judged_under_the_guards_lock,
    a_discard_locks_the_users_a_plan_added_while_it_waited,
    a_policy_change_re_plans_everyone_as_one_blast,
    a_policy_change_that_drops_the_guard_is_judged_by_the_one_before,
    a_large_policy_change_that_loosens_the_guard_is_judged_by_the_one_before,
    writes_after_a_reload_that_drops_the_guard_are_judged_by_the_applied_one,
    a_group_change_keeps_the_guard_it_began_with_through_a_reload,
);

/// `n` users in Sales, and the group "Badge" (which drives the `badge` profile: erp role:badge)
/// with the first `members` of them; everything run.
fn badge_setup(env: &Env, n: usize, members: usize) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..n)
        .map(|i| env.create_user(user(&format!("u{i:02}"), "Employee", "Sales", "Rep")))
        .collect();
    let members: Vec<_> = ids[..members].iter().map(|m| json!({"value": m})).collect();
    let serde_json::Value::Object(doc) = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Badge",
        "members": members,
    }) else {
        unreachable!()
    };
    let group = env.store.create(ResourceKind::Group, doc, None).unwrap().id;
    env.run();
    (ids, group)
}

/// How many users `u00..` hold role:badge on an enabled erp account.
fn badged(env: &Env, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            env.holds("erp", &format!("u{i:02}")) == Some((true, vec!["role:badge".to_string()]))
        })
        .count()
}

/// Operations the erp connector ran that take access away.
fn erp_removals(env: &Env) -> usize {
    env.app("erp")
        .effects()
        .iter()
        .filter(|e| matches!(e.op.as_str(), "revoke" | "disable" | "delete"))
        .count()
}

fn group_delete_is_one_blast(env: Env) {
    let (_, group) = badge_setup(&env, 10, 10);
    assert_eq!(badged(&env, 10), 10);
    // Deleting the group takes role:badge from all ten (mover events, not leavers): one blast,
    // held before anything is sent.
    env.store.delete(ResourceKind::Group, &group, None).unwrap();
    env.run();
    assert_eq!(erp_removals(&env), 0, "nothing sent while held");
    assert_eq!(badged(&env, 10), 10);
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].users, 10);
    assert_eq!(
        holds[0].reason,
        "more than 30% of 10 users would lose access within 10m (10 by this one change): \
         group Badge deleted: re-planning 10 users"
    );
    // Security was told.
    let notes = in_tx(&env.store, |c| {
        scim_server::store::notifications::list(c, None)
    })
    .unwrap();
    assert!(notes.iter().any(|n| n.kind == "blast_radius_hold"));
    // Confirmed: the removals run.
    env.admin.confirm_hold(&holds[0].id, "admin").unwrap();
    env.run();
    assert_eq!(badged(&env, 10), 0);
    assert!(erp_removals(&env) >= 10);
}

fn emptying_a_group_is_one_blast(env: Env) {
    let (_, group) = badge_setup(&env, 10, 10);
    env.store
        .apply_member_delta(&group, Vec::new(), MemberRemoval::All, None)
        .unwrap();
    env.run();
    assert_eq!(erp_removals(&env), 0, "nothing sent while held");
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].users, 10);
    // Discarded: the removals never run.
    env.admin.discard_hold(&holds[0].id, "admin").unwrap();
    env.run();
    assert_eq!(erp_removals(&env), 0);
    assert_eq!(badged(&env, 10), 10);
}

fn group_change_below_the_share_proceeds_and_counts(env: Env) {
    let (ids, group) = badge_setup(&env, 10, 2);
    // Two of ten lose role:badge: below 30%, no hold, it runs.
    env.store.delete(ResourceKind::Group, &group, None).unwrap();
    env.run();
    assert!(env.admin.holds(None).unwrap().is_empty());
    assert_eq!(badged(&env, 10), 0);
    assert_eq!(env.holds("erp", "u00"), Some((false, vec![])));
    // Those two lost access within the window: one leaver makes three (30%, allowed), the
    // next one trips the guard.
    env.patch_user(&ids[2], |d| {
        d.insert("active".into(), json!(false));
    });
    assert!(env.admin.holds(Some("pending")).unwrap().is_empty());
    env.patch_user(&ids[3], |d| {
        d.insert("active".into(), json!(false));
    });
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].users, 1);
}

fn updated(env: &Env, id: &str) -> DateTime<Utc> {
    in_tx(&env.store, |c| engine_state::get_user(c, id))
        .unwrap()
        .unwrap()
        .updated
}

fn large_group_change_planned_in_batches_resumes_after_a_crash(env: Env) {
    // More than 5 users: in the background, 10 per batch.
    env.engine.replan.set(5, 10);
    let (mut ids, group) = badge_setup(&env, 35, 35);
    assert_eq!(badged(&env, 35), 35, "the group's creation was planned too");
    ids.sort();
    let t0 = env.clock.now();
    env.store.delete(ResourceKind::Group, &group, None).unwrap();
    // The SCIM write only recorded who to plan.
    let staging = env.admin.holds(Some("staging")).unwrap();
    assert_eq!(staging.len(), 1);
    let stage = staging[0].id.clone();
    assert_eq!(
        in_tx(&env.store, |c| replans::remaining(c, &stage)).unwrap(),
        35
    );
    let movers = |id: &String| env.events(id).iter().filter(|e| *e == "mover").count();
    // Each became a mover once, when the group gave them its profile; nobody planned yet.
    assert!(ids.iter().all(|id| movers(id) == 1));
    // Not decidable while it is planned.
    assert!(env.admin.confirm_hold(&stage, "admin").is_err());
    // One batch.
    env.clock.advance(Duration::minutes(1));
    let t1 = env.clock.now();
    assert_eq!(
        in_tx(&env.store, |c| replan::run_batch(&env.engine, c)).unwrap(),
        10
    );
    // A runner that dies in the middle of the next batch: its transaction rolls back.
    env.clock.advance(Duration::minutes(1));
    let crashed = in_tx(&env.store, |c| {
        replan::run_batch(&env.engine, c)?;
        Err::<(), _>(HubError::Backend("killed".into()))
    });
    assert!(crashed.is_err());
    assert_eq!(
        in_tx(&env.store, |c| replans::remaining(c, &stage)).unwrap(),
        25
    );
    assert_eq!(erp_removals(&env), 0);
    // A new runner resumes; the guard sees the 35 as one blast.
    env.clock.advance(Duration::minutes(1));
    let t3 = env.clock.now();
    let workers = scim_server::jobs::Workers::new(env.store.clone(), env.engine.clone());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(workers.run_until_idle())
        .unwrap();
    assert_eq!(
        in_tx(&env.store, |c| replans::remaining(c, &stage)).unwrap(),
        0
    );
    // Each user planned exactly once: the first batch at t1, the rest at t3, none again.
    for (i, id) in ids.iter().enumerate() {
        let want = if i < 10 { t1 } else { t3 };
        assert_eq!(updated(&env, id), want, "user {i}");
        assert_eq!(movers(id), 2, "user {i}");
    }
    assert!(t0 < t1);
    let holds = env.admin.holds(None).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].status, HoldStatus::Pending);
    assert_eq!(holds[0].users, 35);
    assert_eq!(erp_removals(&env), 0, "nothing sent before the decision");
    env.admin.confirm_hold(&stage, "admin").unwrap();
    env.run();
    assert_eq!(badged(&env, 35), 0);
}

fn rehire_during_overlap_starts_from_the_new_role(env: Env) {
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let rita = env.create_report(user("rita", "Employee", "Engineering", "Engineer"), &mia);
    let pending = env.admin.approvals(Some("pending")).unwrap();
    assert_eq!(pending.len(), 1);
    env.admin
        .approve(&pending[0].id, &env.as_user("mia"))
        .unwrap();
    env.run();
    assert_eq!(
        env.holds("github", "rita").unwrap().1,
        vec!["org:acme".to_string(), "team:eng".into()]
    );
    // She moves to Sales: engineering's team stays for the 24h overlap.
    env.patch_user(&rita, |d| set_dept(d, "Sales"));
    env.run();
    assert_eq!(
        env.holds("github", "rita").unwrap().1,
        vec!["org:acme".to_string(), "team:eng".into()]
    );
    // She leaves an hour later: every override and grant ends with her.
    env.clock.advance(Duration::hours(1));
    env.patch_user(&rita, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    let (overrides, rows, overlap_timers) = in_tx(&env.store, |c| {
        Ok((
            approvals::overrides(c, &rita)?,
            approvals::for_user(c, &rita)?,
            timers::list(c, Some(&rita))?
                .into_iter()
                .filter(|t| t.kind == "overlap_end" && t.status.as_str() == "pending")
                .count(),
        ))
    })
    .unwrap();
    assert!(overrides.is_empty(), "{overrides:?}");
    assert!(
        rows.iter().all(|r| r.status == ApprovalStatus::Ended),
        "{rows:?}"
    );
    assert_eq!(overlap_timers, 0);
    // Rehired in Sales while the old overlap would still run: Sales access only.
    env.clock.advance(Duration::hours(1));
    env.patch_user(&rita, |d| {
        d.insert("active".into(), json!(true));
    });
    assert_eq!(env.events(&rita).last().map(String::as_str), Some("rehire"));
    env.run();
    let (_, slack) = env.holds("slack", "rita").unwrap();
    assert!(slack.contains(&"channel:sales".to_string()));
    assert_eq!(env.holds("github", "rita").map(|h| h.1), Some(vec![]));
    // Back in Engineering: the admin role waits for a new approval.
    env.patch_user(&rita, |d| set_dept(d, "Engineering"));
    env.run();
    assert_eq!(
        env.holds("github", "rita"),
        Some((true, vec!["team:eng".into()]))
    );
    let asked = env.admin.approvals(Some("pending")).unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].user_id, rita);
}

/// The guard's decision on a whole group change takes the same lock as a single leaver's: a
/// second change (or a leaver) judged meanwhile waits until the first is committed and counts
/// its losers. Without it two changes finalized at once (two nodes, two write connections) each
/// counted only the losers committed before either, and together took away more than the
/// guard allows.
fn a_group_change_is_judged_under_the_guards_lock(env: Env) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let judged = AtomicBool::new(false);
    let (read, after_read) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            in_tx(&env.store, |c| {
                // A change with nothing behind its (unknown) stage: counted, then dissolved.
                replan::finalize(&env.engine, c, "stage-without-plans")?;
                read.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                judged.store(true, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        });
        after_read.recv().unwrap();
        in_tx(&env.store, scim_server::store::cluster::lock_blast_guard).unwrap();
        assert!(
            judged.load(Ordering::SeqCst),
            "the guard's lock was taken while a group change was being judged"
        );
    });
}

/// A plan that joins a hold while security discards it (PostgreSQL: several writers): the
/// discard's first lock pass cannot see the joiner's user (its operations are not committed
/// yet), and its decision waits for the joiner's lock on the hold. Once the joiner commits, the
/// discard resets that user's planned state too, so it must hold that user's row by then, or a
/// plan of the user committed meanwhile is overwritten (and planned from a state about to be
/// discarded). The discard is parked in its release of the held operations (the test holds one
/// of them) and the joiner's user must be locked there.
fn a_discard_locks_the_users_a_plan_added_while_it_waited(env: Env) {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    use scim_server::store::{holds, outbox};
    let Some(mut observer) = env.pg_observer() else {
        return; // One writer on SQLite: nothing can interleave.
    };
    let ada = env.create_user(user("ada", "Employee", "Sales", "Rep"));
    let bea = env.create_user(user("bea", "Employee", "Sales", "Rep"));
    env.run();
    let now = env.clock.now();
    let held_op = |user_id: &str, plan_id: &str| {
        let (user_id, plan_id) = (user_id.to_string(), plan_id.to_string());
        move |c: &mut scim_server::store::DbConnection| {
            outbox::enqueue(
                c,
                &outbox::NewOp {
                    plan_id: &plan_id,
                    user_id: &user_id,
                    connector: "slack",
                    event: "leaver",
                    priority: 0,
                    op: "\"disable\"".into(),
                    hold_id: Some("h1"),
                },
                now,
            )
        }
    };
    in_tx(&env.store, |c| {
        holds::create(c, "h1", "too many leavers", now)?;
        held_op(&ada, "plan-ada")(c)
    })
    .unwrap();
    let lock_row = |c: &mut scim_server::store::DbConnection, sql: &str, id: &str| {
        diesel::sql_query(sql).bind::<Text, _>(id).execute(c)
    };
    let (joined, joined_rx) = std::sync::mpsc::channel::<()>();
    let (commit, commit_rx) = std::sync::mpsc::channel::<()>();
    let (outbox_held, outbox_held_rx) = std::sync::mpsc::channel::<()>();
    let (release_outbox, release_outbox_rx) = std::sync::mpsc::channel::<()>();
    let (env, ada, bea, lock_row, held_op) = (&env, &ada, &bea, &lock_row, &held_op);
    // `move`: a failed check drops the senders, so the waiting threads end instead of hanging.
    std::thread::scope(move |scope| {
        // Holds ada's held operation, where the discard will park.
        scope.spawn(move || {
            in_tx(&env.store, |c| {
                lock_row(
                    c,
                    "SELECT id FROM engine_outbox WHERE user_id = $1 FOR UPDATE",
                    ada,
                )?;
                outbox_held.send(()).unwrap();
                release_outbox_rx.recv().unwrap();
                Ok(())
            })
            .unwrap();
        });
        outbox_held_rx.recv().unwrap();
        // The joiner: bea's row, then the open hold (locked), as a plan takes them.
        scope.spawn(move || {
            in_tx(&env.store, |c| {
                lock_row(c, "SELECT id FROM resources WHERE id = $1 FOR UPDATE", bea)?;
                assert_eq!(holds::open_hold(c)?.as_deref(), Some("h1"));
                joined.send(()).unwrap();
                commit_rx.recv().unwrap();
                held_op(bea, "plan-bea")(c)
            })
            .unwrap();
        });
        joined_rx.recv().unwrap();
        let discard = scope.spawn(|| env.admin.discard_hold("h1", "sec"));
        until_waiting_in(&mut observer, "UPDATE engine_holds");
        commit.send(()).unwrap();
        until_waiting_in(&mut observer, "UPDATE engine_outbox");
        let plan_of_bea = in_tx(&env.store, |c| {
            lock_row(
                c,
                "SELECT id FROM resources WHERE id = $1 FOR UPDATE NOWAIT",
                bea,
            )?;
            Ok(())
        });
        let refused = plan_of_bea.expect_err(
            "a plan of the joiner's user ran while the discard was resetting that user",
        );
        // Refused for the row lock, not for anything else (a pool timeout would also be an error).
        assert!(
            refused.to_string().contains("could not obtain lock"),
            "{refused}"
        );
        release_outbox.send(()).unwrap();
        assert_eq!(discard.join().unwrap().unwrap(), 2, "both users discarded");
    });
    let bea_ops = in_tx(&env.store, |c| outbox::list_plan(c, "plan-bea")).unwrap();
    assert_eq!(bea_ops.len(), 1);
    assert_eq!(bea_ops[0].status, outbox::OutboxStatus::Discarded);
}

/// A new policy re-plans everyone once, as one change for the guard: a profile that stops
/// granting the badge role takes it from all ten at once, so the change is held before anything
/// is sent. The first policy seen is only recorded; one applied already changes nothing; while a
/// live node still runs another policy nothing happens yet; a node that starts with a policy
/// applied before and replaced since (an old file) re-plans nobody, while a reload back to it
/// re-plans everyone again.
fn a_policy_change_re_plans_everyone_as_one_blast(env: Env) {
    use replan::PolicyChange;
    use scim_server::policy::Policy;
    badge_setup(&env, 10, 10);
    assert_eq!(badged(&env, 10), 10);
    let now = env.clock.now();
    let change_on = |node: &str, sha: &str, as_started: bool| {
        in_tx(&env.store, |c| {
            replan::policy_change(
                &env.engine,
                c,
                &env.engine.policy.current(),
                sha,
                node,
                as_started,
                now - Duration::seconds(15),
            )
        })
        .unwrap()
    };
    let change = |sha: &str, as_started: bool| change_on("node-a", sha, as_started);
    let node_b_runs = |sha: &str| {
        in_tx(&env.store, |c| {
            scim_server::store::cluster::announce_node(c, "node-b", now, Some(sha), true, now)
        })
        .unwrap()
    };
    assert_eq!(change("v1", true), PolicyChange::Recorded);
    assert_eq!(change("v1", false), PolicyChange::Unchanged);
    let badge = "grants = [{ connector = \"erp\", kind = \"role\", id = \"badge\" }]";
    assert_eq!(POLICY.matches(badge).count(), 1);
    let without = POLICY.replace(badge, "grants = []");
    env.engine
        .policy
        .set(Policy::parse(&without, "test.toml").unwrap());
    // Another node, alive, still runs v1: nobody is re-planned yet.
    node_b_runs("v1");
    assert_eq!(change("v2", false), PolicyChange::NotYet);
    env.run();
    assert!(env.admin.holds(Some("pending")).unwrap().is_empty());
    // Both run v2: everyone re-planned, held as one blast.
    node_b_runs("v2");
    assert_eq!(change("v2", false), PolicyChange::Replanned);
    env.run();
    assert_eq!(erp_removals(&env), 0, "nothing sent while held");
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].users, 10);
    assert!(
        holds[0]
            .reason
            .contains("(10 by this one change): policy change (sha256 v2…): re-planning 10 users"),
        "{}",
        holds[0].reason
    );
    assert_eq!(change("v2", false), PolicyChange::Unchanged);
    env.admin.confirm_hold(&holds[0].id, "admin").unwrap();
    env.run();
    assert_eq!(badged(&env, 10), 0);
    // node-b restarts with an old file (v1), the only node alive (node-a, which never
    // announced itself here, counts as gone): it re-plans nobody.
    env.engine
        .policy
        .set(Policy::parse(POLICY, "test.toml").unwrap());
    node_b_runs("v1");
    assert_eq!(change_on("node-b", "v1", true), PolicyChange::Stale);
    env.run();
    assert_eq!(badged(&env, 10), 0);
    // Reloaded back to v1 on purpose: everyone re-planned under it (grants are not held).
    assert_eq!(change_on("node-b", "v1", false), PolicyChange::Replanned);
    env.run();
    assert_eq!(badged(&env, 10), 10);
}

/// Applies `policy` as the change `sha` on the only node, the way a reload does.
fn apply_policy(env: &Env, policy: &str, sha: &str) -> replan::PolicyChange {
    use scim_server::policy::Policy;
    env.engine
        .policy
        .set(Policy::parse(policy, "test.toml").unwrap());
    let now = env.clock.now();
    in_tx(&env.store, |c| {
        replan::policy_change(
            &env.engine,
            c,
            &env.engine.policy.current(),
            sha,
            "node-a",
            false,
            now - Duration::seconds(15),
        )
    })
    .unwrap()
}

/// The `policy_applied` entries of the audit chain, oldest first: outcome and detail.
fn policies_applied(env: &Env) -> Vec<(String, serde_json::Value)> {
    in_tx(&env.store, |c| scim_server::store::audit::list(c, Some("")))
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "policy_applied")
        .map(|e| (e.outcome, serde_json::from_str(&e.detail).unwrap()))
        .collect()
}

/// The mails that told security a policy change loosened the guard, oldest first.
fn guard_loosened_mails(env: &Env) -> Vec<scim_server::store::notifications::Notification> {
    let mut mails = in_tx(&env.store, |c| {
        scim_server::store::notifications::list(c, None)
    })
    .unwrap();
    mails.retain(|n| n.kind == "guard_loosened");
    mails.sort_by_key(|n| n.id);
    mails
}

/// The test policy's `[blast_radius]` table.
const GUARD: &str = "[blast_radius]\nmax_share = 0.3\nwindow = \"10m\"\nmin_population = 5\n";

/// The test policy with `guard` in place of its `[blast_radius]` table (empty: none), and with
/// or without the `badge` profile's grant.
fn policy_with(guard: &str, badge: bool) -> String {
    let grant = "grants = [{ connector = \"erp\", kind = \"role\", id = \"badge\" }]";
    assert_eq!(POLICY.matches(grant).count(), 1);
    assert_eq!(POLICY.matches(GUARD).count(), 1);
    let policy = POLICY.replace(GUARD, guard);
    match badge {
        true => policy,
        false => policy.replace(grant, "grants = []"),
    }
}

/// The one pending hold a policy change `v2` that loosens the guard left for `users` users,
/// judged by the test policy's guard, its reason saying so; returns its id.
fn held_by_the_old_guard(env: &Env, users: i64) -> String {
    assert_eq!(erp_removals(env), 0, "nothing sent while held");
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].users, users);
    assert_eq!(
        holds[0].reason,
        format!(
            "more than 30% of {users} users would lose access within 10m ({users} by this one \
             change): policy change (sha256 v2…, which loosens the guard: judged by the \
             stricter of it and the guard before it): re-planning {users} users"
        )
    );
    holds[0].id.clone()
}

/// An edit that removes `[blast_radius]` and strips everyone's badge in one step is still held:
/// the guard of the policy applied before it judges the re-plan it brings. Once that change is
/// decided, the next edit is judged by the guard then in force (none): the badge given back is
/// not held either way, and removing it again goes through.
fn a_policy_change_that_drops_the_guard_is_judged_by_the_one_before(env: Env) {
    use replan::PolicyChange;
    badge_setup(&env, 10, 10);
    assert_eq!(apply_policy(&env, POLICY, "v1"), PolicyChange::Recorded);
    assert_eq!(
        apply_policy(&env, &policy_with("", false), "v2"),
        PolicyChange::Replanned
    );
    env.run();
    let hold = held_by_the_old_guard(&env, 10);
    env.admin.confirm_hold(&hold, "admin").unwrap();
    env.run();
    assert_eq!(badged(&env, 10), 0);
    // Given back under no guard, then taken again: both judged by no guard.
    assert_eq!(
        apply_policy(&env, &policy_with("", true), "v3"),
        PolicyChange::Replanned
    );
    // Each policy applied is in the audit chain with its guard; the loosening says so.
    let guard = json!({"max_share": 0.3, "window_seconds": 600, "min_population": 5});
    let applied = policies_applied(&env);
    // Security heard of the loosening (v2), and of nothing else (v3 loosened nothing).
    let told = guard_loosened_mails(&env);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipients, ["security@example.com"]);
    assert_eq!(
        told[0].body.lines().take(9).collect::<Vec<_>>(),
        [
            "A policy change loosened the blast-radius guard.",
            "",
            "Policy now in force: sha256 v2",
            "Policy before it: sha256 v1",
            "Applied by node: node-a",
            "",
            "What changed in the guard:",
            "  the guard is removed ([blast_radius] is no longer in the policy)",
            "",
        ]
    );
    assert!(told[0].body.contains("Guard now: off (nothing is held"));
    assert_eq!(
        applied,
        vec![
            (
                "recorded".to_string(),
                json!({"sha256": "v1", "node": "node-a", "guard": guard})
            ),
            (
                "guard_loosened".to_string(),
                json!({"sha256": "v2", "node": "node-a", "guard": "off",
                       "previous_sha256": "v1", "previous_guard": guard, "judged_by": guard})
            ),
            (
                "ok".to_string(),
                json!({"sha256": "v3", "node": "node-a", "guard": "off",
                       "previous_sha256": "v2", "previous_guard": "off", "judged_by": "off"})
            ),
        ]
    );
    env.run();
    assert_eq!(badged(&env, 10), 10);
    assert_eq!(
        apply_policy(&env, &policy_with("", false), "v4"),
        PolicyChange::Replanned
    );
    env.run();
    assert!(env.admin.holds(Some("pending")).unwrap().is_empty());
    assert_eq!(badged(&env, 10), 0);
}

/// The same in the background (more users than are planned in the write): the guard is fixed
/// when the change begins and read back when its last batch is planned, so raising `max_share`
/// to 1 and `min_population` above the directory's size in the edit that strips the badge does
/// not let it through. Discarded, the badge stays.
fn a_large_policy_change_that_loosens_the_guard_is_judged_by_the_one_before(env: Env) {
    use replan::PolicyChange;
    env.engine.replan.set(5, 4);
    badge_setup(&env, 12, 12);
    assert_eq!(apply_policy(&env, POLICY, "v1"), PolicyChange::Recorded);
    let loose = "[blast_radius]\nmax_share = 1.0\nwindow = \"1m\"\nmin_population = 1000\n";
    // The same edit names another security address: the one before still hears of it.
    let security = "security = [\"security@example.com\"]";
    let moved = policy_with(loose, false).replace(security, "security = [\"new-sec@example.com\"]");
    assert_ne!(moved, policy_with(loose, false));
    assert_eq!(apply_policy(&env, &moved, "v2"), PolicyChange::Replanned);
    let told = guard_loosened_mails(&env);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        told[0].recipients,
        ["security@example.com", "new-sec@example.com"]
    );
    for change in [
        "  max_share 30% -> 100%: ",
        "  window 10m -> 1m: ",
        "  min_population 5 -> 1000: ",
        "Guard now: removals are held when more than 100% of the users would lose access \
         within 1m, in a directory of 1000 users or more.",
    ] {
        assert!(told[0].body.contains(change), "{change}: {}", told[0].body);
    }
    assert_eq!(env.admin.holds(Some("staging")).unwrap().len(), 1);
    env.run();
    let hold = held_by_the_old_guard(&env, 12);
    env.admin.discard_hold(&hold, "admin").unwrap();
    env.run();
    assert_eq!(badged(&env, 12), 12, "discarded: the badge stays");
}

/// A reload that drops `[blast_radius]` and the badge grant, before its policy change is
/// applied: each write re-plans its user under the new file, and those plans are judged by the
/// guard of the policy applied last (v1's), not by the file's none. Three of ten lose the badge
/// (30 %, the share the guard allows), the fourth trips it and the rest wait in one hold.
fn writes_after_a_reload_that_drops_the_guard_are_judged_by_the_applied_one(env: Env) {
    use scim_server::policy::Policy;
    let (ids, _) = badge_setup(&env, 10, 10);
    assert_eq!(
        apply_policy(&env, POLICY, "v1"),
        replan::PolicyChange::Recorded
    );
    env.engine
        .policy
        .set(Policy::parse(&policy_with("", false), "test.toml").unwrap());
    for id in &ids {
        env.patch_user(id, |d| {
            d.insert("nickName".into(), json!("x"));
        });
    }
    env.run();
    assert_eq!(badged(&env, 10), 7);
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].users, 7);
    assert_eq!(
        holds[0].reason,
        "more than 30% of 10 users would lose access within 10m"
    );
}

/// A group change planned in the background records the guard in force when it begins: an
/// edit that drops the guard, reloaded and even applied before its last batch, does not let it
/// through.
fn a_group_change_keeps_the_guard_it_began_with_through_a_reload(env: Env) {
    env.engine.replan.set(5, 4);
    let (_, group) = badge_setup(&env, 12, 12);
    assert_eq!(
        apply_policy(&env, POLICY, "v1"),
        replan::PolicyChange::Recorded
    );
    env.store.delete(ResourceKind::Group, &group, None).unwrap();
    assert_eq!(env.admin.holds(Some("staging")).unwrap().len(), 1);
    assert_eq!(
        apply_policy(&env, &policy_with("", true), "v2"),
        replan::PolicyChange::Replanned
    );
    env.run();
    assert_eq!(erp_removals(&env), 0, "nothing sent while held");
    assert_eq!(badged(&env, 12), 12);
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].users, 12);
    assert_eq!(
        holds[0].reason,
        "more than 30% of 12 users would lose access within 10m (12 by this one change): \
         group Badge deleted: re-planning 12 users"
    );
}
