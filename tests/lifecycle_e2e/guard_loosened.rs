//! A policy edit that loosens the blast-radius guard, end to end with the real `scimhub`
//! binary: the node's `/metrics` shows the guard in force before and after, and security is
//! mailed through a real SMTP server (aiosmtpd) at the addresses of the policy before as well as
//! the new one's, although the same edit changed `[notify] security`. The audit chain records
//! the change as `policy_applied` with the outcome `guard_loosened`.

use std::time::Duration;

use crate::outage::{admin_get, until, SmtpSink};
use crate::support_standins::*;
use crate::world::*;

const GUARD: &str = "[blast_radius]\nmax_share = 0.25\nwindow = \"30m\"\nmin_population = 2\n";

fn policy(smtp_port: u16, guard: &str, security: &str) -> String {
    format!(
        r#"
[[connector]]
name = "chat"
type = "memory"

[[profile]]
name = "everyone"
match = 'userName pr'
grants = [{{ connector = "chat", kind = "channel", id = "general" }}]

{guard}
[notify]
from = "scimhub@example.com"
security = ["{security}"]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
"#
    )
}

/// The value of the unlabelled sample `name` in a `/metrics` exposition, if it is there.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

async fn metrics(scim: &Scim) -> String {
    let base = scim.base.trim_end_matches("/scim/v2");
    let resp = scim
        .http
        .get(format!("{base}/metrics"))
        .bearer_auth(&scim.token)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loosened_guard_is_mailed_to_security_and_shows_in_metrics() {
    let dir = Scratch::new("guard-loosened-e2e");
    let sink = SmtpSink::start(dir.path());
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        policy(sink.port, GUARD, "security@example.com"),
    )
    .expect("policy");
    let policy_arg = policy_path.display().to_string();
    let hub = Hub::start(
        dir.path(),
        "hub",
        HUB_TOKEN,
        &["--policy", &policy_arg],
        &[],
    );
    let scim = Scim::new(&hub.base, HUB_TOKEN);
    for name in ["ada", "bob"] {
        scim.post("/Users", person(name, name, "Example", "Sales"))
            .await;
    }

    let before = metrics(&scim).await;
    assert_eq!(
        sample(&before, "scimhub_blast_radius_guard_enabled"),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, "scimhub_blast_radius_guard_max_share"),
        Some(0.25)
    );
    assert_eq!(
        sample(&before, "scimhub_blast_radius_guard_window_seconds"),
        Some(1800.0)
    );
    assert_eq!(
        sample(&before, "scimhub_blast_radius_guard_min_population"),
        Some(2.0)
    );

    // One edit removes the guard and names another security address; it takes nothing away.
    std::fs::write(&policy_path, policy(sink.port, "", "new-sec@example.com")).expect("edit");
    let base = hub.base.trim_end_matches("/scim/v2");
    let reloaded = scim
        .http
        .post(format!("{base}/admin/v1/policy/reload"))
        .bearer_auth(HUB_TOKEN)
        .send()
        .await
        .expect("reload");
    assert_eq!(reloaded.status().as_u16(), 200);

    let mail = until(
        "the guard_loosened mail",
        Duration::from_secs(60),
        || async {
            let all = sink.messages();
            all.iter()
                .find(|m| {
                    m["subject"].as_str()
                        == Some("scimhub: a policy change loosened the blast-radius guard")
                })
                .cloned()
                .ok_or_else(|| format!("{all:?}"))
        },
    )
    .await;
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["security@example.com", "new-sec@example.com"]),
        "{mail}"
    );
    let text = mail["text"].as_str().expect("text part");
    assert!(
        text.contains("  the guard is removed ([blast_radius] is no longer in the policy)"),
        "{text}"
    );
    assert!(
        text.contains("Guard before: removals are held when more than 25% of the users would lose access within 30m, in a directory of 2 users or more."),
        "{text}"
    );
    let html = mail["html"].as_str().expect("html part");
    assert!(html.contains("the guard is removed"), "{html}");

    let after = metrics(&scim).await;
    assert_eq!(
        sample(&after, "scimhub_blast_radius_guard_enabled"),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "scimhub_blast_radius_guard_max_share"),
        None,
        "no guard, no settings"
    );

    let audit = admin_get(&scim, "/audit?event=policy_applied").await;
    let outcomes: Vec<&str> = audit["Resources"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["recorded", "guard_loosened"], "{audit}");
}
