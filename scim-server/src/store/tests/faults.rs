//! Faults on PostgreSQL: serialization failures and deadlocks re-run by `write_tx_retry`, the
//! errors they become when they cannot be, statement timeouts, and an exhausted pool.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use diesel::sql_types::Text;
use diesel::RunQueryDsl;

use super::*;

/// Bumps `id`'s version, so the row is locked until the transaction ends.
fn touch(c: &mut DbConnection, id: &str) -> HubResult<()> {
    diesel::sql_query("UPDATE resources SET version = version + 1 WHERE id = $1")
        .bind::<Text, _>(id)
        .execute(c)?;
    Ok(())
}

fn version(s: &Store, id: &str) -> i64 {
    s.get(ResourceKind::User, id, false).unwrap().version
}

#[test]
fn faults_serialization_failure_and_deadlock_are_rerun_from_the_start() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let u = user(s, "ada");
    for (errcode, message) in [
        ("serialization_failure", "could not serialize access"),
        ("deadlock_detected", "deadlock detected"),
    ] {
        let before = version(s, &u.id);
        let mut attempts = 0;
        let out = s.write_tx_retry(|c, _| {
            attempts += 1;
            touch(c, &u.id)?;
            if attempts == 1 {
                raise(c, errcode, message)?;
            }
            Ok(attempts)
        });
        assert_eq!(out.unwrap(), 2, "{errcode}");
        // The first attempt's write was rolled back: one bump, not two.
        assert_eq!(version(s, &u.id), before + 1, "{errcode}");
    }
}

#[test]
fn faults_conflicts_beyond_the_attempts_and_single_runs_are_tx_conflicts() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let u = user(s, "ada");
    let before = version(s, &u.id);
    let mut attempts = 0;
    let out: HubResult<()> = s.write_tx_retry(|c, _| {
        attempts += 1;
        touch(c, &u.id)?;
        raise(c, "40001", "could not serialize access")
    });
    assert!(matches!(out, Err(HubError::TxConflict(_))), "{out:?}");
    assert_eq!(attempts, StoreOptions::default().write_attempts);
    // `write_tx` bodies may not be re-runnable: one try.
    let mut once = 0;
    let out: HubResult<()> = s.write_tx(|c, _| {
        once += 1;
        raise(c, "40P01", "deadlock detected")
    });
    assert!(matches!(out, Err(HubError::TxConflict(_))), "{out:?}");
    assert_eq!(once, 1);
    assert_eq!(version(s, &u.id), before);
}

/// Two writes lock two rows in opposite orders: PostgreSQL kills one as the deadlock victim, and
/// it is run again and succeeds; both writes land once.
#[test]
fn faults_a_real_deadlock_is_retried_and_both_writes_land() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let a = user(s, "ada").id;
    let b = user(s, "bea").id;
    let (va, vb) = (version(s, &a), version(s, &b));
    let barrier = Arc::new(Barrier::new(2));
    let runs = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = [(a.clone(), b.clone()), (b.clone(), a.clone())]
        .into_iter()
        .map(|(first, second)| {
            let (s, barrier, runs) = (s.clone(), barrier.clone(), runs.clone());
            std::thread::spawn(move || {
                let mut attempt = 0;
                s.write_tx_retry(|c, _| {
                    attempt += 1;
                    runs.fetch_add(1, Ordering::SeqCst);
                    touch(c, &first)?;
                    // Only the first attempts meet, so each holds one row and wants the other.
                    if attempt == 1 {
                        barrier.wait();
                    }
                    touch(c, &second)
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "one of the two ran twice");
    assert_eq!(version(s, &a), va + 2);
    assert_eq!(version(s, &b), vb + 2);
}

#[test]
fn faults_statement_timeout_cancels_and_is_typed() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let out: HubResult<()> = s.write_tx(|c, _| {
        c.batch_execute("SET LOCAL statement_timeout = 50; SELECT pg_sleep(5)")?;
        Ok(())
    });
    assert!(matches!(out, Err(HubError::StatementTimeout(_))), "{out:?}");
    // The connection went back to the pool usable.
    s.ping().unwrap();
}

#[test]
fn faults_the_default_statement_timeout_is_set_on_every_connection() {
    let Some(db) = postgres_db() else { return };
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        statement_timeout: String,
    }
    let mut c = db.store.read_conn().unwrap();
    let got = diesel::sql_query("SHOW statement_timeout")
        .get_result::<Setting>(&mut *c)
        .unwrap();
    assert_eq!(got.statement_timeout, "30s");
}

/// Every connection taken: the next request waits `connection_timeout`, then gets
/// `Unavailable` (503 at the edge), not an indefinite wait.
#[test]
fn faults_an_exhausted_pool_is_unavailable() {
    let check = |url: &str| {
        let s = Store::open_with(
            url,
            StoreOptions {
                pool_size: 1,
                min_idle: 0,
                connection_timeout: std::time::Duration::from_millis(200),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let held = s.read_conn().unwrap();
        let out = s.get(ResourceKind::User, "nope", false);
        assert!(matches!(out, Err(HubError::Unavailable(_))), "{out:?}");
        drop(held);
        assert!(matches!(
            s.get(ResourceKind::User, "nope", false),
            Err(HubError::NotFound)
        ));
    };
    let dir = std::env::temp_dir().join(format!("scimhub-faults-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    check(&format!("sqlite://{}", dir.join("hub.db").display()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(db) = postgres_db() {
        check(&db.postgres_url());
    }
}

/// Runs `first` in a write transaction that holds its changes (and on PostgreSQL its row locks)
/// for a moment after it has read, and `second` once `first` has read: the interleaving in
/// which an unlocked read-modify-write loses `first`'s change or `second`'s.
fn overlapping_writes<A: Send + 'static>(
    s: &Store,
    first: impl FnOnce(Store, Box<dyn FnOnce() + Send>) -> A + Send + 'static,
    second: impl FnOnce() + Send,
) -> A {
    let (read, after_read) = std::sync::mpsc::channel::<()>();
    let s = s.clone();
    let t = std::thread::spawn(move || {
        first(
            s,
            Box::new(move || {
                read.send(()).unwrap();
                // Long enough for `second` to reach its read while this transaction is open.
                std::thread::sleep(std::time::Duration::from_millis(300));
            }),
        )
    });
    after_read.recv().unwrap();
    second();
    t.join().unwrap()
}

/// Two PATCHes of one user in overlapping transactions (two nodes, or two write connections of
/// one): both changes are kept and each gets its own version. Before the write path locked the
/// row it read, the second PATCH read version N while the first was still open, and the first
/// then wrote N + 1 from its own stale read over the second's committed change.
#[test]
fn faults_overlapping_patches_of_one_user_both_land() {
    each_backend(|db| {
        let s = &db.store;
        let u = user(s, "ada");
        let id = u.id.clone();
        let set = |name: &'static str, value: &'static str| {
            move |mut doc: Doc| {
                doc.insert(name.into(), json!(value));
                Ok(doc)
            }
        };
        let first_id = id.clone();
        overlapping_writes(
            s,
            move |s, hold| {
                let hold = std::sync::Mutex::new(Some(hold));
                s.update_with(ResourceKind::User, &first_id, None, None, move |doc| {
                    if let Some(hold) = hold.lock().unwrap().take() {
                        hold();
                    }
                    set("title", "first")(doc)
                })
                .unwrap()
            },
            || {
                s.update_with(
                    ResourceKind::User,
                    &id,
                    None,
                    None,
                    set("nickName", "second"),
                )
                .unwrap();
            },
        );
        let now = s.get(ResourceKind::User, &id, false).unwrap();
        assert_eq!(now.doc.get("title"), Some(&json!("first")), "{}", db.name);
        assert_eq!(
            now.doc.get("nickName"),
            Some(&json!("second")),
            "{}",
            db.name
        );
        assert_eq!(now.version, u.version + 2, "{}", db.name);
    });
}

/// A member delta that overlaps another write of its group sees that write: an If-Match naming
/// the version before it fails, and the version it returns is the one stored.
#[test]
fn faults_a_member_delta_sees_an_overlapping_write_of_its_group() {
    each_backend(|db| {
        let s = &db.store;
        let g = group(s, "eng", &[]);
        let member = user(s, "ada").id;
        let gid = g.id.clone();
        let stale = g.etag();
        let delta = |if_match: Option<&str>| {
            s.apply_member_delta(
                &g.id,
                vec![NewMember::new(member.clone())],
                MemberRemoval::None,
                if_match,
            )
        };
        overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    touch(c, &gid)?;
                    hold();
                    Ok(())
                })
                .unwrap()
            },
            || {
                let out = delta(Some(&stale));
                assert!(
                    matches!(out, Err(HubError::PreconditionFailed { .. })),
                    "{}: {out:?}",
                    db.name
                );
            },
        );
        let gid = g.id.clone();
        overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    touch(c, &gid)?;
                    hold();
                    Ok(())
                })
                .unwrap()
            },
            || {
                let out = delta(None).unwrap();
                assert!(out.changed, "{}", db.name);
                let stored = s.get(ResourceKind::Group, &g.id, false).unwrap().version;
                assert_eq!(out.version, stored, "{}", db.name);
                assert_eq!(stored, g.version + 3, "{}", db.name);
            },
        );
    });
}

/// A plan that joins the open hold while security decides it: the operations it adds are
/// released (or dropped) with the hold's, never left held behind a decided hold that nothing
/// can release any more.
#[test]
fn faults_a_plan_joining_a_hold_decided_meanwhile_leaves_nothing_held() {
    use crate::store::holds::{self, HeldOps, HoldStatus};
    use crate::store::outbox::{self, NewOp, OutboxStatus};
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        s.write_tx(|c, _| holds::create(c, "h1", "too many leavers", now))
            .unwrap();
        overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    let open = holds::open_hold(c)?;
                    assert_eq!(open.as_deref(), Some("h1"));
                    hold();
                    outbox::enqueue(
                        c,
                        &NewOp {
                            plan_id: "p1",
                            user_id: "u1",
                            connector: "app",
                            event: "leaver",
                            priority: 0,
                            op: "\"disable\"".into(),
                            hold_id: open.as_deref(),
                        },
                        now,
                    )
                })
                .unwrap()
            },
            || {
                s.write_tx(|c, _| {
                    assert!(holds::decide(c, "h1", HoldStatus::Confirmed, "sec", now)?);
                    holds::release_ops(c, "h1", HeldOps::Release, now)
                })
                .unwrap();
            },
        );
        let ops = s.write_tx(|c, _| outbox::list_plan(c, "p1")).unwrap();
        assert_eq!(ops.len(), 1, "{}", db.name);
        assert_eq!(ops[0].status, OutboxStatus::Pending, "{}", db.name);
    });
}

/// A replan outside a SCIM write (an approval, a timer, an admin action) holds the user as a
/// SCIM write of them does: a PATCH of the user waits for the replan's commit and plans from
/// it, instead of planning beside it from the state before.
#[test]
fn faults_a_replan_and_a_patch_of_one_user_take_turns() {
    use std::sync::atomic::AtomicBool;
    each_backend(|db| {
        let s = &db.store;
        let id = user(s, "ada").id;
        let replan_committed = Arc::new(AtomicBool::new(false));
        let done = replan_committed.clone();
        let first_id = id.clone();
        overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    let row = crate::store::user_row_to_plan(c, &first_id)?;
                    assert!(row.is_some());
                    hold();
                    done.store(true, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap()
            },
            || {
                s.update_with(ResourceKind::User, &id, None, None, |mut doc| {
                    doc.insert("title".into(), json!("moved"));
                    Ok(doc)
                })
                .unwrap();
                assert!(
                    replan_committed.load(Ordering::SeqCst),
                    "{}: the PATCH ran beside the replan",
                    db.name
                );
            },
        );
    });
}

/// A sender whose claim on a message ran out cannot mark it: not failed (which would set a
/// message another sender holds back to pending, a second mail), not sent.
#[test]
fn faults_a_sender_past_its_claim_leaves_the_message_alone() {
    use crate::store::notifications;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        s.write_tx(|c, _| {
            notifications::enqueue(c, "leaver", None, &["it@example.com".into()], "s", "b", now)
        })
        .unwrap();
        let lease = chrono::Duration::seconds(60);
        let claim = |at| {
            s.write_tx(|c, _| notifications::claim(c, at, lease, 10, false))
                .unwrap()
        };
        let first = claim(now).remove(0);
        // The first sender stalls past its lease; a second claims the message again.
        let second = claim(now + chrono::Duration::seconds(61)).remove(0);
        assert_eq!((first.id, first.attempts + 1), (second.id, second.attempts));
        let stale = s
            .write_tx(|c, _| {
                notifications::mark_failed(c, first.id, first.attempts, "smtp", Some(now))
            })
            .unwrap();
        assert!(!stale, "{}", db.name);
        s.write_tx(|c, _| notifications::mark_sent(c, second.id, second.attempts, now, None))
            .unwrap();
        let row = s
            .write_tx(|c, _| notifications::list(c, None))
            .unwrap()
            .remove(0);
        assert_eq!(row.status, "sent", "{}", db.name);
        // The stale sender's late "sent" changes nothing either.
        s.write_tx(|c, _| notifications::mark_sent(c, first.id, first.attempts, now, Some("late")))
            .unwrap();
        let row = s
            .write_tx(|c, _| notifications::list(c, None))
            .unwrap()
            .remove(0);
        assert_eq!(row.last_error, None, "{}", db.name);
    });
}

/// An admin's retry of a failed operation while a worker claims: the operation after it (the
/// same user and connector) is not started between the check that nothing later ran and the
/// retry, which would run the old operation after the newer one (a grant re-applied after the
/// leaver's revoke).
#[test]
fn faults_a_retry_and_a_claim_never_run_a_pair_out_of_order() {
    use crate::store::outbox;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        let lease = chrono::Duration::seconds(15);
        super::outbox::enqueue_pair(db, now);
        let claim = |owner: &str| {
            s.write_tx(|c, _| outbox::claim(c, owner, now, lease, 0, 16))
                .unwrap()
        };
        let first = claim("w1").remove(0);
        assert!(s
            .write_tx(|c, _| outbox::park(c, &first, "boom", now))
            .unwrap());
        let failed = s
            .write_tx(|c, _| outbox::get_op(c, first.id))
            .unwrap()
            .unwrap();
        let later_id = first.id + 1;
        overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    assert!(!outbox::later_done(c, &failed)?);
                    hold();
                    outbox::retry_failed(c, failed.id, now)
                })
                .unwrap()
            },
            || {
                let claimed: Vec<i64> = claim("w2").iter().map(|r| r.id).collect();
                assert!(
                    !claimed.contains(&later_id),
                    "{}: the later operation started while the earlier was being retried",
                    db.name
                );
            },
        );
    });
}

/// A worker recording a finished operation (it writes the account's planned and actual state
/// back) while a plan commits a new planned state: the plan's state is kept.
#[test]
fn faults_a_recorded_operation_keeps_a_plan_committed_meanwhile() {
    use crate::store::engine_state;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        s.write_tx(|c, _| engine_state::put_account(c, "u1", "app", "{\"old\":1}", "{}", now))
            .unwrap();
        overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    let read = engine_state::account_for_update(c, "u1", "app")?.unwrap();
                    hold();
                    engine_state::put_account(c, "u1", "app", &read.planned, "{\"done\":1}", now)
                })
                .unwrap()
            },
            || {
                s.write_tx(|c, _| engine_state::put_planned(c, "u1", "app", "{\"new\":1}", now))
                    .unwrap();
            },
        );
        let account = s
            .write_tx(|c, _| engine_state::account_for_update(c, "u1", "app"))
            .unwrap()
            .unwrap();
        assert_eq!(account.planned, "{\"new\":1}", "{}", db.name);
        assert_eq!(
            account.actual.as_deref(),
            Some("{\"done\":1}"),
            "{}",
            db.name
        );
    });
}

/// A joiner and the run that closes its window burst (the confirmation queued) overlap: the
/// joiner starts a burst of its own rather than adding its plan to the closed one, which would
/// never be reported. Before `join` re-checked the burst under its row lock, the joiner read
/// the burst open, waited on the closing transaction's lock, then added its plan anyway.
#[test]
fn faults_a_joiner_never_joins_a_burst_closed_meanwhile() {
    use crate::store::bursts;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        let window = chrono::Duration::minutes(10);
        let join = move |s: &Store, plan: &str, user: &str| {
            s.write_tx(|c, _| bursts::join(c, "okta", plan, user, window, now))
                .unwrap()
        };
        let first = join(s, "p1", "u1");
        let closing = first.clone();
        let closed = overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    let open = bursts::lock_open(c, &closing)?;
                    hold();
                    Ok(open.is_some() && bursts::close(c, &closing, false, now)?)
                })
                .unwrap()
            },
            || {
                let second = join(s, "p2", "u2");
                assert_ne!(second, first, "{}: joined a closed burst", db.name);
            },
        );
        assert!(closed, "{}", db.name);
        let plans = |id: &str| -> Vec<String> {
            s.write_tx(|c, _| bursts::plans(c, id))
                .unwrap()
                .into_iter()
                .map(|p| p.plan_id)
                .collect()
        };
        assert_eq!(plans(&first), ["p1"], "{}", db.name);
        let open = s.write_tx(|c, _| bursts::open(c)).unwrap();
        assert_eq!(open.len(), 1, "{}", db.name);
        assert_eq!(plans(&open[0].id), ["p2"], "{}", db.name);
    });
}

/// A /Bulk request or import run whose burst was closed before it ended (its plans finished and
/// no joiner came for the window) starts a second burst for its later joiners, under the same
/// scope; sealing the scope seals both.
#[test]
fn faults_a_scope_whose_burst_closed_early_starts_another() {
    use crate::store::bursts::{self, BurstSource};
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        let window = chrono::Duration::minutes(10);
        let _scope = bursts::scope(BurstSource::Import, "run-1");
        let join = |plan: &str, user: &str| {
            s.write_tx(|c, _| bursts::join(c, "importer", plan, user, window, now))
                .unwrap()
        };
        let first = join("p1", "u1");
        assert_eq!(join("p2", "u2"), first, "{}", db.name);
        assert!(s
            .write_tx(|c, _| bursts::close(c, &first, true, now))
            .unwrap());
        let second = join("p3", "u3");
        assert_ne!(second, first, "{}", db.name);
        assert_eq!(join("p4", "u4"), second, "{}", db.name);
        s.write_tx(|c, _| bursts::seal(c, BurstSource::Import, "run-1"))
            .unwrap();
        let b = s.write_tx(|c, _| bursts::get(c, &second)).unwrap().unwrap();
        assert!(b.sealed && b.reported.is_none(), "{}", db.name);
        assert_eq!(b.source, BurstSource::Import, "{}", db.name);
    });
}

/// Two writes of one import run join its burst at once (PostgreSQL runs two group-commit
/// writers): the second's insert of the scope's burst meets the first's uncommitted one, waits,
/// and joins it, rather than failing the write with a uniqueness error (which refused the
/// roster row when its batch ran guarded).
#[test]
fn faults_two_writes_of_one_run_open_its_burst_once() {
    each_backend(|db| two_overlapping_joiners_share_one_burst(db, "importer", Some("run-2")));
}

/// Two joiners of `client` (in the import run `run` when given) in overlapping transactions:
/// the second joins the burst the first opened, and it is the one open burst, holding both.
fn two_overlapping_joiners_share_one_burst(
    db: &TestDb,
    client: &'static str,
    run: Option<&'static str>,
) {
    use crate::store::bursts::{self, BurstSource};
    let s = &db.store;
    let now = chrono::Utc::now();
    let window = chrono::Duration::minutes(10);
    let scoped = move || run.map(|r| bursts::scope(BurstSource::Import, r));
    let first = overlapping_writes(
        s,
        move |s, hold| {
            let _scope = scoped();
            s.write_tx(|c, _| {
                let id = bursts::join(c, client, "p1", "u1", window, now)?;
                hold();
                Ok(id)
            })
            .unwrap()
        },
        || {
            let _scope = scoped();
            let second = s
                .write_tx(|c, _| bursts::join(c, client, "p2", "u2", window, now))
                .unwrap();
            let open = s.write_tx(|c, _| bursts::open(c)).unwrap();
            assert_eq!(open.len(), 1, "{}: {open:?}", db.name);
            assert_eq!(open[0].id, second, "{}", db.name);
        },
    );
    let plans: Vec<String> = s
        .write_tx(|c, _| bursts::plans(c, &first))
        .unwrap()
        .into_iter()
        .map(|p| p.plan_id)
        .collect();
    assert_eq!(plans, ["p1", "p2"], "{}", db.name);
}

/// Two joiners of one client without a /Bulk or an import (a *window* burst) on two writers: the
/// second waits for the first's commit and joins its burst. Without the client's lock neither
/// saw the other's uncommitted burst, each opened one, and the onboarding confirmation came as
/// two mails.
#[test]
fn faults_two_joiners_of_one_client_open_its_window_burst_once() {
    each_backend(|db| two_overlapping_joiners_share_one_burst(db, "okta", None));
}

/// At a window's edge: one joiner keeps the client's burst open (it moves the burst's last
/// joiner time, uncommitted) while a second, a little later, would find it lapsed by the time
/// last committed. The second waits for the first and joins the same burst, as it would have
/// one after the other; read unlocked after the client's lock, it opened a second burst.
#[test]
fn faults_a_joiner_at_the_window_edge_joins_the_burst_kept_open_meanwhile() {
    use crate::store::bursts;
    each_backend(|db| {
        let s = &db.store;
        let window = chrono::Duration::minutes(10);
        let opened_at = chrono::Utc::now();
        let keeper_at = opened_at + window - chrono::Duration::seconds(1);
        let late_at = opened_at + window + chrono::Duration::seconds(1);
        let open = s
            .write_tx(|c, _| bursts::join(c, "okta", "p1", "u1", window, opened_at))
            .unwrap();
        let kept = overlapping_writes(
            s,
            move |s, hold| {
                s.write_tx(|c, _| {
                    let id = bursts::join(c, "okta", "p2", "u2", window, keeper_at)?;
                    hold();
                    Ok(id)
                })
                .unwrap()
            },
            || {
                let late = s
                    .write_tx(|c, _| bursts::join(c, "okta", "p3", "u3", window, late_at))
                    .unwrap();
                assert_eq!(late, open, "{}", db.name);
            },
        );
        assert_eq!(kept, open, "{}", db.name);
        let open_bursts = s.write_tx(|c, _| bursts::open(c)).unwrap();
        assert_eq!(open_bursts.len(), 1, "{}: {open_bursts:?}", db.name);
    });
}

/// A joiner whose client's window burst is open joins it without the client's lock, which only
/// the opening of a window takes: a client's joiners on several writers do not wait for each
/// other's commits once the window is open.
#[test]
fn faults_a_joiner_of_an_open_window_takes_no_client_lock() {
    use crate::store::{bursts, cluster};
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let now = chrono::Utc::now();
    let window = chrono::Duration::minutes(10);
    let open = s
        .write_tx(|c, _| bursts::join(c, "okta", "p1", "u1", window, now))
        .unwrap();
    overlapping_writes(
        s,
        |s, hold| {
            s.write_tx(|c, _| {
                cluster::lock_client_window(c, "okta")?;
                hold();
                Ok(())
            })
            .unwrap()
        },
        || {
            let joined = s.write_tx(|c, _| {
                // Fails at once rather than waiting for the lock the other transaction holds.
                c.batch_execute("SET LOCAL lock_timeout = 50")?;
                bursts::join(c, "okta", "p2", "u2", window, now)
            });
            assert_eq!(joined.unwrap(), open);
        },
    );
}

/// Two writers that deadlock through a client's window lock: one opens the client's window
/// (holding the client's lock) and then wants a user's lock, the other holds that user's lock
/// and then wants to join the client's window. PostgreSQL breaks the cycle (SQLSTATE 40P01),
/// the victim runs again from the start, and both joiners end in the one burst opened. The
/// user's lock here is the advisory lock a plan of a deleted user takes; a locked row closes
/// the same cycle.
#[test]
fn faults_a_deadlock_through_a_clients_window_lock_runs_the_victim_again() {
    use crate::store::{bursts, cluster};
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let now = chrono::Utc::now();
    let window = chrono::Duration::minutes(10);
    let runs = Arc::new(AtomicU32::new(0));
    let first_runs = runs.clone();
    let mut observer = pg_observer(&db);
    let first = overlapping_writes(
        s,
        move |s, hold| {
            let mut hold = Some(hold);
            s.write_tx_retry(|c, _| {
                first_runs.fetch_add(1, Ordering::SeqCst);
                let id = bursts::join(c, "okta", "p1", "u1", window, now)?;
                if let Some(hold) = hold.take() {
                    hold();
                    // The cycle closes only once the other waits for the client's lock.
                    until_one_waits_for_an_advisory_lock(&mut observer);
                }
                cluster::lock_user_plans(c, "u9")?;
                Ok(id)
            })
            .unwrap()
        },
        || {
            let second = s.write_tx_retry(|c, _| {
                runs.fetch_add(1, Ordering::SeqCst);
                cluster::lock_user_plans(c, "u9")?;
                bursts::join(c, "okta", "p2", "u2", window, now)
            });
            let second = second.expect("the second joiner, run again if it was the victim");
            let open = s.write_tx(|c, _| bursts::open(c)).unwrap();
            assert_eq!(open.len(), 1, "one window burst: {open:?}");
            assert_eq!(open[0].id, second);
        },
    );
    assert_one_burst_of_both_joiners(s, &first);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "two transactions and one run again after the deadlock"
    );
}

/// A sender renews a message's lease as its turn in the batch comes: another sender cannot
/// claim it meanwhile, and a sender whose claim was taken over cannot renew it (it skips the
/// message rather than sending it a second time).
#[test]
fn faults_a_renewed_lease_keeps_a_message_and_a_lost_claim_cannot_renew() {
    use crate::store::notifications;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        let secs = chrono::Duration::seconds;
        s.write_tx(|c, _| {
            notifications::enqueue(c, "leaver", None, &["it@example.com".into()], "s", "b", now)
        })
        .unwrap();
        let claim = |at| {
            s.write_tx(|c, _| notifications::claim(c, at, secs(60), 10, false))
                .unwrap()
        };
        let first = claim(now).remove(0);
        // Its turn comes 50 s into the batch: renewed, no one else can take it at 61 s.
        assert!(s
            .write_tx(|c, _| notifications::renew(c, first.id, first.attempts, now + secs(110)))
            .unwrap());
        assert!(claim(now + secs(61)).is_empty(), "{}", db.name);
        // Past the renewed lease another sender claims it; the first can no longer renew.
        let second = claim(now + secs(111)).remove(0);
        assert_eq!(second.id, first.id);
        assert!(!s
            .write_tx(|c, _| notifications::renew(c, first.id, first.attempts, now + secs(200)))
            .unwrap());
        assert!(s
            .write_tx(|c, _| notifications::renew(c, second.id, second.attempts, now + secs(200)))
            .unwrap());
    });
}

/// Runs `cancel` while a `fire_timers` transaction holds the timers due at `now` claimed:
/// returns how many it claimed and how many `cancel` cancelled.
fn cancelled_while_claimed(
    s: &Store,
    now: chrono::DateTime<chrono::Utc>,
    cancel: impl Fn(&mut DbConnection) -> HubResult<usize> + Send + Sync,
) -> (usize, usize) {
    use crate::store::timers;
    let mut cancelled = 0;
    let claimed = overlapping_writes(
        s,
        move |s, hold| {
            s.write_tx(|c, _| {
                let due = timers::claim_due(c, now, 10)?;
                hold();
                Ok(due.len())
            })
            .unwrap()
        },
        || cancelled = s.write_tx(|c, _| cancel(c)).unwrap(),
    );
    (claimed, cancelled)
}

/// An overlap end or contract end being fired is not waited for by a plan that cancels the
/// user's timers of its kind (an acknowledged legacy access, a moved contract end): that plan
/// holds the user's row, which the firing's re-plan waits for.
#[test]
fn faults_a_users_timer_being_fired_is_not_waited_for_by_its_cancel() {
    use crate::store::timers;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        s.write_tx(|c, _| {
            timers::schedule(c, "overlap:u1:1", "u1", "overlap_end", now, &json!({}), now)?;
            timers::schedule(
                c,
                "overlap:u1:2",
                "u1",
                "overlap_end",
                now + chrono::Duration::days(3),
                &json!({}),
                now,
            )
        })
        .unwrap();
        let (claimed, cancelled) =
            cancelled_while_claimed(s, now, |c| timers::cancel(c, "u1", "overlap_end"));
        // PostgreSQL: the later one only (the due one is being fired); SQLite has one writer,
        // so the claim committed first.
        let expected = if db.name == "postgres" { 1 } else { 2 };
        assert_eq!(cancelled, expected, "{}", db.name);
        assert_eq!(claimed, 1, "{}", db.name);
    });
}

/// A worker completing a plan cancels its SLA deadline timer while a `fire_timers` transaction
/// holds that timer claimed (it is firing the deadline, which waits for the plan's event row the
/// worker holds): on PostgreSQL the cancel leaves the claimed timer alone instead of waiting for
/// it, which would close a deadlock; with one writer (SQLite) the two run one after the other and
/// the cancel applies.
#[test]
fn faults_a_deadline_being_fired_is_not_waited_for_by_its_cancel() {
    use crate::store::timers;
    each_backend(|db| {
        let s = &db.store;
        let now = chrono::Utc::now();
        s.write_tx(|c, _| {
            timers::schedule(c, "sla:p1", "u1", "sla_deadline", now, &json!({}), now)
        })
        .unwrap();
        let (claimed, cancelled) =
            cancelled_while_claimed(s, now, |c| timers::cancel_key_unless_firing(c, "sla:p1"));
        let expected = if db.name == "postgres" { 0 } else { 1 };
        assert_eq!(cancelled, expected, "{}", db.name);
        assert_eq!(claimed, 1, "{}", db.name);
    });
}
