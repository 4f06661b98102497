//! `scimhub demo` (the real binary) runs its whole scenario and prints the final state.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// The rows of the last table printed after `== final state`: app -> person -> cell.
fn final_table(stdout: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let tail = stdout
        .split("\n== final state\n")
        .nth(1)
        .expect("a final state section");
    let mut lines = tail.lines().take_while(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header[0], "app");
    let mut out = BTreeMap::new();
    for l in lines {
        let cells: Vec<&str> = l.split_whitespace().collect();
        let row = header[1..]
            .iter()
            .zip(&cells[1..])
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        out.insert(cells[0].to_string(), row);
    }
    out
}

#[test]
fn demo_runs_the_lifecycle_to_completion() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // The hub's address and token come first.
    assert!(
        stdout.contains("scimhub demo: hub at http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("bootstrap token: demo-"), "{stdout}");
    // The HRIS pushes as "workday", the policy's source of truth for its attributes.
    assert!(
        stdout.contains("HRIS token (client \"workday\", the source of truth): shub_"),
        "{stdout}"
    );
    // Every step ran, the approval and the one-click link included.
    for step in [
        "step 1/8: joiner",
        "step 2/8: joiner",
        "step 3/8: approval",
        "step 5/8: mover",
        "step 7/8: contractor",
        "step 8/8: leaver",
    ] {
        assert!(stdout.contains(step), "missing {step}:\n{stdout}");
    }
    // The request is asked of the entitlement's owner, refused to its own subject, and decided
    // by the owner with a token acting as him.
    // The owner gets his own copy (with links bound to him), the owners' shared address one
    // without links.
    for to in ["linus", "it-owners@acme.example"] {
        assert!(
            stdout.contains(&format!(
                "\"scimhub: approval needed: org:acme (role admin) on github\" -> {to}\n"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "grace tries to approve their own request: 403 grace cannot decide a request for \
             their own access"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("approved by linus (as owner, token linus-approvals)"),
        "{stdout}"
    );
    // The manager's link: opening it only shows what confirming does.
    assert!(
        stdout.contains(
            "the manager opens the signed link: Remove alan's legacy access now. (confirm page, \
             nothing done yet)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("and confirms: Legacy access removed."),
        "{stdout}"
    );
    // One summary per recipient.
    for to in ["grace@acme.example", "security@acme.example"] {
        assert!(
            stdout.contains(&format!("\"scimhub: permission change summary\" -> {to}\n")),
            "{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("  timer: reminder at ").count(),
        3,
        "{stdout}"
    );

    // Each step says why the hub acts as it does, and marks what it granted and revoked.
    assert_eq!(
        stdout.matches("\n   HR marks the hire Active").count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("kept for the old\n   profile's `overlap` window"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  + github     grace  org:acme (role admin)\n"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("  - slack      alan   account (disabled), channel:general, channel:sales\n"),
        "{stdout}"
    );
    // The mover's legacy access, kept for the overlap, is marked `=` with its end.
    assert!(
        stdout.contains("  = github     alan   team:engineering (role member) kept until "),
        "{stdout}"
    );
    // Who is asked to approve, by name, and why someone has no account somewhere.
    assert!(
        stdout.contains(
            "  ? waiting for linus (owner) to approve org:acme (role admin) on github for grace\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  · no account on aws, github, netsuite, salesforce: none of linus's profiles \
             (employee) grants access there\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  · linus owns github in the policy"),
        "{stdout}"
    );
    // No raw JSON anywhere, and the table of every app's accounts is printed once, at the end.
    assert!(!stdout.contains("{\"kind\""), "{stdout}");
    assert_eq!(stdout.matches("\n  app ").count(), 1, "{stdout}");

    let t = final_table(&stdout);
    let cell = |app: &str, who: &str| t[app][who].as_str();
    // Every person is a column, even one with no account in some app.
    assert_eq!(cell("netsuite", "linus"), "·");
    assert_eq!(cell("github", "linus"), "·");
    // The leaver: every account disabled, none left enabled anywhere.
    for app in ["aws", "github", "jira", "salesforce", "slack", "workday"] {
        assert_eq!(cell(app, "alan"), "disabled", "{app}");
    }
    assert_eq!(cell("netsuite", "alan"), "·");
    // The manager: birthright + engineering, and the approved org admin role.
    assert_eq!(cell("github", "grace"), "acme:admin,engineering:member");
    assert_eq!(cell("slack", "grace"), "general");
    assert_eq!(cell("aws", "grace"), "developers");
    // The contractor: project tools only, no HR or finance system.
    assert_eq!(cell("slack", "cora"), "contractors");
    assert_eq!(cell("jira", "cora"), "PROJ");
    assert_eq!(cell("github", "cora"), "contractors:member");
    assert_eq!(cell("workday", "cora"), "·");
    assert_eq!(cell("netsuite", "cora"), "·");
}
