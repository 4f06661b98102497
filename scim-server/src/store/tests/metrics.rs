//! The aggregate reads behind `/metrics`' gauges, with fixed times.

use chrono::{Duration, TimeZone, Utc};

use super::*;
use crate::store::metrics::{self as m, GaugeRow, ScrapeContext};
use crate::store::outbox::{self, NewOp};
use crate::store::{incidents, notifications};

fn rows(v: &[(&[&str], f64)]) -> Vec<GaugeRow> {
    v.iter()
        .map(|(l, value)| GaugeRow {
            labels: l.iter().map(|s| s.to_string()).collect(),
            value: *value,
        })
        .collect()
}

#[test]
fn gauges_group_by_connector_lane_and_kind() {
    each_backend(|db| {
        let t0 = Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap();
        db.store
            .write_tx(|c, _| {
                // app: two normal ops (the second 30 s later) and a leaver's in the priority lane.
                for (user, priority, at) in [("u1", 0, 0), ("u2", 0, 30), ("u3", 100, 50)] {
                    outbox::enqueue(
                        c,
                        &NewOp {
                            plan_id: "p",
                            user_id: user,
                            connector: "app",
                            event: "joiner",
                            priority,
                            op: "\"grant\"".into(),
                            hold_id: None,
                        },
                        t0 + Duration::seconds(at),
                    )?;
                }
                incidents::raise(c, "operation_failed", None, Some("app"), None, "x", t0)?;
                incidents::raise(c, "operation_failed", None, Some("app"), None, "y", t0)?;
                incidents::raise(c, "operation_refused", None, Some("app"), None, "z", t0)?;
                notifications::enqueue(c, "joiner", None, &["a@example.com".into()], "s", "b", t0)?;
                Ok(())
            })
            .unwrap();
        let ctx = ScrapeContext {
            now: t0 + Duration::seconds(100),
            priority_lane: 100,
        };
        let mut c = db.store.read_conn().unwrap();
        assert_eq!(
            m::outbox_depth(&mut c, &ctx).unwrap(),
            rows(&[
                (&["app", "normal", "pending"], 2.0),
                (&["app", "priority", "pending"], 1.0)
            ]),
            "{}",
            db.name
        );
        assert_eq!(
            m::outbox_oldest_pending_age(&mut c, &ctx).unwrap(),
            rows(&[(&["app", "normal"], 100.0), (&["app", "priority"], 50.0)]),
            "{}",
            db.name
        );
        assert_eq!(
            m::open_incidents(&mut c, &ctx).unwrap(),
            rows(&[(&["operation_failed"], 2.0), (&["operation_refused"], 1.0)]),
            "{}",
            db.name
        );
        assert_eq!(
            m::notification_backlog(&mut c, &ctx).unwrap(),
            rows(&[(&["pending"], 1.0)]),
            "{}",
            db.name
        );
        assert_eq!(
            m::holds_pending(&mut c, &ctx).unwrap(),
            rows(&[(&[], 0.0)]),
            "{}",
            db.name
        );
    });
}
