//! Connections: URL rules, concurrent SQLite writes, PostgreSQL connections the server closed.

use super::*;

#[test]
fn store_rejects_foreign_urls() {
    assert!(matches!(
        Store::open("host=localhost port=5432"),
        Err(HubError::Config(_))
    ));
}

#[test]
fn store_concurrent_sqlite_writes_never_fail() {
    let db = sqlite_db();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = db.store.clone();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let u = s
                        .create(
                            ResourceKind::User,
                            obj(json!({"userName": format!("t{t}-{i}")})),
                            None,
                        )
                        .unwrap();
                    s.update_with(ResourceKind::User, &u.id, None, None, |mut d| {
                        d.insert("title".into(), json!("x"));
                        Ok(d)
                    })
                    .unwrap();
                    s.get(ResourceKind::User, &u.id, true).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let page = db
        .store
        .search(
            ResourceKind::User,
            &SearchQuery {
                count: 0,
                ..Default::default()
            },
            &user_schema(),
        )
        .unwrap();
    assert_eq!(page.total_results, 480);
}

/// Two processes on one SQLite file (a CLI beside a running server): a write transaction that
/// reads first must not fail when the other commits between its read and its write. With a
/// deferred `BEGIN` the second writer's commit lands in that gap and the first one's write
/// fails at once with SQLITE_BUSY_SNAPSHOT; with `BEGIN IMMEDIATE` the second one waits.
#[test]
fn store_sqlite_write_that_reads_first_survives_another_process_writing() {
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;
    use std::sync::mpsc;
    let db = sqlite_db();
    let Cleanup::Files(path) = &db.cleanup else {
        unreachable!("sqlite_db is a file")
    };
    // A second Store: its own connections, as another process would have.
    let other = Store::open(&format!("sqlite://{}", path.display())).unwrap();
    db.store
        .create(ResourceKind::User, obj(json!({"userName": "first"})), None)
        .unwrap();
    let (committed_tx, committed) = mpsc::channel::<()>();
    let mut writer = None;
    db.store
        .write_tx(|c, _| {
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let before: Count =
                diesel::sql_query("SELECT COUNT(*) AS n FROM resources").get_result(c)?;
            assert!(before.n >= 1);
            let other = other.clone();
            let tx = committed_tx.clone();
            writer = Some(std::thread::spawn(move || {
                let r = other.create(ResourceKind::User, obj(json!({"userName": "second"})), None);
                let _ = tx.send(());
                r
            }));
            // Give the other writer its chance to commit in the gap (it cannot with the write
            // lock already held, and then this waits the whole second).
            let _ = committed.recv_timeout(std::time::Duration::from_secs(1));
            diesel::sql_query("UPDATE resources SET id = id WHERE 1 = 0").execute(c)?;
            Ok(())
        })
        .expect("the write that read first commits");
    writer
        .unwrap()
        .join()
        .unwrap()
        .expect("the other process's write waited and committed");
}

/// A PostgreSQL connection the server closed (a restart, an idle timeout, an administrator) is
/// replaced after at most one failed read, even when it answered a moment ago and so is handed
/// out without the checkout test (`conn::Liveness`).
#[test]
fn store_pg_connection_closed_by_the_server_is_replaced() {
    use diesel::sql_types::Integer;
    use diesel::RunQueryDsl;
    // One connection, so that the one terminated is the one the next read gets.
    let Some(db) = postgres_db_with(1) else {
        return;
    };
    let s = &db.store;
    let a = user(s, "still-here");
    let backend = || -> i32 {
        let mut c = s.read_conn().unwrap();
        diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
            .get_result(&mut *c)
            .unwrap()
    };
    let before = backend();
    let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").unwrap();
    let mut admin = diesel::pg::PgConnection::establish(&admin_url).unwrap();
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({before})"))
        .unwrap();
    // The first read may fail (the connection answered within the trusted second); the
    // connection is then discarded, and the next read runs on a new one.
    let _ = s.get(ResourceKind::User, &a.id, false);
    let again = s.get(ResourceKind::User, &a.id, false).unwrap();
    assert_eq!(again.id, a.id);
    assert_ne!(backend(), before);
}

/// `Store::read_here` reads through the thread's own connection: with the only pooled reader
/// held, reads inside it still answer (outside, the pool times out), each sees what committed
/// before it began, and a read nested in another takes the pool.
#[test]
fn store_sqlite_reads_here_use_the_thread_reader() {
    let path = std::env::temp_dir().join(format!("scimhub-local-{}.db", uuid::Uuid::new_v4()));
    let db = TestDb {
        store: Store::open_with(
            &format!("sqlite://{}", path.display()),
            StoreOptions {
                pool_size: 1,
                connection_timeout: std::time::Duration::from_millis(200),
                ..StoreOptions::default()
            },
        )
        .unwrap(),
        name: "sqlite".into(),
        cleanup: Cleanup::Files(path),
    };
    let s = &db.store;
    assert!(s.reads_in_place());
    assert!(!Store::open("sqlite::memory:").unwrap().reads_in_place());
    let a = s
        .create(ResourceKind::User, obj(json!({"userName": "a"})), None)
        .unwrap();
    let held = s.read_conn().unwrap();
    assert!(matches!(held, ReadConn::Pooled(_)), "outside: the pool");
    assert!(matches!(
        s.get(ResourceKind::User, &a.id, true),
        Err(HubError::Unavailable(_))
    ));
    let got = s
        .read_here(|s| s.get(ResourceKind::User, &a.id, true))
        .unwrap();
    assert_eq!(got.id, a.id);
    // A commit after the thread's reader was opened is seen by its next read.
    let b = s
        .create(ResourceKind::User, obj(json!({"userName": "b"})), None)
        .unwrap();
    let got = s
        .read_here(|s| s.get(ResourceKind::User, &b.id, false))
        .unwrap();
    assert_eq!(got.id, b.id);
    // Nested: the thread's reader is lent out, so the inner read asks the (held) pool.
    s.read_here(|s| {
        let outer = s.read_conn().unwrap();
        assert!(matches!(outer, ReadConn::Local(_)));
        assert!(matches!(
            s.get(ResourceKind::User, &a.id, false),
            Err(HubError::Unavailable(_))
        ));
        drop(outer);
        // Returned: the next read has it again.
        assert!(s.get(ResourceKind::User, &a.id, false).is_ok());
    });
    drop(held);
}

/// The thread's reader is kept between reads (its prepared statements with it): a connection
/// setting made on it in one read is there in the next.
#[test]
fn store_sqlite_thread_reader_is_kept_between_reads() {
    let db = sqlite_db();
    let s = &db.store;
    s.read_here(|s| {
        let mut c = s.read_conn().unwrap();
        c.batch_execute("PRAGMA cache_size = -1234").unwrap();
    });
    s.read_here(|s| {
        let mut c = s.read_conn().unwrap();
        assert!(matches!(c, ReadConn::Local(_)));
        assert_eq!(
            scalar(&mut c, "SELECT cache_size FROM pragma_cache_size"),
            -1234
        );
    });
}

/// One integer out of `sql` on `c`.
fn scalar(c: &mut DbConnection, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!("SELECT CAST(({sql}) AS BIGINT) AS n"))
        .get_result::<Row>(c)
        .unwrap()
        .n
}

/// A store on a fresh SQLite file whose threads' readers keep a snapshot for `keep`, and a
/// connection to the same file that is not the store's, standing in for another process (its
/// statements are not counted: `conn::StatementCount`), with a table `probe` to count rows of.
fn kept_snapshot_db(keep: std::time::Duration) -> (TestDb, diesel::SqliteConnection) {
    let path = std::env::temp_dir().join(format!("scimhub-snap-{}.db", uuid::Uuid::new_v4()));
    let store = Store::open_with(
        &format!("sqlite://{}", path.display()),
        StoreOptions {
            reader_snapshot: keep,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let mut other = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    other
        .batch_execute("CREATE TABLE probe (x INTEGER); INSERT INTO probe VALUES (1);")
        .unwrap();
    let db = TestDb {
        store,
        name: "sqlite".into(),
        cleanup: Cleanup::Files(path),
    };
    (db, other)
}

/// Creates Users `{prefix}0` .. `{prefix}{n-1}`.
fn create_users(s: &Store, prefix: &str, n: usize) {
    for i in 0..n {
        s.create(
            ResourceKind::User,
            obj(json!({"userName": format!("{prefix}{i}")})),
            None,
        )
        .unwrap();
    }
}

fn probe_rows(s: &Store) -> i64 {
    s.read_here(|s| scalar(&mut s.read_conn().unwrap(), "SELECT count(*) FROM probe"))
}

/// A thread's reader keeps its read transaction between reads (sparing SQLite's lock and unlock
/// of a WAL read mark per read): what another process commits is not seen while the snapshot
/// is kept, but a write of this process is seen by the very next read, however young the
/// snapshot; and the snapshot is not kept longer than `reader_snapshot`.
#[test]
fn store_sqlite_thread_reader_keeps_its_snapshot_until_this_process_writes() {
    let (db, mut other) = kept_snapshot_db(std::time::Duration::from_secs(600));
    let s = &db.store;
    assert_eq!(probe_rows(s), 1);
    other.batch_execute("INSERT INTO probe VALUES (2)").unwrap();
    assert_eq!(probe_rows(s), 1, "the kept snapshot is read");
    // A write through the store (any connection of this process that can write) ends it.
    let u = s
        .create(ResourceKind::User, obj(json!({"userName": "snap"})), None)
        .unwrap();
    assert_eq!(probe_rows(s), 2);
    let got = s
        .read_here(|s| s.get(ResourceKind::User, &u.id, false))
        .unwrap();
    assert_eq!(got.id, u.id);
    // A read on the pool (not a thread's reader) counts too: it may have been a write.
    other.batch_execute("INSERT INTO probe VALUES (3)").unwrap();
    assert_eq!(probe_rows(s), 2);
    s.get(ResourceKind::User, &u.id, false).unwrap();
    assert_eq!(probe_rows(s), 3);

    let (db, mut other) = kept_snapshot_db(std::time::Duration::from_millis(20));
    let s = &db.store;
    assert_eq!(probe_rows(s), 1);
    other.batch_execute("INSERT INTO probe VALUES (2)").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(probe_rows(s), 2, "older than reader_snapshot: a new one");

    let (db, mut other) = kept_snapshot_db(std::time::Duration::ZERO);
    let s = &db.store;
    assert_eq!(probe_rows(s), 1);
    other.batch_execute("INSERT INTO probe VALUES (2)").unwrap();
    assert_eq!(probe_rows(s), 2, "zero: every read its own transaction");
}

/// A thread that stops reading does not pin the WAL with its kept snapshot: the sweeper ends
/// it once it is older than `reader_snapshot`, and a checkpoint can then restart the WAL.
#[test]
fn store_sqlite_idle_thread_reader_releases_its_snapshot() {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Checkpoint {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        busy: i32,
    }
    let truncate = |c: &mut diesel::SqliteConnection| {
        diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
            .get_result::<Checkpoint>(c)
            .unwrap()
            .busy
    };
    let (db, mut other) = kept_snapshot_db(std::time::Duration::from_secs(2));
    let s = &db.store;
    assert_eq!(probe_rows(s), 1);
    other.batch_execute("INSERT INTO probe VALUES (2)").unwrap();
    assert_eq!(truncate(&mut other), 1, "the kept snapshot holds the WAL");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while truncate(&mut other) != 0 {
        assert!(std::time::Instant::now() < deadline, "never released");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(probe_rows(s), 2);
}

/// A thread's reader cannot write: a write would hold SQLite's write lock for as long as the
/// reader keeps its transaction.
#[test]
fn store_sqlite_thread_reader_is_read_only() {
    let (db, _other) = kept_snapshot_db(std::time::Duration::from_secs(600));
    db.store.read_here(|s| {
        let mut c = s.read_conn().unwrap();
        assert!(matches!(c, ReadConn::Local(_)));
        assert!(c.batch_execute("INSERT INTO probe VALUES (9)").is_err());
    });
    assert_eq!(probe_rows(&db.store), 1);
}

/// Caches filled from what a thread's reader reads (the unfiltered count, the id ranks) are
/// not filled from a kept snapshot that predates a commit: a create committed (and answered)
/// in the middle of another request's reads is in the count and the ranks that request fills,
/// and so in every later list and deep page.
#[test]
fn store_sqlite_caches_are_not_filled_from_an_older_kept_snapshot() {
    let (db, _other) = kept_snapshot_db(std::time::Duration::from_secs(600));
    let s = &db.store;
    create_users(s, "u", 3);
    let schema = user_schema();
    let count_only = SearchQuery {
        start_index: 1,
        count: 0,
        ..Default::default()
    };
    let create_meanwhile = |name: &str| {
        std::thread::scope(|t| {
            t.spawn(|| {
                s.create(ResourceKind::User, obj(json!({"userName": name})), None)
                    .unwrap()
            });
        });
    };
    // The count: filled in a request whose first read fixed its snapshot before the create.
    let in_request = s.read_here(|s| {
        let mut c = s.read_conn().unwrap();
        assert!(matches!(c, ReadConn::Local(_)));
        scalar(&mut c, "SELECT count(*) FROM resources");
        create_meanwhile("late");
        let (base, _) = super::super::search::search_base(ResourceKind::User, &count_only, &schema);
        s.count_of(&mut c, ResourceKind::User, &count_only, &base)
            .unwrap()
    });
    assert_eq!(in_request, 4);
    let later = s.read_here(|s| {
        s.search(ResourceKind::User, &count_only, &schema)
            .unwrap()
            .total_results
    });
    assert_eq!(later, 4, "the cached count");

    // The ranks: loaded for the first time in such a request.
    s.read_here(|s| {
        let mut c = s.read_conn().unwrap();
        scalar(&mut c, "SELECT count(*) FROM resources");
        create_meanwhile("later");
        s.id_ranks()
            .unwrap()
            .seek(&mut c, ResourceKind::User, 1, false, true)
            .unwrap();
    });
    let deep = SearchQuery {
        start_index: 5,
        count: 10,
        ..Default::default()
    };
    let page = s.read_here(|s| s.search(ResourceKind::User, &deep, &schema).unwrap());
    assert_eq!(page.total_results, 5);
    assert_eq!(
        page.resources.len(),
        1,
        "the ranks hold the user created meanwhile"
    );
}

/// A kept snapshot that a commit made stale while it was in use is ended when the read returns,
/// not kept until the next read: a busy worker otherwise always holds a WAL read mark, and SQLite
/// starts the WAL over only while none is held.
#[test]
fn store_sqlite_stale_kept_snapshot_is_ended_when_its_read_returns() {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Checkpoint {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        busy: i32,
    }
    let (db, mut other) = kept_snapshot_db(std::time::Duration::from_secs(600));
    let s = &db.store;
    let truncate = |c: &mut diesel::SqliteConnection| {
        diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
            .get_result::<Checkpoint>(c)
            .unwrap()
            .busy
    };
    // Kept while nothing is written: it holds the WAL.
    assert_eq!(probe_rows(s), 1);
    other.batch_execute("INSERT INTO probe VALUES (2)").unwrap();
    assert_eq!(truncate(&mut other), 1);
    // A write of this process during the next read: released as that read returns.
    s.read_here(|s| {
        let mut c = s.read_conn().unwrap();
        scalar(&mut c, "SELECT count(*) FROM probe");
        std::thread::scope(|t| {
            t.spawn(|| {
                s.create(ResourceKind::User, obj(json!({"userName": "w"})), None)
                    .unwrap()
            });
        });
    });
    // The background checkpointer may hold the checkpoint for a moment after the create; the
    // kept snapshot, were it not ended, would hold the WAL for the test's whole length.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while truncate(&mut other) != 0 {
        assert!(std::time::Instant::now() < deadline, "the WAL stays held");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(probe_rows(s), 2);
}

/// An unfiltered deep page counts as bounded (answered on the worker) only once the id ranks
/// can seek: not before their first load, which scans every id, and not for a type holding an
/// id of another form, whose pages walk with `OFFSET`. Either goes to the blocking pool.
#[test]
fn store_sqlite_deep_pages_are_bounded_only_while_ranks_seek() {
    let (db, mut other) = kept_snapshot_db(std::time::Duration::ZERO);
    let s = &db.store;
    create_users(s, "u", 3);
    let schema = user_schema();
    let deep = SearchQuery {
        start_index: BOUNDED_MAX_OFFSET + 2,
        count: 10,
        ..Default::default()
    };
    let shallow = SearchQuery {
        start_index: 2,
        count: 10,
        ..Default::default()
    };
    assert!(s.search_is_bounded(ResourceKind::User, &shallow, &schema));
    assert!(
        !s.search_is_bounded(ResourceKind::User, &deep, &schema),
        "not before the ranks are loaded"
    );
    let page = s.search(ResourceKind::User, &deep, &schema).unwrap();
    assert_eq!((page.total_results, page.resources.len()), (3, 0));
    assert!(
        s.search_is_bounded(ResourceKind::User, &deep, &schema),
        "the deep page loaded them"
    );

    // A row written with an id the store never assigns (another tool, an older version).
    other
        .batch_execute("UPDATE resources SET id = 'legacy-1' WHERE user_name_folded = 'u1'")
        .unwrap();
    s.id_ranks().unwrap().reset();
    let page = s.search(ResourceKind::User, &shallow, &schema).unwrap();
    assert_eq!(page.resources.len(), 2);
    let page = s.search(ResourceKind::User, &deep, &schema).unwrap();
    assert_eq!((page.total_results, page.resources.len()), (3, 0));
    assert!(
        !s.search_is_bounded(ResourceKind::User, &deep, &schema),
        "an id of another form: OFFSET"
    );
    assert!(s.search_is_bounded(ResourceKind::User, &shallow, &schema));
}

/// On an HTTP worker (`read_here`) a list never scans a type's ids to load its ranks: a
/// shallow page walks, and a deep page whose ranks were dropped meanwhile (another process
/// wrote) answers `NotHere`, which sends it back to the blocking pool; there it loads them.
#[test]
fn store_sqlite_worker_never_loads_ranks() {
    let (db, _other) = kept_snapshot_db(std::time::Duration::ZERO);
    let s = &db.store;
    create_users(s, "w", 3);
    let schema = user_schema();
    let page = |start_index: u64| SearchQuery {
        start_index,
        count: 10,
        ..Default::default()
    };
    let deep = page(BOUNDED_MAX_OFFSET + 2);
    let shallow = s.read_here(|s| s.search(ResourceKind::User, &page(2), &schema).unwrap());
    assert_eq!(shallow.resources.len(), 2);
    assert!(
        !s.id_ranks().unwrap().ready(ResourceKind::User),
        "the shallow page walked"
    );
    assert!(matches!(
        s.read_here(|s| s.search(ResourceKind::User, &deep, &schema)),
        Err(HubError::NotHere)
    ));
    assert!(!s.id_ranks().unwrap().ready(ResourceKind::User));
    let on_pool = s.search(ResourceKind::User, &deep, &schema).unwrap();
    assert_eq!((on_pool.total_results, on_pool.resources.len()), (3, 0));
    assert!(s.id_ranks().unwrap().ready(ResourceKind::User));
    let here = s.read_here(|s| s.search(ResourceKind::User, &deep, &schema).unwrap());
    assert_eq!(
        here.total_results, 3,
        "loaded: the deep page seeks on the worker"
    );
}

/// A PostgreSQL on this machine is reached without TLS when the URL says nothing about it
/// (libpq's `prefer` would negotiate TLS over loopback), and with TLS when the URL asks.
#[test]
fn store_pg_on_this_machine_is_reached_without_tls_unless_asked() {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Tls {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        server: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        this_session: bool,
    }
    const SQL: &str = "SELECT current_setting('ssl') = 'on' AS server, \
        coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS this_session";
    let Some(db) = postgres_db() else {
        return;
    };
    let url = db.postgres_url();
    if std::env::var_os("PGSSLMODE").is_some() || !url.contains("@127.0.0.1") {
        eprintln!("skipped: PGSSLMODE set, or the test database is not on 127.0.0.1");
        return;
    }
    let tls = db
        .store
        .write_tx(|c, _| Ok(diesel::sql_query(SQL).get_result::<Tls>(c)?))
        .unwrap();
    if !tls.server {
        eprintln!("skipped: the server has ssl = off, every session is plain");
        return;
    }
    assert!(!tls.this_session, "the pool's session negotiated TLS");
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut asked = diesel::PgConnection::establish(&format!("{url}{sep}sslmode=require")).unwrap();
    let tls = diesel::sql_query(SQL)
        .get_result::<Tls>(&mut asked)
        .unwrap();
    assert!(tls.this_session, "sslmode=require in the URL is honoured");
}
