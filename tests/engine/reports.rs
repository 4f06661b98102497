//! Reports (`scim_server::report`, `GET /admin/v1/reports/...`) on both backends with a moved
//! clock: a leaver whose Slack revocation waits out a two-hour outage past a one-hour SLA (the
//! termination report names every system with its times and verification, the breach and its
//! incident), the period around it (events by kind, SLA attainment, incident resolution times),
//! and a contractor whose history is kept when the contract-expiry plan completes and served
//! unchanged afterwards. Every JSON report is validated against its schema under
//! `docs/schemas/` (the `jsonschema` crate, formats checked).

use chrono::{DateTime, Duration, TimeZone, Utc};
use connectors::ConnectorError;
use scim_server::admin::events::EventQuery;
use scim_server::admin::grants::GrantRequest;
use scim_server::admin::in_tx;
use scim_server::report::{self, ReportError};
use scim_server::store::{audit, audit_chain, report_archives};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::admin_api::Server;
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
    termination_report_lists_every_system,
    period_report_counts_sla_and_incidents,
    contractor_history_is_kept_at_expiry,
    report_routes_answer_json_and_html,
);

/// Fails with every schema error of `v` against `docs/schemas/FILE`.
pub fn validate(file: &str, v: &Value) {
    let path = format!("{}/../docs/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{file}: {errors:#?}\n{v:#}");
}

/// Writes `html` as `$SCIMHUB_MAIL_ARTIFACTS/NAME` when set (tests/artifacts/README.md).
pub fn artifact(name: &str, html: &str) {
    if let Ok(dir) = std::env::var("SCIMHUB_MAIL_ARTIFACTS") {
        std::fs::write(std::path::Path::new(&dir).join(name), html).unwrap();
    }
}

/// A page that needs nothing but itself: no script, no external resource, no link out.
fn self_contained(html: &str) {
    let lower = html.to_lowercase();
    for bad in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(!lower.contains(bad), "{bad} in the page");
    }
    let without_svg_ns = lower.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_svg_ns.contains("http://") && !without_svg_ns.contains("https://"));
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

fn termination_report_lists_every_system(env: Env) {
    let (ann, left_at) = leaver_through_an_outage(&env);
    let now = env.engine.now();
    let r = report::termination::build(&env.store, "ann", None, now).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    validate("report-termination.schema.json", &v);
    assert_eq!(v["schema"], "scimhub/report/termination/v1");
    assert_eq!(
        (r.user.id.as_str(), r.user.user_name.as_deref()),
        (ann.as_str(), Some("ann"))
    );
    assert_eq!((r.event.kind.as_str(), r.event.at), ("leaver", left_at));
    assert_eq!(r.generated_at, now);
    assert_eq!(r.sla.result.as_deref(), Some("breached"));
    assert_eq!(r.sla.completed, Some(left_at + Duration::hours(2)));

    let mut names: Vec<&str> = r.systems.iter().map(|s| s.connector.as_str()).collect();
    names.sort();
    assert_eq!(names, ["github", "slack"], "{v:#}");
    for s in &r.systems {
        assert_eq!(s.outcome, "done", "{v:#}");
        assert_eq!(s.requested, left_at);
        assert!(s.done.is_some_and(|d| d >= left_at));
        assert_eq!(s.verification.as_deref(), Some("verified"), "{v:#}");
        assert!(!s.operations.is_empty());
        for o in &s.operations {
            assert_eq!((o.status.as_str(), o.requested), ("done", left_at));
            assert!(o.done.is_some());
        }
    }
    let slack = r.systems.iter().find(|s| s.connector == "slack").unwrap();
    assert_eq!(slack.done, Some(left_at + Duration::hours(2)));
    assert_eq!(
        (
            r.summary.systems,
            r.summary.systems_done,
            r.summary.systems_verified
        ),
        (2, 2, 2)
    );
    assert_eq!(r.incidents.len(), 1, "{v:#}");
    assert_eq!(r.incidents[0].kind, "sla_breach");
    assert_eq!(r.incidents[0].resolution_seconds, None);

    // The audit head is the chain's head when the report was made.
    let head = in_tx(&env.store, audit_chain::head).unwrap();
    assert_eq!(
        (r.audit_head.seq, r.audit_head.hash.as_str()),
        (head.seq, head.hash.as_str())
    );
    assert!(r.audit_head.seq > 0);

    // The same event by id; a joiner event is no termination; unknown users are not found.
    let again = report::termination::build(&env.store, &ann, Some(r.event.id), now).unwrap();
    assert_eq!(again.event.id, r.event.id);
    let joiner = env
        .admin
        .events(&EventQuery {
            user: Some(ann.clone()),
            kind: Some("joiner".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .events[0]
        .id;
    assert!(matches!(
        report::termination::build(&env.store, "ann", Some(joiner), now),
        Err(ReportError::Invalid(_))
    ));
    assert!(matches!(
        report::termination::build(&env.store, "nobody", None, now),
        Err(ReportError::NotFound(_))
    ));
    let bob = env.create_user(user("bob", "Employee", "Sales", "Rep"));
    env.run();
    assert!(matches!(
        report::termination::build(&env.store, &bob, None, now),
        Err(ReportError::NotFound(_))
    ));

    let html = report::html::termination(&r).unwrap();
    self_contained(&html);
    for needle in [
        "github",
        "slack",
        "breached",
        "verified",
        "sla_breach",
        &r.audit_head.hash,
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert!(html.contains("<svg"));
    artifact("report-termination.html", &html);
}

fn period_report_counts_sla_and_incidents(env: Env) {
    let (_ann, left_at) = leaver_through_an_outage(&env);
    env.create_user(user("bob", "Employee", "Sales", "Rep"));
    env.run();
    let term = report::termination::build(&env.store, "ann", None, env.engine.now()).unwrap();
    let breach = term.incidents[0].id;
    env.clock.advance(Duration::minutes(30));
    env.admin
        .resolve_incident(breach, "oncall", Some("slack back"))
        .unwrap();
    let resolved_after = (env.engine.now() - (left_at + Duration::hours(1))).num_seconds();
    // An emergency grant for bob and a certification campaign over slack, both in the period.
    env.admin
        .create_grant(&GrantRequest {
            user: "bob",
            entitlement: "github:team:eng",
            duration: Duration::hours(4),
            reason: "incident INC-7",
            requested_by: "oncall",
            requester: None,
        })
        .unwrap();
    env.run();
    env.admin
        .create_campaign(
            "Q1 slack review",
            "connector=slack",
            Duration::days(14),
            "auditor",
        )
        .unwrap();

    let from = report::parse_bound("2025-03-03", false, "from").unwrap();
    let to = report::parse_bound("2025-03-03", true, "to").unwrap();
    let now = env.engine.now();
    let p = report::period::build(&env.store, from, to, now).unwrap();
    let v = serde_json::to_value(&p).unwrap();
    validate("report-period.schema.json", &v);
    let section = |id: &str| {
        v["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no {id} section"))["data"]
            .clone()
    };
    let events = section("events");
    // The grant's re-plan of bob is an update event.
    assert_eq!(events["total"], 4, "{events:#}");
    assert_eq!(
        events["kinds"],
        json!([
            {"kind": "joiner", "count": 2},
            {"kind": "leaver", "count": 1},
            {"kind": "update", "count": 1}
        ])
    );
    let sla = section("sla");
    let leaver = sla["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "leaver")
        .unwrap()
        .clone();
    assert_eq!(
        (&leaver["with_sla"], &leaver["met"], &leaver["breached"]),
        (&json!(1), &json!(0), &json!(1)),
        "{sla:#}"
    );
    assert_eq!(leaver["attainment"], json!(0.0));
    assert_eq!(leaver["max_seconds"], json!(7200));
    assert_eq!(sla["attainment"], json!(0.0));
    let incidents = section("incidents");
    let item = incidents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == breach)
        .unwrap()
        .clone();
    assert_eq!(item["status"], "resolved");
    assert_eq!(item["resolved_by"], "oncall");
    assert_eq!(
        item["resolution_seconds"],
        json!(resolved_after),
        "{item:#}"
    );
    assert_eq!(section("drift")["total"], 0);
    let grants = section("grants");
    assert_eq!(grants["total"], 1, "{grants:#}");
    let g = &grants["items"][0];
    assert_eq!(
        (
            &g["connector"],
            &g["entitlement"],
            &g["state"],
            &g["reason"]
        ),
        (
            &json!("github"),
            &json!("team:eng"),
            &json!("active"),
            &json!("incident INC-7")
        ),
        "{g:#}"
    );
    assert_eq!(g["held_secs"], json!(4 * 3600));
    let campaigns = section("campaigns");
    assert_eq!(campaigns["total"], 1, "{campaigns:#}");
    let camp = &campaigns["items"][0];
    assert_eq!(camp["name"], "Q1 slack review");
    assert_eq!(camp["state"], "open");
    assert!(camp["items"].as_u64().unwrap() >= 1, "{camp:#}");
    assert_eq!(camp["decided"], 0);
    assert_eq!(camp["completion_pct"], json!(0.0));

    // A later day has none of it; a period that ends before it starts is refused.
    let later = report::period::build(&env.store, to, to + Duration::days(1), now).unwrap();
    let lv = serde_json::to_value(&later).unwrap();
    assert_eq!(lv["sections"][0]["data"]["total"], 0);
    assert!(matches!(
        report::period::build(&env.store, to, from, now),
        Err(ReportError::Invalid(_))
    ));

    let html = report::html::period(&p).unwrap();
    self_contained(&html);
    for needle in [
        "Lifecycle events",
        "SLA attainment",
        "Incidents",
        "Drift findings",
        "oncall",
        "Emergency grants",
        "incident INC-7",
        "Access certification campaigns",
        "Q1 slack review",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert_eq!(html.matches("<svg").count(), 6);
    artifact("report-period.html", &html);
}

fn contractor_history_is_kept_at_expiry(env: Env) {
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] =
        json!({"contractEnd": "2025-04-30", "sponsor": "sponsor@example.com"});
    let cora = env.create_user(d);
    env.run();
    // Before the expiry: the live history, nothing kept.
    let live = report::contractor::serve(&env.store, "cora", env.engine.now()).unwrap();
    validate("report-contractor.schema.json", &live);
    assert_eq!(live["archived"], Value::Null);
    assert_eq!(live["contract"]["contractor"], true);
    assert!(in_tx(&env.store, |c| report_archives::latest(
        c,
        "contractor",
        &cora
    ))
    .unwrap()
    .is_none());

    env.clock
        .set(Utc.with_ymd_and_hms(2025, 4, 30, 0, 0, 1).unwrap());
    env.run();
    assert_eq!(env.holds("slack", "cora"), Some((false, vec![])));
    let kept = in_tx(&env.store, |c| {
        report_archives::latest(c, "contractor", &cora)
    })
    .unwrap()
    .expect("kept at expiry");
    let body: Value = serde_json::from_str(&kept.body).unwrap();
    validate("report-contractor.schema.json", &body);
    let kinds: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["joiner", "contractor-expiry"]);
    assert_eq!(body["archived"]["event_id"], kept.event_id);
    assert_eq!(body["events"][1]["id"], kept.event_id);
    let expiry = &body["events"][1]["systems"][0];
    assert_eq!(expiry["connector"], "slack");
    assert_eq!(expiry["outcome"], "done");
    assert!(expiry["done"].is_string());
    // Its hash is in the audit chain.
    let entries = in_tx(&env.store, |c| audit::list(c, Some(&cora))).unwrap();
    let entry = entries
        .iter()
        .find(|a| a.action == "report_archived")
        .expect("audit entry");
    let detail: Value = serde_json::from_str(&entry.detail).unwrap_or_else(|_| json!(entry.detail));
    assert_eq!(
        detail["sha256"],
        hex::encode(Sha256::digest(kept.body.as_bytes()))
    );
    // The kept copy names the chain's head it is consistent with: the last entry of the
    // transaction that completed the expiry (the plan's SLA or its last operation, for cora),
    // right before the archive's own entry.
    let head_seq = body["audit_head"]["seq"].as_i64().unwrap();
    let around = in_tx(&env.store, |c| {
        scim_server::store::audit_chain::export_page(
            c,
            &scim_server::store::audit_chain::ExportFilter {
                after_seq: Some(head_seq - 1),
                to_seq: Some(head_seq + 1),
                ..Default::default()
            },
            2,
        )
    })
    .unwrap();
    assert_eq!(around.len(), 2, "{around:?}");
    assert_eq!(around[0].user_id, cora, "{around:?}");
    assert_ne!(around[0].action, "report_archived", "{around:?}");
    assert_eq!(around[1].action, "report_archived", "{around:?}");

    // Later: verification runs, the contract is extended and access comes back; the kept copy
    // is what the report serves, unchanged, and no second copy is made.
    env.clock.advance(Duration::days(1));
    env.run();
    env.patch_user(&cora, |d| {
        d.insert(
            "urn:example:acme:2.0:User".into(),
            json!({"contractEnd": "2025-12-31", "sponsor": "sponsor@example.com"}),
        );
    });
    env.run();
    let served = report::contractor::serve(&env.store, &cora, env.engine.now()).unwrap();
    assert_eq!(served, body);
    let fresh = report::contractor::build(&env.store, &cora, env.engine.now()).unwrap();
    assert!(fresh.archived.is_none());
    assert_ne!(serde_json::to_value(&fresh).unwrap(), body);
    let n: i64 = in_tx(&env.store, |c| {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        Ok(
            diesel::sql_query("SELECT COUNT(*) AS n FROM report_archives")
                .get_result::<N>(c)
                .map(|r| r.n)
                .unwrap(),
        )
    })
    .unwrap();
    assert_eq!(n, 1);

    let html = report::html::contractor(&served).unwrap();
    self_contained(&html);
    for needle in [
        "cora",
        "contractor-expiry",
        "kept at contract expiry",
        "slack",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    artifact("report-contractor.html", &html);
}

fn report_routes_answer_json_and_html(env: Env) {
    let (ann, _) = leaver_through_an_outage(&env);
    let srv = Server::start(&env);
    let (s, v) = srv.get("/reports/termination/ann");
    assert_eq!(s, 200, "{v}");
    validate("report-termination.schema.json", &v);
    assert_eq!(v["user"]["id"], ann.as_str());
    assert_eq!(v["generated_at"], json!(env.engine.now()));

    let raw = |path: &str, accept: Option<&str>| {
        let mut req = srv.http.get(srv.url(path)).bearer_auth("t");
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let r = req.send().unwrap();
        let ct = r
            .headers()
            .get("content-type")
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), ct, r.text().unwrap())
    };
    let (s, ct, html) = raw("/reports/termination/ann?format=html", None);
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(html.contains("slack") && html.contains("<svg"));
    // A report page loads nothing and cannot be framed; a copy saved to disk says the same.
    let r = srv
        .http
        .get(srv.url("/reports/termination/ann?format=html"))
        .bearer_auth("t")
        .send()
        .unwrap();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(
        header("content-security-policy").contains("default-src 'none'")
            && header("content-security-policy").contains("frame-ancestors 'none'"),
        "{:?}",
        r.headers()
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(html.contains("http-equiv=\"Content-Security-Policy\""));
    let (s, ct, _) = raw(
        "/reports/termination/ann",
        Some("text/html,application/xhtml+xml,*/*;q=0.8"),
    );
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    let (s, ct, _) = raw("/reports/termination/ann", Some("application/json"));
    assert_eq!((s, ct.as_str()), (200, "application/json"));
    let (s, _, _) = raw("/reports/termination/ann?format=pdf", None);
    assert_eq!(s, 400);

    let (s, v) = srv.get("/reports/period?from=2025-03-03&to=2025-03-04");
    assert_eq!(s, 200, "{v}");
    validate("report-period.schema.json", &v);
    let (s, _) = srv.get("/reports/period?from=2025-03-03");
    assert_eq!(s, 400);
    let (s, _) = srv.get("/reports/period?from=2025-03-04&to=2025-03-01");
    assert_eq!(s, 400);
    // A period to the end of 9999 counts what a shorter one does (as text, a bound in year
    // 10000 sorted before every stored time and the report counted nothing); year 0000 is
    // refused.
    let events = |v: &Value| {
        v["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "events")
            .unwrap()["data"]["total"]
            .as_i64()
            .unwrap()
    };
    let (s, v) = srv.get("/reports/period?from=2025-03-03&to=2025-03-04");
    assert_eq!(s, 200, "{v}");
    let (s, all) = srv.get("/reports/period?from=2025-03-03&to=9999-12-31");
    assert_eq!(s, 200, "{all}");
    assert!(events(&v) > 0, "{v}");
    assert_eq!(events(&all), events(&v), "{all}");
    let (s, _) = srv.get("/reports/period?from=0000-01-01&to=9999-12-31");
    assert_eq!(s, 400);
    let (s, v) = srv.get("/reports/contractor/ann");
    assert_eq!(s, 200, "{v}");
    validate("report-contractor.schema.json", &v);
    let (s, _) = srv.get("/reports/termination/nobody");
    assert_eq!(s, 404);
    // The admin scope is needed, as for the events API.
    let (s, _) = srv.call(
        reqwest::Method::GET,
        "/reports/termination/ann",
        &srv.scim_token,
        Value::Null,
    );
    assert_eq!(s, 403);
}

/// The schema check is not vacuous: a report without a system's request time, with an unknown
/// SLA result, or with a period section missing is refused.
#[test]
fn schemas_refuse_broken_reports() {
    let errors = |file: &str, v: &Value| {
        let path = format!("{}/../docs/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        validator.iter_errors(v).count()
    };
    let head = json!({"seq": 3, "hash": "0".repeat(64)});
    let system = json!({"connector": "slack", "requested": "2025-03-03T09:05:00Z",
        "done": null, "outcome": "pending", "operations": [], "verifications": [],
        "verification": null});
    let mut term = json!({
        "schema": "scimhub/report/termination/v1", "generated_at": "2025-03-03T12:00:00Z",
        "audit_head": head, "user": {"id": "u1", "user_name": "ann"},
        "event": {"id": 4, "kind": "leaver", "at": "2025-03-03T09:05:00Z", "plan_id": "p"},
        "sla": {"due": null, "completed": null, "result": null, "seconds": null},
        "summary": {"systems": 1, "systems_done": 0, "systems_verified": 0, "operations": 0,
            "operations_done": 0, "incidents": 0, "incidents_open": 0},
        "systems": [system], "unsupported": [], "incidents": [], "exceptions": [],
    });
    assert_eq!(errors("report-termination.schema.json", &term), 0);
    term["systems"][0]
        .as_object_mut()
        .unwrap()
        .remove("requested");
    assert!(errors("report-termination.schema.json", &term) > 0);
    term["systems"][0]["requested"] = json!("yesterday");
    assert!(errors("report-termination.schema.json", &term) > 0);
    term["systems"][0]["requested"] = json!("2025-03-03T09:05:00Z");
    term["sla"]["result"] = json!("late");
    assert!(errors("report-termination.schema.json", &term) > 0);

    let section = |id: &str, data: Value| json!({"id": id, "title": id, "data": data});
    let mut period = json!({
        "schema": "scimhub/report/period/v1", "generated_at": "2025-03-03T12:00:00Z",
        "audit_head": head,
        "period": {"from": "2025-03-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"},
        "sections": [
            section("events", json!({"total": 0, "kinds": []})),
            section("sla", json!({"met": 0, "breached": 0, "attainment": null, "kinds": []})),
            section("incidents", json!({"total": 0, "open": 0, "resolved": 0,
                "truncated": false, "median_resolution_seconds": null,
                "max_resolution_seconds": null, "by_kind": [], "items": []})),
            section("drift", json!({"total": 0, "open": 0, "closed": 0, "truncated": false,
                "by_kind": [], "items": []})),
            // A section added later (emergency grants): any data is accepted.
            section("emergency_grants", json!({"grants": [{"anything": true}]})),
        ],
    });
    assert_eq!(errors("report-period.schema.json", &period), 0);
    period["sections"][1]["data"]["attainment"] = json!(140);
    assert!(errors("report-period.schema.json", &period) > 0);
    period["sections"][1]["data"]["attainment"] = json!(null);
    period["sections"].as_array_mut().unwrap().remove(3);
    assert!(errors("report-period.schema.json", &period) > 0);
}
