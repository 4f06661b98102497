//! The outbox's claims: fencing on `(lease_owner, claim_seq)`, order per pair under takeovers,
//! and releasing a dead process's claims.

use chrono::{Duration, TimeZone, Utc};

use super::*;
use crate::store::outbox::{self, NewOp, OutboxRow, OutboxStatus};

/// A grant and then a revoke for user u1 on app, plan p1: one pair, in order.
pub(super) fn enqueue_pair(db: &TestDb, now: chrono::DateTime<Utc>) {
    db.store
        .write_tx(|c, _| {
            for op in ["grant", "revoke"] {
                outbox::enqueue(
                    c,
                    &NewOp {
                        plan_id: "p1",
                        user_id: "u1",
                        connector: "app",
                        event: "mover",
                        priority: 0,
                        op: format!("\"{op}\""),
                        hold_id: None,
                    },
                    now,
                )?;
            }
            Ok(())
        })
        .unwrap();
}

fn claim(db: &TestDb, owner: &str, now: chrono::DateTime<Utc>) -> Vec<OutboxRow> {
    db.store
        .write_tx(|c, _| outbox::claim(c, owner, now, Duration::seconds(15), 0, 16))
        .unwrap()
}

fn row(db: &TestDb, id: i64) -> OutboxRow {
    db.store
        .write_tx(|c, _| outbox::get_op(c, id))
        .unwrap()
        .unwrap()
}

#[test]
fn a_lost_claim_writes_nothing_and_order_holds_under_takeover() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap();
        enqueue_pair(db, t0);
        let a = claim(db, "a/lane0", t0);
        assert_eq!(a.len(), 1, "{}: only the first of the pair", db.name);
        let a = a[0].clone();
        assert_eq!(
            (a.claim_seq, a.lease_owner.as_deref()),
            (1, Some("a/lane0"))
        );
        // While A's lease runs nothing is claimable.
        assert!(claim(db, "b/lane0", t0 + Duration::seconds(14)).is_empty());
        // Its lease ran out: B takes the first over, and the second still waits for it.
        let b = claim(db, "b/lane0", t0 + Duration::seconds(16));
        assert_eq!(b.len(), 1, "{}", db.name);
        let b = b[0].clone();
        assert_eq!((b.id, b.claim_seq), (a.id, 2));
        let later = t0 + Duration::seconds(17);
        // Every write under A's claim is a no-op.
        db.store
            .write_tx(|c, _| {
                assert!(!outbox::renew(c, &a, later + Duration::seconds(15))?);
                assert!(!outbox::retry_later(c, &a, later, "stale")?);
                assert!(!outbox::park(c, &a, "stale", later)?);
                assert!(!outbox::finish(c, &a, later)?);
                Ok(())
            })
            .unwrap();
        let now = row(db, a.id);
        assert_eq!(
            (now.status, now.lease_owner.as_deref(), now.last_error),
            (OutboxStatus::Running, Some("b/lane0"), None),
            "{}",
            db.name
        );
        // B's claim holds.
        db.store
            .write_tx(|c, _| {
                assert!(outbox::renew(c, &b, later + Duration::seconds(15))?);
                assert!(outbox::finish(c, &b, later)?);
                Ok(())
            })
            .unwrap();
        let next = claim(db, "b/lane0", later);
        assert_eq!(next.len(), 1);
        assert!(next[0].id > a.id);
    });
}

#[test]
fn an_admin_retry_does_not_revive_an_old_claim() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap();
        enqueue_pair(db, t0);
        let first = claim(db, "a/lane0", t0).remove(0);
        db.store
            .write_tx(|c, _| {
                assert!(outbox::park(c, &first, "refused", t0)?);
                assert!(outbox::retry_failed(c, first.id, t0)?);
                Ok(())
            })
            .unwrap();
        // The same owner claims it again: attempts restarted, the claim number did not.
        let again = claim(db, "a/lane0", t0).remove(0);
        assert_eq!(
            (again.id, again.attempts, again.claim_seq),
            (first.id, 1, 2)
        );
        db.store
            .write_tx(|c, _| {
                assert!(!outbox::finish(c, &first, t0)?, "the old claim is fenced");
                assert!(outbox::finish(c, &again, t0)?);
                Ok(())
            })
            .unwrap();
    });
}

#[test]
fn releasing_foreign_claims_keeps_this_instances_own() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap();
        enqueue_pair(db, t0);
        let dead = claim(db, "host-1-dead/lane0", t0).remove(0);
        let released = db
            .store
            .write_tx(|c, _| outbox::release_foreign_claims(c, "host-1-new"))
            .unwrap();
        assert_eq!(released, 1, "{}", db.name);
        assert_eq!(row(db, dead.id).status, OutboxStatus::Pending);
        // Claimable at once, long before the dead claim's lease would have run out.
        let mine = claim(db, "host-1-new/lane0", t0).remove(0);
        assert_eq!(mine.id, dead.id);
        let released = db
            .store
            .write_tx(|c, _| outbox::release_foreign_claims(c, "host-1-new"))
            .unwrap();
        assert_eq!(released, 0);
        assert_eq!(row(db, mine.id).status, OutboxStatus::Running);
        // The dead process's claim is fenced too.
        db.store
            .write_tx(|c, _| {
                assert!(!outbox::finish(c, &dead, t0)?);
                Ok(())
            })
            .unwrap();
    });
}

/// A plan's operations go in several rows per statement: their ids ascend in the order given,
/// across a statement's bound of rows, and each keeps its own fields and status. A plan's
/// account records go in one statement, new ones inserted and existing ones updated.
#[test]
fn a_plans_rows_are_written_together_in_order() {
    use crate::store::engine_state;
    each_backend(|db| {
        let now = Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap();
        let texts: Vec<String> = (0..70).map(|i| format!("\"op{i}\"")).collect();
        let ops: Vec<NewOp> = texts
            .iter()
            .enumerate()
            .map(|(i, op)| NewOp {
                plan_id: "p1",
                user_id: "u1",
                connector: if i % 2 == 0 { "app" } else { "chat" },
                event: "joiner",
                priority: i as i64,
                op: op.clone(),
                hold_id: (i == 69).then_some("h1"),
            })
            .collect();
        db.store
            .write_tx(|c, _| {
                engine_state::put_planned(c, "u1", "chat", "{\"old\":1}", now)?;
                outbox::enqueue_all(c, &ops, now)?;
                engine_state::put_planned_all(
                    c,
                    "u1",
                    &[("app", "{\"a\":1}"), ("chat", "{\"c\":2}")],
                    now,
                )
            })
            .unwrap();
        let rows = db
            .store
            .write_tx(|c, _| outbox::list_plan(c, "p1"))
            .unwrap();
        let got: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|r| (r.op.as_str(), r.connector.as_str(), r.priority))
            .collect();
        let want: Vec<(&str, &str, i64)> = ops
            .iter()
            .map(|o| (o.op.as_str(), o.connector, o.priority))
            .collect();
        assert_eq!(got, want, "{}", db.name);
        assert!(rows.windows(2).all(|w| w[0].id < w[1].id), "{}", db.name);
        assert_eq!(rows[68].status, OutboxStatus::Pending, "{}", db.name);
        assert_eq!(
            (rows[69].status, rows[69].hold_id.as_deref()),
            (OutboxStatus::Held, Some("h1")),
            "{}",
            db.name
        );
        let accounts = db
            .store
            .write_tx(|c, _| engine_state::accounts(c, "u1"))
            .unwrap();
        let planned: Vec<(&str, &str)> = accounts
            .iter()
            .map(|a| (a.connector.as_str(), a.planned.as_str()))
            .collect();
        assert_eq!(
            planned,
            [("app", "{\"a\":1}"), ("chat", "{\"c\":2}")],
            "{}",
            db.name
        );
    });
}
