//! Group commit (`store::batch`) on each backend, and on PostgreSQL what only it can do to a
//! batch: conflict with a concurrent transaction, lose its connection, fail at COMMIT. (The
//! SQLite-only cases, a panicking write and the guard's bookkeeping, are beside the module.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};

use diesel::sql_types::BigInt;
use diesel::RunQueryDsl;

use super::*;

type Answer<T> = tokio::sync::oneshot::Receiver<HubResult<T>>;

/// Holds every writer thread with a write of its own, until the returned sender is dropped, so
/// that the writes submitted meanwhile form the next batch together. The answers are the
/// holders' batches (one each).
fn hold_writers(store: &Store) -> (mpsc::Sender<()>, Vec<Answer<()>>) {
    let (release, wait) = mpsc::channel::<()>();
    let wait = Arc::new(std::sync::Mutex::new(wait));
    let held = (0..store.writers())
        .map(|_| {
            let (started, running) = mpsc::channel::<()>();
            let wait = wait.clone();
            let held = store
                .submit_write(move |_| {
                    started.send(()).unwrap();
                    // Each holder waits until the sender is dropped (every recv then fails).
                    while wait.lock().unwrap().recv().is_ok() {}
                    Ok(())
                })
                .unwrap();
            // Running, so its writer is busy: the next holder goes to another.
            running.recv().unwrap();
            held
        })
        .collect();
    (release, held)
}

fn released(held: Vec<Answer<()>>) {
    for h in held {
        h.blocking_recv().unwrap().unwrap();
    }
}

fn create(store: &Store, name: &str) -> Answer<String> {
    let doc = obj(json!({"userName": name}));
    store
        .submit_write(move |s| Ok(s.create(ResourceKind::User, doc.clone(), None)?.id))
        .unwrap()
}

fn count_users(store: &Store) -> i64 {
    let mut c = store.read_conn().unwrap();
    sql::Sql::<BigInt>::new("SELECT COUNT(*) FROM resources WHERE resource_type = 'User'")
        .get_result(&mut *c)
        .unwrap()
}

/// Entries checked by a clean `audit verify`.
fn chain_entries(store: &Store) -> u64 {
    let mut c = store.read_conn().unwrap();
    let report = crate::store::audit_chain::verify(
        &mut c,
        &crate::store::audit_chain::VerifyOptions::default(),
    )
    .unwrap();
    assert!(report.ok, "{:?}", report.finding);
    report.checked
}

fn stats(store: &Store) -> [u64; 3] {
    let [(_, optimistic), (_, guarded), (_, rerun)] = store.write_batch_counts().unwrap();
    [optimistic, guarded, rerun]
}

#[test]
fn batch_waiting_writes_share_one_commit_on_each_backend() {
    each_backend(|db| {
        let s = &db.store;
        assert!(s.batches_writes(), "{}", db.name);
        let (release, held) = hold_writers(s);
        // Each write reports whether a reader saw the previous one's user while it ran: inside
        // one shared transaction it cannot.
        let answers: Vec<Answer<bool>> = (0..20)
            .map(|i| {
                let doc = obj(json!({"userName": format!("u{i}")}));
                s.submit_write(move |s| {
                    let previous_visible =
                        i > 0 && s.find_user_id(&format!("u{}", i - 1))?.is_some();
                    s.create(ResourceKind::User, doc.clone(), None)?;
                    Ok(previous_visible)
                })
                .unwrap()
            })
            .collect();
        drop(release);
        released(held);
        for (i, a) in answers.into_iter().enumerate() {
            assert!(
                !a.blocking_recv().unwrap().unwrap(),
                "{}: write {i}",
                db.name
            );
        }
        assert_eq!(count_users(s), 20, "{}", db.name);
        // The holders' batches, then one batch for all twenty.
        let holders = s.writers() as u64;
        assert_eq!(stats(s), [holders + 1, 0, 0], "{}", db.name);
        assert_eq!(chain_entries(s), 20, "{}", db.name);
    });
}

/// On PostgreSQL a failing statement aborts the whole transaction (SQLite's does not): the
/// batch is rolled back and runs again with a savepoint per write, and only the failing write
/// is refused.
#[test]
fn batch_a_failing_write_rolls_back_alone_on_each_backend() {
    each_backend(|db| {
        let s = &db.store;
        let (release, held) = hold_writers(s);
        let alice = create(s, "alice");
        let duplicate = create(s, "ALICE");
        let group: Answer<StoredResource> = s
            .submit_write(|s| {
                let doc = obj(json!({"displayName": "g", "members": [{"value": "nobody"}]}));
                s.create(ResourceKind::Group, doc, None)
            })
            .unwrap();
        let bob = create(s, "bob");
        drop(release);
        released(held);
        let alice = alice.blocking_recv().unwrap().unwrap();
        let dup = duplicate.blocking_recv().unwrap();
        assert!(
            matches!(dup, Err(HubError::Uniqueness(_))),
            "{}: {dup:?}",
            db.name
        );
        let group = group.blocking_recv().unwrap();
        assert!(
            matches!(group, Err(HubError::UnknownMembers(_))),
            "{}: {group:?}",
            db.name
        );
        let bob = bob.blocking_recv().unwrap().unwrap();
        assert!(s.get(ResourceKind::User, &alice, false).is_ok());
        assert!(s.get(ResourceKind::User, &bob, false).is_ok());
        assert_eq!(count_users(s), 2, "{}", db.name);
        assert_eq!(chain_entries(s), 2, "{}", db.name);
        let holders = s.writers() as u64;
        assert_eq!(stats(s), [holders, 1, 1], "{}", db.name);
    });
}

/// Creates submitted as such (`Store::submit_create`) leave their rows for the batch to insert
/// together on PostgreSQL: a write that is not a create still sees every earlier create's rows
/// in the transaction, every create's rows (emails included) are stored, and a name taken
/// within a batch fails only its create, after the batch runs again guarded.
#[test]
fn batch_creates_inserted_together_are_all_seen_and_fail_alone_on_each_backend() {
    each_backend(|db| {
        let s = &db.store;
        let create_as_create = |name: &str| -> Answer<String> {
            let doc = obj(json!({
                "userName": name,
                "emails": [{"value": format!("{name}@example.com"), "type": "work"}],
            }));
            s.submit_create(move |s| Ok(s.create(ResourceKind::User, doc.clone(), None)?.id))
                .unwrap()
        };
        // Not a create: the rows of the creates before it must be in the transaction.
        let count_in_batch = || -> Answer<i64> {
            s.submit_write(|s| {
                s.write_tx(|c, _| {
                    Ok(sql::Sql::<BigInt>::new(
                        "SELECT COUNT(*) FROM resources r JOIN resource_values v \
                         ON v.resource_id = r.id WHERE r.resource_type = 'User'",
                    )
                    .get_result(c)?)
                })
            })
            .unwrap()
        };
        let check = |answers: Vec<(usize, Answer<String>)>| {
            for (i, a) in answers {
                let id = a.blocking_recv().unwrap().unwrap();
                let user = s.get(ResourceKind::User, &id, false).unwrap();
                assert_eq!(user.doc["userName"], json!(format!("u{i}")), "{}", db.name);
            }
        };

        // One batch: five creates, a read, three creates.
        let (release, held) = hold_writers(s);
        let mut creates: Vec<_> = (0..5)
            .map(|i| (i, create_as_create(&format!("u{i}"))))
            .collect();
        let seen = count_in_batch();
        creates.extend((5..8).map(|i| (i, create_as_create(&format!("u{i}")))));
        drop(release);
        released(held);
        assert_eq!(seen.blocking_recv().unwrap().unwrap(), 5, "{}", db.name);
        check(creates);
        let holders = s.writers() as u64;
        assert_eq!(stats(s), [holders + 1, 0, 0], "{}", db.name);

        // The next: a name taken by a create before it in the batch.
        let (release, held) = hold_writers(s);
        let mut creates: Vec<_> = (8..10)
            .map(|i| (i, create_as_create(&format!("u{i}"))))
            .collect();
        let duplicate = create_as_create("U9");
        let seen = count_in_batch();
        creates.push((10, create_as_create("u10")));
        drop(release);
        released(held);
        let dup = duplicate.blocking_recv().unwrap();
        assert!(
            matches!(dup, Err(HubError::Uniqueness(_))),
            "{}: {dup:?}",
            db.name
        );
        assert_eq!(seen.blocking_recv().unwrap().unwrap(), 10, "{}", db.name);
        check(creates);
        assert_eq!(count_users(s), 11, "{}", db.name);
        // Every email row went in with its resource row.
        let mut c = s.read_conn().unwrap();
        let emails: i64 = sql::Sql::<BigInt>::new(
            "SELECT COUNT(*) FROM resource_values v JOIN resources r ON r.id = v.resource_id \
             WHERE v.attr = 'emails' AND v.value_folded = r.user_name_folded || '@example.com'",
        )
        .get_result(&mut *c)
        .unwrap();
        assert_eq!(emails, 11, "{}", db.name);
        drop(c);
        assert_eq!(chain_entries(s), 11, "{}", db.name);
        assert_eq!(stats(s), [2 * holders + 1, 1, 1], "{}", db.name);
    });
}

/// A write that conflicts with a concurrent transaction (SQLSTATE 40001 or 40P01) in every run
/// of its batch fails alone there and runs again in the next batch, up to `write_attempts`
/// batches; the others in its batch commit meanwhile, and nothing of its failed runs is kept.
#[test]
fn batch_pg_a_conflicting_write_runs_again_in_the_next_batch() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let zed = create(s, "zed").blocking_recv().unwrap().unwrap();
    let version = |s: &Store| s.get(ResourceKind::User, &zed, false).unwrap().version;
    let before = version(s);
    let (release, held) = hold_writers(s);
    let alice = create(s, "alice");
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let target = zed.clone();
    // Conflicts in its optimistic and its guarded run, then succeeds in the next batch.
    let conflicted: Answer<()> = s
        .submit_write(move |s| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            s.write_tx(|c, _| {
                crate::store::resources::bump(c, &target, "2026-01-01T00:00:00.000000Z")?;
                if run < 2 {
                    raise(c, "40001", "could not serialize access")?;
                }
                Ok(())
            })
        })
        .unwrap();
    let bob = create(s, "bob");
    drop(release);
    released(held);
    alice.blocking_recv().unwrap().unwrap();
    bob.blocking_recv().unwrap().unwrap();
    conflicted.blocking_recv().unwrap().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // Bumped once: its failed runs left nothing.
    assert_eq!(version(s), before + 1);
    assert_eq!(count_users(s), 3);

    // One that conflicts every time is answered 503-worthy TxConflict after its attempts.
    let always = Arc::new(AtomicU32::new(0));
    let counted = always.clone();
    let out: HubResult<()> = s
        .submit_write(move |s| {
            counted.fetch_add(1, Ordering::SeqCst);
            s.write_tx(|c, _| raise(c, "40P01", "deadlock detected"))
        })
        .unwrap()
        .blocking_recv()
        .unwrap();
    assert!(matches!(out, Err(HubError::TxConflict(_))), "{out:?}");
    // Optimistic and guarded in its first batch, then guarded once per further attempt.
    let attempts = StoreOptions::default().write_attempts;
    assert_eq!(always.load(Ordering::SeqCst), attempts + 1);
    assert_eq!(version(s), before + 1);
    assert_eq!(chain_entries(s), 3);
}

/// The connection dies under a batch (killed from outside, as a failover or an idle timeout
/// would), in its optimistic run and again in its guarded one: nothing of either committed, so
/// the batch runs again on a new connection and every write lands once.
#[test]
fn batch_pg_a_lost_connection_runs_the_batch_again_on_another() {
    use diesel::sql_types::Integer;
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").unwrap();
    let (release, held) = hold_writers(s);
    let alice = create(s, "alice");
    let runs = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counted, errors) = (runs.clone(), seen.clone());
    let bob: Answer<String> = s
        .submit_write(move |s| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            if run < 2 {
                let killed: HubResult<String> = s.write_tx(|c, _| {
                    let pid: i32 = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
                        .get_result(c)?;
                    let mut admin = diesel::pg::PgConnection::establish(&admin_url).unwrap();
                    admin
                        .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
                        .unwrap();
                    // The next statement finds the connection gone.
                    diesel::select(diesel::dsl::sql::<Integer>("1")).execute(c)?;
                    Ok(String::new())
                });
                let e = killed.expect_err("the connection was terminated");
                errors.lock().unwrap().push(e.to_string());
                return Err(e);
            }
            let doc = obj(json!({"userName": "bob"}));
            Ok(s.create(ResourceKind::User, doc, None)?.id)
        })
        .unwrap();
    let carol = create(s, "carol");
    drop(release);
    released(held);
    let ids = [
        alice.blocking_recv().unwrap().unwrap(),
        bob.blocking_recv().unwrap().unwrap(),
        carol.blocking_recv().unwrap().unwrap(),
    ];
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|e| e.starts_with("database unavailable")),
        "{seen:?}"
    );
    for id in &ids {
        assert!(s.get(ResourceKind::User, id, false).is_ok(), "{id}");
    }
    assert_eq!(count_users(s), 3);
    assert_eq!(chain_entries(s), 3);
}

/// After a failover every pooled connection is dead, and one that answered less than a second
/// ago is handed out untested: the batch's `BEGIN` finds it dead. Nothing ran, so the batch
/// runs again on another connection, as a single write would, instead of answering `503`.
#[test]
fn batch_pg_a_connection_dead_at_begin_runs_the_batch_again_on_another() {
    use diesel::sql_types::Bool;
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").unwrap();
    create(s, "alice").blocking_recv().unwrap().unwrap();
    let answered = std::time::Instant::now();
    // The writer's connection answered just now; every backend of the test database is ended
    // (the admin connection is on another database) and gone before the next write.
    let mut admin = diesel::pg::PgConnection::establish(&admin_url).unwrap();
    let current: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_database()",
    ))
    .get_result(&mut *s.read_conn().unwrap())
    .unwrap();
    let gone = |admin: &mut diesel::pg::PgConnection| -> bool {
        diesel::select(diesel::dsl::sql::<Bool>(&format!(
            "NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = '{current}')"
        )))
        .get_result(admin)
        .unwrap()
    };
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{current}'"
    ))
    .execute(&mut admin)
    .unwrap();
    while !gone(&mut admin) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let [_, _, reruns_before] = stats(s);
    // On a loaded machine the terminations may take a second, after which the pool tests the
    // connection before handing it out, and the batch never meets it dead.
    let untested = answered.elapsed() < std::time::Duration::from_millis(800);
    let bob = create(s, "bob").blocking_recv().unwrap();
    assert!(bob.is_ok(), "{bob:?}");
    assert_eq!(count_users(s), 2);
    let [_, _, reruns_after] = stats(s);
    if untested {
        assert!(reruns_after > reruns_before, "the batch ran again");
    }
}

/// A batch whose COMMIT PostgreSQL refuses (a deferred constraint) fails every write in it and
/// keeps none of them; the writer goes on with the next batch.
#[test]
fn batch_pg_a_refused_commit_fails_every_write_and_keeps_none() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    s.read_conn()
        .unwrap()
        .batch_execute(
            "CREATE TABLE t_parent (id INT PRIMARY KEY); \
             CREATE TABLE t_child (parent INT REFERENCES t_parent DEFERRABLE INITIALLY DEFERRED)",
        )
        .unwrap();
    let (release, held) = hold_writers(s);
    let innocent = create(s, "innocent");
    let poison: Answer<String> = s
        .submit_write(|s| {
            let id = s
                .create(ResourceKind::User, obj(json!({"userName": "poison"})), None)?
                .id;
            s.write_tx(|c, _| {
                c.batch_execute("INSERT INTO t_child VALUES (1)")?;
                Ok(())
            })?;
            Ok(id)
        })
        .unwrap();
    drop(release);
    released(held);
    let a = innocent.blocking_recv().unwrap();
    let b = poison.blocking_recv().unwrap();
    assert!(matches!(a, Err(HubError::Backend(_))), "{a:?}");
    assert!(matches!(b, Err(HubError::Backend(_))), "{b:?}");
    assert_eq!(count_users(s), 0);
    assert_eq!(chain_entries(s), 0);
    create(s, "after").blocking_recv().unwrap().unwrap();
    assert_eq!(count_users(s), 1);
    assert_eq!(chain_entries(s), 1);
}

/// `group_commit = false` runs each write in its own transaction (for comparison).
#[test]
fn batch_group_commit_can_be_turned_off() {
    let path = std::env::temp_dir().join(format!("scimhub-nobatch-{}.db", uuid::Uuid::new_v4()));
    let db = TestDb {
        store: Store::open_with(
            &format!("sqlite://{}", path.display()),
            StoreOptions {
                group_commit: false,
                ..StoreOptions::default()
            },
        )
        .unwrap(),
        name: "sqlite".into(),
        cleanup: Cleanup::Files(path),
    };
    assert!(!db.store.batches_writes());
    assert!(db.store.submit_write(|_| Ok(())).is_err());
}

/// Appends an entry of its own for every write, as the engine's plan does.
#[derive(Debug)]
struct PlanningHook;

impl WriteHook for PlanningHook {
    fn on_write(&self, conn: &mut DbConnection, change: &Change) -> HubResult<()> {
        audit::append(
            conn,
            &audit::AuditEntry {
                at: chrono::Utc::now(),
                actor: "hub",
                user_id: &change.id,
                connector: None,
                action: "test.plan",
                outcome: "ok",
                detail: json!({"planned": true}),
            },
        )
    }
}

/// In a batch, the entries a write's hook appends wait for the batch's end with the write's own:
/// the chain head is not locked while later writes of the batch lock their rows (the reverse of
/// every other writer's order, a deadlock), and each write's entries stay together, in order.
#[test]
fn batch_hook_entries_wait_for_the_batch_end_in_write_order() {
    each_backend(|db| {
        let s = &db.store;
        let planned = s.clone().with_hook(Arc::new(PlanningHook));
        let (release, held) = hold_writers(s);
        let alice = create(&planned, "alice");
        let postgres = db.name == "postgres";
        // Runs after alice's write and its plan, in the same transaction: from another
        // connection, the head must still be free.
        let bob: Answer<String> = planned
            .submit_write(move |s| {
                if postgres {
                    let mut other = s.read_conn()?;
                    other.batch_execute(
                        "BEGIN; SELECT seq FROM engine_audit_head WHERE id = 1 FOR UPDATE NOWAIT; \
                         ROLLBACK",
                    )?;
                }
                Ok(
                    s.create(ResourceKind::User, obj(json!({"userName": "bob"})), None)?
                        .id,
                )
            })
            .unwrap();
        drop(release);
        released(held);
        let alice = alice.blocking_recv().unwrap().unwrap();
        let bob = bob.blocking_recv().unwrap();
        let bob = bob.unwrap_or_else(|e| panic!("{}: the head was locked mid-batch: {e}", db.name));
        let mut c = s.read_conn().unwrap();
        let rows = crate::store::audit_chain::export_page(
            &mut c,
            &crate::store::audit_chain::ExportFilter::default(),
            10,
        )
        .unwrap();
        drop(c);
        let order: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.action.as_str(), r.user_id.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("test.plan", alice.as_str()),
                ("scim.user.create", alice.as_str()),
                ("test.plan", bob.as_str()),
                ("scim.user.create", bob.as_str()),
            ],
            "{}",
            db.name
        );
        assert_eq!(chain_entries(s), 4, "{}", db.name);
    });
}

/// Two group-commit batches, one on each PostgreSQL writer, that deadlock through a client's
/// window lock: one batch's write opens the client's window (holding the client's lock) and
/// then wants a user's lock; the other's holds that user's lock and then wants to join the
/// window. PostgreSQL breaks the cycle; the victim's batch, spoiled, is rolled back and runs
/// again guarded, and both writes are answered with their joiners in the one burst opened. (It
/// fails when a spoiled batch answers its writes with the error instead.)
#[test]
fn batch_pg_batches_deadlocking_through_a_clients_window_lock_both_commit() {
    use crate::store::{bursts, cluster};
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    assert!(s.writers() >= 2, "two writers on PostgreSQL");
    let now = chrono::Utc::now();
    let window = chrono::Duration::minutes(10);
    let joined = Arc::new(AtomicBool::new(false));
    let observer = Arc::new(Mutex::new(Some(pg_observer(&db))));
    let runs = Arc::new(AtomicU32::new(0));
    let (first_joined, first_runs) = (joined.clone(), runs.clone());
    let first: Answer<String> = s
        .submit_write(move |s| {
            first_runs.fetch_add(1, Ordering::SeqCst);
            s.write_tx(|c, _| {
                let id = bursts::join(c, "okta", "p1", "u1", window, now)?;
                // The first run only: close the cycle once the other batch waits for the
                // client's lock.
                if let Some(mut observer) = observer.lock().unwrap().take() {
                    first_joined.store(true, Ordering::SeqCst);
                    until_one_waits_for_an_advisory_lock(&mut observer);
                }
                cluster::lock_user_plans(c, "u9")?;
                Ok(id)
            })
        })
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !joined.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first batch never joined"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let second_runs = runs.clone();
    let second: Answer<String> = s
        .submit_write(move |s| {
            second_runs.fetch_add(1, Ordering::SeqCst);
            s.write_tx(|c, _| {
                cluster::lock_user_plans(c, "u9")?;
                bursts::join(c, "okta", "p2", "u2", window, now)
            })
        })
        .unwrap();
    let first = first.blocking_recv().unwrap().expect("the first write");
    let second = second.blocking_recv().unwrap().expect("the second write");
    assert_eq!(first, second, "one burst");
    assert_one_burst_of_both_joiners(s, &first);
    assert!(
        runs.load(Ordering::SeqCst) >= 3,
        "the victim's write ran again: {} runs",
        runs.load(Ordering::SeqCst)
    );
}

/// A batch of User writes on PostgreSQL reads and locks its users' rows in one statement before
/// its first write runs (`batch::LockedAhead`): while the first write runs, the row of a user
/// only a later write changes is already locked. Each write gets the row as it stands: a second
/// write of the same user in the batch reads the first's change, so neither is lost.
#[test]
fn batch_pg_user_writes_lock_their_rows_ahead_and_each_sees_the_last_change() {
    use diesel::sql_types::Integer;
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let ann = create(s, "ann").blocking_recv().unwrap().unwrap();
    let bea = create(s, "bea").blocking_recv().unwrap().unwrap();
    let set = |s: &Store, id: &str, attr: &'static str, value: &'static str| {
        s.update_with(ResourceKind::User, id, None, None, move |mut d| {
            d.insert(attr.into(), json!(value));
            Ok(d)
        })
    };
    let (release, held) = hold_writers(s);
    // Whether `bea`'s row could be locked from another connection while the batch's first write
    // (of `ann`) ran.
    let probe = {
        let (bea, store) = (bea.clone(), s.clone());
        move || -> bool {
            let mut c = store.read_conn().unwrap();
            let q = format!("SELECT 1 AS x FROM resources WHERE id = '{bea}' FOR UPDATE NOWAIT");
            #[derive(diesel::QueryableByName)]
            struct X {
                #[diesel(sql_type = Integer)]
                #[allow(dead_code)]
                x: i32,
            }
            diesel::sql_query(q).load::<X>(&mut *c).is_ok()
        }
    };
    let first: Answer<bool> = {
        let ann = ann.clone();
        s.submit_user_write(&ann.clone(), move |s| {
            let free = probe();
            set(s, &ann, "displayName", "Ann")?;
            Ok(free)
        })
        .unwrap()
    };
    let second: Answer<()> = {
        let bea = bea.clone();
        s.submit_user_write(&bea.clone(), move |s| {
            set(s, &bea, "title", "Lead").map(drop)
        })
        .unwrap()
    };
    let third: Answer<()> = {
        let ann = ann.clone();
        s.submit_user_write(&ann.clone(), move |s| {
            set(s, &ann, "title", "Engineer").map(drop)
        })
        .unwrap()
    };
    drop(release);
    released(held);
    let bea_was_free = first.blocking_recv().unwrap().unwrap();
    assert!(
        !bea_was_free,
        "bea's row was locked before the batch's first write ran"
    );
    second.blocking_recv().unwrap().unwrap();
    third.blocking_recv().unwrap().unwrap();
    // The holders' batches, then one batch for the three writes.
    let holders = s.writers() as u64;
    assert_eq!(stats(s), [2 + holders + 1, 0, 0]);
    let ann = s.get(ResourceKind::User, &ann, false).unwrap();
    assert_eq!(ann.doc["displayName"], json!("Ann"), "{:?}", ann.doc);
    assert_eq!(ann.doc["title"], json!("Engineer"), "{:?}", ann.doc);
    assert_eq!(ann.version, 3);
    let bea = s.get(ResourceKind::User, &bea, false).unwrap();
    assert_eq!((bea.doc["title"].clone(), bea.version), (json!("Lead"), 2));
    assert_eq!(chain_entries(s), 5);
}

/// A batch whose read ahead fails (here PostgreSQL refuses one write's id: U+0000 cannot be a
/// `jsonb` string) runs again without it: the write whose user could not be read fails alone,
/// with the client's error (400 `invalidValue`), and the other writes of the batch commit.
#[test]
fn batch_pg_a_failed_read_ahead_fails_only_the_write_it_was_for() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let ann = create(s, "ann").blocking_recv().unwrap().unwrap();
    let title = |id: String| {
        move |s: &Store| {
            s.update_with(ResourceKind::User, &id, None, None, |mut d| {
                d.insert("title".into(), json!("Lead"));
                Ok(d)
            })
            .map(drop)
        }
    };
    let (release, held) = hold_writers(s);
    let bad_id = "a\u{0}b".to_string();
    let bad: Answer<()> = s.submit_user_write(&bad_id, title(bad_id.clone())).unwrap();
    let good: Answer<()> = s.submit_user_write(&ann, title(ann.clone())).unwrap();
    drop(release);
    released(held);
    let bad = bad.blocking_recv().unwrap();
    assert!(
        matches!(
            bad,
            Err(HubError::Scim(scim_schema::Error::InvalidValue(_)))
        ),
        "{bad:?}"
    );
    good.blocking_recv().unwrap().unwrap();
    let ann = s.get(ResourceKind::User, &ann, false).unwrap();
    assert_eq!((ann.doc["title"].clone(), ann.version), (json!("Lead"), 2));
    assert_eq!(chain_entries(s), 2);
}

/// Concurrent first writes start one writer, not one each (a second, dropped at once, showed
/// as an extra `scimhub-writer` thread until it noticed).
#[test]
fn store_threads_start_once_under_concurrent_first_use() {
    let cell = std::sync::OnceLock::new();
    let starts = AtomicU32::new(0);
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                barrier.wait();
                let got = started(&cell, || {
                    starts.fetch_add(1, Ordering::SeqCst);
                    // Long enough for every other caller to arrive meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    Ok(7)
                });
                assert_eq!(*got.unwrap(), 7);
            });
        }
    });
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}
