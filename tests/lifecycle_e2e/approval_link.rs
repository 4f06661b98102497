//! The proof of issue 16, end to end with the real `scimhub` binary: a joiner whose role grants
//! an entitlement that needs their manager's approval; the approval-request mail reaches a real
//! SMTP server (aiosmtpd); the test takes the approve link out of the mail as the manager's mail
//! client shows it, opens it with no credentials at all (`GET`: the confirmation page, nothing
//! decided yet), confirms it (`POST` of the page's form, no credentials), and the request is
//! decided as the manager and the entitlement provisioned on the downstream SCIM service (a
//! second `scimhub`). The same link then acts no more, the mail's reject link neither, and a
//! tampered link never did.
//!
//! The hub listens on a port reserved before it starts, so that the policy's `link_base_url`
//! is the hub's real address and the mailed link is followed as mailed, not rewritten.

use std::time::Duration;

use serde_json::{json, Value};

use crate::outage::{admin_get, until, SmtpSink};
use crate::support_standins::*;
use crate::world::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LINK_SECRET: &str = "e2e-link-secret-of-at-least-32-bytes!";

fn approval_policy(down: &str, smtp_port: u16, hub: &str) -> String {
    format!(
        r#"
[[connector]]
name = "apps"
type = "scim"
settings = {{ base_url = "{down}", groups_by = "display_name", timeout_ms = 5000 }}
credentials = {{ token = {{ env = "E2E_DOWNSTREAM_TOKEN" }} }}

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [{{ connector = "apps" }}]

[[profile]]
name = "engineering"
match = '{ENTERPRISE}:department eq "Engineering"'
grants = [{{ connector = "apps", kind = "group", id = "engineering", approval = "manager", description = "Engineering source code" }}]

# The HRIS (this test's bootstrap client) is the source of the manager attribute (a manager it
# names has the authority to decide) and of the addresses links are mailed to.
[[source]]
client = "bootstrap"
owns = ["{ENTERPRISE}:manager", "emails"]

[notify]
from = "scimhub@example.com"
smtp_url = "smtp://127.0.0.1:{smtp_port}"
link_base_url = "{hub}"
link_ttl = "1h"
link_secret = {{ env = "E2E_LINK_SECRET" }}
"#
    )
}

/// The URL on the line `label URL` of a mail's text part.
fn mailed_link(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in the mail: {text}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approval_decided_by_following_the_mailed_link_without_a_token() {
    let dir = Scratch::new("approval-link-e2e");
    let downstream = Hub::start(dir.path(), "downstream", DOWNSTREAM_TOKEN, &[], &[]);
    let down = Scim::new(&downstream.base, DOWNSTREAM_TOKEN);
    down.post(
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "engineering"}),
    )
    .await;
    let sink = SmtpSink::start(dir.path());
    let port = free_port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        approval_policy(&downstream.base, sink.port, &hub_url),
    )
    .expect("policy");
    let policy_arg = policy_path.display().to_string();
    let hub = Hub::start_bound(
        dir.path(),
        "hub",
        HUB_TOKEN,
        &format!("127.0.0.1:{port}"),
        &["--policy", &policy_arg],
        &[
            ("E2E_DOWNSTREAM_TOKEN", DOWNSTREAM_TOKEN.to_string()),
            ("E2E_LINK_SECRET", LINK_SECRET.to_string()),
        ],
    );
    assert_eq!(hub.base, format!("{hub_url}/scim/v2"));
    let scim = Scim::new(&hub.base, HUB_TOKEN);

    // ---- the manager, then a joiner in Engineering who reports to her ----------------------
    let grace = scim
        .post("/Users", person("grace", "Grace", "Hopper", "Sales"))
        .await;
    let grace_id = grace["id"].as_str().expect("id").to_owned();
    let mut jdoe = person("jdoe", "Jane", "Doe", "Engineering");
    jdoe[ENTERPRISE]["manager"] = json!({ "value": grace_id });
    let jdoe = scim.post("/Users", jdoe).await;
    let jdoe_id = jdoe["id"].as_str().expect("id").to_owned();

    // The account is created; the group waits for the approval.
    let down_jdoe = until(
        "jdoe's account downstream",
        Duration::from_secs(60),
        || async {
            match down.user_by_name("jdoe").await {
                Some(u) => Ok(u["id"].as_str().unwrap_or_default().to_owned()),
                None => Err("not yet".to_string()),
            }
        },
    )
    .await;
    let pending = admin_get(&scim, "/approvals?status=pending").await;
    assert_eq!(pending["totalResults"], 1, "{pending}");
    let request_id = pending["Resources"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["Resources"][0]["user_id"], jdoe_id.as_str());
    assert!(!down
        .group_member_ids("engineering")
        .await
        .contains(&down_jdoe));

    // ---- the approval-request mail reaches the manager at the SMTP sink -------------------
    let mail = until(
        "the approval-request mail",
        Duration::from_secs(60),
        || async {
            let all = sink.messages();
            all.iter()
                .find(|m| {
                    m["subject"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("scimhub: approval needed"))
                })
                .cloned()
                .ok_or_else(|| format!("{all:?}"))
        },
    )
    .await;
    assert_eq!(mail["rcpt_tos"], json!(["grace@example.com"]), "{mail}");
    assert_eq!(mail["content_type"], "multipart/alternative");
    let text = mail["text"].as_str().expect("text part");
    let html = mail["html"].as_str().expect("html part");
    // The person by name (quoted), never raw JSON or an admin URL that needs a token.
    assert!(text.contains("    | Jane Doe (jdoe)"), "{text}");
    // The entitlement by its policy description, then kind:id.
    assert!(
        text.contains("Asks for: Engineering source code (group:engineering) on apps"),
        "{text}"
    );
    assert!(!text.contains(&jdoe_id), "{text}");
    assert!(!text.contains('{'), "{text}");
    assert!(!text.contains("/admin/v1/approvals/"), "{text}");
    let approve = mailed_link(text, "Approve: ");
    let reject = mailed_link(text, "Reject (you can give a reason): ");
    assert!(
        approve.starts_with(&format!("{hub_url}/admin/v1/links/")),
        "{approve}"
    );
    // The HTML part links the same URL.
    assert!(html.contains(&format!("<a href=\"{approve}\">")), "{html}");

    // ---- the manager follows it: no Authorization header anywhere ----------------------------
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The admin API itself needs a token: the link is its own credential, nothing else is.
    let denied = browser
        .get(format!("{hub_url}/admin/v1/approvals"))
        .send()
        .await
        .expect("GET approvals");
    assert_eq!(denied.status().as_u16(), 401);

    let page = browser.get(&approve).send().await.expect("GET link");
    assert_eq!(page.status().as_u16(), 200);
    let ct = page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let page = page.text().await.expect("page");
    assert!(
        page.contains("Approve Jane Doe (jdoe)&#39;s request"),
        "{page}"
    );
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert!(page.contains(">Approve</button>"), "{page}");
    assert!(
        page.contains("This link was sent to grace and decides as them"),
        "{page}"
    );
    // Opening the page decided nothing.
    let still = admin_get(&scim, "/approvals?status=pending").await;
    assert_eq!(still["totalResults"], 1, "{still}");

    // A tampered link is refused, and decides nothing either.
    let mut forged = approve.clone();
    let last = forged.pop().expect("link");
    forged.push(if last == '0' { '1' } else { '0' });
    let r = browser
        .post(&forged)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("POST forged");
    assert_eq!(r.status().as_u16(), 403);

    // The confirmation page's form: POST to the same URL.
    let done = browser
        .post(&approve)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("POST link");
    assert_eq!(done.status().as_u16(), 200);
    let done = done.text().await.expect("body");
    assert!(done.contains("Request approved."), "{done}");

    // ---- decided as the manager, and provisioned ------------------------------------------
    let approved = admin_get(&scim, "/approvals?status=approved").await;
    let row: Value = approved["Resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == request_id.as_str()).cloned())
        .unwrap_or_else(|| panic!("{approved}"));
    assert_eq!(row["decided_by"], "grace", "{row}");
    assert_eq!(row["decided_by_user_id"], grace_id.as_str(), "{row}");
    assert_eq!(row["decided_as"], "manager", "{row}");
    until(
        "jdoe in the engineering group downstream",
        Duration::from_secs(60),
        || async {
            let members = down.group_member_ids("engineering").await;
            if members.contains(&down_jdoe) {
                Ok(())
            } else {
                Err(format!("{members:?}"))
            }
        },
    )
    .await;

    // ---- once: the same link, and the mail's reject link, act no more ----------------------
    for link in [&approve, &reject] {
        let again = browser
            .post(link.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("reason=too+late")
            .send()
            .await
            .expect("POST again");
        assert_eq!(again.status().as_u16(), 409, "{link}");
    }
    let approved = admin_get(&scim, "/approvals?status=approved").await;
    assert_eq!(approved["totalResults"], 1, "{approved}");
    let rejected = admin_get(&scim, "/approvals?status=rejected").await;
    assert_eq!(rejected["totalResults"], 0, "{rejected}");
}
