//! Drift findings: first and last seen, closing what a run no longer sees, never deleting;
//! exceptions with an expiry; the gauge's counts; the reconcile timer kept once per connector.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::store::drift::{self, Filter, Seen};
use crate::store::timers;

fn seen<'a>(kind: &'a str, account: &'a str, ent: &'a str, detail: &'a Value) -> Seen<'a> {
    Seen {
        connector: "ldap",
        kind,
        account,
        entitlement: ent,
        user_id: None,
        action: "report",
        detail,
    }
}

#[test]
fn findings_keep_first_seen_move_last_seen_and_close_unseen() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let t1 = t0 + Duration::hours(6);
        let t2 = t1 + Duration::hours(6);
        let d = json!({"enabled": true});
        db.store
            .write_tx(|c, _| {
                assert!(drift::seen(
                    c,
                    &seen("orphan", "ghost", "", &d),
                    "run1",
                    t0
                )?);
                assert!(drift::seen(
                    c,
                    &seen("entitlement_outside", "ann", "group:x", &d),
                    "run1",
                    t0
                )?);
                assert_eq!(drift::close_unseen(c, "ldap", "run1", t0)?, 0);
                // Run 2 sees the orphan again, not the entitlement.
                assert!(!drift::seen(
                    c,
                    &seen("orphan", "ghost", "", &d),
                    "run2",
                    t1
                )?);
                assert_eq!(drift::close_unseen(c, "ldap", "run2", t1)?, 1);
                // Run 3: the entitlement is back: a new finding, the closed one stays.
                assert!(!drift::seen(
                    c,
                    &seen("orphan", "ghost", "", &d),
                    "run3",
                    t2
                )?);
                assert!(drift::seen(
                    c,
                    &seen("entitlement_outside", "ann", "group:x", &d),
                    "run3",
                    t2
                )?);
                assert_eq!(drift::close_unseen(c, "ldap", "run3", t2)?, 0);
                Ok(())
            })
            .unwrap();
        let all = db
            .store
            .write_tx(|c, _| drift::list(c, &Filter::default(), 100))
            .unwrap();
        assert_eq!(all.len(), 3, "{}: nothing is deleted", db.name);
        let orphan = &all[0];
        assert_eq!(
            (orphan.kind.as_str(), orphan.status.as_str()),
            ("orphan", "open")
        );
        assert_eq!(orphan.first_seen, fmt_ts(t0));
        assert_eq!(orphan.last_seen, fmt_ts(t2));
        let closed = &all[1];
        assert_eq!(closed.status, "closed");
        assert_eq!(closed.closed_at.as_deref(), Some(fmt_ts(t1).as_str()));
        assert_eq!(closed.last_seen, fmt_ts(t0));
        assert_eq!(all[2].first_seen, fmt_ts(t2));
        let open = db
            .store
            .write_tx(|c, _| {
                drift::list(
                    c,
                    &Filter {
                        connector: Some("ldap"),
                        kind: Some("entitlement_outside"),
                        status: Some("open"),
                    },
                    100,
                )
            })
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, all[2].id);
        let gauge = db
            .store
            .write_tx(|c, _| {
                drift::gauge_open(
                    c,
                    &crate::store::metrics::ScrapeContext {
                        now: t2,
                        priority_lane: 100,
                    },
                )
            })
            .unwrap();
        assert_eq!(gauge.len(), 2);
        assert_eq!(gauge[1].labels, vec!["ldap", "orphan"]);
        assert_eq!(gauge[1].value, 1.0);
        let counts = db.store.write_tx(|c, _| drift::open_counts(c)).unwrap();
        assert_eq!(
            counts,
            vec![
                ("ldap".to_string(), "entitlement_outside".to_string(), 1),
                ("ldap".to_string(), "orphan".to_string(), 1)
            ]
        );
    });
}

#[test]
fn exceptions_hold_until_they_expire() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        db.store
            .write_tx(|c, _| {
                drift::keep(
                    c,
                    "iam",
                    "entitlement_outside",
                    "ann",
                    "group:x",
                    "mgr",
                    t0,
                    t0 + Duration::days(90),
                )?;
                assert_eq!(
                    drift::exceptions(c, "iam", t0 + Duration::days(89))?.len(),
                    1
                );
                assert_eq!(drift::exceptions(c, "other", t0)?.len(), 0);
                assert_eq!(
                    drift::exceptions(c, "iam", t0 + Duration::days(90))?.len(),
                    0
                );
                Ok(())
            })
            .unwrap();
    });
}

#[test]
fn one_reconcile_timer_per_connector() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        db.store
            .write_tx(|c, _| {
                assert!(drift::ensure_timer(c, "ldap", t0 + Duration::hours(6), t0)?);
                // Pending already: unchanged.
                assert!(!drift::ensure_timer(
                    c,
                    "ldap",
                    t0 + Duration::hours(1),
                    t0
                )?);
                let due = timers::lease_due(
                    c,
                    "reconcile",
                    t0 + Duration::hours(6),
                    t0 + Duration::hours(7),
                    10,
                )?;
                assert_eq!(due.len(), 1);
                timers::fired(c, due[0].id, t0)?;
                // Done (the schedule was removed, then put back): pending again.
                assert!(drift::ensure_timer(c, "ldap", t0 + Duration::hours(8), t0)?);
                Ok(())
            })
            .unwrap();
    });
}

#[test]
fn one_reconcile_run_per_connector_holds_the_lease() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let lease = Duration::minutes(10);
        db.store
            .write_tx(|c, _| {
                assert!(drift::take_run_lease(c, "ldap", "run1", t0, t0 + lease)?);
                // A second run of the same connector is refused while the first holds it ...
                assert!(!drift::take_run_lease(c, "ldap", "run2", t0, t0 + lease)?);
                // ... another connector's run is not.
                assert!(drift::take_run_lease(c, "iam", "run3", t0, t0 + lease)?);
                // The holder renews; a stranger cannot.
                assert!(drift::extend_run_lease(c, "ldap", "run1", t0 + lease * 2)?);
                assert!(!drift::extend_run_lease(c, "ldap", "run2", t0 + lease * 2)?);
                // Still held at t0 + lease (renewed), taken over once it has expired.
                let later = t0 + lease + Duration::minutes(1);
                assert!(!drift::take_run_lease(
                    c,
                    "ldap",
                    "run2",
                    later,
                    later + lease
                )?);
                let expired = t0 + lease * 2 + Duration::seconds(1);
                assert!(drift::take_run_lease(
                    c,
                    "ldap",
                    "run2",
                    expired,
                    expired + lease
                )?);
                // The stalled run lost it: it can neither renew nor release the new holder's.
                assert!(!drift::extend_run_lease(
                    c,
                    "ldap",
                    "run1",
                    expired + lease
                )?);
                drift::release_run_lease(c, "ldap", "run1")?;
                assert!(!drift::take_run_lease(
                    c,
                    "ldap",
                    "run4",
                    expired,
                    expired + lease
                )?);
                // Released by its holder: free at once.
                drift::release_run_lease(c, "ldap", "run2")?;
                assert!(drift::take_run_lease(
                    c,
                    "ldap",
                    "run4",
                    expired,
                    expired + lease
                )?);
                Ok(())
            })
            .unwrap();
    });
}
