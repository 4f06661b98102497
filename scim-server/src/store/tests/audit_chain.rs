//! The audit chain: SCIM writes are chained, and every kind of tampering with `engine_audit`
//! (edit, delete, insert, reorder, truncate) is the first finding of `verify`, on each backend.

use super::*;
use crate::store::audit_chain::{
    self, entry_hash, Anchor, EntryFields, Finding, VerifyOptions, VerifyReport,
};
use diesel::connection::SimpleConnection;

/// A store with `n` User creates by client `okta` (one chained entry each).
fn written(db: &TestDb, n: usize) {
    for i in 0..n {
        let _scope = audit_chain::request_scope(&format!("req-{i}"));
        db.store
            .create(
                ResourceKind::User,
                obj(json!({"userName": format!("u{i}"), "password": "s3cret-value"})),
                Some("okta"),
            )
            .unwrap();
    }
}

fn sql(db: &TestDb, statements: &str) {
    let mut c = db.store.inner.write.get().unwrap();
    c.batch_execute(statements).unwrap();
}

fn verify_with(db: &TestDb, o: &VerifyOptions) -> VerifyReport {
    let mut c = db.store.read_conn().unwrap();
    audit_chain::verify(&mut c, o).unwrap()
}

fn verify(db: &TestDb) -> VerifyReport {
    verify_with(db, &VerifyOptions::default())
}

fn head(db: &TestDb) -> audit_chain::Head {
    let mut c = db.store.read_conn().unwrap();
    audit_chain::head(&mut c).unwrap()
}

fn row(db: &TestDb, seq: i64) -> audit_chain::ChainRow {
    let mut c = db.store.read_conn().unwrap();
    audit_chain::export_page(
        &mut c,
        &audit_chain::ExportFilter {
            after_seq: Some(seq - 1),
            to_seq: Some(seq),
            ..Default::default()
        },
        1,
    )
    .unwrap()
    .remove(0)
}

/// Renumbers entries with `seq >= from` by `by`, in two steps (a unique index is checked per row).
fn renumber(db: &TestDb, from: i64, by: i64) {
    sql(
        db,
        &format!(
            "UPDATE engine_audit SET seq = -seq WHERE seq >= {from}; \
             UPDATE engine_audit SET seq = -seq + ({by}) WHERE seq < 0"
        ),
    );
}

#[test]
fn scim_writes_are_chained_with_client_request_and_changed_names() {
    each_backend(|db| {
        written(db, 6);
        let r = verify(db);
        assert!(r.ok, "{}: {:?}", db.name, r.finding);
        assert_eq!(r.checked, 6);
        assert_eq!(head(db).seq, 6);
        let e = row(db, 2);
        assert_eq!(e.actor, "okta");
        assert_eq!(e.action, "scim.user.create");
        let detail: Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(detail["request"], "req-1");
        assert_eq!(detail["resourceType"], "User");
        let changed = detail["changed"].to_string();
        assert!(changed.contains("password") && changed.contains("userName"));
        assert!(!e.detail.contains("s3cret"), "{}", e.detail);
        assert_eq!(e.prev_hash, row(db, 1).hash);
    });
}

/// On PostgreSQL the server hashes appended entries itself (one round trip): its bytes must be
/// exactly the canonical form's, for multi-byte text and both connector forms too, or `verify`
/// (which hashes in Rust) finds the entry edited.
#[test]
fn appended_entries_hash_the_same_on_every_backend() {
    each_backend(|db| {
        let detail =
            json!({"zeta": "Zoë Ångström 日本 \u{1F600}", "alpha": [1, {"b": null, "a": "\"q\""}]});
        for (i, connector) in [None, Some("gïthub"), Some("")].into_iter().enumerate() {
            let mut c = db.store.inner.write.get().unwrap();
            let seq = audit_chain::append(
                &mut c,
                &audit_chain::NewEntry {
                    at: chrono::Utc::now(),
                    actor: "Zoë (zoe@example.com)",
                    user_id: &format!("ü-{i}"),
                    connector,
                    action: "grant.approve",
                    outcome: "ok",
                    detail: &detail,
                },
            )
            .unwrap()
            .expect("appended outside a batch");
            assert_eq!(seq, i as i64 + 1, "{}", db.name);
            let e = row(db, seq);
            let prev_hash = e.prev_hash.clone().unwrap();
            let expected = entry_hash(&EntryFields {
                seq,
                prev_hash: &prev_hash,
                at: &e.at,
                actor: &e.actor,
                user_id: &e.user_id,
                connector: e.connector.as_deref(),
                action: &e.action,
                outcome: &e.outcome,
                detail: &e.detail,
            });
            assert_eq!(
                e.hash.as_deref(),
                Some(expected.as_str()),
                "{}: {seq}",
                db.name
            );
        }
        let r = verify(db);
        assert!(r.ok, "{}: {:?}", db.name, r.finding);
        assert_eq!((r.checked, head(db).seq), (3, 3), "{}", db.name);
    });
}

#[test]
fn tokens_issued_and_revoked_are_chained_without_their_secret() {
    each_backend(|db| {
        let t = db
            .store
            .insert_token(
                "okta",
                "hash-of-the-secret",
                "pfx",
                &["scim:write".into()],
                None,
            )
            .unwrap();
        db.store.revoke_token("okta").unwrap();
        let a = row(db, 1);
        assert_eq!(a.action, "token.issue");
        assert!(a.detail.contains(&t.id) && !a.detail.contains("hash-of-the-secret"));
        assert_eq!(row(db, 2).action, "token.revoke");
        assert!(verify(db).ok, "{}", db.name);
    });
}

#[test]
fn an_edited_entry_is_the_first_finding() {
    each_backend(|db| {
        written(db, 6);
        sql(
            db,
            "UPDATE engine_audit SET actor = 'mallory' WHERE seq = 3",
        );
        assert_eq!(
            verify(db).finding,
            Some(Finding::Edited { seq: 3 }),
            "{}",
            db.name
        );
    });
}

#[test]
fn an_edited_and_rehashed_entry_is_found_at_its_successor() {
    each_backend(|db| {
        written(db, 6);
        let e = row(db, 3);
        let forged = entry_hash(&EntryFields {
            seq: 3,
            prev_hash: e.prev_hash.as_deref().unwrap(),
            at: &e.at,
            actor: "mallory",
            user_id: &e.user_id,
            connector: e.connector.as_deref(),
            action: &e.action,
            outcome: &e.outcome,
            detail: &e.detail,
        });
        sql(
            db,
            &format!("UPDATE engine_audit SET actor = 'mallory', hash = '{forged}' WHERE seq = 3"),
        );
        assert_eq!(
            verify(db).finding,
            Some(Finding::EditedRehashed { seq: 3 }),
            "{}",
            db.name
        );
    });
}

#[test]
fn a_deleted_entry_is_found_with_or_without_renumbering() {
    each_backend(|db| {
        written(db, 6);
        sql(db, "DELETE FROM engine_audit WHERE seq = 3");
        assert_eq!(
            verify(db).finding,
            Some(Finding::Deleted { from: 3, to: 3 }),
            "{}",
            db.name
        );
        renumber(db, 4, -1);
        assert_eq!(
            verify(db).finding,
            Some(Finding::Deleted { from: 3, to: 3 }),
            "{} renumbered",
            db.name
        );
    });
}

#[test]
fn an_inserted_entry_is_found_even_when_correctly_hashed() {
    each_backend(|db| {
        written(db, 6);
        // A forged entry slipped in as seq 3, linked to entry 2 and hashed; later ones renumbered.
        let before = row(db, 2);
        renumber(db, 3, 1);
        let at = "2026-01-01T00:00:00.000000Z";
        let prev = before.hash.unwrap();
        let hash = entry_hash(&EntryFields {
            seq: 3,
            prev_hash: &prev,
            at,
            actor: "mallory",
            user_id: "x",
            connector: None,
            action: "scim.user.create",
            outcome: "ok",
            detail: "{}",
        });
        sql(
            db,
            &format!(
                "INSERT INTO engine_audit (seq, at, actor, user_id, connector, action, outcome, \
                 detail, prev_hash, hash) VALUES (3, '{at}', 'mallory', 'x', NULL, \
                 'scim.user.create', 'ok', '{{}}', '{prev}', '{hash}')"
            ),
        );
        assert_eq!(
            verify(db).finding,
            Some(Finding::Inserted { seq: 3 }),
            "{}",
            db.name
        );
    });
}

#[test]
fn a_row_added_outside_the_chain_is_found() {
    each_backend(|db| {
        written(db, 3);
        sql(
            db,
            "INSERT INTO engine_audit (at, actor, user_id, action, outcome, detail) \
             VALUES ('2026-01-01T00:00:00.000000Z', 'mallory', 'x', 'grant', 'ok', '{}')",
        );
        assert!(
            matches!(verify(db).finding, Some(Finding::Unchained { .. })),
            "{}",
            db.name
        );
    });
}

#[test]
fn reordered_entries_are_found() {
    each_backend(|db| {
        written(db, 6);
        sql(
            db,
            "UPDATE engine_audit SET seq = -1 WHERE seq = 3; \
             UPDATE engine_audit SET seq = 3 WHERE seq = 4; \
             UPDATE engine_audit SET seq = 4 WHERE seq = -1",
        );
        assert_eq!(
            verify(db).finding,
            Some(Finding::Reordered { seq: 3 }),
            "{}",
            db.name
        );
    });
}

#[test]
fn a_truncated_tail_is_found_by_the_head_row_and_by_an_anchor() {
    each_backend(|db| {
        written(db, 6);
        let anchor = head(db);
        let anchors = vec![Anchor {
            seq: anchor.seq,
            hash: anchor.hash.clone(),
        }];
        sql(db, "DELETE FROM engine_audit WHERE seq >= 5");
        assert_eq!(
            verify(db).finding,
            Some(Finding::Truncated {
                last: 4,
                expected: 6
            }),
            "{}",
            db.name
        );
        // The head row moved back too: only the anchor still knows.
        let h4 = row(db, 4).hash.unwrap();
        sql(
            db,
            &format!("UPDATE engine_audit_head SET seq = 4, hash = '{h4}' WHERE id = 1"),
        );
        assert!(verify(db).ok, "{}", db.name);
        let r = verify_with(
            db,
            &VerifyOptions {
                anchors,
                ..Default::default()
            },
        );
        assert_eq!(
            r.finding,
            Some(Finding::Truncated {
                last: 4,
                expected: 6
            }),
            "{}",
            db.name
        );
    });
}

#[test]
fn a_rewritten_chain_fails_its_anchor() {
    each_backend(|db| {
        written(db, 4);
        let h = head(db);
        let anchors = vec![Anchor {
            seq: h.seq,
            hash: h.hash,
        }];
        // Rewrite entry 4 completely (a consistent chain, but not the one anchored).
        let e = row(db, 4);
        let forged = entry_hash(&EntryFields {
            seq: 4,
            prev_hash: e.prev_hash.as_deref().unwrap(),
            at: &e.at,
            actor: "mallory",
            user_id: &e.user_id,
            connector: None,
            action: &e.action,
            outcome: &e.outcome,
            detail: &e.detail,
        });
        sql(
            db,
            &format!(
                "UPDATE engine_audit SET actor = 'mallory', hash = '{forged}' WHERE seq = 4; \
                 UPDATE engine_audit_head SET hash = '{forged}' WHERE id = 1"
            ),
        );
        assert!(verify(db).ok, "{}", db.name);
        let r = verify_with(
            db,
            &VerifyOptions {
                anchors,
                ..Default::default()
            },
        );
        assert!(
            matches!(r.finding, Some(Finding::AnchorMismatch { seq: 4, .. })),
            "{}: {:?}",
            db.name,
            r.finding
        );
    });
}

#[test]
fn verify_checks_a_range() {
    each_backend(|db| {
        written(db, 8);
        sql(
            db,
            "UPDATE engine_audit SET actor = 'mallory' WHERE seq = 7",
        );
        let range = |from, to| VerifyOptions {
            from: Some(from),
            to: Some(to),
            ..Default::default()
        };
        let r = verify_with(db, &range(2, 5));
        assert!(r.ok, "{}: {:?}", db.name, r.finding);
        assert_eq!((r.first, r.last, r.checked), (Some(2), Some(5), 4));
        assert_eq!(
            verify_with(db, &range(5, 8)).finding,
            Some(Finding::Edited { seq: 7 })
        );
        // Anchors in a range: the entry the walk starts after is checked against its stored
        // hash; those outside the range are counted, not silently dropped.
        let anchor = |seq: i64, hash: String| Anchor { seq, hash };
        let with_anchors = |anchors| VerifyOptions {
            anchors,
            ..range(3, 5)
        };
        let r = verify_with(
            db,
            &with_anchors(vec![
                anchor(1, row(db, 1).hash.expect("hash")),
                anchor(2, row(db, 2).hash.expect("hash")),
                anchor(4, row(db, 4).hash.expect("hash")),
                anchor(6, "beyond --to".into()),
            ]),
        );
        assert!(r.ok, "{}: {:?}", db.name, r.finding);
        assert_eq!((r.anchors_checked, r.anchors_outside_range), (2, 2));
        assert!(matches!(
            verify_with(db, &with_anchors(vec![anchor(2, "rewritten".into())])).finding,
            Some(Finding::AnchorMismatch { seq: 2, .. })
        ));
    });
}

#[test]
fn pruning_leaves_a_signed_checkpoint_and_the_rest_still_verifies() {
    each_backend(|db| {
        written(db, 5);
        let key = b"checkpoint-key-for-tests".to_vec();
        let cp = {
            let mut c = db.store.inner.write.get().unwrap();
            c.transaction::<_, HubError, _>(|c| {
                audit_chain::prune(
                    c,
                    Utc::now() + chrono::Duration::days(1),
                    &key,
                    "test",
                    Utc::now(),
                )
            })
            .unwrap()
            .unwrap()
        };
        // Everything but the newest entry went; the pruning itself is entry 6.
        assert_eq!((cp.seq, cp.pruned), (4, 4));
        assert_eq!(head(db).seq, 6);
        let with_key = VerifyOptions {
            checkpoint_key: Some(key.clone()),
            ..Default::default()
        };
        let r = verify_with(db, &with_key);
        assert!(r.ok, "{}: {:?}", db.name, r.finding);
        assert!(r.checkpoint_signature_checked);
        assert_eq!((r.first, r.checked), (Some(5), 2));
        let wrong = VerifyOptions {
            checkpoint_key: Some(b"another key".to_vec()),
            ..Default::default()
        };
        assert_eq!(
            verify_with(db, &wrong).finding,
            Some(Finding::CheckpointForged { seq: 4 })
        );
        // Without the key the checkpoint proves nothing, so the walk may not start there.
        assert_eq!(
            verify_with(db, &VerifyOptions::default()).finding,
            Some(Finding::CheckpointUnverifiable { seq: 4 })
        );
        // Anchors of pruned entries are said to be pruned, not counted as checked.
        let anchored = VerifyOptions {
            anchors: vec![
                Anchor {
                    seq: 2,
                    hash: "whatever was anchored".into(),
                },
                Anchor {
                    seq: 6,
                    hash: head(db).hash,
                },
            ],
            ..with_key.clone()
        };
        let r = verify_with(db, &anchored);
        assert!(r.ok, "{}: {:?}", db.name, r.finding);
        assert_eq!((r.anchors_checked, r.anchors_pruned), (1, 1));
        // Deleting the first remaining entry is still found.
        sql(db, "DELETE FROM engine_audit WHERE seq = 5");
        assert_eq!(
            verify_with(db, &with_key).finding,
            Some(Finding::Deleted { from: 5, to: 5 })
        );
    });
}

#[test]
fn rows_from_before_the_chain_are_chained_once_at_open() {
    let db = sqlite_db();
    let url = match &db.cleanup {
        Cleanup::Files(p) => format!("sqlite://{}", p.display()),
        Cleanup::Postgres { .. } => unreachable!(),
    };
    sql(
        &db,
        "INSERT INTO engine_audit (at, actor, user_id, action, outcome, detail) VALUES \
         ('2025-01-01T00:00:00.000000Z', 'hub', 'u', 'plan', 'ok', '{}'), \
         ('2025-01-02T00:00:00.000000Z', 'hub', 'u', 'plan', 'ok', '{\"a\": 1}')",
    );
    assert!(matches!(
        verify(&db).finding,
        Some(Finding::Unchained { .. })
    ));
    let reopened = Store::open(&url).unwrap();
    let mut c = reopened.read_conn().unwrap();
    let r = audit_chain::verify(&mut c, &VerifyOptions::default()).unwrap();
    assert!(r.ok, "{:?}", r.finding);
    assert_eq!(r.checked, 2);
}

#[test]
fn concurrent_writers_on_postgres_do_not_fork_the_chain() {
    let Some(db) = postgres_db() else { return };
    let store = db.store.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let _scope = audit_chain::request_scope(&format!("t{t}-{i}"));
                    store
                        .create(
                            ResourceKind::User,
                            obj(json!({"userName": format!("w{t}-{i}")})),
                            Some(&format!("client-{t}")),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = verify(&db);
    assert!(r.ok, "{:?}", r.finding);
    assert_eq!((r.checked, head(&db).seq), (80, 80));
}

/// The audit chain's cost, for the report (no timed assertion): SCIM creates (each with its
/// chain entry), bare appends, and `verify` over `AUDIT_BENCH_ENTRIES` entries (default
/// 1,000,000) in the SQLite file `AUDIT_BENCH_DB` (kept, for `scimhub audit verify` timing).
/// `cargo test -p scim-server --lib store::tests::audit_chain::bench -- --ignored --nocapture`
#[test]
#[ignore]
#[allow(clippy::print_stdout)]
fn bench_append_and_verify() {
    use std::time::Instant;
    let db = sqlite_db();
    let n = 2000;
    let t = Instant::now();
    written(&db, n);
    let per_create = t.elapsed() / n as u32;
    let t = Instant::now();
    for _ in 0..n {
        let mut c = db.store.inner.write.get().unwrap();
        c.transaction::<_, HubError, _>(|c| {
            audit_chain::append(
                c,
                &audit_chain::NewEntry {
                    at: Utc::now(),
                    actor: "bench",
                    user_id: "u",
                    connector: None,
                    action: "scim.user.create",
                    outcome: "ok",
                    detail: &json!({"resourceType": "User", "id": "x", "changed": ["userName"]}),
                },
            )
        })
        .unwrap();
    }
    let per_append_tx = t.elapsed() / n as u32;
    println!("SQLite: create with its entry {per_create:?}; one append in its own transaction {per_append_tx:?}");

    let entries: i64 = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let path = std::env::var("AUDIT_BENCH_DB").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("scimhub-audit-bench.db")
            .display()
            .to_string()
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let big = Store::open(&format!("sqlite://{path}")).unwrap();
    let t = Instant::now();
    let detail = json!({"resourceType": "User", "id": "0190c0de-0000-7000-8000-000000000000",
        "request": "0190c0de-0000-7000-8000-000000000001", "changed": ["active", "title"]});
    let mut done = 0;
    while done < entries {
        let mut c = big.inner.write.get().unwrap();
        c.transaction::<_, HubError, _>(|c| {
            for _ in 0..10_000.min(entries - done) {
                audit_chain::append(
                    c,
                    &audit_chain::NewEntry {
                        at: Utc::now(),
                        actor: "okta",
                        user_id: "0190c0de-0000-7000-8000-000000000000",
                        connector: None,
                        action: "scim.user.update",
                        outcome: "ok",
                        detail: &detail,
                    },
                )?;
            }
            Ok(())
        })
        .unwrap();
        done += 10_000.min(entries - done);
    }
    println!("appended {entries} entries in {:?}", t.elapsed());
    let t = Instant::now();
    let mut c = big.read_conn().unwrap();
    let r = audit_chain::verify(&mut c, &VerifyOptions::default()).unwrap();
    assert!(r.ok);
    println!(
        "verify over {} entries: {:?} (database {path})",
        r.checked,
        t.elapsed()
    );
}

/// The canonical JSON of the chain's first version, kept as the reference: keys sorted, each
/// key and scalar written by serde_json through a `Value`. The writer in use must produce the
/// same bytes for every value, or entries written before it would no longer verify.
fn reference_canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        reference_canonical(&m[k])
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(reference_canonical)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[\\x00-\\x7f\"\\\\]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[\\x00-\\x7fé日\"\\\\]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn canonical_json_is_byte_for_byte_the_first_versions(v in arb_json()) {
        proptest::prop_assert_eq!(audit_chain::canonical_json(&v), reference_canonical(&v));
    }
}

/// A write that asks for its appends last holds them back to its end: while its body runs the
/// head has not moved (so the chain head is not locked while the body goes on locking rows),
/// and at commit its entries are in the chain in the order they were made, the SCIM write's
/// own entry after its body's, and the chain verifies.
#[test]
fn a_write_appending_last_holds_its_entries_to_its_end() {
    each_backend(|db| {
        let s = &db.store;
        let ann = s
            .create(
                ResourceKind::User,
                obj(json!({"userName": "ann"})),
                Some("okta"),
            )
            .unwrap()
            .id;
        let before = head(db);
        let entry = |outcome: &'static str| crate::store::audit::AuditEntry {
            at: chrono::Utc::now(),
            actor: "test",
            user_id: "u",
            connector: None,
            action: "appends_last",
            outcome,
            detail: json!({}),
        };
        s.write_tx_appending_last(|c, changes| {
            crate::store::audit::append(c, &entry("first"))?;
            assert_eq!(audit_chain::head(c)?.seq, before.seq, "{}", db.name);
            s.update_with_in(c, changes, ResourceKind::User, &ann, |mut d| {
                d.insert("title".into(), json!("late"));
                Ok(d)
            })?;
            crate::store::audit::append(c, &entry("second"))?;
            assert_eq!(audit_chain::head(c)?.seq, before.seq, "{}", db.name);
            Ok(())
        })
        .unwrap();
        assert_eq!(head(db).seq, before.seq + 3, "{}", db.name);
        let actions: Vec<String> = (before.seq + 1..=before.seq + 3)
            .map(|seq| {
                let r = row(db, seq);
                format!("{}:{}", r.action, r.outcome)
            })
            .collect();
        assert_eq!(
            actions[..2],
            ["appends_last:first", "appends_last:second"],
            "{}",
            db.name
        );
        assert!(actions[2].starts_with("scim."), "{actions:?}");
        assert!(verify(db).ok, "{}", db.name);
    });
}

/// A checkpoint written by hand (nobody pruned) past a deleted history: without the key it is
/// not trusted, so the anchors of the deleted entries are not skipped over silently.
#[test]
fn a_checkpoint_nobody_signed_does_not_hide_a_deleted_history() {
    each_backend(|db| {
        written(db, 6);
        let h = head(db);
        let second = row(db, 2).hash.expect("chained");
        sql(
            db,
            &format!(
                "INSERT INTO engine_audit_checkpoints (seq, hash, at, pruned, mac) \
                 VALUES ({}, '{}', '2026-12-07T04:00:00.000000Z', {}, 'x'); \
                 DELETE FROM engine_audit WHERE seq < {}",
                h.seq, h.hash, h.seq, h.seq
            ),
        );
        let anchors = vec![
            Anchor {
                seq: 2,
                hash: second,
            },
            Anchor {
                seq: h.seq,
                hash: h.hash.clone(),
            },
        ];
        let r = verify_with(
            db,
            &VerifyOptions {
                anchors: anchors.clone(),
                ..Default::default()
            },
        );
        assert!(!r.ok, "{}", db.name);
        assert_eq!(
            r.finding,
            Some(Finding::CheckpointUnverifiable { seq: h.seq })
        );
        // With a key the forged signature is found.
        let r = verify_with(
            db,
            &VerifyOptions {
                anchors,
                checkpoint_key: Some(b"the operator's key".to_vec()),
                ..Default::default()
            },
        );
        assert_eq!(r.finding, Some(Finding::CheckpointForged { seq: h.seq }));
    });
}
