//! Leaver latency across every connector of the end-to-end world (SCIM downstream scimhub, moto
//! IAM, Samba AD, slapd, GitHub emulate+prism, webhook): N joiners, then N leavers one at a
//! time; for each, the time from the SCIM response (`active=false`) to the last of its leaver
//! operations done, read from `engine_outbox.finished` in the hub's database. Run by
//! `scripts/bench-leavers.sh`.
//!
//! Not a test: no assertion on the figures; it prints p50/p90/p99/max.

#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

#[path = "../../connectors/tests/support_standins/mod.rs"]
mod support_standins;
#[path = "../../tests/lifecycle_e2e/world.rs"]
mod world;

use std::time::{Duration, Instant};

use scim_server::store::outbox::OutboxStatus;
use serde_json::json;
use world::*;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n: usize = std::env::var("LEAVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // emulate knows only seeded logins: one per leaver
    let dir = support_standins::Scratch::new("bench-leavers-seed");
    let base =
        std::fs::read_to_string(support_standins::stacks::support_dir().join("github-seed.yaml"))
            .unwrap();
    let users: String = (0..n).map(|i| format!("    - login: lv{i:04}\n")).collect();
    let seed = base.replace("  orgs:\n", &format!("{users}  orgs:\n"));
    let seed_path = dir.path().join("seed.yaml");
    std::fs::write(&seed_path, seed).unwrap();

    let w = World::start(Some(&seed_path)).await;
    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let name = format!("lv{i:04}");
        let dept = if i % 2 == 0 { "Engineering" } else { "Sales" };
        let u = w
            .scim
            .post("/Users", person(&name, "Leaver", &name, dept))
            .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    w.settle(Duration::from_secs(900)).await;
    println!("{n} joiners provisioned everywhere in {:.1?}", t.elapsed());

    let mut lat_ms = Vec::new();
    let mut per_connector: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for id in &ids {
        w.scim
            .patch(
                &format!("/Users/{id}"),
                json!([{ "op": "replace", "path": "active", "value": false }]),
            )
            .await;
        let responded = chrono::Utc::now();
        let store = w.hub.store();
        let start = Instant::now();
        let rows = loop {
            let rows = scim_server::admin::in_tx(&store, |c| {
                scim_server::store::outbox::list_ops(c, Some(id), None, 1000)
            })
            .unwrap();
            let leaver: Vec<_> = rows.into_iter().filter(|r| r.event == "leaver").collect();
            let open = leaver
                .iter()
                .any(|r| r.status == OutboxStatus::Pending || r.status == OutboxStatus::Running);
            if let Some(f) = leaver.iter().find(|r| r.status == OutboxStatus::Failed) {
                panic!(
                    "leaver op failed: {} {} {:?}",
                    f.connector, f.op, f.last_error
                );
            }
            if !leaver.is_empty() && !open {
                break leaver;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "leaver {id} not done"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let last = rows.iter().filter_map(|r| r.finished).max().unwrap();
        lat_ms.push((last - responded).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        let mut by: std::collections::BTreeMap<&str, chrono::DateTime<chrono::Utc>> =
            Default::default();
        for r in &rows {
            if let Some(f) = r.finished {
                let e = by.entry(&r.connector).or_insert(f);
                *e = (*e).max(f);
            }
        }
        for (c, f) in by {
            per_connector
                .entry(c.to_owned())
                .or_default()
                .push((f - responded).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "leaver latency, SCIM response -> last downstream revocation (all 5 connectors), n={}:",
        lat_ms.len()
    );
    println!(
        "  p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        pct(&lat_ms, 0.5),
        pct(&lat_ms, 0.9),
        pct(&lat_ms, 0.99),
        lat_ms[lat_ms.len() - 1]
    );
    for (c, mut v) in per_connector {
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  {c:<8} last op done: p50 {:.0} ms  p99 {:.0} ms",
            pct(&v, 0.5),
            pct(&v, 0.99)
        );
    }
}
