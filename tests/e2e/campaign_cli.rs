//! `scimhub campaign create | list | report` with the real binary against a serving hub's
//! database (the server plans the users; the command line opens a campaign over what the
//! engine applied, lists it and prints its report; the admin API sees the same campaign).
//! SQLite and PostgreSQL.

use serde_json::Value;

use crate::harness::{Backend, TestApp};

const POLICY: &str = r#"
[[connector]]
name = "chat"
type = "memory"

[[connector]]
name = "wiki"
type = "memory"

[[profile]]
name = "everyone"
match = 'userName pr'
grants = [{ connector = "chat", kind = "channel", id = "general" },
          { connector = "wiki", kind = "space", id = "all" }]

[certification]
schedule = "off"
"#;

fn start(backend: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::builder(backend).policy(POLICY).start()?;
    let policy = app.policy_path().to_owned();
    Some((app, policy))
}

fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    let out = app.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(app: TestApp, policy: &str) {
    app.create_user("ada");
    app.create_user("bea");
    // Items are the access as last applied: wait until the server's workers applied both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let queued: usize = ["pending", "running"]
            .iter()
            .map(|s| {
                let v = app
                    .get(&format!("/admin/v1/outbox?status={s}"))
                    .send()
                    .status(200)
                    .json();
                v["Resources"].as_array().map(Vec::len).unwrap_or(0)
            })
            .sum();
        if queued == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let made = cli_json(
        &app,
        &[
            "campaign",
            "create",
            "--name",
            "Chat review",
            "--scope",
            "connector=chat",
            "--due",
            "3d",
            "--policy",
            policy,
        ],
    );
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["state"], "open", "{made}");
    let items = made["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "one chat channel each: {made}");
    assert!(items
        .iter()
        .all(|i| i["connector"] == "chat" && i["source"] == "profile"));
    // Nobody on the ladder in this policy: unassigned, for a security approver to decide.
    assert!(
        items.iter().all(|i| i["reviewer_level"] == "unassigned"),
        "{made}"
    );
    let list = cli_json(
        &app,
        &["campaign", "list", "--state", "open", "--policy", policy],
    );
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let report = cli_json(&app, &["campaign", "report", &id, "--policy", policy]);
    assert_eq!(report["counts"]["items"], 2, "{report}");
    assert_eq!(report["counts"]["undecided"], 2, "{report}");
    // A scope the policy cannot have is refused by name.
    let out = app.cli(&[
        "campaign",
        "create",
        "--name",
        "x",
        "--scope",
        "connector=nope",
        "--policy",
        policy,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown connector \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The serving hub's admin API sees the same campaign.
    let v = app
        .get(&format!("/admin/v1/campaigns/{id}"))
        .send()
        .status(200)
        .json();
    assert_eq!(v["name"], "Chat review", "{v}");
}

#[test]
fn sqlite() {
    let (app, p) = start(Backend::Sqlite).expect("sqlite");
    run(app, &p);
}

#[test]
fn postgres() {
    match start(Backend::Postgres) {
        Some((app, p)) => run(app, &p),
        None => eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run"),
    }
}
