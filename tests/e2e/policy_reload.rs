//! `GET /admin/v1/policy` and `POST /admin/v1/policy/reload` with the real binary: the policy
//! in force with the hash of the bytes it was parsed from; an invalid edit refused with its
//! line-precise errors while the policy in force stays (and the file is reported as differing);
//! a valid edit swapped in with a new generation and connector; both requests in the audit
//! chain under the caller's name; a token without the admin scope refused. SQLite and
//! PostgreSQL.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Backend, TestApp};

const POLICY: &str = crate::harness::chat_for_everyone!();

/// Added to [`POLICY`]: a second connector and a profile granting through it.
const WIKI: &str = r#"
[[connector]]
name = "wiki"
type = "memory"

[[profile]]
name = "writers"
match = 'title eq "Writer"'
grants = [{ connector = "wiki", kind = "space", id = "docs" }]
"#;

/// [`POLICY`] with its profile granting through a connector it does not define (line 9).
fn bad_policy() -> String {
    POLICY.replace(
        "{ connector = \"chat\", kind",
        "{ connector = \"nowhere\", kind",
    )
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x.as_str()
                .map_or_else(|| x["name"].as_str().unwrap().to_owned(), str::to_owned)
        })
        .collect()
}

fn run(backend: Backend) {
    let Some(app) = TestApp::builder(backend).policy(POLICY).start() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    let path = app.policy_path().to_owned();

    let st = app.get("/admin/v1/policy").send().status(200).json();
    assert_eq!(st["path"], path.as_str(), "{st}");
    assert_eq!(st["sha256"], sha256(POLICY), "{st}");
    assert_eq!(st["file_sha256"], sha256(POLICY), "{st}");
    assert_eq!(st["file_differs"], false, "{st}");
    assert_eq!(names(&st["connectors"]), ["chat"]);
    assert_eq!(names(&st["profiles"]), ["everyone"]);
    let generation = st["generation"].as_u64().expect("generation");

    // An invalid edit: refused with the file's line and column, nothing changes.
    let bad = bad_policy();
    assert_ne!(bad, POLICY);
    std::fs::write(&path, &bad).unwrap();
    let refused = app
        .post("/admin/v1/policy/reload", Value::Null)
        .send()
        .status(400)
        .json();
    assert_eq!(refused["scimType"], "invalidValue", "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("{path}:9:")), "{detail}");
    assert!(detail.contains("nowhere"), "{detail}");
    assert!(detail.contains("stays"), "{detail}");
    let st = app.get("/admin/v1/policy").send().status(200).json();
    assert_eq!(st["sha256"], sha256(POLICY), "{st}");
    assert_eq!(st["generation"].as_u64(), Some(generation), "{st}");
    assert_eq!(st["file_sha256"], sha256(&bad), "{st}");
    assert_eq!(st["file_differs"], true, "{st}");

    // A writer stored before the edit that gives writers a wiki space.
    let wendy = app.create_user("wendy");
    let wendy = wendy["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/Users/{wendy}"),
        serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "Writer"}]}),
    )
    .send()
    .status(200);

    // A valid edit: in force at once (the file watcher may have loaded it a moment before; the
    // request then reloads the same bytes).
    let v2 = format!("{POLICY}{WIKI}");
    std::fs::write(&path, &v2).unwrap();
    let done = app
        .post("/admin/v1/policy/reload", Value::Null)
        .send()
        .status(200)
        .json();
    assert_eq!(done["reloaded"], true, "{done}");
    assert_eq!(done["sha256"], sha256(&v2), "{done}");
    assert!(done["generation"].as_u64().unwrap() > generation, "{done}");
    assert_eq!(
        done["changed"],
        done["previous_sha256"] != done["sha256"],
        "{done}"
    );
    let st = app.get("/admin/v1/policy").send().status(200).json();
    assert_eq!(st["sha256"], sha256(&v2), "{st}");
    assert_eq!(st["file_differs"], false, "{st}");
    assert_eq!(names(&st["connectors"]), ["chat", "wiki"]);
    assert_eq!(names(&st["profiles"]), ["everyone", "writers"]);

    // Everyone is re-planned under the new policy, without a write of their own: the writer
    // gets the wiki space.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done = app
            .get("/admin/v1/outbox?status=done&limit=1000")
            .send()
            .status(200)
            .json();
        let wiki = done["Resources"].as_array().unwrap().iter().any(|op| {
            op["user_id"] == wendy.as_str()
                && op["connector"] == "wiki"
                && op["operation"]["op"] == "grant"
        });
        if wiki {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer was not re-planned under the new policy: {done}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Both requests are in the chain, by the caller, with their outcome.
    let audit = app
        .get("/admin/v1/audit?event=policy_reload")
        .send()
        .status(200)
        .json();
    let entries = audit["Resources"].as_array().unwrap();
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rejected", "ok"], "{audit}");
    for e in entries {
        assert_ne!(e["actor"], "hub", "{e}");
        assert!(!e["actor"].as_str().unwrap_or_default().is_empty(), "{e}");
    }
    assert!(
        entries[0]["detail"].to_string().contains("nowhere"),
        "{}",
        entries[0]
    );

    // A SCIM-only token may not reload.
    let out = app.cli(&[
        "token",
        "issue",
        "--name",
        "hris-only",
        "--scope",
        "scim:read,scim:write",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    app.post("/admin/v1/policy/reload", Value::Null)
        .token(&token)
        .send()
        .status(403);
}

#[test]
fn policy_status_and_reload_sqlite() {
    run(Backend::Sqlite);
}

#[test]
fn policy_status_and_reload_postgres() {
    run(Backend::Postgres);
}
