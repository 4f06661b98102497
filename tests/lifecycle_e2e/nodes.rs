//! Several nodes on one PostgreSQL (issue 17), end to end with the real `scimhub` binary.
//!
//! `several_nodes_run_every_leaver_once_in_order_while_one_is_killed`: three nodes on a fresh
//! database of the machine's PostgreSQL (`SCIMHUB_TEST_POSTGRES_URL`; created and dropped by
//! the test), a round-robin SCIM client, and a webhook receiver that verifies every delivery
//! and records its event id. `SCIMHUB_TEST_NODES_USERS` people (1,000 by default) join; then all of
//! them leave across the nodes: nine in ten are deactivated over SCIM, one in ten is a
//! contractor whose contract end date is moved to a few seconds ahead, so a `contract_end`
//! timer makes them leave. A third of the way through, one node is killed with SIGKILL; two
//! thirds through it is started again. Then:
//!
//! - every operation is done, none failed or held;
//! - each user's deliveries, de-duplicated by event id (the id is derived from the outbox row,
//!   so a retry carries the same one and a receiver applies it once), are exactly the user's
//!   outbox operations in outbox order: none missing, none extra, per-user order kept. Raw
//!   re-deliveries are counted and bounded by what the killed node could have had in flight
//!   (two lanes of 16 calls): an operation in flight at a SIGKILL is run again after its lease;
//! - each contractor has one `contract_end` timer, done, and one `contractor-expiry` event;
//!   each employee one `leaver` event; every user one `joiner` event;
//! - every SCIM write the client saw acknowledged is there (read back from a live node);
//! - operations were run by at least three processes (the nodes shared the work).
//!
//! `a_notification_wakes_a_node_whose_poll_is_an_hour`: a node whose idle poll is one hour
//! runs operations that another process (`scimhub import`) queued, so it was woken by the
//! database's notification, not by its poll.
//!
//! `a_policy_reload_reaches_every_node_and_a_divergent_node_is_reported`: a SIGHUP on one node
//! makes another re-read its (deployed, mtime kept) file through the database's announcement;
//! a third with another file is listed as divergent by `GET /admin/v1/cluster`.
//!
//! `a_revoked_token_is_refused_by_every_node`: `scimhub token revoke` in another process, and
//! every node that had just accepted the token refuses it (measured: within a second).
//!
//! Without `SCIMHUB_TEST_POSTGRES_URL` each says so and passes without running.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors::webhook;
use diesel::{Connection, PgConnection, RunQueryDsl};
use scim_server::engine::plan::Operation;
use scim_server::store::outbox::{OutboxRow, OutboxStatus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support_standins::*;
use crate::world::{hub_bin, spawn_listening, verifying_receiver};

const TOKEN: &str = "nodes-e2e-bootstrap-token-of-at-least-32-bytes";
const HOOK_SECRET: &str = "whsec_nodes_e2e_receiver";
const ACME: &str = "urn:example:scim:schemas:extension:acme:2.0:User";
/// A deadline, not a speed check: on a loaded 2-core machine the whole test took 90 to 220 s.
const SETTLE: Duration = Duration::from_secs(300);
/// Calls one node can have in flight: two lanes of `concurrency` (16) each.
const IN_FLIGHT_PER_NODE: usize = 32;

/// A database of its own on `SCIMHUB_TEST_POSTGRES_URL`, dropped at the end.
struct Db {
    admin_url: String,
    name: String,
    url: String,
}

impl Db {
    fn create() -> Option<Db> {
        let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").ok()?;
        let name = format!(
            "scimhub_nodes_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let mut c = PgConnection::establish(&admin_url).expect("connect to PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .expect("create database");
        let mut u = reqwest::Url::parse(&admin_url).expect("a URL");
        u.set_path(&format!("/{name}"));
        Some(Db {
            admin_url,
            name,
            url: u.to_string(),
        })
    }

    fn store(&self) -> scim_server::store::Store {
        scim_server::store::Store::open(&self.url).expect("open the database")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut c);
        }
    }
}

/// One `scimhub serve` node.
struct Node {
    proc: Proc,
    base: String,
}

fn start_node(dir: &Path, name: &str, db: &str, policy: &Path, env: &[(&str, &str)]) -> Node {
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(hub_bin());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--database-url", db])
        .arg("--policy")
        .arg(policy)
        .arg("--config")
        .arg(dir.join("scimhub.toml"))
        .env("SCIMHUB_BOOTSTRAP_TOKEN", TOKEN)
        .env("E2E_HOOK_SECRET", HOOK_SECRET)
        // a killed node's claims are taken over after 3 s instead of 15
        .env("SCIMHUB_ENGINE_LEASE_SECS", "3");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (proc, addr) = spawn_listening(name, cmd, &log, Duration::from_secs(60));
    Node {
        proc,
        base: format!("http://{addr}"),
    }
}

/// The policy: one webhook connector; employees and contractors get a role there.
fn write_setup(dir: &Path, hook: &str) -> PathBuf {
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo-extension.schema.json");
    std::fs::write(
        dir.join("scimhub.toml"),
        format!(
            "[[schema_extensions]]\nfile = \"{}\"\nresource_type = \"User\"\n",
            schema.display()
        ),
    )
    .expect("config");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
[settings]
extensions = ["{ACME}"]
end_date_attribute = "{ACME}:contractEndDate"

[[connector]]
name = "hook"
type = "webhook"
settings = {{ url = "{hook}", timeout_ms = 10000 }}
credentials = {{ signing_secret = {{ env = "E2E_HOOK_SECRET" }} }}

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [{{ connector = "hook", kind = "role", id = "staff" }}]

[[profile]]
name = "contractor"
grants = [{{ connector = "hook", kind = "role", id = "contractor" }}]

[contractor]
match = 'userType eq "Contractor"'
profile = "contractor"
owners = ["p00000"]
"#
        ),
    )
    .expect("policy");
    policy
}

/// One accepted webhook delivery.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    key: String,
}

/// A verifying webhook receiver; returns it, what it accepted (in arrival order) and how many
/// requests it refused.
async fn receiver() -> (Responder, Arc<Mutex<Vec<Delivery>>>, Arc<AtomicUsize>) {
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let rec = got.clone();
    let (r, rejected) = verifying_receiver(HOOK_SECRET, move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        rec.lock().unwrap().push(Delivery {
            id: req
                .header(webhook::EVENT_ID_HEADER)
                .unwrap_or_default()
                .to_owned(),
            key: body["account"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    })
    .await;
    (r, got, rejected)
}

/// A round-robin SCIM client over the live nodes; a node that does not answer (killed) is
/// skipped and the request sent to the next one.
#[derive(Clone)]
struct RoundRobin {
    bases: Arc<Mutex<Vec<Option<String>>>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
    /// Requests that got no answer (connection refused or reset) and were sent again.
    unanswered: Arc<AtomicUsize>,
}

impl RoundRobin {
    fn new(bases: Vec<String>) -> RoundRobin {
        RoundRobin {
            bases: Arc::new(Mutex::new(bases.into_iter().map(Some).collect())),
            next: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            unanswered: Arc::default(),
        }
    }

    fn set(&self, i: usize, base: Option<String>) {
        self.bases.lock().unwrap()[i] = base;
    }

    fn pick(&self) -> String {
        let bases = self.bases.lock().unwrap();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % bases.len();
            if let Some(b) = &bases[i] {
                return b.clone();
            }
        }
    }

    /// Sends until a node answers; the answer (status, body).
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        for _ in 0..20 {
            let base = self.pick();
            let mut req = self
                .http
                .request(method.clone(), format!("{base}/scim/v2{path}"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/scim+json");
            if let Some(b) = &body {
                req = req.body(b.to_string());
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    if status == 503 {
                        self.unanswered.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Err(_) => {
                    self.unanswered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        panic!("no node answered {method} {path}");
    }
}

fn employee(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ACME],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": user_name},
        "emails": [{"value": format!("{user_name}@example.com"), "primary": true}],
        "userType": "Employee",
        "active": true,
    })
}

fn contractor(user_name: &str, end: &str) -> Value {
    let mut v = employee(user_name);
    v["userType"] = json!("Contractor");
    v[ACME] = json!({"contractEndDate": end});
    v
}

/// The event type the webhook connector sends for `op`.
fn event_type(op: &Operation) -> &'static str {
    match op {
        Operation::CreateOrAdopt { .. } => "account.create",
        Operation::Update { .. } => "account.update",
        Operation::SetEnabled { enabled: true, .. } => "account.enable",
        Operation::SetEnabled { enabled: false, .. } => "account.disable",
        Operation::Grant { .. } => "entitlement.grant",
        Operation::Revoke { .. } => "entitlement.revoke",
        Operation::RevokeSessions { .. } => "account.revoke_sessions",
        Operation::RevokeCredentials { .. } => "account.revoke_credentials",
        Operation::TransferOwnership { .. } => "account.transfer_ownership",
        Operation::Delete { .. } => "account.delete",
    }
}

/// The event id the webhook connector sends for outbox row `r` (connectors/src/webhook.rs:
/// derived from the connector, the row and the event type, the same on every retry).
fn event_id(r: &OutboxRow) -> String {
    let op: Operation = serde_json::from_str(&r.op).expect("operation");
    let digest = Sha256::new()
        .chain_update(r.connector.as_bytes())
        .chain_update([0])
        .chain_update(format!("{}:{}", r.plan_id, r.id).as_bytes())
        .chain_update([0])
        .chain_update(event_type(&op).as_bytes())
        .finalize();
    format!("evt_{}", hex::encode(&digest[..16]))
}

fn outbox(store: &scim_server::store::Store) -> Vec<OutboxRow> {
    scim_server::admin::in_tx(store, |c| {
        scim_server::store::outbox::list_ops(c, None, None, 10_000_000)
    })
    .expect("outbox")
}

/// Waits until every operation is done and `ready` holds; panics on a failed or held one.
async fn settle(store: &scim_server::store::Store, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        let rows = outbox(store);
        let stuck: Vec<String> = rows
            .iter()
            .filter(|r| r.status == OutboxStatus::Failed || r.status == OutboxStatus::Held)
            .map(|r| format!("{} {} {}: {:?}", r.status, r.event, r.op, r.last_error))
            .take(10)
            .collect();
        assert!(
            stuck.is_empty(),
            "operations failed or held:\n{}",
            stuck.join("\n")
        );
        let open = rows
            .iter()
            .filter(|r| r.status != OutboxStatus::Done)
            .count();
        if open == 0 && !rows.is_empty() && ready() {
            return;
        }
        assert!(
            start.elapsed() < SETTLE,
            "not settled after {SETTLE:?}: {open} operations open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_nodes_run_every_leaver_once_in_order_while_one_is_killed() {
    let Some(db) = Db::create() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: the several-nodes proof did not run");
        return;
    };
    let n: usize = std::env::var("SCIMHUB_TEST_NODES_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let t0 = Instant::now();
    let dir = Scratch::new("nodes-e2e");
    let (hook, deliveries, rejected) = receiver().await;
    let policy = write_setup(dir.path(), &hook.url());
    // the first node migrates the database; the others start on it
    let mut nodes = vec![start_node(dir.path(), "node0", &db.url, &policy, &[])];
    for i in 1..3 {
        nodes.push(start_node(
            dir.path(),
            &format!("node{i}"),
            &db.url,
            &policy,
            &[],
        ));
    }
    let rr = RoundRobin::new(nodes.iter().map(|n| n.base.clone()).collect());
    let store = db.store();

    // ---- joiners: every tenth person a contractor (end date far ahead for now) -------------
    let names: Vec<String> = (0..n).map(|i| format!("p{i:05}")).collect();
    let is_contractor = |i: usize| i % 10 == 9;
    let far = "2099-01-01T00:00:00Z";
    let ids: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let joiners = Instant::now();
    run_all(8, (0..n).collect(), |i| {
        let (rr, ids, name) = (rr.clone(), ids.clone(), names[i].clone());
        async move {
            let body = if is_contractor(i) {
                contractor(&name, far)
            } else {
                employee(&name)
            };
            let (s, v) = rr.send(reqwest::Method::POST, "/Users", Some(body)).await;
            assert_eq!(s, 201, "POST {name}: {v}");
            ids.lock()
                .unwrap()
                .insert(name, v["id"].as_str().unwrap().to_owned());
        }
    })
    .await;
    eprintln!("{n} joiners written in {:?}", joiners.elapsed());
    settle(&store, || true).await;
    eprintln!("joiners provisioned after {:?}", joiners.elapsed());

    // ---- leavers across the nodes; node 2 SIGKILLed at a third, restarted at two thirds ------
    let done = Arc::new(AtomicUsize::new(0));
    // what the client saw acknowledged: userName -> the contract end date written (contractors)
    // or "inactive" (employees)
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let leavers = Instant::now();
    let writer = {
        let (rr, ids, names, done, acked) = (
            rr.clone(),
            ids.clone(),
            names.clone(),
            done.clone(),
            acked.clone(),
        );
        tokio::spawn(async move {
            run_all(8, (0..n).collect(), move |i| {
                let (rr, done, acked) = (rr.clone(), done.clone(), acked.clone());
                let name = names[i].clone();
                let id = ids.lock().unwrap()[&name].clone();
                async move {
                    let (op, record) = if is_contractor(i) {
                        // the contract ends in 3 s: its timer fires on whichever node takes it
                        let end = (chrono::Utc::now() + chrono::Duration::seconds(3))
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                        (
                            json!({"op": "replace", "path": format!("{ACME}:contractEndDate"), "value": end}),
                            end,
                        )
                    } else {
                        (
                            json!({"op": "replace", "path": "active", "value": false}),
                            "inactive".to_string(),
                        )
                    };
                    let body = json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [op],
                    });
                    let (s, v) = rr
                        .send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(body))
                        .await;
                    assert!(s == 200 || s == 204, "PATCH {name}: {s} {v}");
                    acked.lock().unwrap().insert(name, record);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
        })
    };
    let wait_for = |k: usize| {
        let done = done.clone();
        async move {
            while done.load(Ordering::Relaxed) < k {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(n / 3).await;
    let victim = nodes[2].proc.child.id();
    nodes[2].proc.child.kill().expect("SIGKILL node2");
    let _ = nodes[2].proc.child.wait();
    rr.set(2, None);
    eprintln!(
        "node2 (pid {victim}) killed with SIGKILL after {} leaver writes",
        done.load(Ordering::Relaxed)
    );
    wait_for(2 * n / 3).await;
    nodes[2] = start_node(dir.path(), "node2-restarted", &db.url, &policy, &[]);
    rr.set(2, Some(nodes[2].base.clone()));
    eprintln!(
        "node2 restarted after {} leaver writes",
        done.load(Ordering::Relaxed)
    );
    writer.await.expect("leaver writes");
    eprintln!("{n} leaver writes acknowledged in {:?}", leavers.elapsed());
    let contractors: Vec<String> = (0..n)
        .filter(|i| is_contractor(*i))
        .map(|i| ids.lock().unwrap()[&names[i]].clone())
        .collect();
    let timers_done = |store: &scim_server::store::Store| {
        let timers =
            scim_server::admin::in_tx(store, |c| scim_server::store::timers::list(c, None))
                .expect("timers");
        let done = timers
            .iter()
            .filter(|t| t.kind == "contract_end" && t.status == "done")
            .count();
        (timers, done)
    };
    settle(&store, || timers_done(&store).1 >= contractors.len()).await;
    eprintln!("leavers settled after {:?}", leavers.elapsed());

    // ---- exactly once, in order, per user --------------------------------------------------
    assert_eq!(
        rejected.load(Ordering::Relaxed),
        0,
        "every delivery verified"
    );
    let rows = outbox(&store);
    let by_id: HashMap<String, String> = ids
        .lock()
        .unwrap()
        .iter()
        .map(|(name, id)| (id.clone(), name.clone()))
        .collect();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sorted = rows.clone();
    sorted.sort_by_key(|r| r.id);
    for r in &sorted {
        let name = by_id.get(&r.user_id).expect("a user of this test");
        expected.entry(name.clone()).or_default().push(event_id(r));
    }
    let got = deliveries.lock().unwrap().clone();
    let mut delivered: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut redelivered = 0;
    for d in &got {
        if seen.insert(d.id.clone()) {
            delivered
                .entry(d.key.clone())
                .or_default()
                .push(d.id.clone());
        } else {
            redelivered += 1;
        }
    }
    assert_eq!(expected.len(), n, "every user has operations");
    for (name, want) in &expected {
        assert_eq!(
            delivered.get(name),
            Some(want),
            "{name}: deliveries (by event id, first arrival order) differ from its outbox operations"
        );
    }
    assert_eq!(delivered.len(), n, "no deliveries about anyone else");
    assert!(
        redelivered <= IN_FLIGHT_PER_NODE,
        "{redelivered} re-deliveries: more than one killed node could have had in flight"
    );

    // ---- timers fired once; one event per leaver --------------------------------------------
    let (timers, _) = timers_done(&store);
    for c in &contractors {
        let mine: Vec<_> = timers
            .iter()
            // the first end date's timer was cancelled when the date moved
            .filter(|t| &t.user_id == c && t.kind == "contract_end" && t.status != "cancelled")
            .collect();
        assert_eq!(mine.len(), 1, "{c}: {mine:?}");
        assert_eq!(mine[0].status, "done", "{c}: {mine:?}");
    }
    let events = scim_server::admin::in_tx(&store, |c| {
        scim_server::store::events::list(c, None, 10_000_000)
    })
    .expect("events");
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &events {
        *per.entry((e.user_id.clone(), e.event.clone())).or_default() += 1;
    }
    for (id, name) in &by_id {
        let count = |kind: &str| {
            per.get(&(id.clone(), kind.to_string()))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(count("joiner"), 1, "{name}: joiner events");
        if contractors.contains(id) {
            assert_eq!(count("contractor-expiry"), 1, "{name}: contract expiries");
            assert_eq!(count("leaver"), 0, "{name}: leaver events");
        } else {
            assert_eq!(count("leaver"), 1, "{name}: leaver events");
        }
    }

    // ---- every acknowledged write is there -----------------------------------------------
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), n);
    for (name, record) in &acked {
        let id = ids.lock().unwrap()[name].clone();
        let (s, v) = rr
            .send(reqwest::Method::GET, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(s, 200, "{name}: {v}");
        if record == "inactive" {
            assert_eq!(v["active"], json!(false), "{name}: {v}");
        } else {
            assert_eq!(v[ACME]["contractEndDate"], json!(record), "{name}: {v}");
        }
    }

    // ---- the nodes shared the work ---------------------------------------------------------
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        if let Some(o) = &r.lease_owner {
            // `host-pid-random/laneN`: one process per `host-pid-random`
            let process = o.split('/').next().unwrap_or(o).to_owned();
            *owners.entry(process).or_default() += 1;
        }
    }
    eprintln!(
        "{} operations by process: {owners:?}; {redelivered} re-deliveries after the SIGKILL; \
         {} requests re-sent to another node; total {:?}",
        rows.len(),
        rr.unanswered.load(Ordering::Relaxed),
        t0.elapsed()
    );
    assert!(owners.len() >= 3, "operations ran on {owners:?}");
    for node in &mut nodes {
        assert!(
            node.proc.alive(),
            "{} died:\n{}",
            node.proc.name,
            node.proc.log_tail()
        );
    }
}

/// Runs `f(item)` for every item, at most `width` at a time.
async fn run_all<F, Fut>(width: usize, items: Vec<usize>, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in items {
        if set.len() >= width {
            set.join_next().await.expect("task").expect("task ok");
        }
        set.spawn(f(i));
    }
    while let Some(r) = set.join_next().await {
        r.expect("task ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_a_node_whose_poll_is_an_hour() {
    let Some(db) = Db::create() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: the wake-up proof did not run");
        return;
    };
    let dir = Scratch::new("nodes-wake");
    let (hook, deliveries, _) = receiver().await;
    let policy = write_setup(dir.path(), &hook.url());
    let node = start_node(
        dir.path(),
        "sleepy",
        &db.url,
        &policy,
        &[
            ("SCIMHUB_ENGINE_IDLE_POLL_MS", "3600000"),
            ("RUST_LOG", "warn,scim_server::jobs::cluster=info"),
        ],
    );
    // the node's lanes have made their first (empty) claim and now wait for an hour or a
    // notification; its listener is connected once the log says so
    let log = node.proc.log.clone();
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("notification listener connected")
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no listener");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // another process queues work: `scimhub import` plans the joiners in its own transactions
    let csv = dir.path().join("roster.csv");
    std::fs::write(
        &csv,
        "userName,userType,active\nwake1,Employee,true\nwake2,Employee,true\n",
    )
    .expect("csv");
    let out = Command::new(hub_bin())
        .arg("import")
        .arg(&csv)
        .args(["--client", "hr", "--database-url", &db.url])
        .arg("--policy")
        .arg(&policy)
        .arg("--config")
        .arg(dir.path().join("scimhub.toml"))
        .env("E2E_HOOK_SECRET", HOOK_SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("scimhub import");
    assert!(
        out.status.success(),
        "import: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The import process has no workers and the node's poll is an hour: only the notification
    // can start these operations.
    let store = db.store();
    settle(&store, || true).await;
    let keys: Vec<String> = deliveries
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    assert!(keys.contains(&"wake1".to_string()), "{keys:?}");
    assert!(keys.contains(&"wake2".to_string()), "{keys:?}");
    drop(node);
}

/// `GET /admin/v1/cluster` of the node at `base`.
async fn cluster_view(base: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}/admin/v1/cluster"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("cluster view");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("json")
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("policy file")))
}

/// A policy reload on one node (SIGHUP) reaches another node whose file was deployed too but
/// whose own watcher cannot see the change (its modification time is kept): only the
/// announcement through the database makes it re-read its file. A third node with another file
/// keeps its own policy and is reported as divergent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_reaches_every_node_and_a_divergent_node_is_reported() {
    let Some(db) = Db::create() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: the policy reload proof did not run");
        return;
    };
    let dir = Scratch::new("nodes-policy");
    let (hook, _, _) = receiver().await;
    let base = write_setup(dir.path(), &hook.url());
    let text = std::fs::read_to_string(&base).expect("policy");
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("policy file");
        p
    };
    let (pa, pb) = (file("a.toml", &text), file("b.toml", &text));
    let pc = file("c.toml", &format!("{text}\n# node c's own edit\n"));
    let log = [("RUST_LOG", "warn,scim_server::jobs::cluster=info")];
    // c first: the policy loaded last (a's and b's) is the cluster's
    let c = start_node(dir.path(), "c", &db.url, &pc, &log);
    let a = start_node(dir.path(), "a", &db.url, &pa, &log);
    let b = start_node(dir.path(), "b", &db.url, &pb, &log);
    let (v1, vc) = (sha256_of(&pa), sha256_of(&pc));
    let until = |what: &'static str, f: Box<dyn Fn(&Value) -> bool + Send>| {
        let a = a.base.clone();
        async move {
            let start = Instant::now();
            loop {
                let v = cluster_view(&a).await;
                if f(&v) {
                    return (v, start.elapsed());
                }
                assert!(start.elapsed() < Duration::from_secs(30), "{what}: {v}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (v, _) = until(
        "three nodes, c divergent",
        Box::new(move |v| {
            v["nodes"].as_array().is_some_and(|n| n.len() == 3) && v["divergent"] == json!(1)
        }),
    )
    .await;
    assert_eq!(v["policy_sha256"], json!(v1), "{v}");
    let node_c = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["policy_sha256"] == json!(vc))
        .cloned()
        .expect("node c listed");
    assert_eq!(node_c["matches_cluster"], json!(false), "{v}");

    // a new policy deployed to a and b; b's file keeps its old modification time
    let new_text = text.replace(
        "id = \"staff\" }]",
        "id = \"staff\" }, { connector = \"hook\", kind = \"role\", id = \"all-hands\" }]",
    );
    assert_ne!(new_text, text);
    let b_mtime = std::fs::metadata(&pb)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(&pb, &new_text).expect("b");
    std::fs::File::options()
        .write(true)
        .open(&pb)
        .and_then(|f| f.set_modified(b_mtime))
        .expect("keep b's mtime");
    std::fs::write(&pa, &new_text).expect("a");
    let v2 = sha256_of(&pa);
    let hup = Command::new("kill")
        .args(["-s", "HUP", &a.proc.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let (v, took) = until(
        "a and b on the new policy, c divergent",
        Box::new(move |v| {
            v["policy_sha256"] == json!(v2)
                && v["divergent"] == json!(1)
                && v["nodes"].as_array().is_some_and(|n| {
                    n.iter().filter(|x| x["policy_sha256"] == json!(v2)).count() == 2
                })
        }),
    )
    .await;
    eprintln!("the reload on a reached b's row in {took:?}: {v}");
    let b_log = std::fs::read_to_string(&b.proc.log).unwrap_or_default();
    assert!(
        b_log.contains("another node loaded a new policy; reloading this node's file"),
        "b reloaded because of the announcement:\n{b_log}"
    );
    let c_log = std::fs::read_to_string(&c.proc.log).unwrap_or_default();
    assert!(
        c_log.contains("this node's policy file differs from the one the cluster loaded last"),
        "c reports its divergence:\n{c_log}"
    );

    // c stopped on purpose (SIGTERM): it leaves the live nodes as it exits, instead of being
    // counted for another 15 s (a policy change waits for every live node).
    let mut c = c;
    let term = Command::new("kill")
        .args(["-s", "TERM", &c.proc.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let exited = Instant::now();
    let status = loop {
        if let Some(status) = c.proc.child.try_wait().expect("c's status") {
            break status;
        }
        assert!(exited.elapsed() < Duration::from_secs(30), "c did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "c exits 0 on SIGTERM: {status:?}");
    let v = cluster_view(&a.base).await;
    let seen = exited.elapsed();
    let nodes = v["nodes"].as_array().expect("nodes");
    assert!(
        seen < Duration::from_secs(scim_server::store::cluster::ALIVE_SECS as u64),
        "read {seen:?} after the stop, too late to tell leaving from ageing out"
    );
    assert_eq!(nodes.len(), 2, "c is gone at once: {v}");
    let v2 = sha256_of(&pa);
    assert!(nodes.iter().all(|n| n["policy_sha256"] == json!(v2)), "{v}");
    assert_eq!(v["divergent"], json!(0), "{v}");
    let c_log = std::fs::read_to_string(&c.proc.log).unwrap_or_default();
    assert!(c_log.contains("left the cluster"), "{c_log}");
}

/// A token revoked with `scimhub token revoke` (another process) is refused by every node, each
/// of which had just accepted it (so each had it cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_by_every_node() {
    let Some(db) = Db::create() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: the revocation proof did not run");
        return;
    };
    let dir = Scratch::new("nodes-revoke");
    let (hook, _, _) = receiver().await;
    let policy = write_setup(dir.path(), &hook.url());
    let mut nodes = vec![start_node(dir.path(), "r0", &db.url, &policy, &[])];
    for i in 1..3 {
        nodes.push(start_node(
            dir.path(),
            &format!("r{i}"),
            &db.url,
            &policy,
            &[],
        ));
    }
    let cli = |args: &[&str]| {
        let out = Command::new(hub_bin())
            .args(args)
            .args(["--database-url", &db.url])
            .stdin(Stdio::null())
            .output()
            .expect("scimhub");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let token = cli(&["token", "issue", "--name", "okta", "--scope", "scim:read"]);
    let http = reqwest::Client::new();
    let status = |base: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            http.get(format!("{base}/scim/v2/Users?count=1"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    for n in &nodes {
        assert_eq!(status(n.base.clone()).await, 200, "{}", n.base);
    }
    cli(&["token", "revoke", "okta"]);
    let revoked = Instant::now();
    for n in &nodes {
        loop {
            let s = status(n.base.clone()).await;
            if s == 401 {
                eprintln!(
                    "{} refuses the token {:?} after the revocation",
                    n.base,
                    revoked.elapsed()
                );
                break;
            }
            assert_eq!(s, 200, "{}", n.base);
            assert!(
                revoked.elapsed() < Duration::from_secs(30),
                "{} still accepts it",
                n.base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `GET /scim/v2/Users?startIndex=…&count=…` on the node at `base`: (totalResults, ids).
async fn users_page(base: &str, start_index: usize, count: usize) -> (u64, Vec<String>) {
    let resp = reqwest::Client::new()
        .get(format!(
            "{base}/scim/v2/Users?startIndex={start_index}&count={count}&attributes=userName"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list users");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("a list response");
    let ids = v["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    (v["totalResults"].as_u64().expect("totalResults"), ids)
}

/// `scimhub_pg_deep_pages_total{path}` of the node at `base`.
async fn deep_pages(base: &str, path: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("scimhub_pg_deep_pages_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Deep index pages on one node seek through its id ranks and still answer exactly what the
/// database holds after another node created and deleted users (issue 17: deep pages cost what
/// shallow ones do, on several nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pages_on_one_node_follow_writes_on_another() {
    let Some(db) = Db::create() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: the deep-page proof did not run");
        return;
    };
    let dir = Scratch::new("nodes-pages");
    let (hook, _, _) = receiver().await;
    let policy = write_setup(dir.path(), &hook.url());
    let writer = start_node(dir.path(), "writer", &db.url, &policy, &[]);
    let reader = start_node(dir.path(), "reader", &db.url, &policy, &[]);
    let to_writer = RoundRobin::new(vec![writer.base.clone()]);
    let create = |name: String| {
        let rr = to_writer.clone();
        async move {
            let (s, v) = rr
                .send(reqwest::Method::POST, "/Users", Some(employee(&name)))
                .await;
            assert_eq!(s, 201, "POST {name}: {v}");
            v["id"].as_str().expect("id").to_owned()
        }
    };
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(create(format!("page{i:03}")).await);
    }
    ids.sort();
    // The reader walks the whole list by index pages: the first starts at the first row, the
    // others seek.
    let walk = |total: usize| {
        let base = reader.base.clone();
        async move {
            let mut seen = Vec::new();
            for start in (1..=total).step_by(100) {
                let (n, page) = users_page(&base, start, 100).await;
                assert_eq!(n as usize, total, "totalResults at startIndex {start}");
                seen.extend(page);
            }
            seen
        }
    };
    assert_eq!(walk(250).await, ids);
    assert_eq!(deep_pages(&reader.base, "seek").await, 2);

    // The writer deletes three users before the second page and creates two: the reader's
    // ranks are stale, its pages' own check says so, and they catch up.
    for id in ids.drain(3..6) {
        let (s, v) = to_writer
            .send(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(s, 204, "DELETE {id}: {v}");
    }
    ids.push(create("page-late-1".into()).await);
    ids.push(create("page-late-2".into()).await);
    ids.sort();
    assert_eq!(walk(249).await, ids);
    assert_eq!(deep_pages(&reader.base, "caught_up").await, 1);
    assert_eq!(deep_pages(&reader.base, "seek").await, 3);
    assert_eq!(deep_pages(&reader.base, "walk").await, 0);
}

/// PATCHes of one user sent at once to two nodes: every one that was acknowledged is in the
/// stored user, and each got a version of its own. Before the write path locked the row it
/// read, two overlapping PATCHes both read version N and the later commit dropped the earlier's
/// change while both answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_one_user_on_two_nodes_all_land() {
    let Some(db) = Db::create() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: the concurrent-PATCH proof did not run");
        return;
    };
    let dir = Scratch::new("nodes-patches");
    let (hook, _, _) = receiver().await;
    let policy = write_setup(dir.path(), &hook.url());
    let a = start_node(dir.path(), "a", &db.url, &policy, &[]);
    let b = start_node(dir.path(), "b", &db.url, &policy, &[]);
    let rr = RoundRobin::new(vec![a.base.clone(), b.base.clone()]);
    let (s, created) = rr
        .send(reqwest::Method::POST, "/Users", Some(employee("patched")))
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    const PATCHES: usize = 48;
    run_all(PATCHES, (0..PATCHES).collect(), |i| {
        let (rr, id) = (rr.clone(), id.clone());
        async move {
            let op = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "emails",
                                "value": [{"value": format!("e{i}@example.com"), "type": "other"}]}],
            });
            let (s, v) = rr
                .send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(op))
                .await;
            assert_eq!(s, 200, "PATCH {i}: {v}");
        }
    })
    .await;
    for base in [&a.base, &b.base] {
        let (s, user) = RoundRobin::new(vec![base.clone()])
            .send(reqwest::Method::GET, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(s, 200, "{user}");
        let emails: Vec<&str> = user["emails"]
            .as_array()
            .expect("emails")
            .iter()
            .filter_map(|e| e["value"].as_str())
            .collect();
        for i in 0..PATCHES {
            let e = format!("e{i}@example.com");
            assert!(emails.contains(&e.as_str()), "{e} lost: {emails:?}");
        }
        let version = created["meta"]["version"].as_str().expect("version");
        let first: u64 = version
            .trim_start_matches("W/\"")
            .trim_end_matches('"')
            .parse()
            .unwrap();
        assert_eq!(
            user["meta"]["version"],
            json!(format!("W/\"{}\"", first + PATCHES as u64)),
            "every PATCH its own version"
        );
    }
}
