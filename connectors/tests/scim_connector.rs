//! The generic SCIM connector against real SCIM servers: python `scim2-server` (PyPI, installed
//! and started by the test) and, when `SCIMHUB_BIN` names a built binary, a second scimhub.
//! Rate limiting, timeouts and credential echo use a tiny local HTTP server on 127.0.0.1.

#[path = "support/scim2_standin.rs"]
mod scim2_standin;
#[path = "support/scim_http.rs"]
mod scim_http;

use std::time::{Duration, Instant};

use connectors::ownership::Adopt;
use connectors::scim::{
    DisableMethod, GroupRef, MatchBy, ScimConnector, ScimSettings, UpdateMethod,
};
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Capability, Connector, Entitlement, ErrorKind};
use scim_http::{Reply, Response};
use serde_json::{json, Value};

fn spec(key: &str, attrs: Value) -> AccountSpec {
    AccountSpec {
        account: AccountRef::new(key),
        attributes: attrs.as_object().cloned().expect("object"),
    }
}

fn person(user_name: &str, display: &str) -> Value {
    json!({
        "userName": user_name,
        "externalId": format!("hr-{user_name}"),
        "displayName": display,
        "name": {"givenName": display, "familyName": "Doe"},
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

fn connector(base: &str, token: &str, tweak: impl FnOnce(&mut ScimSettings)) -> ScimConnector {
    let mut settings = ScimSettings::new(base);
    settings.timeout_ms = 10_000;
    tweak(&mut settings);
    ScimConnector::new("scim-test", settings, Secret::new(token)).expect("connector")
}

/// The whole lifecycle against one SCIM service provider: create, adopt, update, grant, revoke,
/// disable, enable, read back, list, delete.
async fn lifecycle(base: &str, token: &str) {
    let c = connector(base, token, |s| {
        s.groups_by = GroupRef::DisplayName;
        s.page_size = 2;
    });
    assert!(c.capabilities().supports(Capability::Grant));
    assert!(c.capabilities().knows_kind("group"));
    let eng = scim2_standin::create_group(base, token, "engineering").await;

    // create
    let jdoe = c
        .create_or_adopt(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect("create");
    let uid = jdoe.id.clone().expect("id");
    let stored = scim2_standin::get_user(base, token, &uid)
        .await
        .expect("stored");
    assert_eq!(stored["userName"], "jdoe");
    assert_eq!(stored["displayName"], "Jane");

    // create again: adopts, no duplicate
    let again = c
        .create_or_adopt(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect("create again");
    assert_eq!(again.id.as_deref(), Some(uid.as_str()));

    // adopt an account that already existed downstream, bringing it to the spec
    let pre = scim2_standin::create_user(
        base,
        token,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "asmith", "displayName": "Old Name", "active": true}),
    )
    .await;
    let adopted = c
        .create_or_adopt(&spec("asmith", person("asmith", "Alex")))
        .await
        .expect("adopt");
    assert_eq!(adopted.id.as_deref(), Some(pre.as_str()));
    let stored = scim2_standin::get_user(base, token, &pre)
        .await
        .expect("adopted");
    assert_eq!(stored["displayName"], "Alex");
    assert_eq!(stored["externalId"], "hr-asmith");

    // adopt a disabled one: the spec leaves `active` out, the account still ends active
    let dormant = scim2_standin::create_user(
        base,
        token,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "dormant", "active": false}),
    )
    .await;
    let mut no_active = person("dormant", "Dora");
    no_active.as_object_mut().expect("object").remove("active");
    c.create_or_adopt(&spec("dormant", no_active))
        .await
        .expect("adopt disabled");
    let stored = scim2_standin::get_user(base, token, &dormant)
        .await
        .expect("adopted");
    assert_eq!(stored["active"], json!(true), "{stored}");

    // update (by key only: the connector finds the id)
    let mut changed = person("jdoe", "Janet");
    changed["title"] = json!("Staff Engineer");
    c.update(&spec("jdoe", changed)).await.expect("update");
    let stored = scim2_standin::get_user(base, token, &uid)
        .await
        .expect("stored");
    assert_eq!(stored["displayName"], "Janet");
    assert_eq!(stored["title"], "Staff Engineer");
    assert_eq!(stored["name"]["givenName"], "Janet");

    // grant, twice (idempotent)
    let group = Entitlement::new("group", "engineering");
    c.grant(&jdoe, &group).await.expect("grant");
    c.grant(&AccountRef::new("jdoe"), &group)
        .await
        .expect("grant again");
    assert_eq!(
        scim2_standin::group_members(base, token, &eng).await,
        vec![uid.clone()]
    );

    // read back: attributes, enabled, entitlements
    let state = c
        .read(&AccountRef::new("jdoe"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(state.account.id.as_deref(), Some(uid.as_str()));
    assert!(state.enabled);
    assert_eq!(state.attributes["displayName"], "Janet");
    assert_eq!(state.entitlements, vec![group.clone()]);

    // revoke, twice (not held is success)
    c.revoke(&jdoe, &group).await.expect("revoke");
    c.revoke(&jdoe, &group).await.expect("revoke again");
    assert!(scim2_standin::group_members(base, token, &eng)
        .await
        .is_empty());
    // unknown group: nothing to revoke; grant is a permanent error
    c.revoke(&jdoe, &Entitlement::new("group", "nope"))
        .await
        .expect("revoke unknown");
    let err = c
        .grant(&jdoe, &Entitlement::new("group", "nope"))
        .await
        .expect_err("grant unknown");
    assert_eq!(err.kind, ErrorKind::Permanent);
    let err = c
        .grant(&jdoe, &Entitlement::new("team", "x"))
        .await
        .expect_err("bad kind");
    assert_eq!(err.kind, ErrorKind::Permanent);

    // disable / enable
    c.set_enabled(&jdoe, false).await.expect("disable");
    c.set_enabled(&jdoe, false).await.expect("disable again");
    let stored = scim2_standin::get_user(base, token, &uid)
        .await
        .expect("stored");
    assert_eq!(stored["active"], false);
    assert!(!c.read(&jdoe).await.expect("read").expect("exists").enabled);
    c.set_enabled(&jdoe, true).await.expect("enable");
    assert!(c.read(&jdoe).await.expect("read").expect("exists").enabled);

    // list, two per page
    for n in 0..3 {
        let key = format!("user{n}");
        c.create_or_adopt(&spec(&key, person(&key, "U")))
            .await
            .expect("create more");
    }
    let mut seen = Vec::new();
    let mut page = None;
    let mut pages = 0;
    loop {
        let p = c.list_accounts(page.as_deref()).await.expect("list");
        pages += 1;
        assert!(p.accounts.len() <= 2);
        seen.extend(p.accounts.iter().map(|a| a.account.key.clone()));
        match p.next {
            Some(n) => page = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["asmith", "dormant", "jdoe", "user0", "user1", "user2"]
    );
    assert_eq!(pages, 3);

    // delete, twice (gone is success); read gives None
    c.delete(&jdoe).await.expect("delete");
    c.delete(&jdoe).await.expect("delete again");
    c.delete(&AccountRef::new("never-existed"))
        .await
        .expect("delete unknown");
    assert!(scim2_standin::get_user(base, token, &uid).await.is_none());
    assert!(c
        .read(&AccountRef::new("jdoe"))
        .await
        .expect("read")
        .is_none());
    // disabling what is gone is success; enabling it is not
    c.set_enabled(&jdoe, false).await.expect("disable gone");
    let err = c
        .set_enabled(&AccountRef::new("jdoe"), true)
        .await
        .expect_err("enable gone");
    assert_eq!(err.kind, ErrorKind::Permanent);
}

#[tokio::test]
async fn scim2_server_lifecycle() {
    let server = scim2_standin::start("downstream-secret").await;
    lifecycle(&server.base_url, &server.token).await;
}

#[tokio::test]
async fn scim2_server_put_updates_and_delete_as_disable() {
    let server = scim2_standin::start("downstream-secret").await;
    let (base, token) = (server.base_url.as_str(), server.token.as_str());
    let c = connector(base, token, |s| {
        s.update = UpdateMethod::Put;
        s.disable = DisableMethod::Delete;
        s.match_by = Some(MatchBy::ExternalId);
    });
    let gid = scim2_standin::create_group(base, token, "ops").await;
    let acct = c
        .create_or_adopt(&spec("bob", person("bob", "Bob")))
        .await
        .expect("create");
    let uid = acct.id.clone().expect("id");
    c.update(&spec("bob", person("bob", "Robert")))
        .await
        .expect("put update");
    let stored = scim2_standin::get_user(base, token, &uid)
        .await
        .expect("stored");
    assert_eq!(stored["displayName"], "Robert");
    assert_eq!(stored["userName"], "bob");
    // groups by id
    c.grant(&acct, &Entitlement::new("group", gid.clone()))
        .await
        .expect("grant by id");
    let state = c.read(&acct).await.expect("read").expect("exists");
    assert_eq!(
        state.entitlements,
        vec![Entitlement::new("group", gid.clone())]
    );
    // disable = DELETE per settings
    c.set_enabled(&acct, false)
        .await
        .expect("disable by delete");
    assert!(scim2_standin::get_user(base, token, &uid).await.is_none());
}

#[tokio::test]
async fn scim2_server_conflict_on_create_adopts() {
    let server = scim2_standin::start("downstream-secret").await;
    let (base, token) = (server.base_url.as_str(), server.token.as_str());
    // Matched by externalId, which differs: the filter misses, POST answers 409 uniqueness on
    // userName, and the connector adopts the holder of the userName.
    let pre = scim2_standin::create_user(
        base,
        token,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "clash", "externalId": "old-id"}),
    )
    .await;
    // its externalId is another owner's mark: by default the hub refuses it
    let c = connector(base, token, |s| s.match_by = Some(MatchBy::ExternalId));
    let err = c
        .create_or_adopt(&spec("clash", person("clash", "C")))
        .await
        .expect_err("another owner's account");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    let stored = scim2_standin::get_user(base, token, &pre)
        .await
        .expect("test set-up");
    assert_eq!(stored["externalId"], "old-id");
    // adopt = "always" takes it over
    let c = connector(base, token, |s| {
        s.match_by = Some(MatchBy::ExternalId);
        s.adopt = Adopt::Always;
    });
    let acct = c
        .create_or_adopt(&spec("clash", person("clash", "C")))
        .await
        .expect("adopt on 409");
    assert_eq!(acct.id.as_deref(), Some(pre.as_str()));
    let stored = scim2_standin::get_user(base, token, &pre)
        .await
        .expect("stored");
    assert_eq!(stored["externalId"], "hr-clash");
}

#[tokio::test]
async fn scim2_server_filter_values_are_escaped() {
    let server = scim2_standin::start("downstream-secret").await;
    let (base, token) = (server.base_url.as_str(), server.token.as_str());
    let c = connector(base, token, |_| {});
    c.create_or_adopt(&spec("victim", person("victim", "V")))
        .await
        .expect("create");
    // Were the key concatenated into the filter, `userName pr` would match every user.
    let evil = AccountRef::new(r#"x" or userName pr or userName eq "y"#);
    assert!(c.read(&evil).await.expect("read").is_none());
    c.delete(&evil).await.expect("delete of nothing");
    assert!(c
        .read(&AccountRef::new("victim"))
        .await
        .expect("read")
        .is_some());
}

#[tokio::test]
async fn scim2_server_bad_credentials_are_permanent_and_never_printed() {
    let server = scim2_standin::start("the-right-token").await;
    let wrong = "wrong-token-s3cr3t";
    let c = connector(&server.base_url, wrong, |_| {});
    let err = c.read(&AccountRef::new("anyone")).await.expect_err("401");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.message.contains("401"), "{err}");
    assert!(!err.to_string().contains(wrong));
    assert!(!format!("{err:?}").contains(wrong));
    assert!(!format!("{c:?}").contains(wrong));
    let err = c
        .create_or_adopt(&spec("x", person("x", "X")))
        .await
        .expect_err("401");
    assert_eq!(err.kind, ErrorKind::Permanent);
}

#[tokio::test]
async fn credentials_echoed_by_a_server_are_scrubbed() {
    let server = scim_http::serve(|req: scim_http::Request| {
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        Response::json(
            403,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "403", "detail": format!("token {auth} lacks scope")}),
        )
    })
    .await;
    let token = "echo-me-s3cr3t";
    let c = connector(&server.url("/scim/v2"), token, |_| {});
    let err = c.read(&AccountRef::new("u")).await.expect_err("403");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("lacks scope"), "{err}");
    assert!(!err.to_string().contains(token), "{err}");
}

#[tokio::test]
async fn rate_limited_429_is_retryable_with_retry_after() {
    let server = scim_http::serve(|_req: scim_http::Request| {
        Response::json(
            429,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "429", "detail": "slow down"}),
        )
        .with_header("Retry-After", "2")
    })
    .await;
    let c = connector(&server.url("/scim/v2"), "test-token", |_| {});
    let err = c
        .create_or_adopt(&spec("jdoe", person("jdoe", "J")))
        .await
        .expect_err("429");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    let err = c
        .delete(&AccountRef::new("jdoe").with_id("1"))
        .await
        .expect_err("429");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_retryable() {
    let server = scim_http::serve_silent().await;
    let c = connector(&server.url("/scim/v2"), "test-token", |s| {
        s.timeout_ms = 500
    });
    let started = Instant::now();
    let err = c.read(&AccountRef::new("jdoe")).await.expect_err("timeout");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn server_errors_are_retryable_and_404_on_delete_is_success() {
    let server = scim_http::serve(|req: scim_http::Request| -> Reply {
        match req.method.as_str() {
            "DELETE" => {
                Response::json(404, json!({"status": "404", "detail": "no such user"})).into()
            }
            // the connector reads the user before deleting it (protected? in scope?)
            "GET" if req.raw_path.ends_with("/Users/42") => {
                Response::json(200, json!({"id": "42", "userName": "gone"})).into()
            }
            _ => Response::empty(503).into(),
        }
    })
    .await;
    let c = connector(&server.url("/scim/v2"), "test-token", |_| {});
    c.delete(&AccountRef::new("gone").with_id("42"))
        .await
        .expect("404 is success");
    let err = c
        .read(&AccountRef::new("x").with_id("1"))
        .await
        .expect_err("503");
    assert!(err.is_retryable());
}

/// A second scimhub as the downstream SCIM service provider. The binary is not built in this
/// crate's tests; CI points `SCIMHUB_BIN` at it.
#[tokio::test]
async fn second_scimhub_lifecycle() {
    let Ok(bin) = std::env::var("SCIMHUB_BIN") else {
        eprintln!("SKIPPED second_scimhub_lifecycle: set SCIMHUB_BIN to a built scimhub binary");
        return;
    };
    let dir = std::env::temp_dir().join(format!("scimhub-downstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = "downstream-hub-token-of-at-least-32-bytes";
    let mut child = std::process::Command::new(&bin)
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}", dir.join("hub.db").display()))
        .env("SCIMHUB_BOOTSTRAP_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn scimhub");
    let stdout = child.stdout.take().expect("stdout");
    let addr = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = lines.find_map(|l| {
            l.ok()
                .and_then(|l| l.strip_prefix("listening on ").map(str::to_owned))
        });
        // keep draining so the child never blocks on a full pipe
        std::thread::spawn(move || lines.for_each(drop));
        addr
    })
    .await
    .expect("join")
    .expect("scimhub printed its address");
    let base = format!("http://{addr}/scim/v2");
    lifecycle(&base, token).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn github_emu_profile_adds_roles_headers_and_requires_external_id() {
    let server = scim2_standin::start("ghp-downstream-token").await;
    let (base, token) = (server.base_url.as_str(), server.token.as_str());
    let c = connector(base, token, |s| {
        s.profile = connectors::scim::ScimProfile::GithubEmu;
    });
    let mut no_ext = person("octo", "Octo");
    no_ext.as_object_mut().expect("object").remove("externalId");
    let err = c
        .create_or_adopt(&spec("octo", no_ext))
        .await
        .expect_err("externalId required");
    assert_eq!(err.kind, ErrorKind::Permanent);
    let acct = c
        .create_or_adopt(&spec("octo", person("octo", "Octo")))
        .await
        .expect("create");
    let stored = scim2_standin::get_user(base, token, acct.id.as_deref().expect("id"))
        .await
        .expect("stored");
    assert_eq!(stored["roles"][0]["value"], "user");
    // matched by externalId first (no compound filter), then adopted
    let again = c
        .create_or_adopt(&spec("octo", person("octo", "Octo")))
        .await
        .expect("adopt");
    assert_eq!(again.id, acct.id);

    // GitHub's required headers are sent
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let s2 = seen.clone();
    let stub = scim_http::serve(move |req: scim_http::Request| {
        s2.lock().expect("lock").extend(req.headers.clone());
        if req.query.contains("filter=") {
            Response::json(200, json!({"totalResults": 0, "Resources": []}))
        } else {
            Response::json(404, json!({"status": "404"}))
        }
    })
    .await;
    let gh = connector(&stub.url("/scim/v2/enterprises/acme"), "ghp-x-token", |s| {
        s.profile = connectors::scim::ScimProfile::GithubEmu;
    });
    assert!(gh.read(&AccountRef::new("octo").with_id("1")).await.is_ok());
    let headers = seen.lock().expect("lock").clone();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("x-github-api-version").as_deref(), Some("2022-11-28"));
    assert_eq!(get("accept").as_deref(), Some("application/scim+json"));
}

fn user(v: Value) -> Value {
    let mut v = v;
    v["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
    v
}

/// Pre-existing provider users: protected userNames (defaults and configured globs) are never
/// adopted nor touched, users outside `managed_filter` and users with another `externalId` are
/// refused, an unowned disabled one is adopted and ends `active=true`; `never` refuses what the
/// hub did not create. Every refused user reads back unchanged from scim2-server.
#[tokio::test]
async fn scim2_server_adoption_rules_and_active_on_adopt() {
    let server = scim2_standin::start("downstream-secret").await;
    let (base, token) = (server.base_url.as_str(), server.token.as_str());
    let admin = scim2_standin::create_user(
        base,
        token,
        user(
            json!({"userName": "Administrator", "displayName": "Built-in", "userType": "Employee"}),
        ),
    )
    .await;
    let svc = scim2_standin::create_user(
        base,
        token,
        user(json!({"userName": "svc-build", "userType": "Employee"})),
    )
    .await;
    let outsider = scim2_standin::create_user(
        base,
        token,
        user(json!({"userName": "outsider", "userType": "Contractor"})),
    )
    .await;
    let owned = scim2_standin::create_user(
        base,
        token,
        user(json!({"userName": "owned", "externalId": "other-idp-7", "userType": "Employee"})),
    )
    .await;
    let idle = scim2_standin::create_user(
        base,
        token,
        user(json!({"userName": "idle", "active": false, "userType": "Employee"})),
    )
    .await;
    let c = connector(base, token, |s| {
        s.managed_filter = Some(r#"userType eq "Employee""#.into());
        s.protected_accounts = vec!["SVC-*".into()];
    });
    let employee = |name: &str| {
        let mut p = person(name, "Mallory");
        p.as_object_mut().expect("test set-up").remove("active");
        p["userType"] = json!("Employee");
        spec(name, p)
    };
    for (name, id, why) in [
        ("Administrator", &admin, "protected"),
        ("svc-build", &svc, "protected"),
        ("outsider", &outsider, "outside the scope"),
        ("owned", &owned, "another owner"),
    ] {
        let before = scim2_standin::get_user(base, token, id)
            .await
            .expect("test set-up");
        let err = c.create_or_adopt(&employee(name)).await.expect_err(name);
        assert_eq!(err.kind, ErrorKind::Refused, "{err}");
        assert!(err.message.contains(why), "{err}");
        let acct = AccountRef::new(name);
        let err = c.update(&employee(name)).await.expect_err(name);
        assert_eq!(err.kind, ErrorKind::Refused);
        // without a spec the other owner's externalId is unknown; the hub never adopted it,
        // so it never disables or deletes it (protected and out-of-scope users are refused)
        if name != "owned" {
            for r in [c.set_enabled(&acct, false).await, c.delete(&acct).await] {
                assert_eq!(r.expect_err(name).kind, ErrorKind::Refused);
            }
        }
        let mut after = scim2_standin::get_user(base, token, id).await.expect(name);
        let mut before = before;
        for v in [&mut before, &mut after] {
            v.as_object_mut().expect("test set-up").remove("meta");
        }
        assert_eq!(after, before, "{name} untouched");
    }

    // unowned, in scope, disabled: the spec has no `active`, the account ends active
    let adopted = c.create_or_adopt(&employee("idle")).await.expect("adopt");
    assert_eq!(adopted.id.as_deref(), Some(idle.as_str()));
    let stored = scim2_standin::get_user(base, token, &idle)
        .await
        .expect("test set-up");
    assert_eq!(stored["active"], json!(true), "{stored}");
    assert_eq!(stored["externalId"], "hr-idle");

    let never = connector(base, token, |s| s.adopt = Adopt::Never);
    scim2_standin::create_user(base, token, user(json!({"userName": "legacy"}))).await;
    let err = never
        .create_or_adopt(&spec("legacy", person("legacy", "L")))
        .await
        .expect_err("never");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    never
        .create_or_adopt(&employee("idle"))
        .await
        .expect("its own externalId");
}

/// A created account is POSTed with `active: true` even when the policy's attributes leave
/// `active` out, and adopting a disabled one PATCHes `active` to true.
#[tokio::test]
async fn create_sends_active_and_adopt_enables() {
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let b = bodies.clone();
    let server = scim_http::serve(move |req: scim_http::Request| {
        let body = req.json().unwrap_or(Value::Null);
        b.lock()
            .expect("test set-up")
            .push((req.method.clone(), body.clone()));
        let filter = req.query.contains("filter=");
        match req.method.as_str() {
            "GET" if filter && req.query.contains("idle") => Response::json(
                200,
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                       "totalResults": 1, "Resources": [
                           {"id": "u-idle", "userName": "idle", "active": false}]}),
            ),
            "GET" => Response::json(
                200,
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                       "totalResults": 0, "Resources": []}),
            ),
            "POST" => Response::json(201, json!({"id": "u-new", "userName": "new"})),
            _ => Response::json(200, json!({"id": "u-idle"})),
        }
    })
    .await;
    let c = connector(&server.url("/scim/v2"), "t", |_| {});
    c.create_or_adopt(&spec("new", json!({"userName": "new"})))
        .await
        .expect("create");
    c.create_or_adopt(&spec("idle", json!({"userName": "idle"})))
        .await
        .expect("adopt");
    let bodies = bodies.lock().expect("test set-up").clone();
    let post = bodies.iter().find(|(m, _)| m == "POST").expect("POST");
    assert_eq!(post.1["active"], json!(true), "{:?}", post.1);
    let patch = bodies.iter().find(|(m, _)| m == "PATCH").expect("PATCH");
    let ops = patch.1["Operations"].as_array().expect("test set-up");
    assert!(
        ops.iter()
            .any(|o| o["path"] == "active" && o["value"] == json!(true)),
        "{ops:?}"
    );
}

/// A provider that ignores `filter=` and answers every search, every `GET /Users/{id}` and every
/// write with the same resource. Records each request as `METHOD path`.
async fn filter_ignoring_provider(
    user: Value,
) -> (
    scim_http::TestServer,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::{Arc, Mutex};
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = calls.clone();
    let server = scim_http::serve(move |req: scim_http::Request| {
        seen.lock()
            .expect("test set-up")
            .push(format!("{} {}", req.method, req.raw_path));
        match req.method.as_str() {
            "GET" if req.raw_path.ends_with("/Users") || req.raw_path.ends_with("/Groups") => {
                Response::json(
                    200,
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                       "totalResults": 1, "Resources": [user.clone()]}),
                )
            }
            _ => Response::json(200, user.clone()),
        }
    })
    .await;
    (server, calls)
}

fn writes(calls: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    calls
        .lock()
        .expect("test set-up")
        .iter()
        .filter(|c| !c.starts_with("GET "))
        .cloned()
        .collect()
}

/// The red-team case: a provider ignoring `filter=userName eq "jdoe"` answers with the CEO. The
/// hub refuses instead of adopting (renaming) or disabling that user, and writes nothing.
#[tokio::test]
async fn a_lookup_answered_with_another_user_is_refused() {
    let ceo = json!({"id": "u-ceo", "userName": "ceo", "active": true});
    let (server, calls) = filter_ignoring_provider(ceo).await;
    let base = server.url("/scim/v2");
    for match_by in [
        MatchBy::UserName,
        MatchBy::ExternalId,
        MatchBy::UserNameOrExternalId,
    ] {
        for profile in [
            connectors::scim::ScimProfile::Generic,
            connectors::scim::ScimProfile::GithubEmu,
        ] {
            let c = connector(&base, "t", |s| {
                s.match_by = Some(match_by);
                s.profile = profile;
            });
            let err = c
                .create_or_adopt(&spec("jdoe", person("jdoe", "Jane")))
                .await
                .expect_err("adopt the CEO");
            assert_eq!(err.kind, ErrorKind::Refused, "{match_by:?}: {err}");
            assert!(err.message.contains("\"ceo\""), "{err}");
            let err = c.update(&spec("jdoe", person("jdoe", "Jane"))).await;
            assert_eq!(err.expect_err("update").kind, ErrorKind::Refused);
        }
    }
    let c = connector(&base, "t", |_| {});
    let jdoe = AccountRef::new("jdoe");
    for r in [c.set_enabled(&jdoe, false).await, c.delete(&jdoe).await] {
        assert_eq!(r.expect_err("disable the CEO").kind, ErrorKind::Refused);
    }
    let group = Entitlement::new("group", "g1");
    for r in [c.grant(&jdoe, &group).await, c.revoke(&jdoe, &group).await] {
        assert_eq!(r.expect_err("regroup the CEO").kind, ErrorKind::Refused);
    }
    assert_eq!(
        c.read(&jdoe).await.expect_err("read the CEO").kind,
        ErrorKind::Refused
    );
    assert!(writes(&calls).is_empty(), "{:?}", writes(&calls));
}

/// `GET /Users/{id}` answered with a user of another id is refused, not modified.
#[tokio::test]
async fn a_get_by_id_answered_with_another_user_is_refused() {
    let ceo = json!({"id": "u-ceo", "userName": "jdoe", "active": true});
    let (server, calls) = filter_ignoring_provider(ceo).await;
    let c = connector(&server.url("/scim/v2"), "t", |_| {});
    let jdoe = AccountRef::new("jdoe").with_id("u-jdoe");
    let err = c.set_enabled(&jdoe, false).await.expect_err("wrong id");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("u-ceo"), "{err}");
    let err = c
        .update(&AccountSpec {
            account: jdoe.clone(),
            attributes: person("jdoe", "Jane").as_object().cloned().expect("object"),
        })
        .await
        .expect_err("wrong id");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(writes(&calls).is_empty(), "{:?}", writes(&calls));
}

/// `externalId` must match exactly, `userName` only up to case; a group looked up by
/// `displayName` must carry that name.
#[tokio::test]
async fn lookup_answers_compare_user_name_without_case_and_external_id_exactly() {
    let shouty = json!({"id": "u-1", "userName": "JDoe", "externalId": "HR-JDOE"});
    let (server, _calls) = filter_ignoring_provider(shouty).await;
    let base = server.url("/scim/v2");
    // adopt = "always", so that it is the lookup that refuses and not the owner's mark
    let by_ext = connector(&base, "t", |s| {
        s.match_by = Some(MatchBy::ExternalId);
        s.adopt = Adopt::Always;
    });
    let err = by_ext
        .update(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect_err("externalId differs in case");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("does not match"), "{err}");
    let by_name = connector(&base, "t", |s| s.adopt = Adopt::Always);
    by_name
        .update(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect("userName differs only in case");

    let (groups, _calls) =
        filter_ignoring_provider(json!({"id": "g-admins", "displayName": "admins"})).await;
    let c = connector(&groups.url("/scim/v2"), "t", |s| {
        s.groups_by = GroupRef::DisplayName
    });
    let err = c
        .grant(
            &AccountRef::new("jdoe").with_id("u-1"),
            &Entitlement::new("group", "interns"),
        )
        .await
        .expect_err("another group");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("admins"), "{err}");
}

/// A user found without a string `id` is a broken answer, not a missing account: the leaver is
/// not reported disabled (nor deleted, nor read as gone) with nothing done.
#[tokio::test]
async fn a_user_without_an_id_is_a_permanent_error_not_gone() {
    let (server, calls) =
        filter_ignoring_provider(json!({"userName": "jdoe", "active": true})).await;
    let c = connector(&server.url("/scim/v2"), "t", |_| {});
    let jdoe = AccountRef::new("jdoe");
    let group = Entitlement::new("group", "g1");
    for r in [
        c.set_enabled(&jdoe, false).await,
        c.delete(&jdoe).await,
        c.revoke(&jdoe, &group).await,
        c.read(&jdoe).await.map(|_| ()),
    ] {
        let err = r.expect_err("no id");
        assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
        assert!(err.message.contains("without a string id"), "{err}");
    }
    assert!(writes(&calls).is_empty(), "{:?}", writes(&calls));
}

/// An id of `..` (or `.`, or empty) would make `PATCH /Users/..` a PATCH of the collection
/// `/Users`; it is refused before anything is sent.
#[tokio::test]
async fn a_user_id_that_is_a_dot_segment_is_refused() {
    for id in ["..", ".", ""] {
        let (server, calls) =
            filter_ignoring_provider(json!({"id": id, "userName": "jdoe", "active": true})).await;
        let c = connector(&server.url("/scim/v2"), "t", |_| {});
        let jdoe = AccountRef::new("jdoe");
        for r in [
            c.set_enabled(&jdoe, false).await,
            c.delete(&jdoe).await,
            c.update(&spec("jdoe", json!({"userName": "jdoe", "title": "x"})))
                .await,
        ] {
            let err = r.expect_err(id);
            assert_eq!(err.kind, ErrorKind::Permanent, "{id:?}: {err}");
            assert!(err.message.contains("path segment"), "{err}");
        }
        assert!(writes(&calls).is_empty(), "{id:?}: {:?}", writes(&calls));
    }
}

/// The account the hub manages was deleted downstream and another account (another owner's)
/// now carries its userName: disabling, deleting or regranting it by name would hit someone
/// else's account, so the hub refuses and writes nothing.
#[tokio::test]
async fn a_vanished_account_whose_name_another_holds_is_refused() {
    use std::sync::{Arc, Mutex};
    let other =
        json!({"id": "x-9", "userName": "dave", "externalId": "other-idp-777", "active": true});
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = calls.clone();
    let server = scim_http::serve(move |req: scim_http::Request| {
        seen.lock()
            .expect("test set-up")
            .push(format!("{} {}", req.method, req.raw_path));
        if req.method == "GET" && req.raw_path.contains("/Users/u-1") {
            return Response::json(404, json!({"status": "404"}));
        }
        if req.method == "GET" && req.raw_path.ends_with("/Users") {
            return Response::json(
                200,
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                       "totalResults": 1, "Resources": [other.clone()]}),
            );
        }
        Response::json(200, other.clone())
    })
    .await;
    let c = connector(&server.url("/scim/v2"), "t", |_| {});
    let dave = AccountRef::new("dave").with_id("u-1");
    let group = Entitlement::new("group", "g1");
    for r in [
        c.set_enabled(&dave, false).await,
        c.delete(&dave).await,
        c.grant(&dave, &group).await,
        c.revoke(&dave, &group).await,
    ] {
        let err = r.expect_err("act on another owner's account");
        assert_eq!(err.kind, ErrorKind::Refused, "{err}");
        assert!(err.message.contains("x-9"), "{err}");
    }
    assert!(writes(&calls).is_empty(), "{:?}", writes(&calls));
}
