//! Throughput with 1, 2 and 3 nodes on one PostgreSQL (issue 17): for each node count, a fresh
//! database, that many `scimhub serve` nodes with a one-connector policy (a webhook answered by
//! a local receiver at once), `USERS` joiners POSTed round-robin over the nodes by `CLIENTS`
//! concurrent clients. Reported per run: SCIM writes/s (while writing) and downstream
//! operations/s (every operation done, from the first write to the last operation finished;
//! each joiner is two: create the account, grant the role). Node counts are interleaved over
//! `ROUNDS` rounds so machine noise hits each alike. Run by `scripts/bench-nodes.sh`.
//!
//! Not a test: no assertion on the figures.

#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

#[path = "../../connectors/tests/support_standins/mod.rs"]
mod support_standins;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::json;
use support_standins::*;

const TOKEN: &str = "bench-nodes-bootstrap-token-of-at-least-32-bytes";

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn bin() -> PathBuf {
    std::env::var("SCIMHUB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/release/scimhub"))
}

struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    fn create(admin: &str) -> Db {
        let name = format!("scimhub_bench_nodes_{}", uuid::Uuid::new_v4().simple());
        let mut c = PgConnection::establish(admin).expect("PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .unwrap();
        let mut u = reqwest::Url::parse(admin).unwrap();
        u.set_path(&format!("/{name}"));
        Db {
            admin: admin.into(),
            name,
            url: u.to_string(),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut c);
        }
    }
}

fn start_node(dir: &Path, name: &str, db: &str, policy: &Path) -> (Proc, String) {
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        db,
        "--policy",
    ])
    .arg(policy)
    .env("SCIMHUB_BOOTSTRAP_TOKEN", TOKEN)
    .env("BENCH_HOOK_SECRET", "whsec_bench_nodes")
    .env("RUST_LOG", "warn");
    let mut proc = Proc::spawn(name, cmd, &log);
    let mut addr = None;
    proc.wait_ready(Duration::from_secs(60), || {
        addr = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned));
        addr.is_some()
    });
    (proc, format!("http://{}/scim/v2", addr.unwrap()))
}

/// Outbox rows by state: (done, not done) and when the last one finished.
fn outbox_state(url: &str) -> (usize, usize) {
    let store = scim_server::store::Store::open(url).unwrap();
    let rows = scim_server::admin::in_tx(&store, |c| {
        scim_server::store::outbox::list_ops(c, None, None, 10_000_000)
    })
    .unwrap();
    let done = rows
        .iter()
        .filter(|r| r.status == scim_server::store::outbox::OutboxStatus::Done)
        .count();
    (done, rows.len() - done)
}

/// One run with `k` nodes: (writes/s, operations/s, operations).
async fn run(k: usize, admin: &str, hook: &str, users: usize, clients: usize) -> (f64, f64, usize) {
    let db = Db::create(admin);
    let dir = Scratch::new("bench-nodes");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
[[connector]]
name = "hook"
type = "webhook"
settings = {{ url = "{hook}", timeout_ms = 10000 }}
credentials = {{ signing_secret = {{ env = "BENCH_HOOK_SECRET" }} }}

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [{{ connector = "hook", kind = "role", id = "staff" }}]
"#
        ),
    )
    .unwrap();
    let mut nodes = vec![start_node(dir.path(), "node0", &db.url, &policy)];
    for i in 1..k {
        nodes.push(start_node(
            dir.path(),
            &format!("node{i}"),
            &db.url,
            &policy,
        ));
    }
    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.1.clone()).collect());
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (bases, http, next) = (bases.clone(), http.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    return;
                }
                let name = format!("u{i:06}");
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name,
                    "userType": "Employee",
                    "active": true,
                });
                let r = http
                    .post(format!("{}/Users", bases[i % bases.len()]))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let writes = start.elapsed();
    let url = db.url.clone();
    let (ops, total) = loop {
        let u = url.clone();
        let (done, open) = tokio::task::spawn_blocking(move || outbox_state(&u))
            .await
            .unwrap();
        if open == 0 && done > 0 {
            break (done, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(nodes);
    (
        users as f64 / writes.as_secs_f64(),
        ops as f64 / total.as_secs_f64(),
        ops,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let admin = std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("SCIMHUB_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let users: usize = env_or("USERS", 2000);
    let clients: usize = env_or("CLIENTS", 16);
    let rounds: usize = env_or("ROUNDS", 2);
    let counts: Vec<usize> = std::env::var("NODES")
        .unwrap_or_else(|_| "1 2 3".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let hook = Responder::canned(204, &[], "").await;
    println!(
        "users={users} clients={clients} rounds={rounds} binary={}",
        bin().display()
    );
    println!("round nodes writes/s ops/s ops");
    let mut all: Vec<(usize, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        for &k in &counts {
            let (w, o, n) = run(k, &admin, &hook.url(), users, clients).await;
            println!("{round} {k} {w:.0} {o:.0} {n}");
            all.push((k, w, o));
        }
    }
    println!("nodes median-writes/s median-ops/s");
    for &k in &counts {
        let med = |f: fn(&(usize, f64, f64)) -> f64| {
            let mut v: Vec<f64> = all.iter().filter(|r| r.0 == k).map(f).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        println!("{k} {:.0} {:.0}", med(|r| r.1), med(|r| r.2));
    }
}
