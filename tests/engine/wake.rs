//! Admin decisions wake the outbox workers when they commit, as SCIM writes do.
//!
//! The workers' idle poll is set to an hour, so anything that runs within the tests' deadline
//! (seconds) was started by a wake-up: with only the poll these tests fail. The in-process test
//! covers every decision that queues work; the binary test does an approval over HTTP with a
//! token issued by `scimhub token issue --user`, the poll set through
//! `SCIMHUB_ENGINE_IDLE_POLL_MS`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connectors::memory::MemoryState;
use connectors::ConnectorError;
use scim_server::admin::in_tx;
use scim_server::store::outbox;
use serde_json::json;

use super::{user, Env, POLICY};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const HOUR: Duration = Duration::from_secs(3600);
/// Far below the idle poll: what happens within it was woken.
const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `check` until it holds or [`DEADLINE`] passes.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not done within {DEADLINE:?} (the workers poll only every hour, so only a \
             wake-up on commit gets it done in time)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn policy() -> String {
    POLICY.replace(
        "[notify]\n",
        "[approvals]\nsecurity = [\"sec\"]\n\n[notify]\n",
    )
}

macro_rules! wake_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, &super::policy()) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, &super::policy()) { super::$name(e) } } )* }
    };
}

wake_backends!(decisions_wake_the_workers_on_commit);

fn decisions_wake_the_workers_on_commit(env: Env) {
    // The workers run on their own, polling only every hour.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut workers = env.workers.clone();
    workers.config.idle_poll = HOUR;
    rt.block_on(async { workers.spawn() });
    // Let both lanes claim nothing and go idle before anything is queued.
    std::thread::sleep(Duration::from_millis(200));

    // A SCIM write wakes them (the store's write hook): the joiner's operations run.
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let mut a = user("ada", "Employee", "Engineering", "Engineer");
    a[ENTERPRISE]["manager"] = json!({"value": mia});
    let ada = env.create_user(a);
    env.create_user(user("sec", "Employee", "Security", "Analyst"));
    eventually("the joiner's operations", || {
        env.holds("github", "ada") == Some((true, vec!["team:eng".into()]))
    });

    // An approval: the entitlement is granted at once.
    let req = env.admin.approvals(Some("pending")).unwrap();
    let req = req.iter().find(|r| r.user_id == ada).unwrap();
    env.admin.approve(&req.id, &env.as_user("mia")).unwrap();
    eventually("the approved entitlement", || {
        env.holds("github", "ada").map(|h| h.1) == Some(vec!["org:acme".into(), "team:eng".into()])
    });

    // A retry of a parked operation runs at once.
    let fay = env.create_user(user("fay", "Employee", "Support", "Agent"));
    // Every joiner operation of fay's has run before the failure is injected: otherwise it can
    // hit one of them (a channel grant still queued) instead of the mover's, and the mover then
    // supersedes the parked operation.
    let settled = || {
        in_tx(&env.store, |c| {
            let pending = outbox::list_ops(c, Some(&fay), Some(outbox::OutboxStatus::Pending), 10)?;
            let running = outbox::list_ops(c, Some(&fay), Some(outbox::OutboxStatus::Running), 10)?;
            Ok(pending.is_empty() && running.is_empty())
        })
        .unwrap()
    };
    eventually("fay's account", || {
        env.holds("slack", "fay").is_some() && settled()
    });
    env.app("slack")
        .fail_next([ConnectorError::permanent("slack", "account_limit")]);
    env.patch_user(&fay, |d| {
        d[ENTERPRISE]["department"] = json!("Sales");
    });
    let failed = || {
        in_tx(&env.store, |c| {
            outbox::list_ops(c, Some(&fay), Some(outbox::OutboxStatus::Failed), 10)
        })
        .unwrap()
    };
    eventually("the parked operation", || failed().len() == 1);
    let op = failed()[0].id;
    env.admin.retry(op, "admin").unwrap();
    eventually("the retried operation", || {
        env.holds("slack", "fay")
            .is_some_and(|h| h.1.contains(&"channel:sales".to_string()))
    });

    // A mover's legacy access acknowledged by the manager goes at once.
    env.patch_user(&ada, |d| {
        d[ENTERPRISE]["department"] = json!("Sales");
    });
    eventually("the mover's plan", || {
        env.holds("slack", "ada")
            .is_some_and(|h| h.1.contains(&"channel:sales".to_string()))
    });
    assert!(env
        .holds("github", "ada")
        .is_some_and(|h| h.1.contains(&"team:eng".to_string())));
    env.admin.legacy_access(&ada, None, "test").unwrap();
    eventually("the acknowledged legacy access", || {
        env.holds("github", "ada") == Some((false, vec![]))
    });

    // A blast-radius hold confirmed: the held operations run at once.
    let ids: Vec<String> = (0..10)
        .map(|i| env.create_user(user(&format!("u{i}"), "Employee", "Sales", "Rep")))
        .collect();
    let enabled = |i: usize| env.holds("slack", &format!("u{i}")).map(|h| h.0);
    eventually("ten joiners", || (0..10).all(|i| enabled(i) == Some(true)));
    for id in &ids {
        env.patch_user(id, |d| {
            d.insert("active".into(), json!(false));
        });
    }
    let holds = || env.admin.holds(Some("pending")).unwrap();
    eventually("the hold", || holds().len() == 1);
    let disabled = || (0..10).filter(|i| enabled(*i) == Some(false)).count();
    eventually("the leavers below the threshold", || disabled() > 0);
    assert!(disabled() < 10, "the hold held nothing");
    env.admin.confirm_hold(&holds()[0].id, "admin").unwrap();
    eventually("the released leavers", || disabled() == 10);
    rt.shutdown_background();
}

/// `scimhub serve` with the idle poll at an hour; stdout's first line gives the address.
fn serve(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}", dir.join("hub.db").display()))
        .arg("--policy")
        .arg(dir.join("policy.toml"))
        .env(
            "SCIMHUB_BOOTSTRAP_TOKEN",
            "bootstrap-token-of-at-least-32-bytes",
        )
        .env("SCIMHUB_ENGINE_IDLE_POLL_MS", HOUR.as_millis().to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (child, addr)
}

#[test]
fn the_binary_runs_an_approval_at_once_with_the_poll_at_an_hour() {
    let dir = std::env::temp_dir().join(super::unique("scimhub-wake"));
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app.json");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"
[[connector]]
name = "github"
type = "memory"
settings = {{ file = "{}" }}

[[profile]]
name = "eng"
match = 'title eq "Engineer"'
grants = [
  {{ connector = "github", kind = "team", id = "eng" }},
  {{ connector = "github", kind = "org", id = "acme", role = "admin", approval = "manager" }},
]

# The users below are pushed with the bootstrap token: it is the manager's source of truth, so
# the manager it names may decide.
[[source]]
client = "bootstrap"
owns = ["manager"]
"#,
            app.display()
        ),
    )
    .unwrap();
    let (mut child, addr) = serve(&dir);
    let http = reqwest::blocking::Client::new();
    let scim = |body: serde_json::Value| {
        let r = http
            .post(format!("http://{addr}/scim/v2/Users"))
            .bearer_auth("bootstrap-token-of-at-least-32-bytes")
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        r.json::<serde_json::Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mia = scim(json!({"userName": "mia", "title": "Manager"}));
    scim(json!({"userName": "ada", "title": "Engineer", ENTERPRISE: {"manager": {"value": mia}}}));
    let ents = || -> Vec<String> {
        std::fs::read_to_string(&app)
            .ok()
            .and_then(|t| serde_json::from_str::<MemoryState>(&t).ok())
            .and_then(|s| s.accounts.get("ada").cloned())
            .map(|a| a.entitlements.iter().map(|e| e.id.clone()).collect())
            .unwrap_or_default()
    };
    eventually("the joiner's team", || ents() == ["eng"]);
    let list: serde_json::Value = http
        .get(format!("http://{addr}/admin/v1/approvals"))
        .bearer_auth("bootstrap-token-of-at-least-32-bytes")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = list["Resources"][0]["id"].as_str().unwrap().to_string();
    // The manager's token, issued against the running hub's database.
    let out = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args([
            "token",
            "issue",
            "--name",
            "mia-approvals",
            "--scope",
            "approvals",
        ])
        .args(["--user", "mia", "--database-url"])
        .arg(format!("sqlite://{}", dir.join("hub.db").display()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let unknown = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args(["token", "issue", "--name", "x", "--scope", "approvals"])
        .args(["--user", "nobody", "--database-url"])
        .arg(format!("sqlite://{}", dir.join("hub.db").display()))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user with this userName or id"));
    let approve = |bearer: &str| {
        http.post(format!("http://{addr}/admin/v1/approvals/{id}/approve"))
            .bearer_auth(bearer)
            .send()
            .unwrap()
    };
    // The bootstrap token acts as nobody.
    assert_eq!(
        approve("bootstrap-token-of-at-least-32-bytes")
            .status()
            .as_u16(),
        403
    );
    let r = approve(&token);
    assert_eq!(r.status().as_u16(), 200);
    let row: serde_json::Value = r.json().unwrap();
    assert_eq!(
        (row["decided_by"].as_str(), row["decided_as"].as_str()),
        (Some("mia"), Some("manager"))
    );
    eventually("the approved org role", || ents() == ["acme", "eng"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
