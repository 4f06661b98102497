//! Issue #15's proof, with the real binary: 50 joiners in one /Bulk request, and ONE onboarding
//! confirmation at a real SMTP server (aiosmtpd, `tests/engine/support/smtp_sink.py`) to the
//! policy's HR and IT leads, listing every joiner by displayName and userName with what they
//! got, what waits for approval and from whom, and what failed with the reason. SQLite and
//! PostgreSQL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Backend, TestApp};

/// aiosmtpd writing each accepted message to a JSON file.
struct SmtpSink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    fn start(scratch: &Path) -> SmtpSink {
        let home = std::env::var("SCIMHUB_STANDINS_HOME").map_or_else(
            |_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                    .join(".cache/scimhub-standins")
            },
            PathBuf::from,
        );
        let py = home.join("venv/bin/python");
        assert!(
            py.exists(),
            "{} is missing: run `bash connectors/tests/support_standins/install.sh`",
            py.display()
        );
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
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        SmtpSink { child, dir, port }
    }

    fn messages(&self) -> Vec<Value> {
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

/// Chat for everyone (granted), payroll for accountants on a webhook nobody listens on (fails:
/// parked after one attempt), a GitHub admin role for admins that its owner `grace` approves
/// (waits).
fn policy(smtp_port: u16, dead_port: u16) -> String {
    format!(
        r#"
[[connector]]
name = "chat"
type = "memory"
description = "Team chat"

[[connector]]
name = "payroll"
type = "webhook"
description = "Payroll"
max_attempts = 1
settings = {{ url = "http://127.0.0.1:{dead_port}/hook", entitlement_kinds = ["role"] }}
credentials = {{ signing_secret = {{ env = "PAYROLL_SECRET" }} }}

[[connector]]
name = "github"
type = "memory"
owners = ["grace"]

[[profile]]
name = "everyone"
match = 'userName pr'
grants = [{{ connector = "chat", kind = "channel", id = "general" }}]

[[profile]]
name = "finance"
match = 'title eq "Accountant"'
grants = [{{ connector = "payroll", kind = "role", id = "clerk" }}]

[[profile]]
name = "admins"
match = 'title eq "Admin"'
grants = [{{ connector = "github", kind = "group", id = "admins", approval = "owner" }}]

[notify]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "scimhub@example.com"
hr_leads = ["hr-lead@example.com"]
it_leads = ["it-lead@example.com"]
"#
    )
}

fn title(i: usize) -> &'static str {
    match i {
        7 => "Accountant",
        3 | 40 => "Admin",
        _ => "Engineer",
    }
}

fn start(backend: Backend) -> Option<(TestApp, SmtpSink)> {
    let scratch =
        std::env::temp_dir().join(format!("scimhub-onboard-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let sink = SmtpSink::start(&scratch);
    let app = TestApp::builder(backend)
        .policy(&policy(sink.port, free_port()))
        .env("PAYROLL_SECRET", "payroll-signing-secret-of-32-bytes!!")
        .start()?;
    Some((app, sink))
}

fn run(backend: Backend) {
    let Some((app, sink)) = start(backend) else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    // grace exists before the burst (she approves); she is no joiner of it.
    app.create_user("grace");
    let ops: Vec<Value> = (1..=50)
        .map(|i| {
            json!({
                "method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                "data": {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("joiner{i:02}@example.com"),
                    "displayName": format!("Joiner <{i:02}>"),
                    "title": title(i),
                }
            })
        })
        .collect();
    let r = app
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                   "Operations": ops}),
        )
        .send()
        .status(200)
        .json();
    let created = r["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "201")
        .count();
    assert_eq!(created, 50, "{r}");

    let start = Instant::now();
    let mail = loop {
        let mails: Vec<Value> = sink
            .messages()
            .into_iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains("onboarding confirmation"))
            })
            .collect();
        if let Some(m) = mails.first() {
            // Give a second mail the time to show up, then insist on one.
            std::thread::sleep(Duration::from_secs(2));
            let again = sink
                .messages()
                .into_iter()
                .filter(|m| {
                    m["subject"]
                        .as_str()
                        .is_some_and(|s| s.contains("onboarding confirmation"))
                })
                .count();
            assert_eq!(again, 1, "one confirmation per burst");
            break m.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no onboarding confirmation; mails: {:?}\nlog: {}",
            sink.messages(),
            app.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut to: Vec<String> = mail["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["hr-lead@example.com", "it-lead@example.com"]);
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.contains("50 joiners from bootstrap")
            && subject.contains("2 waiting for approval, 1 needing attention"),
        "{subject}"
    );
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    for i in 1..=50 {
        let line = format!("    | Joiner <{i:02}> (joiner{i:02}@example.com)");
        assert!(text.contains(&line), "joiner {i} not listed:\n{text}");
        let escaped = format!("Joiner &lt;{i:02}&gt; (joiner{i:02}@example.com)");
        assert!(html.contains(&escaped), "joiner {i} not in the HTML");
    }
    assert!(text.contains("- 47 with all access granted"), "{text}");
    assert!(
        text.contains("Granted: account on Team chat (chat); channel:general on Team chat (chat)"),
        "{text}"
    );
    // Who waits, and for whom.
    let waiting = &text[text
        .find("Waiting for approval (2):")
        .expect("waiting section")..];
    assert!(
        waiting.contains("Waiting for approval: group:admins on github, to be decided at the owner level by grace"),
        "{text}"
    );
    // What failed, and why.
    let attention = &text[text
        .find("Needing attention (1):")
        .expect("attention section")..];
    assert!(
        attention.contains("    | Joiner <07> (joiner07@example.com)")
            && attention.contains("Failed: account on Payroll (payroll). Reason"),
        "{text}"
    );
    assert!(!html.contains("<script") && html.contains("<pre"), "{html}");
}

#[test]
fn bulk_onboarding_mails_one_confirmation_listing_every_joiner_sqlite() {
    run(Backend::Sqlite);
}

#[test]
fn bulk_onboarding_mails_one_confirmation_listing_every_joiner_postgres() {
    run(Backend::Postgres);
}
