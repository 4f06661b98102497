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
use scim_server::store::{audit, notifications, outbox, ResourceKind};
use serde_json::{json, Value};

use super::{set_dept, user, Env, POLICY};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The engine tests' policy with one-click links (1 h validity), an owner approver address and
/// a security approver (`sec`).
pub fn policy() -> String {
    let secret = std::env::temp_dir().join("scimhub-admin-test-link-secret");
    if !secret.exists() {
        std::fs::write(&secret, "test-link-secret-0123456789").unwrap();
    }
    POLICY.replace(
        "[notify]\n",
        &format!(
            "[approvals]\nsecurity = [\"sec\"]\n\n[notify]\nlink_base_url = \"http://hub.example\"\nlink_ttl = \"1h\"\n\
             link_secret = {{ file = \"{}\" }}\napprovers = {{ owner = [\"owners@example.com\"] }}\n",
            secret.display()
        ),
    )
}

/// The service on a free port, in its own thread; stopped on drop.
pub struct Server {
    pub base: String,
    handle: actix_web::dev::ServerHandle,
    pub http: Client,
    /// A token with `scim:read scim:write` but not `admin`.
    pub scim_token: String,
    store: scim_server::store::Store,
}

impl Server {
    pub fn start(env: &Env) -> Server {
        let scim = token::generate();
        env.store
            .insert_token(
                "hris",
                &scim.hash,
                &scim.prefix,
                &["scim:read".to_string(), "scim:write".to_string()],
                None,
            )
            .unwrap();
        let state = AppState::new(
            Config::default(),
            scim_server::service::schemas::registry(),
            env.store.clone(),
            Authenticator::new(Some(connectors::secret::Secret::new("t")), None),
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
            store: env.store.clone(),
        }
    }

    /// Issues a token named `name` with `scopes`, acting as the user `user` (a userName or id)
    /// when given, as `scimhub token issue --user` does.
    pub fn token(&self, name: &str, scopes: &[&str], user: Option<&str>) -> String {
        let t = token::generate();
        let user_id = user.map(|u| self.store.find_user_id(u).unwrap().unwrap().0);
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.store
            .insert_token(name, &t.hash, &t.prefix, &scopes, user_id.as_deref())
            .unwrap();
        t.token
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/admin/v1{path}", self.base)
    }

    /// An admin API request with `token`.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        into(
            self.http
                .request(method, self.url(path))
                .bearer_auth(token)
                .json(&body)
                .send()
                .unwrap(),
        )
    }

    /// A POST to the admin API as `token`.
    pub fn post_as(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        into(
            self.http
                .get(self.url(path))
                .bearer_auth("t")
                .send()
                .unwrap(),
        )
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        into(
            self.http
                .post(self.url(path))
                .bearer_auth("t")
                .json(&body)
                .send()
                .unwrap(),
        )
    }

    /// A SCIM request (the real write path) with the bootstrap token.
    pub fn scim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        self.scim_as("t", method, path, body)
    }

    /// A SCIM request with `token`.
    pub fn scim_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        into(
            self.http
                .request(method, format!("{}/scim/v2{path}", self.base))
                .bearer_auth(token)
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

pub fn into(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An error answer: the status and the SCIM error shape.
pub fn assert_error(got: (u16, Value), status: u16) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["schemas"][0], ERROR_URN, "{}", got.1);
    assert_eq!(got.1["status"], status.to_string());
    got.1
}

pub fn notes(env: &Env, user: Option<&str>) -> Vec<notifications::Notification> {
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
    approvals_are_decided_by_the_right_person,
    extensions_api_moves_the_end_date,
    hold_confirmed_within_the_window_releases_the_operations,
    hold_discarded_through_the_api,
    legacy_access_api_and_one_click_links,
    simulate_returns_the_plan_the_real_write_produces,
    explain_outbox_retry_and_incidents,
    admin_routes_need_the_admin_scope,
    authority_comes_only_from_trusted_sources,
    approval_lists_show_what_the_caller_may_decide,
    extension_approval_and_end_date_commit_together,
    extension_mail_quotes_free_text,
    links_act_once_on_their_own_event,
    a_deactivated_managers_mover_links_no_longer_act,
    forged_links_never_wait_for_the_writer,
    engine_audit_names_the_scim_client,
    hold_decided_by_its_mailed_link,
    extension_decided_by_the_sponsors_link,
    incident_acknowledged_and_resolved_by_mailed_links,
    extension_asked_from_the_sponsors_reminder_link,
);

/// The line `label URL` of a mail body: the URL.
fn mailed_link(body: &str, label: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {body}"))
        .trim()
        .to_string()
}

/// The link with one character of its signature changed.
fn tampered(link: &str) -> String {
    let mut t = link.to_string();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    t
}

/// A blast-radius hold's mail to security carries confirm / discard links bound to the
/// security address: `GET` shows what confirming does, `POST` confirms through the admin API's
/// own path (the held operations run, the audit names the link's addressee), once; the discard
/// link of the same mail then no longer acts, and a tampered link never did.
fn hold_decided_by_its_mailed_link(env: Env) {
    use reqwest::Method;
    let srv = Server::start(&env);
    burst(&env);
    assert_eq!(disabled(&env), 3);
    let (_, holds) = srv.get("/holds?status=pending");
    let id = holds["Resources"][0]["id"].as_str().unwrap().to_string();
    let note = notes(&env, None)
        .into_iter()
        .find(|n| n.kind == "blast_radius_hold")
        .unwrap();
    assert_eq!(note.recipients, ["security@example.com"]);
    let confirm = mailed_link(&note.body, "Confirm (the held removals run): ");
    let discard = mailed_link(&note.body, "Discard (nothing held is removed): ");
    assert!(note
        .body
        .contains("These links are for you (security@example.com) only"));
    let (s, page, ct) = follow(&srv, Method::GET, &confirm, false);
    assert_eq!(s, 200, "{page}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert_eq!(disabled(&env), 3, "a GET changes nothing");
    let (s, _, _) = follow(&srv, Method::POST, &tampered(&confirm), true);
    assert_eq!(s, 403);
    // The addressee must still be a security recipient when the link is followed.
    let before = env.engine.policy.current();
    let mut moved = (*before).clone();
    moved.notify.security = vec!["soc@example.com".into()];
    env.engine.policy.set(moved);
    assert_error(follow(&srv, Method::POST, &confirm, true).map_ct(), 403);
    assert_error(follow(&srv, Method::GET, &confirm, true).map_ct(), 403);
    env.engine.policy.set((*before).clone());
    let (s, done, _) = follow(&srv, Method::POST, &confirm, true);
    assert_eq!(s, 200, "{done}");
    let (_, confirmed) = srv.get("/holds?status=confirmed");
    assert_eq!(confirmed["totalResults"], 1, "{confirmed}");
    assert_eq!(confirmed["Resources"][0]["id"], id.as_str());
    env.run();
    assert_eq!(disabled(&env), 10, "the held operations ran");
    let by_link = in_tx(&env.store, |c| audit::list(c, None))
        .unwrap()
        .into_iter()
        .filter(|a| {
            a.action == "hold"
                && a.outcome == "confirmed"
                && a.actor == "one-click link to security@example.com (security)"
        })
        .count();
    assert_eq!(
        by_link, 7,
        "one audit entry per held user, by the link's addressee"
    );
    // Once: the same link, and the other link of the mail, no longer act.
    assert_error(follow(&srv, Method::POST, &confirm, true).map_ct(), 409);
    assert_error(follow(&srv, Method::POST, &discard, true).map_ct(), 409);
}

trait MapCt {
    fn map_ct(self) -> (u16, Value);
}

impl MapCt for (u16, Value, String) {
    fn map_ct(self) -> (u16, Value) {
        (self.0, self.1)
    }
}

/// An extension request names the contractor by name; the sponsor (named by userName) gets a
/// copy whose approve link decides as them, through the admin API's decision (authority
/// checked: the sponsor attribute names them), once; the shared owner address gets a copy
/// without links.
fn extension_decided_by_the_sponsors_link(env: Env) {
    use reqwest::Method;
    let srv = Server::start(&env);
    let sponsor = env.create_user(user("sponsor", "Employee", "Sales", "Lead"));
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] = json!({"contractEnd": "2025-04-30", "sponsor": "sponsor"});
    let cora = env.create_user(d);
    env.run();
    let (s, req) = srv.post(
        &format!("/users/{cora}/extensions"),
        json!({"end": "2025-05-31", "reason": "project extended"}),
    );
    assert_eq!(s, 201, "{req}");
    let mails: Vec<_> = notes(&env, Some(&cora))
        .into_iter()
        .filter(|n| n.kind == "extension_request")
        .collect();
    let linked = mails
        .iter()
        .find(|n| n.recipients == [sponsor.clone()])
        .unwrap_or_else(|| panic!("no copy for the sponsor: {mails:?}"));
    let shared = mails
        .iter()
        .find(|n| n.recipients == ["owners@example.com".to_string()])
        .unwrap_or_else(|| panic!("no copy for the owners: {mails:?}"));
    assert!(shared.body.contains("This copy has no decision links."));
    assert!(!shared.body.contains("http://"), "{}", shared.body);
    assert!(linked.body.contains("    | cora"), "{}", linked.body);
    assert!(!linked.body.contains(&cora), "no id: {}", linked.body);
    let approve = mailed_link(&linked.body, "Approve: ");
    let reject = mailed_link(&linked.body, "Reject (you can give a reason): ");
    let (s, page, _) = follow(&srv, Method::GET, &approve, true);
    assert_eq!(s, 200, "{page}");
    assert!(
        page["message"].as_str().unwrap().contains("extension of"),
        "{page}"
    );
    let (s, done, _) = follow(&srv, Method::POST, &approve, true);
    assert_eq!(s, 200, "{done}");
    let (_, row) = srv.get("/approvals?status=approved");
    let row = row["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == req["id"])
        .cloned()
        .unwrap_or_else(|| panic!("{row}"));
    assert_eq!(row["decided_by"], "sponsor", "{row}");
    assert_eq!(row["decided_as"], "sponsor", "{row}");
    assert_eq!(
        env.admin
            .user_attr(&cora, "urn:example:acme:2.0:User:contractEnd"),
        Some(json!("2025-05-31"))
    );
    assert_error(follow(&srv, Method::POST, &approve, true).map_ct(), 409);
    assert_error(follow(&srv, Method::POST, &reject, true).map_ct(), 409);
}

/// An incident's mail: one copy per security and helpdesk address, each with acknowledge /
/// resolve links bound to it; the helpdesk acknowledges by link (the reminders stop, the
/// incident records the link's addressee), a second acknowledge is refused, and security
/// resolves by link.
fn incident_acknowledged_and_resolved_by_mailed_links(env: Env) {
    use reqwest::Method;
    use scim_server::store::incidents;
    let srv = Server::start(&env);
    let ada = env.create_user(user("ada", "Employee", "Research", "Analyst"));
    env.run();
    let now = env.engine.now();
    in_tx(&env.store, |c| {
        incidents::raise_once(
            c,
            &incidents::NewIncident {
                kind: "verification_mismatch",
                user_id: Some(&ada),
                connector: Some("github"),
                reason: "account still enabled after the leaver",
                dedupe_key: "mismatch:link-test",
            },
            now,
        )
    })
    .unwrap();
    env.run();
    let mails: Vec<_> = notes(&env, Some(&ada))
        .into_iter()
        .filter(|n| n.kind == "incident")
        .collect();
    let to: Vec<Vec<String>> = mails.iter().map(|n| n.recipients.clone()).collect();
    assert_eq!(
        to,
        [
            vec!["security@example.com".to_string()],
            vec!["helpdesk@example.com".to_string()]
        ]
    );
    let id = in_tx(&env.store, incidents::list_open).unwrap()[0].id;
    let ack = mailed_link(
        &mails[1].body,
        "Acknowledge (stops the reminders; it stays open): ",
    );
    let resolve = mailed_link(&mails[0].body, "Resolve (it is fixed): ");
    let (s, page, _) = follow(&srv, Method::GET, &ack, true);
    assert_eq!(s, 200, "{page}");
    assert!(
        page["message"]
            .as_str()
            .unwrap()
            .contains(&format!("incident {id}")),
        "{page}"
    );
    let (s, done, _) = follow(&srv, Method::POST, &ack, true);
    assert_eq!(s, 200, "{done}");
    let d = in_tx(&env.store, |c| incidents::get(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(
        d.acknowledged_by.as_deref(),
        Some("one-click link to helpdesk@example.com (helpdesk)")
    );
    assert_error(follow(&srv, Method::POST, &ack, true).map_ct(), 409);
    // A link sent to a security address stops acting when the address leaves the list.
    let before = env.engine.policy.current();
    let mut moved = (*before).clone();
    moved.notify.security = vec!["soc@example.com".into()];
    env.engine.policy.set(moved);
    assert_error(follow(&srv, Method::POST, &resolve, true).map_ct(), 403);
    env.engine.policy.set((*before).clone());
    let (s, done, _) = follow(&srv, Method::POST, &resolve, true);
    assert_eq!(s, 200, "{done}");
    let d = in_tx(&env.store, |c| incidents::get(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(d.status, "resolved");
    assert_error(follow(&srv, Method::POST, &resolve, true).map_ct(), 409);
}

/// The engine's audit entries name the SCIM client whose write caused the plan.
fn engine_audit_names_the_scim_client(env: Env) {
    let srv = Server::start(&env);
    let mut yan = user("yan", "Employee", "Sales", "Rep");
    yan["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    let (s, v) = srv.scim_as(&srv.scim_token, reqwest::Method::POST, "/Users", yan);
    assert_eq!(s, 201, "{v}");
    let yan = v["id"].as_str().unwrap().to_string();
    let (s, v) = srv.scim(reqwest::Method::DELETE, &format!("/Users/{yan}"), json!({}));
    assert_eq!(s, 204, "{v}");
    let audit = in_tx(&env.store, |c| audit::list(c, Some(&yan))).unwrap();
    let clients: Vec<(String, Value)> = audit
        .iter()
        .filter(|a| a.action == "plan")
        .map(|a| {
            let d: Value = serde_json::from_str(&a.detail).unwrap();
            (
                d["event"].as_str().unwrap().to_string(),
                d["client"].clone(),
            )
        })
        .collect();
    assert_eq!(
        clients,
        vec![
            ("joiner".to_string(), json!("hris")),
            ("leaver".to_string(), json!("bootstrap"))
        ],
        "{audit:?}"
    );
}

/// The pending request for `user`.
fn pending_for(env: &Env, user: &str) -> String {
    env.admin
        .approvals(Some("pending"))
        .unwrap()
        .into_iter()
        .find(|r| r.user_id == user)
        .unwrap_or_else(|| panic!("no pending request for {user}"))
        .id
}

fn is_pending(env: &Env, id: &str) -> bool {
    env.admin
        .approvals(Some("pending"))
        .unwrap()
        .iter()
        .any(|r| r.id == id)
}

/// Authority comes from the policy (security userNames) and from manager attributes only their
/// `[[source]]` (the `hris` client) may write; groups, other clients' writes and inactive users
/// give none.
fn authority_comes_only_from_trusted_sources(env: Env) {
    let srv = Server::start(&env);
    let (_, ada, _) = team(&env);
    let eve_id = env.create_user(user("eve", "Employee", "IT", "Operator"));
    let sec_id = env.create_user(user("sec", "Employee", "Security", "Analyst"));
    let intruder = srv.token("intruder", &["scim:read", "scim:write"], None);
    let eve = srv.token("eve-approvals", &["approvals"], Some("eve"));
    let ada_path = format!("/approvals/{}/approve", pending_for(&env, &ada));

    // A scim:write client puts eve in a group called "Security": she decides nothing.
    let (s, g) = srv.scim_as(
        &intruder,
        reqwest::Method::POST,
        "/Groups",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Security",
            "members": [{"value": eve_id}],
        }),
    );
    assert_eq!(s, 201, "{g}");
    let e = assert_error(srv.post_as(&eve, &ada_path, json!({})), 403);
    assert_eq!(
        e["detail"],
        "you (eve) are not an approver for this request"
    );

    // zed has no manager; the intruder (not the source of `manager`) makes eve his manager:
    // the value is not written, and eve still cannot decide.
    let zed = env.create_user(user("zed", "Employee", "Engineering", "Engineer"));
    env.run();
    let zed_path = format!("/approvals/{}/approve", pending_for(&env, &zed));
    let set_manager = json!({
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": {"value": eve_id}}],
    });
    let (s, v) = srv.scim_as(
        &intruder,
        reqwest::Method::PATCH,
        &format!("/Users/{zed}"),
        set_manager.clone(),
    );
    assert!(s == 200 || s == 204, "{s} {v}");
    assert_eq!(
        env.admin
            .user_attr(&zed, &format!("{ENTERPRISE}:manager.value")),
        None
    );
    assert_error(srv.post_as(&eve, &zed_path, json!({})), 403);
    // The HRIS (the manager's source of truth) may: then eve decides, as his manager.
    let (s, v) = srv.scim_as(
        &srv.scim_token,
        reqwest::Method::PATCH,
        &format!("/Users/{zed}"),
        set_manager,
    );
    assert!(s == 200 || s == 204, "{s} {v}");
    let (s, row) = srv.post_as(&eve, &zed_path, json!({}));
    assert_eq!(
        (s, row["decided_as"].as_str()),
        (200, Some("manager")),
        "{row}"
    );

    // sec is a security approver by userName in the policy, but not while inactive.
    let sec = srv.token("sec-approvals", &["approvals"], Some("sec"));
    env.patch_user(&sec_id, |d| {
        d.insert("active".into(), json!(false));
    });
    let e = assert_error(srv.post_as(&sec, &ada_path, json!({})), 403);
    assert!(e["detail"].as_str().unwrap().contains("not active"), "{e}");
    assert!(
        srv.call(reqwest::Method::GET, "/approvals", &sec, json!({}))
            .1["totalResults"]
            == 0
    );
    env.patch_user(&sec_id, |d| {
        d.insert("active".into(), json!(true));
    });
    let (s, row) = srv.post_as(&sec, &ada_path, json!({}));
    assert_eq!(
        (s, row["decided_as"].as_str()),
        (200, Some("security")),
        "{row}"
    );
}

/// An `approvals` credential lists the requests its person may decide; `admin` lists all.
fn approval_lists_show_what_the_caller_may_decide(env: Env) {
    let srv = Server::start(&env);
    let (_, ada, bea) = team(&env);
    let zed = env.create_user(user("zed", "Employee", "Engineering", "Engineer"));
    env.create_user(user("sec", "Employee", "Security", "Analyst"));
    env.run();
    let ids = |token: &str| -> Vec<String> {
        let (s, v) = srv.call(reqwest::Method::GET, "/approvals", token, json!({}));
        assert_eq!(s, 200, "{v}");
        let mut u: Vec<String> = v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["user_id"].as_str().unwrap().to_string())
            .collect();
        u.sort();
        u
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mia = srv.token("mia-approvals", &["approvals"], Some("mia"));
    let bea_t = srv.token("bea-approvals", &["approvals"], Some("bea"));
    let sec = srv.token("sec-approvals", &["approvals"], Some("sec"));
    let nobody = srv.token("robot-approvals", &["approvals"], None);
    // mia manages ada and bea, not zed.
    assert_eq!(ids(&mia), sorted(vec![ada.clone(), bea.clone()]));
    // bea decides neither her own request nor a peer's.
    assert!(ids(&bea_t).is_empty());
    assert!(ids(&nobody).is_empty());
    let all = sorted(vec![ada, bea, zed]);
    assert_eq!(ids(&sec), all);
    // The admin scope sees everything.
    assert_eq!(ids("t"), all);
}

/// An approved extension and the new end date commit together: when the date cannot be
/// written, the approval rolls back and the request stays pending.
fn extension_approval_and_end_date_commit_together(env: Env) {
    let srv = Server::start(&env);
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] =
        json!({"contractEnd": "2025-04-30", "sponsor": "sponsor@example.com"});
    let cora = env.create_user(d);
    env.create_user(user("sec", "Employee", "Security", "Analyst"));
    env.run();
    let (s, req) = srv.post(
        &format!("/users/{cora}/extensions"),
        json!({"end": "2025-05-31", "reason": "project extended"}),
    );
    assert_eq!(s, 201, "{req}");
    let id = req["id"].as_str().unwrap().to_string();
    // The end date's extension object is no longer an object: writing the date fails.
    env.patch_user(&cora, |d| {
        d.insert("urn:example:acme:2.0:User".into(), json!("broken"));
    });
    let sec = srv.token("sec-approvals", &["approvals"], Some("sec"));
    let (s, v) = srv.post_as(&sec, &format!("/extensions/{id}/approve"), json!({}));
    assert!(s >= 400, "{s} {v}");
    assert!(
        is_pending(&env, &id),
        "the approval committed without its end date"
    );
    let audit = in_tx(&env.store, |c| audit::list(c, Some(&cora))).unwrap();
    assert!(!audit.iter().any(|a| a.action == "decide_request"));
    // The request itself is in the audit chain, with who asked.
    assert!(audit
        .iter()
        .any(|a| a.action == "extension_request" && a.detail.contains(&id)));
}

/// Free text in an extension request (the reason) is quoted in the mail and never becomes a
/// link in its HTML alternative; only the hub's own URLs do.
fn extension_mail_quotes_free_text(env: Env) {
    let srv = Server::start(&env);
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] =
        json!({"contractEnd": "2025-04-30", "sponsor": "sponsor@example.com"});
    let cora = env.create_user(d);
    env.run();
    let reason = "Approved by the CFO, see <a href=\"http://evil.example/login\">the ticket</a>\n\
                  Approve: POST http://evil.example/approve";
    let (s, req) = srv.post(
        &format!("/users/{cora}/extensions"),
        json!({"end": "2025-05-31", "reason": reason}),
    );
    assert_eq!(s, 201, "{req}");
    let note = notes(&env, Some(&cora))
        .into_iter()
        .find(|n| n.kind == "extension_request")
        .unwrap();
    // Plain text: the reason on lines of its own, marked, its URLs defanged.
    assert!(
        note.body.contains(
            "Reason, as written by the requester (not checked by scimhub):\n    | Approved by the CFO"
        ),
        "{}",
        note.body
    );
    assert!(note
        .body
        .contains("    | Approve: POST http[://]evil.example/approve\n"));
    assert!(!note.body.contains("http://evil"), "{}", note.body);
    let html = scim_server::notify::mail_html::html_body(
        &note.subject,
        &note.body,
        Some("http://hub.example"),
    );
    assert!(!html.contains("<a href=\"http://evil"), "{html}");
    assert!(html.contains("&lt;a href=&quot;http[://]evil.example/login&quot;&gt;"));
    // The sponsor is named by an address and the owners by a shared address: a copy without
    // links, so nothing in it is a link, and no admin URL either.
    assert_eq!(html.matches("<a href=").count(), 0, "{html}");
    assert!(
        note.body.contains("This copy has no decision links."),
        "{}",
        note.body
    );
    assert!(
        !note.body.contains("/admin/v1/extensions/"),
        "{}",
        note.body
    );
    if let Ok(dir) = std::env::var("SCIMHUB_MAIL_ARTIFACTS") {
        std::fs::write(format!("{dir}/extension-request-mail.html"), &html).unwrap();
    }
}

/// A link acts only on its own mover event, and one use of an event's links is enforced by a
/// key: of concurrent confirmations, exactly one acts.
fn links_act_once_on_their_own_event(env: Env) {
    use reqwest::Method;
    let srv = Server::start(&env);
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let mut b = user("bob", "Employee", "Engineering", "Engineer");
    b[ENTERPRISE]["manager"] = json!({"value": grace});
    let bob = env.create_user(b);
    env.run();
    env.patch_user(&bob, |d| d[ENTERPRISE]["department"] = json!("Sales"));
    env.run();
    let (_, first_ext) = mover_links(&env, &bob, "security@example.com");
    // Two more moves: the first move's (unused) link does not act on the latest one.
    env.clock.advance(Duration::minutes(1));
    env.patch_user(&bob, |d| d[ENTERPRISE]["department"] = json!("Engineering"));
    env.run();
    env.clock.advance(Duration::minutes(1));
    env.patch_user(&bob, |d| d[ENTERPRISE]["department"] = json!("Sales"));
    env.run();
    for m in [Method::GET, Method::POST] {
        let (s, v, _) = follow(&srv, m, &first_ext, true);
        assert_eq!(s, 409, "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains("earlier move"),
            "{v}"
        );
    }
    assert_eq!(link_uses(&env, &bob), 0);
    // Every link of the latest move, confirmed at once (twice each): one acts.
    let (ack, ext) = mover_links(&env, &bob, "grace@example.com");
    let (sec_ack, sec_ext) = mover_links(&env, &bob, "security@example.com");
    let links = [&ack, &ext, &sec_ack, &sec_ext, &ack, &sec_ext];
    let barrier = std::sync::Barrier::new(links.len());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = links
            .iter()
            .map(|l| {
                let (srv, barrier) = (&srv, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    follow(srv, Method::POST, l, true).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(link_uses(&env, &bob), 1);
}

/// The signature only proves who a link was mailed to: once the manager it was mailed to is
/// deactivated, their acknowledge and extend links are refused (403) whatever the method, and
/// the legacy access stays as it was.
fn a_deactivated_managers_mover_links_no_longer_act(env: Env) {
    use reqwest::Method;
    let srv = Server::start(&env);
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let mut b = user("bob", "Employee", "Engineering", "Engineer");
    b[ENTERPRISE]["manager"] = json!({"value": grace});
    let bob = env.create_user(b);
    env.run();
    env.patch_user(&bob, |d| d[ENTERPRISE]["department"] = json!("Sales"));
    env.run();
    let (ack, ext) = mover_links(&env, &bob, "grace@example.com");
    env.patch_user(&grace, |d| {
        d.insert("active".into(), json!(false));
    });
    for link in [&ack, &ext] {
        for m in [Method::GET, Method::POST] {
            let (s, v, _) = follow(&srv, m, link, true);
            assert_eq!(s, 403, "{v}");
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no longer an active"),
                "{v}"
            );
        }
    }
    assert_eq!(link_uses(&env, &bob), 0);
    env.run();
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()]))
    );
}

/// A link with a bad signature is refused before any transaction: with the writer busy for
/// seconds, the refusal still comes at once.
fn forged_links_never_wait_for_the_writer(env: Env) {
    use reqwest::Method;
    let srv = Server::start(&env);
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let mut b = user("bob", "Employee", "Engineering", "Engineer");
    b[ENTERPRISE]["manager"] = json!({"value": grace});
    let bob = env.create_user(b);
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    let (ack, _) = mover_links(&env, &bob, "grace@example.com");
    let mut bad = ack.into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(bad).unwrap();
    let store = env.store.clone();
    let (held, holding) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        in_tx(&store, |_| {
            held.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(3));
            Ok(())
        })
        .unwrap()
    });
    holding.recv().unwrap();
    for m in [Method::POST, Method::GET] {
        let t0 = std::time::Instant::now();
        let (s, v, _) = follow(&srv, m.clone(), &forged, true);
        assert_eq!(s, 403, "{v}");
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(1500),
            "{m} of a forged link waited {:?} for the writer",
            t0.elapsed()
        );
    }
    holder.join().unwrap();
}

/// Without a `[[source]]` owning `manager` (and without `trust_unowned_attributes`), a manager
/// attribute gives no authority: any scim:write client could have written it.
fn unowned_manager_gives_no_authority(env: Env, trusted: bool) {
    let srv = Server::start(&env);
    let (_, ada, _) = team(&env);
    // Nor is an untrusted manager mailed the request (to an address a client may have chosen).
    let mailed_to_mia = in_tx(&env.store, |c| {
        scim_server::store::notifications::list(c, Some(&ada))
    })
    .unwrap()
    .iter()
    .any(|n| n.recipients.iter().any(|r| r.contains("mia")));
    assert_eq!(mailed_to_mia, trusted);
    let mia = srv.token("mia-approvals", &["approvals"], Some("mia"));
    let path = format!("/approvals/{}/approve", pending_for(&env, &ada));
    let got = srv.post_as(&mia, &path, json!({}));
    if trusted {
        assert_eq!(
            (got.0, got.1["decided_as"].as_str()),
            (200, Some("manager")),
            "{}",
            got.1
        );
    } else {
        assert_error(got, 403);
    }
}

fn unowned_policy(trust: bool) -> String {
    let p = policy();
    let start = p
        .find("[[source]]\nclient = \"hris\"")
        .expect("the hris source");
    let end = start + p[start..].find("\n\n").unwrap();
    let mut out = format!("{}{}", &p[..start], &p[end..]);
    if trust {
        out = out.replace(
            "[approvals]\n",
            "[approvals]\ntrust_unowned_attributes = true\n",
        );
    }
    out
}

mod unowned {
    use super::super::Env;
    #[test]
    fn sqlite() {
        for trust in [false, true] {
            let env = Env::new(false, &super::unowned_policy(trust)).unwrap();
            super::unowned_manager_gives_no_authority(env, trust);
        }
    }
    #[test]
    fn postgres() {
        for trust in [false, true] {
            if let Some(env) = Env::new(true, &super::unowned_policy(trust)) {
                super::unowned_manager_gives_no_authority(env, trust);
            }
        }
    }
}

/// A manager `mia`, and `ada` and `bea` in Engineering reporting to her (the org admin role
/// waits for the manager's approval).
fn team(env: &Env) -> (String, String, String) {
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let report = |name: &str| {
        let mut u = user(name, "Employee", "Engineering", "Engineer");
        u[ENTERPRISE]["manager"] = json!({"value": mia});
        env.create_user(u)
    };
    let ada = report("ada");
    let bea = report("bea");
    env.run();
    (mia, ada, bea)
}

fn approvals_api_applies_the_entitlement(env: Env) {
    let srv = Server::start(&env);
    let (_, ada, bea) = team(&env);
    let mia = srv.token("mia-approvals", &["approvals"], Some("mia"));
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
    // The notification to the approvers names the request, and never an admin-API route
    // that needs a bearer token (without a link secret it carries no one-click links).
    let body = &notes(&env, Some(&ada))
        .into_iter()
        .find(|n| n.kind == "approval_request")
        .unwrap()
        .body;
    assert!(body.contains(&format!("Request: {ada_req}\n")), "{body}");
    assert!(!body.contains("/admin/v1/approvals/"), "{body}");

    assert_error(srv.post_as(&mia, "/approvals/nope/approve", json!({})), 404);
    assert_error(srv.get("/approvals?status=bogus"), 400);
    let (s, row) = srv.post_as(&mia, &format!("/approvals/{ada_req}/approve"), json!({}));
    assert_eq!(s, 200, "{row}");
    assert_eq!(row["status"], "approved");
    assert_eq!(row["decided_by"], "mia");
    assert_eq!(row["decided_as"], "manager");
    assert_eq!(row["decided_by_credential"], "mia-approvals");
    env.run();
    assert_eq!(
        env.holds("github", "ada").unwrap().1,
        vec!["org:acme".to_string(), "team:eng".into()]
    );
    // Decided once.
    assert_error(
        srv.post_as(&mia, &format!("/approvals/{ada_req}/approve"), json!({})),
        409,
    );
    assert_error(
        srv.post_as(
            &mia,
            &format!("/approvals/{ada_req}/reject"),
            json!({"reason": "x"}),
        ),
        409,
    );
    // A rejection needs a reason; then nothing is granted.
    assert_error(
        srv.post_as(&mia, &format!("/approvals/{bea_req}/reject"), json!({})),
        400,
    );
    assert_error(
        srv.post_as(
            &mia,
            &format!("/approvals/{bea_req}/reject"),
            json!({"why": "x"}),
        ),
        400,
    );
    let (s, row) = srv.post_as(
        &mia,
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
        srv.post_as(&mia, &format!("/extensions/{bea_req}/approve"), json!({})),
        404,
    );
}

fn approvals_are_decided_by_the_right_person(env: Env) {
    let srv = Server::start(&env);
    let (mia, ada, _) = team(&env);
    env.create_user(user("sec", "Employee", "Security", "Analyst"));
    let req = env.admin.approvals(Some("pending")).unwrap();
    let ada_req = req.iter().find(|r| r.user_id == ada).unwrap().id.clone();
    let path = format!("/approvals/{ada_req}/approve");
    let pending = |env: &Env| {
        env.admin
            .approvals(Some("pending"))
            .unwrap()
            .iter()
            .any(|r| r.id == ada_req)
    };

    // The bootstrap token and an unbound admin token act as nobody: 403, still pending.
    let e = assert_error(srv.post(&path, json!({})), 403);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("does not act as a directory user"),
        "{e}"
    );
    let robot = srv.token("robot", &["admin"], None);
    assert_error(srv.post_as(&robot, &path, json!({})), 403);
    // Ada may not approve her own access, bea (a peer) is not her manager.
    let own = srv.token("ada-approvals", &["approvals"], Some("ada"));
    let e = assert_error(srv.post_as(&own, &path, json!({})), 403);
    assert_eq!(
        e["detail"],
        "ada cannot decide a request for their own access"
    );
    let peer = srv.token("bea-approvals", &["approvals"], Some("bea"));
    let e = assert_error(srv.post_as(&peer, &path, json!({"reason": "sure"})), 403);
    // The refusal does not say who may decide (neither mia nor sec is named).
    assert_eq!(
        e["detail"], "you (bea) are not an approver for this request",
        "{e}"
    );
    // Rejecting is deciding too.
    assert_error(
        srv.post_as(
            &peer,
            &format!("/approvals/{ada_req}/reject"),
            json!({"reason": "no"}),
        ),
        403,
    );
    assert!(
        pending(&env),
        "a refused decision leaves the request pending"
    );
    env.run();
    assert_eq!(
        env.holds("github", "ada").unwrap().1,
        vec!["team:eng".to_string()]
    );

    // An `approvals` token reaches only the approval routes.
    let mia_token = srv.token("mia-approvals", &["approvals"], Some("mia"));
    let (s, _) = srv.call(reqwest::Method::GET, "/approvals", &mia_token, json!({}));
    assert_eq!(s, 200);
    let e = assert_error(
        srv.call(reqwest::Method::GET, "/holds", &mia_token, json!({})),
        403,
    );
    assert!(e["detail"].as_str().unwrap().contains("admin scope"), "{e}");

    // A security approver may decide any level; the audit and the row name who decided.
    let sec = srv.token("sec-laptop", &["admin"], Some("sec"));
    let (s, row) = srv.post_as(&sec, &path, json!({"reason": "covering for mia"}));
    assert_eq!(s, 200, "{row}");
    assert_eq!(
        (row["decided_by"].as_str(), row["decided_as"].as_str()),
        (Some("sec"), Some("security"))
    );
    assert_eq!(row["decided_by_credential"], "sec-laptop");
    let audit = in_tx(&env.store, |c| audit::list(c, Some(&ada))).unwrap();
    let entry = audit
        .iter()
        .find(|a| a.action == "decide_request")
        .expect("the decision is audited");
    assert_eq!(entry.actor, "sec (credential sec-laptop)");
    let detail: Value = serde_json::from_str(&entry.detail).unwrap();
    assert_eq!(detail["decided_by"]["userName"], "sec");
    assert_eq!(detail["decided_by"]["credential"], "sec-laptop");
    assert_eq!(detail["decided_by"]["as"], "security");
    assert!(detail["decided_by"]["user_id"].is_string());
    let _ = mia;
}

fn extensions_api_moves_the_end_date(env: Env) {
    let srv = Server::start(&env);
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] =
        json!({"contractEnd": "2025-04-30", "sponsor": "sponsor@example.com"});
    let cora = env.create_user(d);
    env.create_user(user("sponsor", "Employee", "Sales", "Lead"));
    env.create_user(user("sec", "Employee", "Security", "Analyst"));
    env.run();
    let sponsor = srv.token("sponsor-approvals", &["approvals"], Some("sponsor"));
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
    // Who asks is the authenticated caller: a body cannot name someone else.
    assert_error(
        srv.post(
            &path,
            json!({"end": "2025-05-31", "reason": "r", "requested_by": "sponsor@example.com"}),
        ),
        400,
    );
    let (s, req) = srv.post(
        &path,
        json!({"end": "2025-05-31", "reason": "project extended"}),
    );
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["kind"], "extension");
    assert_eq!(req["status"], "pending");
    assert_eq!(req["detail"]["requested_by"], "bootstrap");
    let id = req["id"].as_str().unwrap().to_string();
    // The sponsor and the owners are asked, with the routes to decide.
    let note = notes(&env, Some(&cora))
        .into_iter()
        .find(|n| n.kind == "extension_request")
        .unwrap();
    assert_eq!(
        note.recipients,
        vec![
            "sponsor@example.com".to_string(),
            "owners@example.com".to_string()
        ]
    );
    assert!(
        note.body.contains(&format!("Request: {id}\n")),
        "{}",
        note.body
    );
    assert!(!note.body.contains("http://hub.example/admin/v1/extensions"));
    assert_error(
        srv.post_as(&sponsor, "/extensions/nope/approve", json!({})),
        404,
    );
    // The contractor cannot extend their own contract.
    let own = srv.token("cora-approvals", &["approvals"], Some("cora"));
    let e = assert_error(
        srv.post_as(&own, &format!("/extensions/{id}/approve"), json!({})),
        403,
    );
    assert!(
        e["detail"].as_str().unwrap().contains("their own access"),
        "{e}"
    );
    let (s, row) = srv.post_as(&sponsor, &format!("/extensions/{id}/approve"), json!({}));
    assert_eq!(
        (s, row["status"].as_str()),
        (200, Some("approved")),
        "{row}"
    );
    assert_eq!(row["decided_as"], "sponsor");
    assert_eq!(
        env.admin
            .user_attr(&cora, "urn:example:acme:2.0:User:contractEnd"),
        Some(json!("2025-05-31"))
    );
    assert_error(
        srv.post_as(&sponsor, &format!("/extensions/{id}/approve"), json!({})),
        409,
    );
    // A second request, asked by the sponsor herself: she cannot also decide it; security
    // rejects it, and the date stays.
    let (s, req) = srv.post_as(
        &sponsor,
        &path,
        json!({"end": "2025-06-15", "reason": "more"}),
    );
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["detail"]["requested_by"], "sponsor-approvals");
    let id2 = req["id"].as_str().unwrap().to_string();
    let e = assert_error(
        srv.post_as(&sponsor, &format!("/extensions/{id2}/approve"), json!({})),
        403,
    );
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("asked for this extension"),
        "{e}"
    );
    let sec = srv.token("sec-approvals", &["approvals"], Some("sec"));
    let (s, row) = srv.post_as(
        &sec,
        &format!("/extensions/{id2}/reject"),
        json!({"reason": "budget"}),
    );
    assert_eq!((s, row["status"].as_str()), (200, Some("rejected")));
    assert_eq!(row["decided_as"], "security");
    assert_error(
        srv.post_as(&sec, &format!("/extensions/{id2}/approve"), json!({})),
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
    assert!(
        note.body.contains(&format!("Hold: {id}\n")),
        "{}",
        note.body
    );
    assert!(!note.body.contains("/admin/v1/holds/"), "{}", note.body);
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
    let left = in_tx(&env.store, |c| {
        outbox::list_ops(c, None, Some(outbox::OutboxStatus::Held), 100)
    })
    .unwrap();
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

/// The acknowledge and extend links of the latest mover summary for `user` sent to `to`.
fn mover_links(env: &Env, user: &str, to: &str) -> (String, String) {
    let body = notes(env, Some(user))
        .into_iter()
        .rfind(|n| n.kind == "mover_summary" && n.recipients == [to.to_string()])
        .unwrap_or_else(|| panic!("no mover summary to {to}"))
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

/// Opens (`GET`) or confirms (`POST`) a link on the test server (the notification carries the
/// configured base URL). Returns the status, the body and the content type.
fn follow(srv: &Server, method: reqwest::Method, link: &str, json: bool) -> (u16, Value, String) {
    let path = link
        .strip_prefix("http://hub.example")
        .unwrap_or_else(|| panic!("{link}"));
    let mut req = srv.http.request(method, format!("{}{path}", srv.base));
    if json {
        req = req.header("Accept", "application/json");
    }
    let r = req.send().unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ct = header("content-type");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("x-frame-options"), "DENY");
    let (s, v) = into(r);
    (s, v, ct)
}

fn link_uses(env: &Env, user: &str) -> usize {
    in_tx(&env.store, |c| audit::list(c, Some(user)))
        .unwrap()
        .iter()
        .filter(|a| a.action == "one_click_link")
        .count()
}

fn legacy_access_api_and_one_click_links(env: Env) {
    use reqwest::Method;
    let srv = Server::start(&env);
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let mut b = user("bob", "Employee", "Engineering", "Engineer");
    b[ENTERPRISE]["manager"] = json!({"value": grace});
    let bob = env.create_user(b);
    env.run();
    env.patch_user(&bob, |d| {
        d[ENTERPRISE]["department"] = json!("Sales");
    });
    env.run();
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()]))
    );
    // One summary per recipient, each with links addressed to that recipient.
    let (ack, ext) = mover_links(&env, &bob, "grace@example.com");
    let (sec_ack, _) = mover_links(&env, &bob, "security@example.com");
    assert!(ack.starts_with("http://hub.example/admin/v1/links/"));
    assert_ne!(ack, sec_ack);

    // Tampered: a flipped character in the payload or the signature.
    let mut bad = ack.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    for m in [Method::GET, Method::POST] {
        let (s, v, _) = follow(&srv, m, &bad, true);
        assert_eq!(s, 403, "{v}");
        assert_eq!(v["schemas"][0], ERROR_URN);
    }
    let (s, _, _) = follow(
        &srv,
        Method::GET,
        "http://hub.example/admin/v1/links/garbage",
        true,
    );
    assert_eq!(s, 403);

    // Opening the link (twice, as a mail scanner and then the manager would) changes nothing:
    // a page says what confirming will do and posts the same link.
    for _ in 0..2 {
        let (s, v, ct) = follow(&srv, Method::GET, &ack, false);
        assert_eq!(s, 200, "{v}");
        assert!(ct.starts_with("text/html"), "{ct}");
        let page = v.as_str().unwrap();
        assert!(
            page.contains("Remove bob&#39;s legacy access now."),
            "{page}"
        );
        let token = ack.rsplit_once('/').unwrap().1;
        assert!(
            page.contains(&format!("<form method=\"post\" action=\"{token}\">")),
            "{page}"
        );
    }
    let (s, v, _) = follow(&srv, Method::GET, &ack, true);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["action"].as_str(),
            v["role"].as_str(),
            v["addressee"].as_str()
        ),
        (Some("ack"), Some("manager"), Some(grace.as_str()))
    );
    assert_eq!(v["confirm"]["method"], "POST");
    env.run();
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()])),
        "GET acted"
    );
    assert_eq!(link_uses(&env, &bob), 0);

    // Confirming (POST) acts, once; the legacy access goes.
    let (s, v, ct) = follow(&srv, Method::POST, &ack, false);
    assert_eq!(s, 200, "{v}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(v.as_str().unwrap().contains("Legacy access removed."));
    env.run();
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    assert_eq!(link_uses(&env, &bob), 1);
    let audit = in_tx(&env.store, |c| audit::list(c, Some(&bob))).unwrap();
    let used = audit.iter().find(|a| a.action == "one_click_link").unwrap();
    assert_eq!(used.actor, format!("one-click link to {grace} (manager)"));
    // Spent: the same link, its sibling and security's copy, whatever the method.
    let (s, v, _) = follow(&srv, Method::POST, &ack, true);
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["status"], "409");
    let (s, _, ct) = follow(&srv, Method::GET, &ext, false);
    assert_eq!(s, 409);
    assert!(ct.starts_with("text/html"));
    let (s, _, _) = follow(&srv, Method::POST, &sec_ack, true);
    assert_eq!(s, 409);
    assert_eq!(link_uses(&env, &bob), 1);

    // A second move (a minute later: new links). The manager then changes: the links sent to
    // grace as bob's manager no longer act; security's still would.
    env.clock.advance(Duration::minutes(1));
    env.patch_user(&bob, |d| set_dept(d, "Engineering"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    let (ack2, ext2) = mover_links(&env, &bob, "grace@example.com");
    let (_, sec_ext2) = mover_links(&env, &bob, "security@example.com");
    assert_ne!(ext2, ext);
    let hal = env.create_user(user("hal", "Employee", "Sales", "Manager"));
    env.patch_user(&bob, |d| {
        d[ENTERPRISE]["manager"] = json!({"value": hal});
    });
    for m in [Method::GET, Method::POST] {
        let (s, v, _) = follow(&srv, m, &ack2, true);
        assert_eq!(s, 403, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("no longer"), "{v}");
    }
    let (s, v, _) = follow(&srv, Method::GET, &sec_ext2, true);
    assert_eq!((s, v["role"].as_str()), (200, Some("security")), "{v}");
    // The links expire after an hour.
    env.clock.advance(Duration::hours(2));
    for m in [Method::GET, Method::POST] {
        let (s, v, _) = follow(&srv, m, &sec_ext2, true);
        assert_eq!(s, 410, "{v}");
    }
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
    let approver = srv.token("approver", &["approvals"], None);
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
        let approval_route = path.starts_with("/approvals")
            || path.starts_with("/extensions")
            || path.ends_with("/extensions");
        let needed = if approval_route { "approvals" } else { "admin" };
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("lacks the {needed} scope")),
            "{path}: {e}"
        );
        // An `approvals` token gets past the scope check on the approval routes only.
        let status = into(
            srv.http
                .request(m, srv.url(path))
                .bearer_auth(&approver)
                .json(&json!({}))
                .send()
                .unwrap(),
        );
        if approval_route {
            assert_ne!(status.0, 403, "{path}: {}", status.1);
        } else {
            assert_error(status, 403);
        }
    }
    // Unknown routes and methods keep the error shape.
    assert_error(srv.get("/nothing"), 404);
    assert_error(srv.post("/approvals", json!({})), 405);
    // The one-click link route needs no token: the link is the credential.
    for m in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = srv
            .http
            .request(m, srv.url("/links/abc.00"))
            .header("Accept", "application/json")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
    }
    assert_error(
        into(srv.http.delete(srv.url("/links/abc.00")).send().unwrap()),
        405,
    );
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

/// `scimhub simulate` reads the server's configuration file (`--config` or `SCIMHUB_CONFIG`):
/// its extension schemas and `strict` decide what a simulated write accepts, as on the server.
#[test]
fn cli_simulate_honours_the_configuration_file() {
    let Some(env) = Env::new(false, POLICY) else {
        return;
    };
    env.create_user(user("ada", "Employee", "Engineering", "Engineer"));
    env.run();
    let policy = env.dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let ext = "urn:example:params:scim:schemas:extension:contractor:2.0:User";
    let schema = env.dir.join("contractor.schema.json");
    std::fs::write(
        &schema,
        json!({"id": ext, "name": "Contractor",
               "attributes": [{"name": "contractEndDate", "type": "dateTime"}]})
        .to_string(),
    )
    .unwrap();
    let config = env.dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "strict = true\ndatabase_url = \"sqlite://{}\"\n[[schema_extensions]]\nfile = \"{}\"\n",
            env.dir.join("hub.db").display(),
            schema.display()
        ),
    )
    .unwrap();
    let run = |via_env: bool, set: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scimhub"));
        cmd.arg("simulate").arg("--policy").arg(&policy);
        if via_env {
            cmd.env("SCIMHUB_CONFIG", &config);
        } else {
            cmd.arg("--config").arg(&config);
        }
        cmd.args(["--user", "ada", "--set", set]).output().unwrap()
    };
    // The extension from the configuration is known to the simulation…
    let ok = run(
        false,
        &format!("{ext}:contractEndDate=2027-01-01T00:00:00Z"),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let plan: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(plan["committed"], false);
    // …and `strict` refuses an attribute no schema defines, as the server would.
    for via_env in [false, true] {
        let out = run(via_env, "bogusAttribute=x");
        assert!(!out.status.success(), "strict ignored (via env: {via_env})");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bogusAttribute"), "{err}");
    }
}

/// A contract reminder: the sponsor's copy carries their link to ask for an extension (the
/// others none); its page asks for the date and the reason; following it makes the request
/// through the extension API's own function, as the sponsor (who then cannot decide it), once
/// per contract end; a tampered link, and one whose addressee is no longer the sponsor, act not.
fn extension_asked_from_the_sponsors_reminder_link(env: Env) {
    use chrono::TimeZone;
    use reqwest::Method;
    let srv = Server::start(&env);
    let sponsor = env.create_user(user("sponsor", "Employee", "Sales", "Lead"));
    env.create_user(user("sam", "Employee", "Sales", "Lead"));
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] = json!({"contractEnd": "2025-04-30", "sponsor": "sponsor"});
    let cora = env.create_user(d);
    env.run();
    env.clock
        .set(chrono::Utc.with_ymd_and_hms(2025, 4, 1, 12, 0, 0).unwrap());
    env.run();
    let reminders: Vec<_> = notes(&env, Some(&cora))
        .into_iter()
        .filter(|n| n.kind == "contract_reminder")
        .collect();
    let mine = reminders
        .iter()
        .find(|n| n.recipients == [sponsor.clone()])
        .unwrap_or_else(|| panic!("no reminder for the sponsor: {reminders:?}"));
    let others = reminders
        .iter()
        .find(|n| n.recipients != [sponsor.clone()])
        .unwrap_or_else(|| panic!("no reminder for the others: {reminders:?}"));
    assert!(
        !others.recipients.contains(&"sponsor".to_string()),
        "{others:?}"
    );
    assert!(!others.body.contains("http://"), "{}", others.body);
    assert!(mine.body.contains("    | cora"), "{}", mine.body);
    let ask = mailed_link(&mine.body, "Ask for an extension: ");
    let (s, page, _) = follow(&srv, Method::GET, &ask, false);
    assert_eq!(s, 200, "{page}");
    let (s, v, _) = follow(&srv, Method::GET, &ask, true);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["addressee_name"], "sponsor", "{v}");
    let post = |link: &str, form: &str| {
        let path = link.strip_prefix("http://hub.example").unwrap();
        into(
            srv.http
                .post(format!("{}{path}", srv.base))
                .header("Accept", "application/json")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form.to_string())
                .send()
                .unwrap(),
        )
    };
    assert_error(post(&tampered(&ask), "end=2025-05-31&reason=r"), 403);
    // The date and the reason are checked as the API checks them; a refused ask spends nothing.
    assert_error(post(&ask, "reason=more+work"), 400);
    assert_error(post(&ask, "end=2025-05-31&reason="), 400);
    // No longer the sponsor: refused.
    env.patch_user(&cora, |d| {
        d.insert(
            "urn:example:acme:2.0:User".into(),
            json!({"contractEnd": "2025-04-30", "sponsor": "sam"}),
        );
    });
    env.run();
    assert_error(post(&ask, "end=2025-05-31&reason=more+work"), 403);
    env.patch_user(&cora, |d| {
        d.insert(
            "urn:example:acme:2.0:User".into(),
            json!({"contractEnd": "2025-04-30", "sponsor": "sponsor"}),
        );
    });
    env.run();
    // The sponsor deactivated meanwhile: refused, and nothing spent.
    env.patch_user(&sponsor, |d| {
        d.insert("active".into(), json!(false));
    });
    assert_error(post(&ask, "end=2025-05-31&reason=more+work"), 403);
    env.patch_user(&sponsor, |d| {
        d.insert("active".into(), json!(true));
    });
    env.run();
    let (s, done) = post(&ask, "end=2025-05-31&reason=more+work");
    assert_eq!(s, 200, "{done}");
    let (_, pending) = srv.get("/approvals?status=pending");
    let req = pending["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "extension" && r["user_id"] == cora.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{pending}"));
    assert_eq!(req["detail"]["new_end"], "2025-05-31", "{req}");
    assert_eq!(req["detail"]["requested_by"], "sponsor", "{req}");
    assert_eq!(
        req["detail"]["requested_by_user_id"],
        sponsor.as_str(),
        "{req}"
    );
    // The sponsor asked: their copy of the request has no links to decide it themselves.
    let asked_mails: Vec<_> = notes(&env, Some(&cora))
        .into_iter()
        .filter(|n| n.kind == "extension_request")
        .collect();
    assert!(!asked_mails.is_empty());
    for m in &asked_mails {
        assert!(!m.body.contains("/admin/v1/links/"), "{m:?}");
    }
    assert!(
        asked_mails.iter().any(|m| m.recipients.contains(&sponsor)),
        "{asked_mails:?}"
    );
    // Once per contract end.
    assert_error(post(&ask, "end=2025-05-31&reason=again"), 409);
    let (_, pending) = srv.get("/approvals?status=pending");
    let asked = pending["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "extension")
        .count();
    assert_eq!(asked, 1, "{pending}");
}
