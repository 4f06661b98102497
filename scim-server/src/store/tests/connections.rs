//! Connections: URL rules and concurrent SQLite writes.

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
