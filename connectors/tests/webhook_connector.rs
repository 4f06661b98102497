//! The webhook connector against a real local receiver (HTTP on 127.0.0.1) that verifies the
//! HMAC signature and timestamp, rejects replays of an event id, and records what it accepted.

#[path = "support/scim_http.rs"]
mod scim_http;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors::secret::Secret;
use connectors::webhook::{self, WebhookConnector, WebhookSettings};
use connectors::{AccountRef, AccountSpec, Capability, Connector, Entitlement, ErrorKind};
use scim_http::{Request, Response};
use serde_json::{json, Value};

const SECRET: &str = "whsec_receiver_shared_secret";

#[derive(Default)]
struct Receiver {
    accepted: Vec<Value>,
    seen_ids: HashSet<String>,
    rejected: Vec<String>,
}

/// A receiver as a downstream team would write one: verify, de-duplicate, record.
fn receive(state: &Mutex<Receiver>, req: &Request) -> Response {
    let mut st = state.lock().expect("lock");
    if req.method != "POST" || req.header("content-type") != Some("application/json") {
        return Response::empty(415);
    }
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = webhook::verify(
        &Secret::new(SECRET),
        req.header(webhook::TIMESTAMP_HEADER),
        req.header(webhook::SIGNATURE_HEADER),
        &req.body,
        now,
        Duration::from_secs(300),
    ) {
        st.rejected.push(e.to_string());
        return Response::json(401, json!({"error": e.to_string()}));
    }
    let Some(event) = req.json() else {
        return Response::empty(400);
    };
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    if req.header(webhook::EVENT_ID_HEADER) != Some(id.as_str()) || !st.seen_ids.insert(id) {
        st.rejected.push("replay".into());
        return Response::json(409, json!({"error": "replayed event"}));
    }
    let answer = if event["type"] == "account.create" {
        json!({"id": format!("ext-{}", event["account"]["key"].as_str().unwrap_or_default())})
    } else {
        json!({"ok": true})
    };
    st.accepted.push(event);
    Response::json(200, answer)
}

fn connector(url: String, secret: &str) -> WebhookConnector {
    let mut settings = WebhookSettings::new(url);
    settings.timeout_ms = 5_000;
    WebhookConnector::new("hr-legacy", settings, Secret::new(secret)).expect("connector")
}

#[tokio::test]
async fn every_operation_is_a_signed_event_the_receiver_accepts() {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let s = state.clone();
    let server = scim_http::serve(move |req: Request| receive(&s, &req)).await;
    let c = connector(server.url("/hooks/scimhub"), SECRET);
    assert!(c.capabilities().supports(Capability::RevokeSessions));
    assert!(!c.capabilities().supports(Capability::ReadAccount));

    let spec = AccountSpec {
        account: AccountRef::new("jdoe"),
        attributes: json!({"userName": "jdoe", "displayName": "Jane"})
            .as_object()
            .cloned()
            .expect("object"),
    };
    let acct = c.create_or_adopt(&spec).await.expect("create");
    assert_eq!(acct.id.as_deref(), Some("ext-jdoe"));
    c.update(&spec).await.expect("update");
    let group = Entitlement::new("group", "engineering");
    c.grant(&acct, &group).await.expect("grant");
    c.revoke(&acct, &group).await.expect("revoke");
    c.set_enabled(&acct, false).await.expect("disable");
    c.set_enabled(&acct, true).await.expect("enable");
    c.revoke_sessions(&acct).await.expect("sessions");
    c.revoke_credentials(&acct).await.expect("credentials");
    c.transfer_ownership(&acct, &AccountRef::new("boss"))
        .await
        .expect("transfer");
    c.delete(&acct).await.expect("delete");
    let err = c
        .grant(&acct, &Entitlement::new("repo", "x"))
        .await
        .expect_err("unknown kind");
    assert_eq!(err.kind, ErrorKind::Permanent);

    let st = state.lock().expect("lock");
    assert!(st.rejected.is_empty(), "{:?}", st.rejected);
    let types: Vec<&str> = st
        .accepted
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "account.create",
            "account.update",
            "entitlement.grant",
            "entitlement.revoke",
            "account.disable",
            "account.enable",
            "account.revoke_sessions",
            "account.revoke_credentials",
            "account.transfer_ownership",
            "account.delete",
        ]
    );
    assert_eq!(st.accepted[2]["data"]["entitlement"]["id"], "engineering");
    assert_eq!(st.accepted[4]["data"]["enabled"], false);
    assert_eq!(st.accepted[0]["data"]["attributes"]["displayName"], "Jane");
    assert!(st.accepted.iter().all(|e| e["connector"] == "hr-legacy"));
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_by_the_receiver_as_permanent() {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let s = state.clone();
    let server = scim_http::serve(move |req: Request| receive(&s, &req)).await;
    let wrong = "whsec_not_the_receivers_secret";
    let c = connector(server.url("/hook"), wrong);
    let err = c.delete(&AccountRef::new("jdoe")).await.expect_err("401");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("401"), "{err}");
    assert!(!format!("{err:?} {c:?}").contains(wrong));
    assert_eq!(
        state.lock().expect("lock").rejected,
        vec!["signature does not match"]
    );
}

#[tokio::test]
async fn a_replayed_delivery_is_rejected() {
    // Capture one genuine delivery, then replay it byte for byte.
    let captured: Arc<Mutex<Option<Request>>> = Arc::default();
    let state = Arc::new(Mutex::new(Receiver::default()));
    let (cap, s) = (captured.clone(), state.clone());
    let server = scim_http::serve(move |req: Request| {
        *cap.lock().expect("lock") = Some(req.clone());
        receive(&s, &req)
    })
    .await;
    let c = connector(server.url("/hook"), SECRET);
    c.revoke_sessions(&AccountRef::new("jdoe"))
        .await
        .expect("first delivery");
    let original = captured.lock().expect("lock").clone().expect("captured");
    let mut replay = reqwest::Client::new()
        .post(server.url("/hook"))
        .body(original.body.clone());
    for (k, v) in &original.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
            replay = replay.header(k.as_str(), v.as_str());
        }
    }
    let resp = replay.send().await.expect("replay");
    assert_eq!(resp.status().as_u16(), 409);
    // and an old timestamp is refused outright
    let old = chrono::Utc::now().timestamp() - 3600;
    assert_eq!(
        webhook::verify(
            &Secret::new(SECRET),
            Some(&old.to_string()),
            Some(&webhook::sign(&Secret::new(SECRET), old, &original.body)),
            &original.body,
            chrono::Utc::now().timestamp(),
            Duration::from_secs(300),
        ),
        Err(webhook::VerifyError::Stale)
    );
}

#[tokio::test]
async fn retries_are_classified_like_the_other_connectors() {
    let server = scim_http::serve(|req: Request| match req.raw_path.as_str() {
        "/429" => {
            Response::json(429, json!({"error": "slow down"})).with_header("Retry-After", "2")
        }
        "/503" => Response::empty(503),
        "/400" => Response::json(400, json!({"error": "bad event"})),
        _ => Response::empty(204),
    })
    .await;
    let acct = AccountRef::new("jdoe");
    let err = connector(server.url("/429"), SECRET)
        .delete(&acct)
        .await
        .expect_err("429");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    let err = connector(server.url("/503"), SECRET)
        .delete(&acct)
        .await
        .expect_err("503");
    assert!(err.is_retryable());
    let err = connector(server.url("/400"), SECRET)
        .delete(&acct)
        .await
        .expect_err("400");
    assert_eq!(err.kind, ErrorKind::Permanent);
    connector(server.url("/ok"), SECRET)
        .delete(&acct)
        .await
        .expect("204");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let server = scim_http::serve_silent().await;
    let mut settings = WebhookSettings::new(server.url("/hook"));
    settings.timeout_ms = 500;
    let c = WebhookConnector::new("hook", settings, Secret::new(SECRET)).expect("connector");
    let started = Instant::now();
    let err = c
        .delete(&AccountRef::new("jdoe"))
        .await
        .expect_err("timeout");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A delivery the receiver failed (503) and the worker's retry of the same operation carry the
/// same event id, so a receiver that did apply the first one can drop the second; another
/// operation with the same content gets another id.
#[tokio::test]
async fn retries_of_one_operation_carry_the_same_event_id() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let server = scim_http::serve(move |req: Request| {
        let mut ids = s.lock().expect("lock");
        let id = req
            .header(webhook::EVENT_ID_HEADER)
            .unwrap_or_default()
            .to_owned();
        assert_eq!(req.json().expect("json")["id"], json!(id));
        ids.push(id);
        if ids.len() == 1 {
            Response::empty(503)
        } else {
            Response::json(200, json!({"ok": true}))
        }
    })
    .await;
    let c = connector(server.url("/hook"), SECRET);
    let acct = AccountRef::new("jdoe");
    let first = connectors::operation::scope("plan-1:41".into(), c.set_enabled(&acct, false))
        .await
        .expect_err("503");
    assert!(first.is_retryable());
    connectors::operation::scope("plan-1:41".into(), c.set_enabled(&acct, false))
        .await
        .expect("retry");
    connectors::operation::scope("plan-2:42".into(), c.set_enabled(&acct, false))
        .await
        .expect("another operation");
    let ids = seen.lock().expect("lock").clone();
    assert_eq!(ids.len(), 3);
    assert!(ids[0].starts_with("evt_"), "{ids:?}");
    assert_eq!(ids[0], ids[1], "a retry keeps the event id");
    assert_ne!(ids[1], ids[2], "another operation gets another id");
}
