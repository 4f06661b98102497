//! The audit chain end to end: SCIM writes through the real binary (8 in parallel), anchors in
//! the server's log, `scimhub audit verify` passing, then failing after one row is edited with
//! SQL (naming the entry) and after the tail is cut (against the logged anchors); export.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};

use crate::harness::{Backend, TestApp};

fn sql(app: &TestApp, statements: &str) {
    if let Some(path) = app.db_url.strip_prefix("sqlite://") {
        let mut c = diesel::SqliteConnection::establish(path).unwrap();
        c.batch_execute(statements).unwrap();
    } else {
        let mut c = diesel::PgConnection::establish(&app.db_url).unwrap();
        c.batch_execute(statements).unwrap();
    }
}

fn cli_ok(app: &TestApp, args: &[&str]) -> String {
    let out = app.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn start(backend: Backend) -> Option<TestApp> {
    TestApp::builder(backend)
        .config("[audit]\nanchor_interval = \"1s\"\n")
        .start()
}

fn run(app: TestApp) {
    // 8 clients writing at once (each its own request), then a PATCH and a DELETE.
    std::thread::scope(|s| {
        for t in 0..8 {
            let app = &app;
            s.spawn(move || {
                for i in 0..5 {
                    app.create_user(&format!("w{t}-{i}"));
                }
            });
        }
    });
    let id = app.create_user("ada")["id"].as_str().unwrap().to_string();
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "title", "value": "Engineer"}]}),
    )
    .header("X-Request-Id", "req-e2e-patch")
    .send()
    .status(200);
    app.delete(&format!("/Users/{id}")).send().status(204);
    let writes = 8 * 5 + 3;

    let head = cli_ok(&app, &["audit", "head"]);
    assert!(head.starts_with(&format!("{writes}:")), "{head}");
    let out = cli_ok(&app, &["audit", "verify"]);
    assert!(out.contains("ok: the audit chain verifies"), "{out}");
    assert!(out.contains(&format!("checked {writes}")), "{out}");

    // The server anchors the head in its log; the log is an anchors file as it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    let anchor = format!("audit chain anchor seq={writes} ");
    while !app.log().contains(&anchor) {
        assert!(
            Instant::now() < deadline,
            "no anchor in the log: {}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let anchors = app.dir.join("anchors.log");
    std::fs::write(&anchors, app.log()).unwrap();
    let anchors = anchors.display().to_string();
    cli_ok(&app, &["audit", "verify", "--anchors-file", &anchors]);

    // Export: the PATCH's entry carries its request id and the changed attribute's name.
    let jsonl = cli_ok(&app, &["audit", "export", "--format", "jsonl"]);
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), writes);
    let patch = lines
        .iter()
        .find(|e| e["detail"]["request"] == "req-e2e-patch")
        .expect("the PATCH is audited with its request id");
    assert_eq!(patch["action"], "scim.user.update");
    assert_eq!(patch["actor"], "bootstrap");
    assert_eq!(patch["detail"]["changed"], json!(["title"]));
    let csv = cli_ok(&app, &["audit", "export", "--format", "csv"]);
    assert_eq!(csv.lines().count(), writes + 1);
    assert!(csv.starts_with("seq,at,actor,"));

    // One row edited with SQL: verify fails and names it.
    sql(
        &app,
        "UPDATE engine_audit SET actor = 'mallory' WHERE seq = 7",
    );
    let out = app.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 7 was edited"), "{err}");
    sql(
        &app,
        "UPDATE engine_audit SET actor = 'bootstrap' WHERE seq = 7",
    );
    cli_ok(&app, &["audit", "verify"]);

    // The tail cut and the head row moved back: only the anchors know.
    let last = writes as i64;
    sql(
        &app,
        &format!(
            "DELETE FROM engine_audit WHERE seq > {}; UPDATE engine_audit_head SET seq = {}, \
             hash = (SELECT hash FROM engine_audit WHERE seq = {}) WHERE id = 1",
            last - 2,
            last - 2,
            last - 2
        ),
    );
    cli_ok(&app, &["audit", "verify"]);
    let out = app.cli(&["audit", "verify", "--anchors-file", &anchors]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated"), "{err}");

    // The history deleted behind a retention checkpoint nobody signed: without the key that
    // pruning signs with, verify does not start from it (nor pass over the anchors before it).
    sql(
        &app,
        &format!(
            "INSERT INTO engine_audit_checkpoints (seq, hash, at, pruned, mac) \
             SELECT seq, hash, '2026-12-07T04:00:00.000000Z', seq, 'forged' \
             FROM engine_audit WHERE seq = {}; DELETE FROM engine_audit WHERE seq < {}",
            last - 3,
            last - 2
        ),
    );
    let out = app.cli(&["audit", "verify", "--anchors-file", &anchors]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("signature not checked"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no [audit] checkpoint_key was given"), "{err}");
}

#[test]
fn audit_chain_verify_and_tamper_sqlite() {
    run(start(Backend::Sqlite).expect("sqlite"));
}

#[test]
fn audit_chain_verify_and_tamper_postgres() {
    match start(Backend::Postgres) {
        Some(app) => run(app),
        None => eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run"),
    }
}
