//! `scimhub grant` with the real binary against a running server's database: a grant that needs
//! no approval is active at once and the server's workers provision it through the outbox; the
//! listing; an over-long grant refused with the policy's limit named; an early revocation that
//! the workers carry out. SQLite and PostgreSQL.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Backend, TestApp};

const POLICY: &str = concat!(
    crate::harness::chat_for_everyone!(),
    r#"
[[profile]]
name = "sre"
match = 'title eq "SRE"'
grants = [{ connector = "chat", kind = "channel", id = "incidents" }]

[grants]
max_duration = "8h"
"#
);

fn start(backend: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::builder(backend).policy(POLICY).start()?;
    let policy = app.policy_path().to_owned();
    Some((app, policy))
}

fn json_out(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "scimhub grant failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// Waits until the server's outbox has a done operation of `user_id` whose operation contains
/// `what`.
fn wait_done(app: &TestApp, user_id: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .get("/admin/v1/outbox?status=done&limit=1000")
            .send()
            .status(200)
            .json();
        let found = r["Resources"].as_array().is_some_and(|ops| {
            ops.iter()
                .any(|o| o["user_id"] == user_id && o["operation"].to_string().contains(what))
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no done {what} for {user_id}: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(backend: Backend) {
    let Some((app, policy)) = start(backend) else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    let ada = app.create_user("ada");
    let ada_id = ada["id"].as_str().unwrap().to_string();
    // Another file than the one the hub applied (one that would allow 72 h): refused, both
    // hashes named, nothing written.
    let other = format!("{policy}.other.toml");
    std::fs::write(&other, POLICY.replace("\"8h\"", "\"72h\"")).unwrap();
    let refused = app.cli(&[
        "grant",
        "ada",
        "chat:channel:incidents",
        "--for",
        "48h",
        "--reason",
        "INC-0",
        "--policy",
        &other,
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("is not the policy the hub applied last"),
        "{err}"
    );
    let none = app.get("/admin/v1/grants").send().status(200).json();
    assert_eq!(none["totalResults"], 0, "{none}");
    // Too long: refused, the policy's limit named, nothing written.
    let long = app.cli(&[
        "grant",
        "ada",
        "chat:channel:incidents",
        "--for",
        "9h",
        "--reason",
        "INC-1",
        "--policy",
        &policy,
    ]);
    assert!(!long.status.success());
    let err = String::from_utf8_lossy(&long.stderr);
    assert!(
        err.contains("at most 8h") && err.contains("max_duration"),
        "{err}"
    );
    // The incidents channel needs no approval where its profile grants it: active at once.
    let out = app.cli(&[
        "grant",
        "ada",
        "chat:channel:incidents",
        "--for",
        "4h",
        "--reason",
        "INC-1",
        "--policy",
        &policy,
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let created = json_out(&out);
    assert!(err.contains("is active until"), "{err}");
    assert_eq!(created["waits_for_approval"], false);
    assert_eq!(created["grant"]["state"], "active");
    assert_eq!(
        created["grant"]["requested_by"]
            .as_str()
            .map(|s| s.starts_with("cli:")),
        Some(true)
    );
    let id = created["grant"]["id"].as_str().unwrap().to_string();
    // The running server's workers provision it.
    wait_done(&app, &ada_id, "incidents");
    let listed = json_out(&app.cli(&[
        "grant", "list", "--user", "ada", "--active", "--policy", &policy,
    ]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["label"], "chat:channel:incidents");
    // The server's admin API sees it too.
    let api = app
        .get("/admin/v1/grants?active=true")
        .send()
        .status(200)
        .json();
    assert_eq!(api["totalResults"], 1, "{api}");
    // Revoked early: the workers take it away.
    let revoked = json_out(&app.cli(&[
        "grant", "revoke", &id, "--reason", "resolved", "--policy", &policy,
    ]));
    assert_eq!(revoked["state"], "revoked");
    wait_done(&app, &ada_id, "revoke");
    let listed = json_out(&app.cli(&["grant", "list", "--active", "--policy", &policy]));
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    // Listing decides nothing: another file than the applied one lists the same grants.
    let all = json_out(&app.cli(&["grant", "list", "--user", "ada", "--policy", &other]));
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["state"], "revoked", "{all}");
}

#[test]
fn sqlite() {
    run(Backend::Sqlite);
}

#[test]
fn postgres() {
    run(Backend::Postgres);
}
