//! Engine benchmark with responsive in-memory downstreams (`type = "memory"`), against the real
//! binary: 10,000 joiners pushed by /Bulk, time until every downstream operation is done; then
//! leaver latency (SCIM response -> last leaver operation done, from `engine_outbox.finished`).
//! Run by `scripts/bench-engine.sh`. Targets (issue 4): joiners < 20 s, leaver p99 < 250 ms.

#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

#[path = "../../connectors/tests/support_standins/mod.rs"]
mod support_standins;
#[path = "../../tests/lifecycle_e2e/world.rs"]
mod world;

use std::time::{Duration, Instant};

use scim_server::store::outbox::OutboxStatus;
use serde_json::{json, Value};
use world::*;

const POLICY: &str = r#"
[[connector]]
name = "apps"
type = "memory"

[[connector]]
name = "code"
type = "memory"

[[connector]]
name = "cloud"
type = "memory"

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [
  { connector = "apps", kind = "group", id = "all-staff" },
  { connector = "code", kind = "org", id = "acme" },
  { connector = "cloud" },
]

[[profile]]
name = "engineering"
match = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Engineering"'
grants = [
  { connector = "code", kind = "team", id = "eng" },
  { connector = "cloud", kind = "group", id = "developers" },
]
"#;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let joiners = env_usize("JOINERS", 10_000);
    let leavers = env_usize("LEAVERS", 200);
    let dir = support_standins::Scratch::new("bench-engine");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let p = policy.display().to_string();
    let hub = Hub::start(dir.path(), "hub", HUB_TOKEN, &["--policy", &p], &[]);
    let scim = Scim::new(&hub.base, HUB_TOKEN);
    let (_, spc) = scim.get("/ServiceProviderConfig").await;
    let batch = spc["bulk"]["maxOperations"]
        .as_u64()
        .unwrap_or(1000)
        .min(1000) as usize;
    let store = hub.store();
    let count = |status: OutboxStatus| {
        let rows = scim_server::admin::in_tx(&store, |c| {
            scim_server::store::outbox::list_ops(c, None, Some(status), 10_000_000)
        })
        .unwrap();
        rows.len()
    };

    // ---- 10,000 joiners by Bulk -------------------------------------------------------------
    let t0 = Instant::now();
    let mut i = 0;
    while i < joiners {
        let ops: Vec<Value> = (i..(i + batch).min(joiners))
            .map(|k| {
                let name = format!("j{k:05}");
                let dept = if k % 2 == 0 { "Engineering" } else { "Sales" };
                json!({"method": "POST", "path": "/Users", "bulkId": name,
                       "data": person(&name, "Bench", &name, dept)})
            })
            .collect();
        let (s, v) = scim
            .send(
                reqwest::Method::POST,
                "/Bulk",
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                            "failOnErrors": 1, "Operations": ops}),
                ),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        i += batch;
    }
    let pushed = t0.elapsed();
    loop {
        let open =
            scim_server::admin::in_tx(&store, scim_server::store::outbox::count_open).unwrap();
        if open == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "not done: {open} open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done_at = t0.elapsed();
    let done = count(OutboxStatus::Done);
    let failed = count(OutboxStatus::Failed);
    println!(
        "{joiners} joiners by Bulk ({batch}/request): pushed (planned, in the SCIM transaction) in {:.2} s; \
         all {done} downstream operations done at {:.2} s ({:.0} ops/s end to end); failed: {failed}",
        pushed.as_secs_f64(),
        done_at.as_secs_f64(),
        done as f64 / done_at.as_secs_f64()
    );

    // ---- leavers, one at a time -------------------------------------------------------------
    let mut lat = Vec::new();
    for k in 0..leavers.min(joiners) {
        let name = format!("j{k:05}");
        let u = scim.user_by_name(&name).await.unwrap();
        let id = u["id"].as_str().unwrap().to_owned();
        scim.patch(
            &format!("/Users/{id}"),
            json!([{ "op": "replace", "path": "active", "value": false }]),
        )
        .await;
        let responded = chrono::Utc::now();
        let start = Instant::now();
        let last = loop {
            let rows = scim_server::admin::in_tx(&store, |c| {
                scim_server::store::outbox::list_ops(c, Some(&id), None, 1000)
            })
            .unwrap();
            let leaver: Vec<_> = rows.into_iter().filter(|r| r.event == "leaver").collect();
            if !leaver.is_empty()
                && leaver
                    .iter()
                    .all(|r| r.status == OutboxStatus::Done || r.status == OutboxStatus::Failed)
            {
                break leaver.iter().filter_map(|r| r.finished).max().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "leaver {name} not done"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        lat.push((last - responded).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "leaver latency (memory connectors), SCIM response -> last operation done, n={}: \
         p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );
}
