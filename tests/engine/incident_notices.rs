//! Incident notices: every open incident is queued for the policy's security and helpdesk
//! recipients at once, then again along the `[incidents] renotify` ladder until acknowledged
//! or resolved; one cause raised twice is one incident and one notice.

use chrono::Duration;
use scim_server::admin::{in_tx, AdminError};
use scim_server::store::incidents::{self, NewIncident};
use scim_server::store::{audit, notifications};

use super::{user, Env, POLICY};

fn policy() -> String {
    format!(
        "{POLICY}link_base_url = \"http://hub.test\"\n\n[incidents]\nrenotify = [\"1h\", \"4h\"]\n"
    )
}

fn notices(env: &Env) -> Vec<notifications::Notification> {
    in_tx(&env.store, |c| notifications::list(c, None))
        .unwrap()
        .into_iter()
        .filter(|n| n.kind == "incident")
        .collect()
}

fn raise(env: &Env, user_id: Option<&str>, key: &str) -> bool {
    let now = env.engine.now();
    in_tx(&env.store, |c| {
        incidents::raise_once(
            c,
            &NewIncident {
                kind: "verification_mismatch",
                user_id,
                connector: Some("github"),
                reason: "account still enabled <after> the leaver",
                dedupe_key: key,
            },
            now,
        )
    })
    .unwrap()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { super::$name(false) } )* }
        mod postgres { $( #[test] fn $name() { super::$name(true) } )* }
    };
}

both_backends!(
    incident_notifies_security_then_follows_the_ladder_until_acknowledged,
    resolve_closes_and_twice_is_a_conflict,
    incident_posts_to_slack_teams_and_signed_json_once_per_step,
    a_slow_batch_renews_each_lease_and_skips_what_another_sender_took,
    incident_mail_reaches_security_and_helpdesk_over_smtp,
    acknowledge_and_resolve_over_http_record_the_caller,
);

fn incident_notifies_security_then_follows_the_ladder_until_acknowledged(pg: bool) {
    let Some(env) = Env::new(pg, &policy()) else {
        return;
    };
    let ada = env.create_user(user("ada", "Employee", "Research", "Analyst"));
    env.run();
    let before = notices(&env).len();
    assert_eq!(before, 0, "no incident yet");

    assert!(raise(&env, Some(&ada), "mismatch:plan-1"));
    // The same cause again is the same incident.
    assert!(!raise(&env, Some(&ada), "mismatch:plan-1"));
    env.run();
    env.run();
    let n = notices(&env);
    assert_eq!(n.len(), 1, "one notice for one cause: {n:?}");
    let id = in_tx(&env.store, incidents::list_open).unwrap()[0].id;
    assert_eq!(
        n[0].recipients,
        vec!["security@example.com", "helpdesk@example.com"]
    );
    assert_eq!(n[0].user_id.as_deref(), Some(ada.as_str()));
    assert!(
        n[0].subject.contains(&format!("incident {id}")),
        "{}",
        n[0].subject
    );
    assert!(n[0].subject.contains("verification mismatch on github"));
    let body = &n[0].body;
    assert!(
        body.contains("Person (as the directory names them):\n    | "),
        "{body}"
    );
    assert!(body.contains("    | ada\n"), "userName quoted: {body}");
    assert!(!body.contains(&ada), "no person named by id: {body}");
    assert!(
        body.contains("    | account still enabled <after> the leaver"),
        "{body}"
    );
    assert!(body.contains("Opened: 2025-03-03T09:00:00"), "{body}");
    // No link secret: one copy without links, saying where to act signed in; no admin URL.
    assert!(body.contains("This copy has no links."), "{body}");
    assert!(
        !body.contains("http://hub.test/admin/v1/incidents"),
        "{body}"
    );

    // The ladder: +1h, then +4h, then +4h again (the last step repeats).
    let steps = [
        (Duration::minutes(59), 1),
        (Duration::minutes(1), 2),
        (Duration::hours(4) - Duration::seconds(1), 2),
        (Duration::seconds(1), 3),
        (Duration::hours(4), 4),
    ];
    for (by, want) in steps {
        env.clock.advance(by);
        env.run();
        let n = notices(&env);
        assert_eq!(n.len(), want, "after {by}: {n:?}");
    }
    let last = notices(&env).pop().unwrap();
    assert!(last.subject.ends_with("(reminder)"), "{}", last.subject);
    assert!(last.body.contains("This is reminder 3:"), "{}", last.body);

    // Acknowledged: no more notices, the actor recorded on the incident and in the audit.
    let d = env
        .admin
        .acknowledge_incident(id, "alice@example.com", Some("looking"))
        .unwrap();
    assert_eq!(d.acknowledged_by.as_deref(), Some("alice@example.com"));
    assert_eq!(d.status, "open");
    assert_eq!(d.note.as_deref(), Some("looking"));
    assert!(matches!(
        env.admin.acknowledge_incident(id, "bob", None),
        Err(AdminError::Conflict(_))
    ));
    env.clock.advance(Duration::days(10));
    env.run();
    assert_eq!(notices(&env).len(), 4, "acknowledged stops the ladder");
    let a = in_tx(&env.store, |c| audit::list(c, Some(&ada))).unwrap();
    assert!(
        a.iter()
            .any(|e| e.action == "incident_acknowledge" && e.actor == "alice@example.com"),
        "{a:?}"
    );

    // A second, different cause is a second incident with its own first notice.
    assert!(raise(&env, None, "mismatch:plan-2"));
    env.run();
    let n = notices(&env);
    assert_eq!(n.len(), 5);
    assert!(!n[4].body.contains("User:"), "{}", n[4].body);
}

fn resolve_closes_and_twice_is_a_conflict(pg: bool) {
    let Some(env) = Env::new(pg, &policy()) else {
        return;
    };
    assert!(raise(&env, None, "k"));
    env.run();
    let id = in_tx(&env.store, incidents::list_open).unwrap()[0].id;
    let d = env.admin.resolve_incident(id, "carol", None).unwrap();
    assert_eq!(d.status, "resolved");
    assert_eq!(d.resolved_by.as_deref(), Some("carol"));
    assert!(in_tx(&env.store, incidents::list_open).unwrap().is_empty());
    assert!(matches!(
        env.admin.resolve_incident(id, "carol", None),
        Err(AdminError::Conflict(_))
    ));
    assert!(matches!(
        env.admin.acknowledge_incident(id, "carol", None),
        Err(AdminError::Conflict(_))
    ));
    assert!(matches!(
        env.admin.incident(id + 100),
        Err(AdminError::NotFound(_))
    ));
    env.clock.advance(Duration::hours(2));
    env.run();
    assert_eq!(notices(&env).len(), 1, "resolved: no reminder");
}

/// One request a webhook receiver got: lower-cased headers and the body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: std::collections::BTreeMap<String, String>,
    body: serde_json::Value,
    raw: String,
}

/// A tiny HTTP server on 127.0.0.1 that answers 200 to every POST and records it.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_with(|| {})
    }

    /// [`Receiver::start`] that runs `on_post` after recording each POST and before answering
    /// it (while the sender waits, as on a slow endpoint).
    fn start_with(on_post: impl Fn() + Send + 'static) -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut headers = std::collections::BTreeMap::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers
                    .get("content-length")
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let raw = String::from_utf8(body).unwrap();
                sink.lock().unwrap().push(Received {
                    path,
                    headers,
                    body: serde_json::from_str(&raw).unwrap(),
                    raw,
                });
                on_post();
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { port, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn secret_file(value: &str) -> String {
    let p = std::env::temp_dir().join(super::unique("scimhub-chat"));
    std::fs::write(&p, value).unwrap();
    p.display().to_string()
}

fn chat_policy(port: u16) -> String {
    let url = |path: &str| secret_file(&format!("http://127.0.0.1:{port}/{path}"));
    format!(
        "{}\n[[incidents.chat]]\nname = \"sec-slack\"\nformat = \"slack\"\nurl = {{ file = {:?} }}\n\n\
         [[incidents.chat]]\nname = \"it-teams\"\nformat = \"teams\"\nurl = {{ file = {:?} }}\n\n\
         [[incidents.chat]]\nname = \"siem\"\nformat = \"json\"\nurl = {{ file = {:?} }}\nsecret = {{ file = {:?} }}\n",
        policy(),
        url("slack"),
        url("teams"),
        url("json"),
        secret_file("siem-key"),
    )
}

fn deliver_chat(env: &Env) -> usize {
    let n = scim_server::notify::Notifier::chat_only(env.store.clone(), env.engine.clone());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(n.run_until_idle())
        .unwrap()
}

fn incident_posts_to_slack_teams_and_signed_json_once_per_step(pg: bool) {
    use hmac::{Hmac, Mac};
    let rx = Receiver::start();
    let Some(env) = Env::new(pg, &chat_policy(rx.port)) else {
        return;
    };
    let ada = env.create_user(user("ada", "Employee", "Research", "Analyst"));
    env.run();
    assert!(raise(&env, Some(&ada), "mismatch:plan-1"));
    assert!(!raise(&env, Some(&ada), "mismatch:plan-1"));
    env.run();
    let id = in_tx(&env.store, incidents::list_open).unwrap()[0].id;
    // A sender without SMTP takes the three chat deliveries and leaves the mail queued.
    assert_eq!(deliver_chat(&env), 3);
    assert_eq!(deliver_chat(&env), 0, "each delivery once");
    let mail = notices(&env)
        .into_iter()
        .filter(|n| n.channel.is_none())
        .collect::<Vec<_>>();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].status, "pending");
    let got = rx.got();
    assert_eq!(got.len(), 3, "{got:?}");
    let by = |p: &str| got.iter().find(|r| r.path == p).unwrap().clone();

    let slack = by("/slack");
    let text = slack.body["text"].as_str().unwrap();
    assert_eq!(slack.body.as_object().unwrap().len(), 1, "{}", slack.raw);
    assert!(
        text.starts_with(&format!("*scimhub incident {id}: verification mismatch*")),
        "{text}"
    );
    assert!(
        text.contains("enabled &lt;after&gt; the leaver"),
        "escaped: {text}"
    );
    assert!(text.contains(&format!("ada ({ada})")), "{text}");
    assert!(
        text.contains(&format!(
            "<http://hub.test/admin/v1/incidents/{id}|Open incident {id}>"
        )),
        "{text}"
    );
    assert!(!slack.headers.contains_key("x-scimhub-signature"));

    let teams = by("/teams");
    assert_eq!(teams.body["type"], "message");
    let att = &teams.body["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["body"][0]["type"], "TextBlock");
    assert_eq!(att["content"]["body"][1]["type"], "FactSet");
    assert_eq!(att["content"]["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(
        att["content"]["actions"][0]["url"],
        format!("http://hub.test/admin/v1/incidents/{id}")
    );

    let json = by("/json");
    assert_eq!(json.body["id"], id);
    assert_eq!(json.body["kind"], "verification_mismatch");
    assert_eq!(json.body["user_name"], "ada");
    assert_eq!(json.body["notice"], 1);
    let ts = json.headers["x-scimhub-timestamp"].clone();
    assert_eq!(ts, env.engine.now().timestamp().to_string());
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"siem-key").unwrap();
    m.update(format!("{ts}.{}", json.raw).as_bytes());
    assert_eq!(
        json.headers["x-scimhub-signature"],
        format!("sha256={}", hex::encode(m.finalize().into_bytes()))
    );

    // The next ladder step: one more delivery per channel.
    env.clock.advance(Duration::hours(1));
    env.run();
    assert_eq!(deliver_chat(&env), 3);
    let got = rx.got();
    assert_eq!(got.len(), 6);
    assert!(got[3..].iter().any(|r| r.body["notice"] == 2));
    env.admin.acknowledge_incident(id, "alice", None).unwrap();
    env.clock.advance(Duration::days(3));
    env.run();
    assert_eq!(deliver_chat(&env), 0, "acknowledged: nothing more");
}

/// A batch whose sends are slow (each chat post takes three minutes of the test clock; the lease
/// is five): the sender renews each message's lease as its turn comes, so another sender polling
/// after each post cannot take a message that is about to go; one whose lease ran out before its
/// turn (the third, at minute six) is taken by the other sender, and the first skips it. Every
/// channel gets the notice exactly once. Without the renewal the other sender took the second
/// message too while it was being sent, and both senders posted it.
fn a_slow_batch_renews_each_lease_and_skips_what_another_sender_took(pg: bool) {
    use scim_server::clock::Clock as _;
    use std::sync::{Arc, Mutex};
    let taken: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
    let slot: Arc<Mutex<Option<(scim_server::store::Store, scim_server::clock::TestClock)>>> =
        Arc::default();
    let (their_taken, their_slot) = (taken.clone(), slot.clone());
    let rx = Receiver::start_with(move || {
        let Some((store, clock)) = their_slot.lock().unwrap().clone() else {
            return;
        };
        clock.advance(Duration::minutes(3));
        // The other sender polls, as another node's would.
        let claimed = in_tx(&store, |c| {
            notifications::claim(c, clock.now(), Duration::minutes(5), 20, true)
        })
        .unwrap();
        their_taken
            .lock()
            .unwrap()
            .push(claimed.iter().map(|n| n.id).collect());
    });
    let Some(env) = Env::new(pg, &chat_policy(rx.port)) else {
        return;
    };
    let ada = env.create_user(user("ada", "Employee", "Research", "Analyst"));
    env.run();
    assert!(raise(&env, Some(&ada), "mismatch:plan-1"));
    env.run();
    let mut chat: Vec<i64> = notices(&env)
        .into_iter()
        .filter(|n| n.channel.is_some())
        .map(|n| n.id)
        .collect();
    chat.sort();
    assert_eq!(chat.len(), 3);
    *slot.lock().unwrap() = Some((env.store.clone(), env.clock.clone()));

    // Claimed at minute 0, leases to minute 5. Posts at minutes 0, 3 (renewed to 8 first) and
    // not the third: its lease ran out at 5 and the other sender took it at 6.
    assert_eq!(deliver_chat(&env), 3, "one batch of three claimed");
    assert_eq!(rx.got().len(), 2, "{:?}", rx.got());
    assert_eq!(*taken.lock().unwrap(), vec![vec![], vec![chat[2]]]);

    // The other sender's lease runs out without a send: the third goes once, now.
    env.clock.advance(Duration::minutes(6));
    assert_eq!(deliver_chat(&env), 1);
    let got = rx.got();
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/json", "/slack", "/teams"], "each channel once");
    assert!(notices(&env)
        .into_iter()
        .filter(|n| n.channel.is_some())
        .all(|n| n.status == "sent"));
}

fn incident_mail_reaches_security_and_helpdesk_over_smtp(pg: bool) {
    use super::notify::{deliver, free_port, notifier, Sink};
    let Some(env) = Env::new(pg, &policy()) else {
        return;
    };
    let port = free_port();
    let sink = Sink::start(port, &[]);
    let n = notifier(&env, port);
    let ada = env.create_user(user("ada", "Employee", "Research", "Analyst"));
    env.run();
    deliver(&n);
    let before = sink.messages().len();
    let now = env.engine.now();
    in_tx(&env.store, |c| {
        incidents::raise(
            c,
            "operation_parked",
            Some(&ada),
            Some("github"),
            None,
            "remove from team admins: 503 <b>Service Unavailable</b> see http://evil.example/x",
            now,
        )
    })
    .unwrap();
    env.run();
    assert_eq!(deliver(&n), 1);
    let msgs = sink.messages();
    let m = &msgs[before..];
    assert_eq!(m.len(), 1, "{m:#?}");
    let m = &m[0];
    let id = in_tx(&env.store, incidents::list_open).unwrap()[0].id;
    assert_eq!(
        m["subject"],
        format!("scimhub: incident {id}: operation parked on github")
    );
    let mut rcpts: Vec<&str> = m["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    rcpts.sort_unstable();
    assert_eq!(rcpts, ["helpdesk@example.com", "security@example.com"]);
    let html = m["html"].as_str().unwrap();
    // The connector's text is quoted, never markup or a link; the hub's own URLs are links.
    assert!(
        html.contains("&lt;b&gt;Service Unavailable&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<a href=\"http://evil"), "{html}");
    // A copy without links: nothing in it is a link.
    assert!(!html.contains("<a href="), "{html}");
    if let Ok(dir) = std::env::var("SCIMHUB_MAIL_ARTIFACTS") {
        std::fs::write(format!("{dir}/incident-mail.html"), html).unwrap();
    }
}

fn acknowledge_and_resolve_over_http_record_the_caller(pg: bool) {
    use super::admin_api::{assert_error, Server};
    let Some(env) = Env::new(pg, &policy()) else {
        return;
    };
    let srv = Server::start(&env);
    let oncall = srv.token("oncall", &["admin"], None);
    let approver = srv.token("approver", &["approvals"], None);
    assert!(raise(&env, None, "k"));
    env.run();
    let id = in_tx(&env.store, incidents::list_open).unwrap()[0].id;
    let (s, v) = srv.get(&format!("/incidents/{id}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "open");
    assert_eq!(v["notices"], 1);
    assert!(v["next_notice"].is_string(), "{v}");
    assert_error(srv.get("/incidents/999999"), 404);
    assert_error(srv.get("/incidents/abc"), 404);
    // The actor comes from the credential; a body naming someone else is refused.
    assert_error(
        srv.post_as(
            &oncall,
            &format!("/incidents/{id}/acknowledge"),
            serde_json::json!({"actor": "mallory"}),
        ),
        400,
    );
    assert_error(
        srv.post_as(
            &approver,
            &format!("/incidents/{id}/acknowledge"),
            serde_json::json!({}),
        ),
        403,
    );
    let (s, v) = srv.post_as(
        &oncall,
        &format!("/incidents/{id}/acknowledge"),
        serde_json::json!({"note": "on it"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["acknowledged_by"], "oncall");
    assert_eq!(v["note"], "on it");
    assert!(v["next_notice"].is_null(), "{v}");
    assert_error(
        srv.post_as(
            &oncall,
            &format!("/incidents/{id}/acknowledge"),
            serde_json::json!({}),
        ),
        409,
    );
    let (s, v) = srv.post_as(
        &oncall,
        &format!("/incidents/{id}/resolve"),
        serde_json::json!({}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["resolved_by"].as_str()),
        (Some("resolved"), Some("oncall"))
    );
    assert_error(
        srv.post_as(
            &oncall,
            &format!("/incidents/{id}/resolve"),
            serde_json::json!({}),
        ),
        409,
    );
    let a = in_tx(&env.store, |c| audit::list(c, None)).unwrap();
    let mine: Vec<_> = a
        .iter()
        .filter(|e| e.action.starts_with("incident_"))
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        mine,
        [
            ("incident_acknowledge", "oncall"),
            ("incident_resolve", "oncall")
        ]
    );
}
