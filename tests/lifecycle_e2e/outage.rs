//! The outage proof of issue 14, end to end with the real `scimhub` binary: a leaver is
//! terminated over SCIM while the LDAP directory (a real slapd) is down. The leaver SLA runs
//! out and its incident is mailed to a real SMTP server (aiosmtpd) and posted to a Slack-format
//! chat webhook (a local receiver); the directory comes back on the same port; the operator
//! resumes the connector with `scimhub outbox retry --connector dir`; the revocation completes,
//! post-change verification reads both systems back as `verified`, and
//! `GET /admin/v1/events/{id}` records every system with its requested and done times, the SLA
//! breached with the actual completion time, and the verification per system.
//!
//! Everything waits by polling with a deadline; nothing sleeps a fixed time to "let it happen".
//! The circuit of `dir` (`circuit_failures = 2`, `circuit_probe = "10m"`) opens after two failed
//! attempts and keeps its operations waiting (pending, their attempts given back) through the
//! outage rather than parked, so verification waits for them (it never reads a plan with
//! operations still to run), and no attempt of its own reaches the directory until the retry
//! command makes the probe due at once. (With the backoff alone, an attempt due about when
//! the directory came back could run before the command, leaving it nothing to resume.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support_standins::stacks::Slapd;
use crate::support_standins::*;
use crate::world::*;

/// The leaver SLA: long enough for the leaver to be planned, short enough to run out during
/// the outage.
const SLA: &str = "6s";

/// aiosmtpd writing each accepted message to a JSON file (`tests/engine/support/smtp_sink.py`).
pub(crate) struct SmtpSink {
    child: Child,
    dir: PathBuf,
    pub(crate) port: u16,
}

impl SmtpSink {
    pub(crate) fn start(scratch: &Path) -> SmtpSink {
        let py = standins_home().join("venv/bin/python");
        require(&py, "python venv with aiosmtpd");
        let dir = scratch.join("mail");
        let port = free_port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/engine/support/smtp_sink.py"
        );
        let mut child = Command::new(py)
            .arg(script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the SMTP sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("SMTP sink output");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        SmtpSink { child, dir, port }
    }

    pub(crate) fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .filter_map(|f| serde_json::from_str(&std::fs::read_to_string(f).ok()?).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops slapd (SIGTERM to its own id: it closes its database cleanly) and returns what is
/// needed to start it again on the same ports and data.
fn stop_slapd(slapd: Slapd) -> (Scratch, u16, u16) {
    let Slapd {
        _proc,
        dir,
        port,
        sport,
    } = slapd;
    drop(_proc);
    let start = Instant::now();
    while port_open(port) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "slapd still listens"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (dir, port, sport)
}

/// Starts slapd again on its configuration, data and ports (what `start-slapd.sh` execs).
fn restart_slapd(dir: &Path, port: u16, sport: u16) -> Proc {
    let mut cmd = Command::new(require_bin("slapd"));
    cmd.arg("-f")
        .arg(dir.join("slapd.conf"))
        .arg("-h")
        .arg(format!(
            "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{sport}/"
        ))
        .args(["-d", "0"]);
    let mut proc = Proc::spawn("slapd (restarted)", cmd, &dir.join("slapd-restart.log"));
    proc.wait_ready(Duration::from_secs(30), || {
        port_open(port) && port_open(sport)
    });
    proc
}

fn outage_policy(down: &str, ldap_port: u16, ca: &Path, smtp_port: u16) -> String {
    format!(
        r#"
[[connector]]
name = "apps"
type = "scim"
settings = {{ base_url = "{down}", timeout_ms = 5000 }}
credentials = {{ token = {{ env = "E2E_DOWNSTREAM_TOKEN" }} }}

[[connector]]
name = "dir"
type = "ldap"
# an outage of minutes keeps its operations waiting rather than parked: after two failures the
# circuit opens and its probe is ten minutes away, so nothing reaches the directory again until
# the operator says it is back (an attempt of the backoff could otherwise race the restart)
max_attempts = 50
circuit_failures = 2
circuit_probe = "10m"
credentials = {{ bind_password = {{ env = "E2E_LDAP_PW" }} }}
[connector.settings]
url = "ldap://127.0.0.1:{ldap_port}"
tls = "starttls"
ca_file = "{ca}"
bind_dn = "{ldap_admin}"
search_base = "dc=example,dc=com"
users_dn = "ou=people,dc=example,dc=com"
groups_dn = "ou=groups,dc=example,dc=com"
disable = "move_to_ou"
disabled_ou = "ou=disabled,dc=example,dc=com"
placeholder_member = "cn=placeholder,ou=people,dc=example,dc=com"
timeout_ms = 5000

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [
  {{ connector = "apps" }},
  {{ connector = "dir" }},
  {{ connector = "dir", kind = "group", id = "engineering" }},
]

[sla]
leaver = "{SLA}"

[verification]
delay = "2s"

[notify]
from = "scimhub@example.com"
smtp_url = "smtp://127.0.0.1:{smtp_port}"
security = ["security@example.com"]
helpdesk = ["it@example.com"]

[[incidents.chat]]
name = "security-slack"
format = "slack"
url = {{ env = "E2E_CHAT_URL" }}
"#,
        ca = ca.display(),
        ldap_admin = LDAP_ADMIN,
    )
}

/// An admin API GET with the hub's bootstrap token.
pub(crate) async fn admin_get(hub: &Scim, path: &str) -> Value {
    let base = hub.base.trim_end_matches("/scim/v2");
    let resp = hub
        .http
        .get(format!("{base}/admin/v1{path}"))
        .bearer_auth(&hub.token)
        .send()
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Polls `f` every 100 ms until it returns Some, or panics after `timeout` with `what` and the
/// last value seen.
pub(crate) async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => {
                eprintln!("{what}: after {:?}", start.elapsed());
                return v;
            }
            Err(last) if start.elapsed() > timeout => {
                panic!("{what}: not within {timeout:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaver_during_an_outage_breaches_alerts_recovers_and_verifies() {
    let dir = Scratch::new("outage-e2e");
    let slapd = tokio::task::spawn_blocking(Slapd::start)
        .await
        .expect("slapd");
    let ldap_port = slapd.port;
    let ca = dir.path().join("ldap-ca.pem");
    std::fs::copy(slapd.ca(), &ca).expect("CA");
    let downstream = Hub::start(dir.path(), "downstream", DOWNSTREAM_TOKEN, &[], &[]);
    let sink = SmtpSink::start(dir.path());
    let chat = Responder::start(Arc::new(|_req: &HttpRequest| {
        Reply::Respond(200, vec![], "ok".into())
    }))
    .await;

    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        outage_policy(&downstream.base, ldap_port, &ca, sink.port),
    )
    .expect("policy");
    let env = [
        ("E2E_DOWNSTREAM_TOKEN", DOWNSTREAM_TOKEN.to_string()),
        ("E2E_LDAP_PW", LDAP_ADMIN_PW.to_string()),
        ("E2E_CHAT_URL", format!("{}hooks/incidents", chat.url())),
    ];
    let policy_arg = policy_path.display().to_string();
    let hub = Hub::start(
        dir.path(),
        "hub",
        HUB_TOKEN,
        &["--policy", &policy_arg],
        &env,
    );
    let scim = Scim::new(&hub.base, HUB_TOKEN);
    let down = Scim::new(&downstream.base, DOWNSTREAM_TOKEN);

    // ---- an active user with access on both systems --------------------------------------
    let jdoe = scim
        .post("/Users", person("jdoe", "Jane", "Doe", "Engineering"))
        .await;
    let jdoe_id = jdoe["id"].as_str().expect("id").to_owned();
    until(
        "jdoe provisioned in LDAP",
        Duration::from_secs(60),
        || async {
            let st = ldap_user_state(ldap_port, "jdoe").await;
            if st
                == (
                    Some("uid=jdoe,ou=people,dc=example,dc=com".into()),
                    vec!["engineering".to_string()],
                )
            {
                Ok(())
            } else {
                Err(format!("{st:?}"))
            }
        },
    )
    .await;
    until(
        "jdoe provisioned downstream",
        Duration::from_secs(60),
        || async {
            match down.user_by_name("jdoe").await {
                Some(u) if u["active"] == true => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // ---- the directory goes down; the HRIS terminates jdoe --------------------------------
    let (slapd_dir, port, sport) = tokio::task::spawn_blocking(move || stop_slapd(slapd))
        .await
        .expect("stop slapd");
    let left_at = Utc::now();
    scim.patch(
        &format!("/Users/{jdoe_id}"),
        json!([{ "op": "replace", "path": "active", "value": false }]),
    )
    .await;
    let answered_at = Utc::now();
    let events = admin_get(&scim, "/events?user=jdoe&kind=leaver").await;
    assert_eq!(events["totalResults"], 1, "{events}");
    let event_id = events["Resources"][0]["id"].as_i64().expect("event id");
    let sla_due = ts(&events["Resources"][0]["sla_due"]);

    // ---- the SLA runs out: the incident is raised at the deadline ------------------------
    let incident = until(
        "the SLA-breach incident",
        Duration::from_secs(60),
        || async {
            let list = admin_get(&scim, "/incidents").await;
            list["Resources"]
                .as_array()
                .and_then(|r| r.iter().find(|i| i["kind"] == "sla_breach").cloned())
                .ok_or_else(|| list.to_string())
        },
    )
    .await;
    let raised_at = ts(&incident["created"]);
    assert!(raised_at >= sla_due, "raised {raised_at} before {sla_due}");
    assert_eq!(incident["connector"], "dir", "{incident}");
    assert_eq!(incident["user_id"], jdoe_id.as_str(), "{incident}");
    let reason = incident["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("leaver of jdoe"), "{reason}");
    let incident_id = incident["id"].as_i64().expect("incident id");

    // ---- people hear about it: mail at the SMTP sink, a message at the chat webhook ----------
    let mail = until("the incident mail", Duration::from_secs(60), || async {
        let all = sink.messages();
        all.iter()
            .find(|m| {
                m["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains(&format!("incident {incident_id}: sla breach")))
            })
            .cloned()
            .ok_or_else(|| format!("{all:?}"))
    })
    .await;
    let mut rcpt: Vec<String> = mail["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    rcpt.sort();
    assert_eq!(rcpt, ["it@example.com", "security@example.com"], "{mail}");
    let text = mail["text"].as_str().unwrap_or_default();
    // The person by name (quoted), not by id (the SLA's reason still names the event's user
    // id); no admin URL that needs a token.
    let text = text.replace("\r\n", "\n");
    assert!(
        text.contains("Person (as the directory names them):\n    | Jane Doe (jdoe)\n"),
        "{text}"
    );
    assert!(!text.contains("/admin/v1/incidents/"), "{text}");
    assert!(text.contains("leaver of jdoe"), "{text}");
    assert!(text.contains("Connector: dir"), "{text}");
    let post = until(
        "the incident chat message",
        Duration::from_secs(60),
        || async {
            let got = chat.recorded();
            got.iter()
                .find(|r| r.method == "POST" && r.body_text().contains("sla breach"))
                .cloned()
                .ok_or_else(|| format!("{} requests", got.len()))
        },
    )
    .await;
    assert_eq!(post.path, "/hooks/incidents");
    let msg: Value = serde_json::from_slice(&post.body).expect("Slack JSON");
    let chat_text = msg["text"].as_str().expect("Slack text");
    assert!(
        chat_text.contains(&format!("jdoe ({jdoe_id})")),
        "{chat_text}"
    );
    assert!(chat_text.contains("leaver of jdoe"), "{chat_text}");
    assert!(chat_text.contains("dir"), "{chat_text}");

    // Nothing reached the directory, and the record says so.
    let e = admin_get(&scim, &format!("/events/{event_id}")).await;
    assert_eq!(e["sla"]["result"], "breached", "{e}");
    assert_eq!(e["sla"]["completed"], Value::Null, "{e}");
    let dir_sys = e["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["connector"] == "dir")
        .cloned()
        .expect("dir in the record");
    assert_eq!(dir_sys["done"], Value::Null, "{dir_sys}");
    assert!(dir_sys["verifications"].as_array().unwrap().is_empty());

    // ---- the directory comes back on the same port; the operator resumes it ---------------
    let slapd_again = {
        let d = slapd_dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || restart_slapd(&d, port, sport))
            .await
            .expect("restart slapd")
    };
    let retry = Command::new(hub_bin())
        .args(["outbox", "retry", "--connector", "dir", "--policy"])
        .arg(&policy_path)
        .arg("--database-url")
        .arg(format!("sqlite://{}", hub.db.display()))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("scimhub outbox retry");
    assert!(
        retry.status.success(),
        "outbox retry: {}{}",
        String::from_utf8_lossy(&retry.stdout),
        String::from_utf8_lossy(&retry.stderr)
    );
    let resumed: Value = serde_json::from_slice(&retry.stdout).expect("retry JSON");
    let moved = resumed["requeued"].as_array().map_or(0, Vec::len)
        + resumed["resumed"].as_u64().unwrap_or(0) as usize;
    assert!(moved > 0, "nothing resumed: {resumed}");
    assert_eq!(
        resumed["probe"], true,
        "the circuit was not open: {resumed}"
    );

    // ---- the revocation completes; verification passes on every system ---------------------
    let record = until(
        "completion and verification",
        Duration::from_secs(120),
        || async {
            let e = admin_get(&scim, &format!("/events/{event_id}")).await;
            let systems = e["systems"].as_array().cloned().unwrap_or_default();
            let verified = !systems.is_empty()
                && systems.iter().all(|s| {
                    s["verifications"]
                        .as_array()
                        .and_then(|v| v.last())
                        .is_some_and(|v| v["outcome"] == "verified")
                });
            if e["sla"]["completed"].is_string() && verified {
                Ok(e)
            } else {
                Err(e.to_string())
            }
        },
    )
    .await;
    let (dn, groups) = ldap_user_state(ldap_port, "jdoe").await;
    assert_eq!(
        dn.as_deref(),
        Some("uid=jdoe,ou=disabled,dc=example,dc=com")
    );
    assert!(groups.is_empty(), "{groups:?}");
    assert_eq!(
        down.user_by_name("jdoe").await.expect("kept, disabled")["active"],
        false
    );

    // ---- the event's record ----------------------------------------------------------------
    eprintln!("{}", serde_json::to_string_pretty(&record).unwrap());
    assert_eq!(record["kind"], "leaver");
    assert_eq!(record["user_name"], "jdoe");
    let at = ts(&record["at"]);
    assert!(left_at <= at && at <= answered_at, "event at {at}");
    assert_eq!(ts(&record["sla"]["due"]), sla_due);
    assert_eq!(record["sla"]["result"], "breached");
    let completed = ts(&record["sla"]["completed"]);
    assert!(completed > sla_due, "completed {completed}, due {sla_due}");
    assert_eq!(
        record["sla"]["seconds"].as_i64(),
        Some((completed - at).num_seconds())
    );
    let systems = record["systems"].as_array().unwrap();
    let mut names: Vec<&str> = systems
        .iter()
        .map(|s| s["connector"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["apps", "dir"]);
    for s in systems {
        assert_eq!(s["outcome"], "done", "{s}");
        let requested = ts(&s["requested"]);
        let done = ts(&s["done"]);
        assert!(at <= requested && requested <= done, "{s}");
        for op in s["operations"].as_array().unwrap() {
            assert_eq!(op["status"], "done", "{op}");
            assert!(
                op["requested"].is_string() && op["done"].is_string(),
                "{op}"
            );
        }
        let v = s["verifications"].as_array().unwrap().last().unwrap();
        assert!(ts(&v["checked_at"]) >= done, "verified after done: {s}");
    }
    let dir_sys = systems.iter().find(|s| s["connector"] == "dir").unwrap();
    let apps_sys = systems.iter().find(|s| s["connector"] == "apps").unwrap();
    // The directory finished last, after the deadline: its done time is the plan's completion.
    assert_eq!(ts(&dir_sys["done"]), completed);
    assert!(ts(&apps_sys["done"]) < sla_due, "{apps_sys}");
    assert!(
        dir_sys["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["attempts"].as_i64().unwrap_or(0) >= 1),
        "{dir_sys}"
    );
    let kinds: Vec<&str> = record["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"sla_breach"), "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k.starts_with("verification")),
        "{kinds:?}"
    );

    // The operator's CLI prints the same record from the database.
    let shown = Command::new(hub_bin())
        .args(["events", "show", &event_id.to_string(), "--policy"])
        .arg(&policy_path)
        .arg("--database-url")
        .arg(format!("sqlite://{}", hub.db.display()))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("scimhub events show");
    assert!(
        shown.status.success(),
        "events show: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("events show JSON");
    assert_eq!(shown["sla"], record["sla"]);
    assert_eq!(shown["systems"], record["systems"]);

    // ---- the termination report (issue 15) -------------------------------------------------
    // `scimhub report termination jdoe` (the latest leaver event, by userName) from the
    // database: every system with its requested and done times and its verification, the SLA
    // breached, the breach incident; the HTML form names every system too.
    let report = |args: &[&str]| {
        let out = Command::new(hub_bin())
            .args(["report", "termination", "jdoe"])
            .args(args)
            .arg("--database-url")
            .arg(format!("sqlite://{}", hub.db.display()))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("scimhub report termination");
        assert!(
            out.status.success(),
            "report termination: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let r: Value = serde_json::from_slice(&report(&[])).expect("report JSON");
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["schema"], "scimhub/report/termination/v1");
    assert_eq!(r["event"]["id"], event_id);
    assert_eq!(r["event"]["kind"], "leaver");
    assert_eq!(r["user"]["user_name"], "jdoe");
    assert_eq!(r["sla"], record["sla"]);
    assert!(r["audit_head"]["seq"].as_i64().unwrap_or(0) > 0, "{r}");
    let rs = r["systems"].as_array().unwrap();
    let mut names: Vec<&str> = rs
        .iter()
        .map(|s| s["connector"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["apps", "dir"]);
    for s in rs {
        let requested = ts(&s["requested"]);
        let done = ts(&s["done"]);
        assert!(at <= requested && requested <= done, "{s}");
        assert_eq!(s["verification"], "verified", "{s}");
        for op in s["operations"].as_array().unwrap() {
            assert!(
                op["requested"].is_string() && op["done"].is_string(),
                "{op}"
            );
        }
    }
    assert_eq!(r["summary"]["systems_verified"], 2, "{r}");
    assert!(r["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["kind"] == "sla_breach"));
    let html_path = dir.path().join("termination.html");
    report(&["--format", "html", "--out", html_path.to_str().unwrap()]);
    let html = std::fs::read_to_string(&html_path).expect("report HTML");
    for needle in [
        "apps",
        "dir",
        "breached",
        "verified",
        r["audit_head"]["hash"].as_str().unwrap(),
    ] {
        assert!(html.contains(needle), "{needle} not in the HTML report");
    }
    // The admin API serves the same report.
    let via_api = admin_get(&scim, "/reports/termination/jdoe").await;
    assert_eq!(via_api["systems"], r["systems"]);
    drop(slapd_again);
}
