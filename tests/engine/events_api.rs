//! The event record (`GET /admin/v1/events`, `GET /admin/v1/events/{id}`, `Admin::event`) on
//! both backends, with a moved clock: a leaver whose Slack revocation waits out a two-hour
//! outage past a one-hour SLA. The record names the SCIM request time, every system with its
//! operations' requested and done times, the breach with the actual completion time, the
//! verification per system, and the SLA incident; the list pages and filters.

use chrono::{DateTime, Duration, Utc};
use connectors::ConnectorError;
use serde_json::{json, Value};

use super::admin_api::{assert_error, Server};
use super::{user, Env, POLICY};

macro_rules! with_policy {
    ($policy:expr; $($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::Env::new(false, &$policy) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::Env::new(true, &$policy) { super::$name(e) } } )* }
    };
}

fn sla_policy() -> String {
    format!("{POLICY}\n[sla]\nleaver = \"1h\"\n")
}

with_policy!(super::sla_policy();
    event_record_names_every_system_with_times,
    event_list_pages_and_filters,
);

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Ann (Engineering: Slack and GitHub) leaves while Slack is down for two hours; the SLA is
/// one hour. Returns her id and when she left.
fn leaver_through_an_outage(env: &Env) -> (String, DateTime<Utc>) {
    let ann = env.create_user(user("ann", "Employee", "Engineering", "Engineer"));
    env.run();
    env.clock.advance(Duration::minutes(5));
    env.app("slack")
        .fail_next([ConnectorError::retryable("slack", "503 unavailable")
            .with_retry_after(std::time::Duration::from_secs(7200))]);
    let left_at = env.engine.now();
    env.patch_user(&ann, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    env.clock.set(left_at + Duration::hours(1));
    env.run();
    env.clock.set(left_at + Duration::hours(2));
    env.run();
    env.clock.advance(Duration::minutes(16));
    env.run();
    (ann, left_at)
}

fn event_record_names_every_system_with_times(env: Env) {
    let (ann, left_at) = leaver_through_an_outage(&env);
    let srv = Server::start(&env);
    let (s, list) = srv.get("/events?user=ann&kind=leaver");
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["totalResults"], 1, "{list}");
    let id = list["Resources"][0]["id"].as_i64().unwrap();

    let (s, e) = srv.get(&format!("/events/{id}"));
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["kind"], "leaver");
    assert_eq!(e["user_id"], ann.as_str());
    assert_eq!(e["user_name"], "ann");
    assert_eq!(ts(&e["at"]), left_at, "the SCIM request's time");
    // Breached at one hour, completed (the actual time) at two.
    assert_eq!(e["sla"]["result"], "breached", "{e}");
    assert_eq!(ts(&e["sla"]["due"]), left_at + Duration::hours(1));
    assert_eq!(ts(&e["sla"]["completed"]), left_at + Duration::hours(2));
    assert_eq!(e["sla"]["seconds"], 7200);

    let systems = e["systems"].as_array().unwrap();
    let names: Vec<&str> = systems
        .iter()
        .map(|s| s["connector"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["github", "slack"], "{e}");
    for sys in systems {
        assert_eq!(sys["outcome"], "done", "{sys}");
        assert_eq!(ts(&sys["requested"]), left_at, "{sys}");
        assert!(!sys["operations"].as_array().unwrap().is_empty(), "{sys}");
        for op in sys["operations"].as_array().unwrap() {
            assert_eq!(op["status"], "done", "{op}");
            assert_eq!(ts(&op["requested"]), left_at, "{op}");
            assert!(ts(&op["done"]) >= left_at, "{op}");
        }
        let checks = sys["verifications"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "{sys}");
        assert_eq!(checks[0]["outcome"], "verified", "{sys}");
    }
    let slack = systems.iter().find(|s| s["connector"] == "slack").unwrap();
    let github = systems.iter().find(|s| s["connector"] == "github").unwrap();
    assert_eq!(ts(&slack["done"]), left_at + Duration::hours(2), "{slack}");
    assert_eq!(ts(&github["done"]), left_at, "{github}");
    let slack_disable = slack["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"].as_str().unwrap().starts_with("set_enabled"))
        .unwrap();
    assert_eq!(slack_disable["attempts"], 2, "{slack_disable}");
    // The error of the failed attempt is cleared by the success.
    assert_eq!(slack_disable["last_error"], Value::Null);

    // The SLA incident of this plan (and nothing of the joiner's).
    let incidents = e["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{e}");
    assert_eq!(incidents[0]["kind"], "sla_breach");
    assert_eq!(incidents[0]["connector"], "slack");
    assert_eq!(ts(&incidents[0]["created"]), left_at + Duration::hours(1));

    // The admin function the CLI prints is the same record.
    let direct = env.admin.event(id).unwrap();
    assert_eq!(serde_json::to_value(&direct).unwrap(), e);

    // Unknown and malformed ids are 404; the admin scope is needed.
    assert_error(srv.get("/events/999999"), 404);
    assert_error(srv.get("/events/x1"), 404);
    let (s, _) = srv.call(
        reqwest::Method::GET,
        &format!("/events/{id}"),
        &srv.scim_token,
        Value::Null,
    );
    assert_eq!(s, 403);
}

fn event_list_pages_and_filters(env: Env) {
    let (ann, left_at) = leaver_through_an_outage(&env);
    let bob = env.create_user(user("bob", "Employee", "Sales", "Rep"));
    env.run();
    let srv = Server::start(&env);
    let kinds = |v: &Value| -> Vec<(String, String)> {
        v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["user_id"].as_str().unwrap().to_string(),
                    e["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Newest first, all users.
    let (s, all) = srv.get("/events");
    assert_eq!(s, 200, "{all}");
    assert_eq!(
        kinds(&all),
        vec![
            (bob.clone(), "joiner".into()),
            (ann.clone(), "leaver".into()),
            (ann.clone(), "joiner".into())
        ]
    );
    assert_eq!(all["nextBefore"], Value::Null);
    // By id as well as by userName.
    let (_, by_id) = srv.get(&format!("/events?user={ann}"));
    assert_eq!(by_id["totalResults"], 2);
    // Pages of one.
    let (_, p1) = srv.get("/events?user=ann&limit=1");
    assert_eq!(kinds(&p1), vec![(ann.clone(), "leaver".into())]);
    let next = p1["nextBefore"].as_i64().expect("a next page");
    let (_, p2) = srv.get(&format!("/events?user=ann&limit=1&before={next}"));
    assert_eq!(kinds(&p2), vec![(ann.clone(), "joiner".into())]);
    assert_eq!(p2["nextBefore"], Value::Null);
    // Time window: since is inclusive, until exclusive.
    let at = |t: DateTime<Utc>| t.to_rfc3339().replace('+', "%2B");
    let (_, since) = srv.get(&format!("/events?user=ann&since={}", at(left_at)));
    assert_eq!(kinds(&since), vec![(ann.clone(), "leaver".into())]);
    let (_, until) = srv.get(&format!("/events?user=ann&until={}", at(left_at)));
    assert_eq!(kinds(&until), vec![(ann.clone(), "joiner".into())]);
    // Kind, and a user with no events.
    let (_, joiners) = srv.get("/events?kind=joiner");
    assert_eq!(joiners["totalResults"], 2);
    let (_, none) = srv.get("/events?user=nobody");
    assert_eq!(none["totalResults"], 0);
    // Bad input.
    assert_error(srv.get("/events?limit=0"), 400);
    assert_error(srv.get("/events?limit=1001"), 400);
    assert_error(srv.get("/events?since=yesterday"), 400);
    assert_error(
        srv.get(&format!(
            "/events?since={}&until={}",
            at(left_at),
            at(left_at)
        )),
        400,
    );
}
