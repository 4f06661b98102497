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
