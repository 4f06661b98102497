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
