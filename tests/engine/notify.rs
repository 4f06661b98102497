//! Notification delivery against a real SMTP server: aiosmtpd (`support/smtp_sink.py`, installed
//! by `connectors/tests/support_standins/install.sh` into the stand-ins' Python venv), started
//! per test on a free port and writing every accepted message to a directory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use chrono::{Duration, TimeZone, Utc};
use scim_server::admin::in_tx;
use scim_server::config::{SmtpConfig, SmtpTls};
use scim_server::notify::{Delivery, Notifier};
use scim_server::store::notifications;
use serde_json::{json, Value};

use super::{user, Env, POLICY};

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn python() -> PathBuf {
    let home = std::env::var("SCIMHUB_STANDINS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/scimhub-standins")
        });
    let py = home.join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "aiosmtpd is not installed in {}: run `bash connectors/tests/support_standins/install.sh`",
        py.display()
    );
    py
}

/// A running aiosmtpd.
pub(super) struct Sink {
    child: Child,
    dir: PathBuf,
}

impl Sink {
    pub(super) fn start(port: u16, reject: &[&str]) -> Sink {
        let dir = std::env::temp_dir().join(super::unique("scimhub-smtp"));
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/engine/support/smtp_sink.py"
        );
        let mut cmd = Command::new(python());
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir);
        for r in reject {
            cmd.args(["--reject", r]);
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Sink { child, dir }
    }

    /// Messages received so far, in order.
    pub(super) fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: Some("scimhub@example.com".into()),
        timeout_secs: 5,
        max_attempts: 3,
    }
}

pub(super) fn notifier(env: &Env, port: u16) -> Notifier {
    let mut n = Notifier::new(env.store.clone(), env.engine.clone(), &smtp(port)).unwrap();
    n.config.base_backoff = Duration::seconds(10);
    n
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(super) fn deliver(n: &Notifier) -> usize {
    rt().block_on(n.run_until_idle()).unwrap()
}

fn rows(env: &Env) -> Vec<notifications::Notification> {
    in_tx(&env.store, |c| notifications::list(c, None)).unwrap()
}

fn enqueue(env: &Env, to: &[&str]) -> i64 {
    let now = env.engine.now();
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    in_tx(&env.store, |c| {
        notifications::enqueue(c, "test", None, &to, "Test <subject>", "Body & text", now)
    })
    .unwrap();
    rows(env).last().unwrap().id
}

fn row(env: &Env, id: i64) -> notifications::Notification {
    in_tx(&env.store, |c| notifications::get(c, id))
        .unwrap()
        .unwrap()
}

fn sorted_rcpts(m: &Value) -> Vec<String> {
    let mut v: Vec<String> = m["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The test policy with one-click links configured.
fn policy_with_links() -> (String, PathBuf) {
    let key = std::env::temp_dir().join(super::unique("scimhub-linkkey"));
    std::fs::write(&key, "link-test-key").unwrap();
    (
        format!(
            "{POLICY}link_base_url = \"http://hub.test\"\nlink_secret = {{ file = {:?} }}\n",
            key.display().to_string()
        ),
        key,
    )
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { super::$name(false) } )* }
        mod postgres { $( #[test] fn $name() { super::$name(true) } )* }
    };
}

both_backends!(
    approval_is_decided_by_the_mailed_link,
    mover_summary_reaches_manager_and_security,
    a_forged_user_name_adds_no_line_or_link_to_a_mover_summary,
    permanent_rejection_parks,
    contractor_reminders_follow_the_ladder,
);

fn mover_summary_reaches_manager_and_security(pg: bool) {
    let (policy, key) = policy_with_links();
    let Some(env) = Env::new(pg, &policy) else {
        return;
    };
    let port = free_port();
    let sink = Sink::start(port, &[]);
    let n = notifier(&env, port);
    let grace = env.create_user(user("grace", "Employee", "Engineering", "Manager"));
    let mut bob = user("bob", "Employee", "Engineering", "Engineer");
    bob["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
        json!({"value": grace});
    let bob = env.create_user(bob);
    env.run();
    deliver(&n);
    let before = sink.messages().len();
    env.patch_user(&bob, |d| {
        d["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"] =
            json!("Sales");
    });
    env.run();
    assert!(deliver(&n) >= 1);
    let msgs = sink.messages();
    let summary: Vec<&Value> = msgs[before..]
        .iter()
        .filter(|m| m["subject"] == "scimhub: permission change summary")
        .collect();
    // One message per recipient: the links in each are addressed to that recipient.
    assert_eq!(summary.len(), 2, "{msgs:#?}");
    let mut rcpts: Vec<Vec<String>> = summary.iter().map(|m| sorted_rcpts(m)).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![vec!["grace@example.com"], vec!["security@example.com"]]
    );
    let m = *summary
        .iter()
        .find(|m| sorted_rcpts(m) == ["grace@example.com"])
        .unwrap();
    assert_eq!(m["mail_from"], "scimhub@example.com");
    assert_eq!(m["content_type"], "multipart/alternative");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("These links are for you (grace@example.com) only"),
        "{text}"
    );
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Acknowledge (remove legacy access now): "))
        .expect("one-click acknowledge link in the summary")
        .trim()
        .to_string();
    assert!(
        link.starts_with("http://hub.test/admin/v1/links/"),
        "{link}"
    );
    let html = m["html"].as_str().unwrap();
    assert!(html.contains(&format!("<a href=\"{link}\">")), "{html}");
    // Every row is sent; the manager's click removes the legacy access at once.
    assert!(rows(&env).iter().all(|r| r.status == "sent"));
    let token = link.rsplit_once("/links/").unwrap().1;
    // The link names its addressee: grace, as bob's manager.
    let preview = env.admin.preview_link(token).unwrap();
    assert_eq!(
        (preview.addressee.as_str(), preview.role.as_str()),
        (grace.as_str(), "manager")
    );
    let outcome = env.admin.follow_link(token).unwrap();
    assert_eq!(outcome.action, "ack");
    assert_eq!(outcome.message, "Legacy access removed.");
    env.run();
    assert_eq!(env.holds("github", "bob").map(|h| h.1), Some(vec![]));
    let _ = std::fs::remove_file(key);
}

/// A SCIM client writes a userName with line breaks (`\n`, `\r`, U+2028), a bidi override and
/// a forged "Acknowledge" line under the hub's own URL. The account key (the userName) in the
/// summary's changes stays on its line and is defanged: the mail that reaches the SMTP server has
/// exactly one acknowledge line and, in its HTML part, only the two real links.
fn a_forged_user_name_adds_no_line_or_link_to_a_mover_summary(pg: bool) {
    let (policy, key) = policy_with_links();
    let Some(env) = Env::new(pg, &policy) else {
        return;
    };
    let port = free_port();
    let sink = Sink::start(port, &[]);
    let n = notifier(&env, port);
    let grace = env.create_user(user("grace", "Employee", "Engineering", "Manager"));
    let forged = "bob\r\n\nURGENT\u{2028}Acknowledge (remove legacy access now): \
                  http://hub.test/admin/v1/links/x\u{202E}";
    let mut bob = user(forged, "Employee", "Engineering", "Engineer");
    bob["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
        json!({"value": grace});
    let bob = env.create_user(bob);
    env.run();
    deliver(&n);
    let before = sink.messages().len();
    env.patch_user(&bob, |d| {
        d["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"] =
            json!("Sales");
    });
    env.run();
    deliver(&n);
    let msgs = sink.messages();
    let m = msgs[before..]
        .iter()
        .find(|m| {
            m["subject"] == "scimhub: permission change summary"
                && sorted_rcpts(m) == ["grace@example.com"]
        })
        .unwrap_or_else(|| panic!("no summary to grace: {msgs:#?}"));
    // The wire's line ends are CRLF; any other CR would be the forged name's.
    let text = m["text"].as_str().unwrap().replace("\r\n", "\n");
    let text = text.as_str();
    // The forged name did reach the changes, on one line with the operation.
    assert!(
        text.lines()
            .any(|l| l.starts_with("  slack: grant ") && l.contains("URGENT Acknowledge")),
        "{text}"
    );
    for c in ['\r', '\u{2028}', '\u{202E}'] {
        assert!(!text.contains(c), "{c:?} in {text:?}");
    }
    let acks: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Acknowledge (remove legacy access now): "))
        .collect();
    assert_eq!(acks.len(), 1, "{text}");
    assert!(
        !text.contains("http://hub.test/admin/v1/links/x\n"),
        "{text}"
    );
    let hub_urls: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .collect();
    assert_eq!(hub_urls.len(), 2, "{text}");
    assert!(hub_urls.iter().all(|u| !u.ends_with("/links/x")), "{text}");
    let html = m["html"].as_str().unwrap();
    let hrefs: Vec<&str> = html
        .match_indices("<a href=\"")
        .map(|(i, _)| html[i..].split('"').nth(1).unwrap())
        .collect();
    assert_eq!(hrefs, hub_urls, "{html}");
    let _ = std::fs::remove_file(key);
}

/// The manager's approval mail names the person and the entitlement (no ids, no JSON) and
/// carries approve / reject links bound to the manager; following the reject link (the
/// confirmation, then the action with a reason) decides the request as the manager, once.
fn approval_is_decided_by_the_mailed_link(pg: bool) {
    let (policy, key) = policy_with_links();
    let Some(env) = Env::new(pg, &policy) else {
        return;
    };
    let port = free_port();
    let sink = Sink::start(port, &[]);
    let n = notifier(&env, port);
    let grace = env.create_user(user("grace", "Employee", "Engineering", "Manager"));
    let carol = env.create_user(user("carol", "Employee", "Engineering", "Engineer"));
    let mut bob = user("bob", "Employee", "Engineering", "Engineer");
    bob["displayName"] = json!("Bob Builder");
    bob["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
        json!({"value": grace});
    let bob = env.create_user(bob);
    env.run();
    deliver(&n);
    let msgs = sink.messages();
    let mail = msgs
        .iter()
        .find(|m| {
            m["subject"] == "scimhub: approval needed: org:acme (role admin) on github"
                && sorted_rcpts(m) == ["grace@example.com"]
        })
        .unwrap_or_else(|| panic!("no approval mail to grace: {msgs:#?}"));
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("    | Bob Builder (bob)"), "{text}");
    assert!(!text.contains(&bob), "{text}");
    assert!(!text.contains('{') && !text.contains("POST"), "{text}");
    let link = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("{label} in {text}"))
            .trim()
            .to_string()
    };
    let approve = link("Approve: ");
    let reject = link("Reject (you can give a reason): ");
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains(&format!("<a href=\"{reject}\">")), "{html}");
    let token = |url: &str| url.rsplit_once("/links/").unwrap().1.to_string();
    // A forged link (its payload changed) and an expired one are refused.
    let t = token(&reject);
    let forged = format!("x{t}");
    assert!(matches!(
        env.admin.preview_link(&forged),
        Err(scim_server::admin::AdminError::Forbidden(_))
    ));
    let now = env.engine.now();
    let request = env
        .admin
        .approvals(Some("pending"))
        .unwrap()
        .into_iter()
        .find(|r| r.user_id == bob)
        .unwrap()
        .id;
    let expired = scim_server::engine::links::sign(
        b"link-test-key",
        &scim_server::engine::links::LinkClaims {
            u: bob.clone(),
            a: "approve".into(),
            d: 0,
            exp: 0,
            to: grace.clone(),
            r: "manager".into(),
            ev: String::new(),
            id: request.clone(),
        },
    )
    .unwrap();
    assert!(matches!(
        env.admin.follow_link(&expired),
        Err(scim_server::admin::AdminError::Expired(_))
    ));
    // A validly signed link bound to someone without authority (carol is not bob's manager)
    // is refused, as the admin API would refuse carol.
    let policy_now = env.engine.policy.current();
    let (carols, _) = scim_server::engine::links::decision_links(
        &policy_now,
        b"link-test-key",
        &bob,
        &request,
        &carol,
        "manager",
        now,
    )
    .unwrap();
    let r = env.admin.follow_link(&token(&carols));
    assert!(
        matches!(r, Err(scim_server::admin::AdminError::Refused(_))),
        "{r:?}"
    );
    // GET: the confirmation, naming the person and the entitlement.
    let preview = env.admin.preview_link(&t).unwrap();
    assert_eq!(preview.addressee, grace);
    assert_eq!(
        preview.message,
        "Reject Bob Builder (bob)'s request for org:acme (role admin) on github."
    );
    // POST with a reason: decided as grace.
    let outcome = env
        .admin
        .follow_link_with_reason(&t, Some("not needed for this role"))
        .unwrap();
    assert_eq!(outcome.message, "Request rejected.");
    let row = env
        .admin
        .approvals(None)
        .unwrap()
        .into_iter()
        .find(|r| r.id == request)
        .unwrap();
    assert_eq!(row.status.to_string(), "rejected");
    assert_eq!(row.reason.as_deref(), Some("not needed for this role"));
    assert_eq!(row.decided_by.as_deref(), Some("grace"));
    assert_eq!(row.decided_by_user_id.as_deref(), Some(grace.as_str()));
    // Single use: the same link replayed, and the mail's other link, no longer act.
    assert!(matches!(
        env.admin.follow_link(&t),
        Err(scim_server::admin::AdminError::Conflict(_))
    ));
    assert!(matches!(
        env.admin.follow_link(&token(&approve)),
        Err(scim_server::admin::AdminError::Conflict(_))
    ));
    let _ = std::fs::remove_file(key);
}

fn contractor_reminders_follow_the_ladder(pg: bool) {
    let Some(env) = Env::new(pg, POLICY) else {
        return;
    };
    let port = free_port();
    let sink = Sink::start(port, &[]);
    let n = notifier(&env, port);
    // The sponsor is referenced by SCIM id: the sender resolves it to their primary email.
    let sam = env.create_user(user("sam", "Employee", "Sales", "Account Executive"));
    let mut cora = user("cora", "Contractor", "Engineering", "Contract engineer");
    cora["urn:example:acme:2.0:User"] = json!({"contractEnd": "2025-04-30", "sponsor": sam});
    env.create_user(cora);
    env.run();
    deliver(&n);
    let reminders = |sink: &Sink| -> Vec<Value> {
        sink.messages()
            .into_iter()
            .filter(|m| {
                m["subject"].as_str().unwrap().contains("a contract ends")
                    && m["text"].as_str().unwrap().contains("    | cora")
            })
            .collect()
    };
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 3, 30, 12, 0, 0).unwrap());
    env.run();
    deliver(&n);
    assert!(
        reminders(&sink).is_empty(),
        "nothing before the 30-day mark"
    );
    for (day, offset) in [(31, "30d"), (54, "7d"), (60, "1d")] {
        // Days counted from 1 March 2025.
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::days(day - 1);
        env.clock.set(at);
        env.run();
        deliver(&n);
        let got = reminders(&sink);
        let last = got.last().expect("a reminder");
        assert_eq!(
            last["subject"],
            format!("scimhub: a contract ends in {offset}"),
            "at {at}"
        );
        assert_eq!(
            sorted_rcpts(last),
            vec![
                "cora@example.com",
                "helpdesk@example.com",
                "sam@example.com"
            ]
        );
        assert!(last["text"].as_str().unwrap().contains("2025-04-30"));
    }
    assert_eq!(reminders(&sink).len(), 3);
}

fn permanent_rejection_parks(pg: bool) {
    let Some(env) = Env::new(pg, POLICY) else {
        return;
    };
    let port = free_port();
    let sink = Sink::start(port, &["blocked@"]);
    let n = notifier(&env, port);
    let rejected = enqueue(&env, &["blocked@example.com"]);
    let nobody = enqueue(&env, &["no-such-user-id"]);
    let partly = enqueue(&env, &["helpdesk@example.com", "no-such-user-id"]);
    assert_eq!(deliver(&n), 3);
    let r = row(&env, rejected);
    assert_eq!(r.status, "failed");
    assert_eq!(r.attempts, 1, "a 5xx is not retried");
    assert!(r.last_error.as_deref().unwrap().contains("550"), "{r:?}");
    let r = row(&env, nobody);
    assert_eq!(r.status, "failed");
    assert!(r
        .last_error
        .as_deref()
        .unwrap()
        .contains("no deliverable recipient"));
    // Each parked message is one incident naming it; the one sent is none.
    let inc = in_tx(&env.store, scim_server::store::incidents::list_open).unwrap();
    let parked: Vec<&str> = inc
        .iter()
        .filter(|i| i.kind == "notification_parked")
        .map(|i| i.reason.as_str())
        .collect();
    assert_eq!(parked.len(), 2, "{inc:?}");
    assert!(parked[0].starts_with(&format!("notification {rejected} (test) not delivered: ")));
    assert!(parked[1].starts_with(&format!("notification {nobody} (test) not delivered: ")));
    let r = row(&env, partly);
    assert_eq!(r.status, "sent");
    assert!(r.last_error.as_deref().unwrap().contains("no-such-user-id"));
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(sorted_rcpts(&msgs[0]), vec!["helpdesk@example.com"]);
    // The subject and body are escaped in the HTML part.
    assert_eq!(msgs[0]["subject"], "Test <subject>");
    assert!(msgs[0]["html"]
        .as_str()
        .unwrap()
        .contains("Body &amp; text"));
}

#[test]
fn smtp_down_then_retried_then_parked() {
    let env = Env::new(false, POLICY).unwrap();
    let port = free_port();
    let mut n = notifier(&env, port);
    n.config.max_attempts = 3;
    let id = enqueue(&env, &["helpdesk@example.com"]);
    // Nobody listens: the row stays queued, due again after the backoff.
    assert_eq!(deliver(&n), 1);
    let r = row(&env, id);
    assert_eq!(r.status, "pending");
    assert_eq!(r.attempts, 1);
    assert!(r.last_error.is_some());
    assert!(r.not_before.unwrap() > env.engine.now());
    assert_eq!(deliver(&n), 0, "not due before the backoff");
    // The server comes up; after the backoff the row is delivered.
    let sink = Sink::start(port, &[]);
    env.clock.advance(Duration::minutes(1));
    assert_eq!(deliver(&n), 1);
    let r = row(&env, id);
    assert_eq!(r.status, "sent");
    assert_eq!(r.attempts, 2);
    assert!(r.sent.is_some());
    assert_eq!(sink.messages().len(), 1);
    drop(sink);

    // A server that stays down: parked after the attempt budget, with the reason.
    let id = enqueue(&env, &["helpdesk@example.com"]);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let claimed = rt().block_on(async {
            let rows = in_tx(&env.store, |c| {
                notifications::claim(c, env.engine.now(), Duration::minutes(5), 10, false)
            })
            .unwrap();
            let mut out = Vec::new();
            for r in rows {
                out.push(n.deliver(r).await.unwrap());
            }
            out
        });
        outcomes.extend(claimed);
        env.clock.advance(Duration::hours(1));
    }
    assert_eq!(
        outcomes,
        vec![Delivery::Retry, Delivery::Retry, Delivery::Failed]
    );
    let r = row(&env, id);
    assert_eq!(r.status, "failed");
    assert!(r
        .last_error
        .as_deref()
        .unwrap()
        .contains("gave up after 3 attempts"));
}
