//! The admin HTTP API (`/admin/v1`) against the real actix service, the real store (SQLite,
//! and PostgreSQL when `SCIMHUB_TEST_POSTGRES_URL` is set), in-memory connectors and a moved
//! clock: each endpoint's happy path and its errors, plus `scimhub simulate` with the binary.

use std::sync::mpsc;

use actix_web::{web, App, HttpServer};
use chrono::Duration;
use connectors::ConnectorError;
use reqwest::blocking::{Client, Response};
use scim_server::admin::in_tx;
use scim_server::auth::{token, Authenticator};
use scim_server::config::Config;
use scim_server::http::{configure, AppState};
use scim_server::store::{notifications, outbox, ResourceKind};
use serde_json::{json, Value};

use super::{set_dept, user, Env, POLICY};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The engine tests' policy with one-click links (1 h validity) and an owner approver.
fn policy() -> String {
    let secret = std::env::temp_dir().join("scimhub-admin-test-link-secret");
    if !secret.exists() {
        std::fs::write(&secret, "test-link-secret-0123456789").unwrap();
    }
    POLICY.replace(
        "[notify]\n",
        &format!(
            "[notify]\nlink_base_url = \"http://hub.example\"\nlink_ttl = \"1h\"\n\
             link_secret = {{ file = \"{}\" }}\napprovers = {{ owner = [\"owners@example.com\"] }}\n",
            secret.display()
        ),
    )
}

/// The service on a free port, in its own thread; stopped on drop.
struct Server {
    base: String,
    handle: actix_web::dev::ServerHandle,
    http: Client,
    /// A token with `scim:read scim:write` but not `admin`.
    scim_token: String,
}

impl Server {
    fn start(env: &Env) -> Server {
        let scim = token::generate();
        env.store
            .insert_token(
                "hris",
                &scim.hash,
                &scim.prefix,
                &["scim:read".to_string(), "scim:write".to_string()],
            )
            .unwrap();
        let state = AppState::new(
            Config::default(),
            scim_server::service::schemas::registry(),
            env.store.clone(),
            Authenticator::new(Some("t".into()), None),
        )
        .unwrap()
        .with_admin(env.admin.clone());
        let state = web::Data::new(state);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let s = state.clone();
                    App::new().configure(move |cfg| configure(cfg, s))
                })
                .workers(1)
                .bind("127.0.0.1:0")
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await
            })
        });
        let (addr, handle) = rx.recv().unwrap();
        Server {
            base: format!("http://{addr}"),
            handle,
            http: Client::new(),
            scim_token: scim.token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin/v1{path}", self.base)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        into(
            self.http
                .get(self.url(path))
                .bearer_auth("t")
                .send()
                .unwrap(),
        )
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        into(
            self.http
                .post(self.url(path))
                .bearer_auth("t")
                .json(&body)
                .send()
                .unwrap(),
        )
    }

    /// A SCIM request (the real write path).
    fn scim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        into(
            self.http
                .request(method, format!("{}/scim/v2{path}", self.base))
                .bearer_auth("t")
                .header("Content-Type", "application/scim+json")
                .body(body.to_string())
                .send()
                .unwrap(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let h = self.handle.clone();
        let _ = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(h.stop(false)));
    }
}

fn into(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An error answer: the status and the SCIM error shape.
fn assert_error(got: (u16, Value), status: u16) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["schemas"][0], ERROR_URN, "{}", got.1);
    assert_eq!(got.1["status"], status.to_string());
    got.1
}

fn notes(env: &Env, user: Option<&str>) -> Vec<notifications::Notification> {
    in_tx(&env.store, |c| notifications::list(c, user)).unwrap()
}

macro_rules! admin_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, &super::policy()) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, &super::policy()) { super::$name(e) } } )* }
    };
}

admin_backends!(
    approvals_api_applies_the_entitlement,
    extensions_api_moves_the_end_date,
    hold_confirmed_within_the_window_releases_the_operations,
    hold_discarded_through_the_api,
    legacy_access_api_and_one_click_links,
    simulate_returns_the_plan_the_real_write_produces,
    explain_outbox_retry_and_incidents,
    admin_routes_need_the_admin_scope,
);

fn approvals_api_applies_the_entitlement(env: Env) {
    let srv = Server::start(&env);
    let ada = env.create_user(user("ada", "Employee", "Engineering", "Engineer"));
    let bea = env.create_user(user("bea", "Employee", "Engineering", "Engineer"));
    env.run();
    assert_eq!(
        env.holds("github", "ada"),
        Some((true, vec!["team:eng".into()]))
    );
    let (s, list) = srv.get("/approvals?status=pending");
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["totalResults"], 2);
    let id_of = |u: &str| {
        list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["user_id"] == u)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ada_req, bea_req) = (id_of(&ada), id_of(&bea));
    assert_eq!(list["Resources"][0]["entitlement"]["id"], "acme");
    // The notification to the approvers names the real routes.
    let body = &notes(&env, Some(&ada))
        .into_iter()
        .find(|n| n.kind == "approval_request")
        .unwrap()
        .body;
    assert!(
        body.contains(&format!(
            "http://hub.example/admin/v1/approvals/{ada_req}/approve"
        )),
        "{body}"
    );

    assert_error(srv.post("/approvals/nope/approve", json!({})), 404);
    assert_error(srv.get("/approvals?status=bogus"), 400);
    let (s, row) = srv.post(&format!("/approvals/{ada_req}/approve"), json!({}));
    assert_eq!(s, 200, "{row}");
    assert_eq!(row["status"], "approved");
    assert_eq!(row["decided_by"], "bootstrap");
    env.run();
    assert_eq!(
        env.holds("github", "ada").unwrap().1,
        vec!["org:acme".to_string(), "team:eng".into()]
    );
    // Decided once.
    assert_error(
        srv.post(&format!("/approvals/{ada_req}/approve"), json!({})),
        409,
    );
    assert_error(
        srv.post(
            &format!("/approvals/{ada_req}/reject"),
            json!({"reason": "x"}),
        ),
        409,
    );
    // A rejection needs a reason; then nothing is granted.
    assert_error(
        srv.post(&format!("/approvals/{bea_req}/reject"), json!({})),
        400,
    );
    assert_error(
        srv.post(&format!("/approvals/{bea_req}/reject"), json!({"why": "x"})),
        400,
    );
    let (s, row) = srv.post(
        &format!("/approvals/{bea_req}/reject"),
        json!({"reason": "not needed"}),
    );
    assert_eq!((s, row["status"].as_str()), (200, Some("rejected")));
    assert_eq!(row["reason"], "not needed");
    env.run();
    assert_eq!(
        env.holds("github", "bea"),
        Some((true, vec!["team:eng".into()]))
    );
    assert_eq!(srv.get("/approvals").1["totalResults"], 0);
    assert_eq!(srv.get("/approvals?status=all").1["totalResults"], 2);
    assert_eq!(srv.get("/approvals?status=rejected").1["totalResults"], 1);
    // An entitlement request is not an extension.
    assert_error(
        srv.post(&format!("/extensions/{bea_req}/approve"), json!({})),
        404,
    );
}

fn extensions_api_moves_the_end_date(env: Env) {
    let srv = Server::start(&env);
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] =
        json!({"contractEnd": "2025-04-30", "sponsor": "sponsor@example.com"});
    let cora = env.create_user(d);
    env.run();
    let path = format!("/users/{cora}/extensions");
    assert_error(
        srv.post(&path, json!({"end": "someday", "reason": "r"})),
        400,
    );
    assert_error(srv.post(&path, json!({"reason": "r"})), 400);
    assert_error(srv.post(&path, json!({"end": "2025-05-31"})), 400);
    assert_error(
        srv.post(&path, json!({"end": "2026-05-31", "reason": "too long"})),
        400,
    );
    assert_error(
        srv.post(&path, json!({"end": "2025-04-01", "reason": "earlier"})),
        400,
    );
    assert_error(
        srv.post(
            "/users/nobody/extensions",
            json!({"end": "2025-05-31", "reason": "r"}),
        ),
        404,
    );
    let (s, req) = srv.post(
        &path,
        json!({"end": "2025-05-31", "reason": "project extended", "requested_by": "sponsor@example.com"}),
    );
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["kind"], "extension");
    assert_eq!(req["status"], "pending");
    assert_eq!(req["detail"]["requested_by"], "sponsor@example.com");
    let id = req["id"].as_str().unwrap().to_string();
    // The owners are asked, with the routes to decide.
    let note = notes(&env, Some(&cora))
        .into_iter()
        .find(|n| n.kind == "extension_request")
        .unwrap();
    assert_eq!(note.recipients, vec!["owners@example.com".to_string()]);
    assert!(note.body.contains(&format!(
        "http://hub.example/admin/v1/extensions/{id}/approve"
    )));
    assert_error(srv.post("/extensions/nope/approve", json!({})), 404);
    let (s, row) = srv.post(&format!("/extensions/{id}/approve"), json!({}));
    assert_eq!(
        (s, row["status"].as_str()),
        (200, Some("approved")),
        "{row}"
    );
    assert_eq!(
        env.admin
            .user_attr(&cora, "urn:example:acme:2.0:User:contractEnd"),
        Some(json!("2025-05-31"))
    );
    assert_error(
        srv.post(&format!("/extensions/{id}/approve"), json!({})),
        409,
    );
    // A second request, rejected: the date stays.
    let (_, req) = srv.post(&path, json!({"end": "2025-06-15", "reason": "more"}));
    let id2 = req["id"].as_str().unwrap().to_string();
    let (s, row) = srv.post(
        &format!("/extensions/{id2}/reject"),
        json!({"reason": "budget"}),
    );
    assert_eq!((s, row["status"].as_str()), (200, Some("rejected")));
    assert_error(
        srv.post(&format!("/extensions/{id2}/approve"), json!({})),
        409,
    );
    assert_eq!(
        env.admin
            .user_attr(&cora, "urn:example:acme:2.0:User:contractEnd"),
        Some(json!("2025-05-31"))
    );
}

/// Ten users, an HR export bug deactivates all of them: three go through (30%), seven are held.
fn burst(env: &Env) -> Vec<String> {
    let ids: Vec<String> = (0..10)
        .map(|i| env.create_user(user(&format!("u{i}"), "Employee", "Sales", "Rep")))
        .collect();
    env.run();
    for id in &ids {
        env.patch_user(id, |d| {
            d.insert("active".into(), json!(false));
        });
    }
    env.run();
    ids
}

fn disabled(env: &Env) -> usize {
    (0..10)
        .filter(|i| env.holds("slack", &format!("u{i}")).map(|h| h.0) == Some(false))
        .count()
}

fn hold_confirmed_within_the_window_releases_the_operations(env: Env) {
    let srv = Server::start(&env);
    let ids = burst(&env);
    assert_eq!(disabled(&env), 3);
    let (s, holds) = srv.get("/holds?status=pending");
    assert_eq!(s, 200);
    assert_eq!(holds["totalResults"], 1);
    let hold = &holds["Resources"][0];
    assert_eq!(hold["users"], 7);
    let id = hold["id"].as_str().unwrap().to_string();
    let held_ops = hold["operations"].as_i64().unwrap();
    assert!(held_ops >= 7);
    let note = notes(&env, None)
        .into_iter()
        .find(|n| n.kind == "blast_radius_hold")
        .unwrap();
    assert!(note
        .body
        .contains(&format!("http://hub.example/admin/v1/holds/{id}/confirm")));
    // Nothing held runs on its own, however long the workers go on.
    env.clock.advance(Duration::minutes(2));
    env.run();
    assert_eq!(disabled(&env), 3);
    // Confirmed within the window: every held operation runs, exactly once.
    assert_error(srv.post("/holds/nope/confirm", json!({})), 404);
    let (s, out) = srv.post(&format!("/holds/{id}/confirm"), json!({}));
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["status"], "confirmed");
    assert_eq!(out["operations_released"], held_ops);
    let ran = env.run();
    assert_eq!(ran as i64, held_ops);
    assert_eq!(disabled(&env), 10);
    for i in 0..10 {
        assert_eq!(env.holds("slack", &format!("u{i}")), Some((false, vec![])));
    }
    let disables = env
        .app("slack")
        .effects()
        .iter()
        .filter(|e| e.op == "disable")
        .count();
    assert_eq!(disables, 10);
    let left = in_tx(&env.store, |c| outbox::list_ops(c, None, Some("held"), 100)).unwrap();
    assert!(left.is_empty());
    assert_error(srv.post(&format!("/holds/{id}/confirm"), json!({})), 409);
    assert_error(srv.post(&format!("/holds/{id}/discard"), json!({})), 409);
    let (_, all) = srv.get("/holds?status=confirmed");
    assert_eq!(all["Resources"][0]["id"], id.as_str());
    assert_error(srv.get("/holds?status=nope"), 400);
    // The users are leavers: a rehire after the confirmation plans normally.
    env.patch_user(&ids[9], |d| {
        d.insert("active".into(), json!(true));
    });
    env.run();
    assert_eq!(env.holds("slack", "u9").map(|h| h.0), Some(true));
}

fn hold_discarded_through_the_api(env: Env) {
    let srv = Server::start(&env);
    burst(&env);
    let (_, holds) = srv.get("/holds");
    let id = holds["Resources"][0]["id"].as_str().unwrap().to_string();
    let (s, out) = srv.post(&format!("/holds/{id}/discard"), json!({}));
    assert_eq!((s, out["users"].as_i64()), (200, Some(7)), "{out}");
    env.run();
    assert_eq!(disabled(&env), 3);
    assert_error(srv.post(&format!("/holds/{id}/confirm"), json!({})), 409);
    assert_error(srv.post("/holds/nope/discard", json!({})), 404);
}

/// The acknowledge and extend links of the latest mover summary for `user`.
fn mover_links(env: &Env, user: &str) -> (String, String) {
    let body = notes(env, Some(user))
        .into_iter()
        .rfind(|n| n.kind == "mover_summary")
        .unwrap()
        .body;
    let link = |label: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {body}"))
            .trim()
            .to_string()
    };
    (
        link("Acknowledge (remove legacy access now): "),
        link("Extend by 7 days: "),
    )
}

/// The link's path on the test server (the notification carries the configured base URL).
fn follow(srv: &Server, link: &str, json: bool) -> (u16, Value, String) {
    let path = link
        .strip_prefix("http://hub.example")
        .unwrap_or_else(|| panic!("{link}"));
    let mut req = srv.http.get(format!("{}{path}", srv.base));
    if json {
        req = req.header("Accept", "application/json");
    }
    let r = req.send().unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (s, v) = into(r);
    (s, v, ct)
}

fn legacy_access_api_and_one_click_links(env: Env) {
    let srv = Server::start(&env);
    let bob = env.create_user(user("bob", "Employee", "Engineering", "Engineer"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()]))
    );
    let (ack, ext) = mover_links(&env, &bob);
    assert!(ack.starts_with("http://hub.example/admin/v1/links/"));

    // Tampered: a flipped character in the payload or the signature.
    let mut bad = ack.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    let (s, v, _) = follow(&srv, &String::from_utf8(bad).unwrap(), true);
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["schemas"][0], ERROR_URN);
    let (s, _, _) = follow(&srv, "http://hub.example/admin/v1/links/garbage", true);
    assert_eq!(s, 403);
    // A browser gets a small page; the legacy access goes.
    let (s, v, ct) = follow(&srv, &ack, false);
    assert_eq!(s, 200, "{v}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(v.as_str().unwrap().contains("Legacy access removed."));
    env.run();
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    // Once: the same link, and its sibling from the same notification, are spent.
    let (s, v, _) = follow(&srv, &ack, true);
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["status"], "409");
    let (s, _, ct) = follow(&srv, &ext, false);
    assert_eq!(s, 409);
    assert!(ct.starts_with("text/html"));

    // A second move (a minute later: new links); its links expire after an hour.
    env.clock.advance(Duration::minutes(1));
    env.patch_user(&bob, |d| set_dept(d, "Engineering"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    let (_, ext2) = mover_links(&env, &bob);
    assert_ne!(ext2, ext);
    env.clock.advance(Duration::hours(2));
    let (s, v, _) = follow(&srv, &ext2, true);
    assert_eq!(s, 410, "{v}");
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()]))
    );

    // The manager's API: extend by 3 days (past the 24 h overlap), then acknowledge.
    let path = format!("/users/{bob}/legacy-access");
    assert_error(srv.post(&format!("{path}/extend"), json!({"days": 0})), 400);
    assert_error(
        srv.post(&format!("{path}/extend"), json!({"days": 91})),
        400,
    );
    assert_error(
        srv.post("/users/nobody/legacy-access/acknowledge", json!({})),
        404,
    );
    let (s, v) = srv.post(&format!("{path}/extend"), json!({"days": 3}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["extended_days"], 3);
    env.clock.advance(Duration::hours(30));
    env.run();
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()])),
        "kept past the overlap window"
    );
    let (s, v) = srv.post(&format!("{path}/acknowledge"), json!({}));
    assert_eq!(s, 200, "{v}");
    env.run();
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    // Nothing left to acknowledge.
    assert_error(srv.post(&format!("{path}/acknowledge"), json!({})), 409);
    assert_error(srv.post(&format!("{path}/extend"), json!({})), 409);
}

/// The operations per connector of the simulation's user `id`.
fn simulated_ops(sim: &Value, id: &str) -> Value {
    sim["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == id)
        .unwrap_or_else(|| panic!("{sim}"))["connectors"]
        .clone()
}

/// The outbox rows with an id above `after`, as operations per connector.
fn queued_ops(env: &Env, after: i64) -> Value {
    let mut out = serde_json::Map::new();
    let mut rows = in_tx(&env.store, |c| outbox::list_ops(c, None, None, 1000)).unwrap();
    rows.reverse();
    for r in rows.into_iter().filter(|r| r.id > after) {
        out.entry(r.connector)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(serde_json::from_str(&r.op).unwrap());
    }
    Value::Object(out)
}

fn max_op(env: &Env) -> i64 {
    in_tx(&env.store, |c| outbox::list_ops(c, None, None, 1))
        .unwrap()
        .first()
        .map(|r| r.id)
        .unwrap_or(0)
}

fn simulate_returns_the_plan_the_real_write_produces(env: Env) {
    let srv = Server::start(&env);
    // A joiner over SCIM: simulated first, then written.
    let new_user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "ada",
        "active": true,
        "userType": "Employee",
        "title": "Engineer",
        ENTERPRISE: {"department": "Engineering"},
    });
    let (s, sim) = srv.post(
        "/simulate",
        json!({"method": "POST", "path": "/scim/v2/Users", "body": new_user}),
    );
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["committed"], false);
    assert_eq!(sim["users"][0]["event"], "joiner");
    assert_eq!(sim["users"][0]["needs_approval"][0]["connector"], "github");
    let sim_ops = sim["users"][0]["connectors"].clone();
    assert!(sim_ops["slack"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(max_op(&env), 0, "nothing committed");
    assert!(
        in_tx(&env.store, |c| scim_server::store::approvals::list(c, None))
            .unwrap()
            .is_empty()
    );
    let (s, created) = srv.scim(reqwest::Method::POST, "/Users", new_user);
    assert_eq!(s, 201, "{created}");
    let ada = created["id"].as_str().unwrap().to_string();
    assert_eq!(queued_ops(&env, 0), sim_ops);
    env.run();

    // A mover: the SCIM request form and the user/attribute form give the plan the real
    // PATCH then queues.
    let patch = json!({
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"}],
    });
    let (s, sim) = srv.post(
        "/simulate",
        json!({"method": "PATCH", "path": format!("/Users/{ada}"), "body": patch}),
    );
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["users"][0]["event"], "mover");
    let (s, sim2) = srv.post(
        "/simulate",
        json!({"user": "ada", "set": {format!("{ENTERPRISE}:department"): "Sales"}}),
    );
    assert_eq!(s, 200, "{sim2}");
    assert_eq!(simulated_ops(&sim2, &ada), simulated_ops(&sim, &ada));
    assert_eq!(
        env.admin
            .user_attr(&ada, &format!("{ENTERPRISE}:department")),
        Some(json!("Engineering")),
        "nothing committed"
    );
    let before = max_op(&env);
    assert_eq!(env.events(&ada), vec!["joiner"]);
    let (s, _) = srv.scim(reqwest::Method::PATCH, &format!("/Users/{ada}"), patch);
    assert_eq!(s, 200);
    let real = queued_ops(&env, before);
    assert!(real.as_object().is_some_and(|o| !o.is_empty()));
    assert_eq!(real, simulated_ops(&sim, &ada));
    env.run();

    // A leaver by DELETE.
    let (s, sim) = srv.post(
        "/simulate",
        json!({"method": "DELETE", "path": format!("/Users/{ada}")}),
    );
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["users"][0]["event"], "leaver");
    let before = max_op(&env);
    env.store.delete(ResourceKind::User, &ada, None).unwrap();
    assert_eq!(queued_ops(&env, before), simulated_ops(&sim, &ada));

    // Errors: the ones the real request would get, and bad simulation requests.
    assert_error(
        srv.post("/simulate", json!({"method": "PATCH", "path": "/Users/nope", "body": {
            "schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}})),
        404,
    );
    assert_error(
        srv.post(
            "/simulate",
            json!({"user": "nobody", "set": {"title": "x"}}),
        ),
        404,
    );
    assert_error(
        srv.post("/simulate", json!({"method": "GET", "path": "/Users"})),
        400,
    );
    assert_error(
        srv.post("/simulate", json!({"method": "POST", "path": "/Things"})),
        400,
    );
    assert_error(srv.post("/simulate", json!({"nonsense": true})), 400);
    let e = assert_error(
        srv.post(
            "/simulate",
            json!({"method": "POST", "path": "/Users", "body": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "active": true}}),
        ),
        400,
    );
    assert!(e["scimType"].is_string(), "{e}");
}

fn explain_outbox_retry_and_incidents(env: Env) {
    let srv = Server::start(&env);
    let ada = env.create_user(user("ada", "Employee", "Engineering", "Engineer"));
    env.run();
    let (s, v) = srv.get(&format!("/users/{ada}/explain"));
    assert_eq!(s, 200, "{v}");
    let matched: Vec<&str> = v["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["profile"].as_str().unwrap())
        .collect();
    assert_eq!(matched, vec!["employee", "engineering"]);
    assert!(v["not_matched"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["profile"] == "sales"));
    assert_eq!(srv.get("/users/ada/explain").1["user"], ada.as_str());
    assert_error(srv.get("/users/nobody/explain"), 404);

    // A permanent failure parks the operation and raises an incident.
    let fay = env.create_user(user("fay", "Employee", "Support", "Agent"));
    env.run();
    env.app("slack")
        .fail_next([ConnectorError::permanent("slack", "account_limit")]);
    env.patch_user(&fay, |d| set_dept(d, "Sales"));
    env.run();
    let (s, failed) = srv.get("/outbox?status=failed");
    assert_eq!(s, 200);
    assert_eq!(failed["totalResults"], 1);
    let op = &failed["Resources"][0];
    assert_eq!(op["user_id"], fay.as_str());
    assert_eq!(op["last_error"], "account_limit");
    assert!(op["operation"]["op"].as_str().is_some(), "{op}");
    let id = op["id"].as_i64().unwrap();
    let (_, inc) = srv.get("/incidents");
    assert_eq!(inc["totalResults"], 1);
    assert_eq!(inc["Resources"][0]["connector"], "slack");
    assert_error(srv.get("/outbox?status=weird"), 400);
    assert_error(srv.get("/outbox?limit=0"), 400);
    assert_error(srv.get("/outbox?limit=abc"), 400);

    // Retry: queued again with a fresh budget, runs, and the incident is resolved.
    let (s, v) = srv.post(&format!("/outbox/{id}/retry"), json!({}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    env.run();
    assert!(env
        .holds("slack", "fay")
        .unwrap()
        .1
        .contains(&"channel:sales".to_string()));
    assert_eq!(srv.get("/outbox").1["totalResults"], 0);
    assert_eq!(srv.get("/incidents").1["totalResults"], 0);
    assert_error(srv.post(&format!("/outbox/{id}/retry"), json!({})), 409);
    assert_error(srv.post("/outbox/999999/retry", json!({})), 404);
    assert_error(srv.post("/outbox/abc/retry", json!({})), 404);
}

fn admin_routes_need_the_admin_scope(env: Env) {
    let srv = Server::start(&env);
    let routes = [
        ("GET", "/approvals"),
        ("POST", "/approvals/x/approve"),
        ("POST", "/approvals/x/reject"),
        ("POST", "/users/x/extensions"),
        ("POST", "/extensions/x/approve"),
        ("POST", "/extensions/x/reject"),
        ("GET", "/holds"),
        ("POST", "/holds/x/confirm"),
        ("POST", "/holds/x/discard"),
        ("POST", "/users/x/legacy-access/acknowledge"),
        ("POST", "/users/x/legacy-access/extend"),
        ("POST", "/simulate"),
        ("GET", "/users/x/explain"),
        ("GET", "/outbox"),
        ("POST", "/outbox/1/retry"),
        ("GET", "/incidents"),
    ];
    for (method, path) in routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let none = into(srv.http.request(m.clone(), srv.url(path)).send().unwrap());
        assert_error(none, 401);
        let scim = into(
            srv.http
                .request(m.clone(), srv.url(path))
                .bearer_auth(&srv.scim_token)
                .json(&json!({}))
                .send()
                .unwrap(),
        );
        let e = assert_error(scim, 403);
        assert!(e["detail"].as_str().unwrap().contains("admin"), "{e}");
    }
    // Unknown routes and methods keep the error shape.
    assert_error(srv.get("/nothing"), 404);
    assert_error(srv.post("/approvals", json!({})), 405);
    // The one-click link route needs no token: the link is the credential.
    let r = srv
        .http
        .get(srv.url("/links/abc.00"))
        .header("Accept", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

/// `scimhub simulate` (the real binary) prints the plan the admin API returns.
#[test]
fn cli_simulate_prints_the_plan() {
    let Some(env) = Env::new(false, POLICY) else {
        return;
    };
    let srv = Server::start(&env);
    let ada = env.create_user(user("ada", "Employee", "Engineering", "Engineer"));
    env.run();
    let policy = env.dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let db = format!("sqlite://{}", env.dir.join("hub.db").display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimhub"))
            .arg("simulate")
            .arg("--policy")
            .arg(&policy)
            .args(["--database-url", &db])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let attr = format!("{ENTERPRISE}:department=Sales");
    let cli = run(&["--user", "ada", "--set", &attr, "--set", "title=Rep"]);
    assert_eq!(cli["committed"], false);
    assert_eq!(cli["users"][0]["event"], "mover");
    let (_, api) = srv.post(
        "/simulate",
        json!({"user": ada, "set": {format!("{ENTERPRISE}:department"): "Sales", "title": "Rep"}}),
    );
    assert_eq!(simulated_ops(&cli, &ada), simulated_ops(&api, &ada));
    // The request form.
    let file = env.dir.join("req.json");
    std::fs::write(
        &file,
        json!({"method": "DELETE", "path": format!("/scim/v2/Users/{ada}")}).to_string(),
    )
    .unwrap();
    let cli = run(&["--request", file.to_str().unwrap()]);
    assert_eq!(cli["users"][0]["event"], "leaver");
    // Nothing was committed by either.
    assert_eq!(env.events(&ada), vec!["joiner"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args(["simulate", "--policy"])
        .arg(&policy)
        .args([
            "--database-url",
            &db,
            "--user",
            "nobody",
            "--set",
            "title=x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
