//! The Slack connector: accounts over SCIM (Slack profile) against python `scim2-server` as the
//! Slack SCIM v2 stand-in (no registry package emulates Slack's SCIM), and session reset against
//! a stateful fake of the Web API's `admin.users.session.reset` (no local stand-in has the admin
//! API; see support/slack_fake.rs for what it enforces).

#[path = "support/scim2_standin.rs"]
mod scim2_standin;
#[path = "support/scim_http.rs"]
mod scim_http;
#[path = "support/slack_fake.rs"]
mod slack_fake;

use std::time::{Duration, Instant};

use connectors::scim::GroupRef;
use connectors::secret::Secret;
use connectors::slack::{SlackConnector, SlackSettings};
use connectors::{AccountRef, AccountSpec, Capability, Connector, Entitlement, ErrorKind};
use serde_json::{json, Value};

const SCIM_TOKEN: &str = "xoxp-fake-scim-token";

fn spec(key: &str, attrs: Value) -> AccountSpec {
    AccountSpec {
        account: AccountRef::new(key),
        attributes: attrs.as_object().cloned().expect("object"),
    }
}

fn person(user_name: &str, display: &str) -> Value {
    json!({
        "userName": user_name,
        "displayName": display,
        "name": {"givenName": display, "familyName": "Doe"},
        "emails": [{"value": format!("{user_name}@example.com"), "primary": true}],
        "active": true
    })
}

fn slack(scim_base: &str, api_base: &str, admin_token: &str) -> SlackConnector {
    let mut settings = SlackSettings::new(scim_base);
    settings.api_base_url = api_base.to_owned();
    settings.scim.groups_by = GroupRef::DisplayName;
    settings.scim.timeout_ms = 10_000;
    settings.timeout_ms = 10_000;
    SlackConnector::new(
        "slack-acme",
        settings,
        Secret::new(SCIM_TOKEN),
        Secret::new(admin_token),
    )
    .expect("connector")
}

#[tokio::test]
async fn slack_lifecycle_with_session_reset_on_leave() {
    let scim = scim2_standin::start(SCIM_TOKEN).await;
    let fake = slack_fake::start().await;
    let (base, token) = (scim.base_url.as_str(), scim.token.as_str());
    let c = slack(base, &fake.api_base(), slack_fake::ADMIN_TOKEN);
    let caps = c.capabilities();
    assert!(caps.supports(Capability::RevokeSessions));
    assert!(caps.supports(Capability::Grant));
    let gid = scim2_standin::create_group(base, token, "eng-all").await;

    // Slack requires an email: refused before any request
    let err = c
        .create_or_adopt(&spec("noemail", json!({"userName": "noemail"})))
        .await
        .expect_err("emails required");
    assert_eq!(err.kind, ErrorKind::Permanent);

    let acct = c
        .create_or_adopt(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect("create");
    let uid = acct.id.clone().expect("id");
    let adopted = c
        .create_or_adopt(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect("adopt");
    assert_eq!(adopted.id.as_deref(), Some(uid.as_str()));
    c.update(&spec("jdoe", person("jdoe", "Janet")))
        .await
        .expect("update");
    assert_eq!(
        scim2_standin::get_user(base, token, &uid)
            .await
            .expect("user")["displayName"],
        "Janet"
    );

    let group = Entitlement::new("group", "eng-all");
    c.grant(&acct, &group).await.expect("grant");
    assert_eq!(
        scim2_standin::group_members(base, token, &gid).await,
        vec![uid.clone()]
    );
    c.revoke(&acct, &group).await.expect("revoke");
    assert!(scim2_standin::group_members(base, token, &gid)
        .await
        .is_empty());

    // leaver: disable (PATCH active=false) and reset sessions
    fake.add_user(&uid, false);
    c.set_enabled(&acct, false).await.expect("disable");
    let state = c
        .read(&AccountRef::new("jdoe"))
        .await
        .expect("read")
        .expect("exists");
    assert!(!state.enabled);
    c.revoke_sessions(&AccountRef::new("jdoe"))
        .await
        .expect("session reset by key");
    assert_eq!(fake.resets(), vec![(uid.clone(), false, false)]);
    // no account, no sessions
    c.revoke_sessions(&AccountRef::new("ghost"))
        .await
        .expect("unknown account");
    // Slack knows no such user id: nothing to reset
    c.revoke_sessions(&AccountRef::new("x").with_id("W000GONE"))
        .await
        .expect("user_not_found");

    let page = c.list_accounts(None).await.expect("list");
    assert_eq!(page.accounts.len(), 1);
    c.delete(&acct).await.expect("delete");
    c.delete(&acct).await.expect("delete again");
}

#[tokio::test]
async fn slack_web_api_errors_are_classified() {
    let fake = slack_fake::start().await;
    fake.add_user("U1", false);
    fake.add_user("B1", true);
    // SCIM is never reached when the account id is known.
    let unused_scim = "http://127.0.0.1:9/scim/v2";

    let bad = slack(unused_scim, &fake.api_base(), "xoxp-not-a-real-token-123");
    let err = bad
        .revoke_sessions(&AccountRef::new("u").with_id("U1"))
        .await
        .expect_err("invalid_auth");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("invalid_auth"), "{err}");
    assert!(!format!("{err:?} {bad:?}").contains("xoxp-not-a-real-token-123"));

    let bot = slack(unused_scim, &fake.api_base(), slack_fake::BOT_TOKEN);
    let err = bot
        .revoke_sessions(&AccountRef::new("u").with_id("U1"))
        .await
        .expect_err("scope");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message
            .contains("missing_scope (needed admin.users:write)"),
        "{err}"
    );

    let c = slack(unused_scim, &fake.api_base(), slack_fake::ADMIN_TOKEN);
    let err = c
        .revoke_sessions(&AccountRef::new("b").with_id("B1"))
        .await
        .expect_err("bot");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("cannot_reset_bot"), "{err}");

    fake.state.lock().expect("lock").rate_limit = Some((1, 2));
    let err = c
        .revoke_sessions(&AccountRef::new("u").with_id("U1"))
        .await
        .expect_err("429");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    c.revoke_sessions(&AccountRef::new("u").with_id("U1"))
        .await
        .expect("after the wait");
    assert_eq!(fake.resets(), vec![("U1".to_owned(), false, false)]);
}

#[tokio::test]
async fn slack_fake_rejects_what_slack_rejects() {
    // The fake itself, driven with raw requests, so the connector tests above mean something.
    let fake = slack_fake::start().await;
    fake.add_user("U1", false);
    let url = format!("{}/admin.users.session.reset", fake.api_base());
    let http = reqwest::Client::new();
    let call = |req: reqwest::RequestBuilder| async move {
        req.send()
            .await
            .expect("send")
            .json::<Value>()
            .await
            .expect("json")["error"]
            .clone()
    };
    assert_eq!(
        call(http.post(&url).json(&json!({"user_id": "U1"}))).await,
        "not_authed"
    );
    assert_eq!(
        call(
            http.post(&url)
                .bearer_auth(slack_fake::ADMIN_TOKEN)
                .body("user_id=U1")
        )
        .await,
        "invalid_post_type"
    );
    assert_eq!(
        call(
            http.post(&url)
                .bearer_auth(slack_fake::ADMIN_TOKEN)
                .json(&json!({}))
        )
        .await,
        "invalid_arguments"
    );
    assert_eq!(
        call(http.get(&url).bearer_auth(slack_fake::ADMIN_TOKEN)).await,
        "method_not_supported"
    );
    // form-encoded with the token as a POST parameter works, as documented
    let ok: Value = http
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&user_id=U1&mobile_only=true",
            slack_fake::ADMIN_TOKEN
        ))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(ok["ok"], true);
    assert_eq!(fake.resets(), vec![("U1".to_owned(), true, false)]);
}

#[tokio::test]
async fn slack_timeout_is_retryable() {
    let silent = scim_http::serve_silent().await;
    let mut settings = SlackSettings::new("http://127.0.0.1:9/scim/v2");
    settings.api_base_url = silent.url("/api");
    settings.timeout_ms = 500;
    let c = SlackConnector::new(
        "slack",
        settings,
        Secret::new(SCIM_TOKEN),
        Secret::new(slack_fake::ADMIN_TOKEN),
    )
    .expect("connector");
    let started = Instant::now();
    let err = c
        .revoke_sessions(&AccountRef::new("u").with_id("U1"))
        .await
        .expect_err("timeout");
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Primary Owners, Owners and Admins (per `users.info`) are never adopted, changed, deactivated,
/// deleted, regrouped or signed out; an ordinary member still is; `protect_admins = false`
/// turns the check off.
#[tokio::test]
async fn slack_owners_and_admins_are_never_touched() {
    let scim = scim2_standin::start(SCIM_TOKEN).await;
    let fake = slack_fake::start().await;
    let (base, token) = (scim.base_url.as_str(), scim.token.as_str());
    let c = slack(base, &fake.api_base(), slack_fake::ADMIN_TOKEN);
    let gid = scim2_standin::create_group(base, token, "eng-all").await;
    let group = Entitlement::new("group", "eng-all");
    let mut ids = Vec::new();
    for (login, role) in [
        ("boss", "primary_owner"),
        ("own", "owner"),
        ("adm", "admin"),
    ] {
        let acct = c
            .create_or_adopt(&spec(login, person(login, "Pat")))
            .await
            .expect("create before the role");
        let uid = acct.id.clone().expect("id");
        fake.add_user(&uid, false);
        fake.set_role(&uid, role);
        let before = scim2_standin::get_user(base, token, &uid).await;
        let by_key = AccountRef::new(login);
        for e in [
            c.create_or_adopt(&spec(login, person(login, "Mallory")))
                .await
                .expect_err("refused"),
            c.update(&spec(login, person(login, "Mallory")))
                .await
                .expect_err("refused"),
            c.set_enabled(&acct, false).await.expect_err("refused"),
            c.delete(&by_key).await.expect_err("refused"),
            c.grant(&acct, &group).await.expect_err("refused"),
            c.revoke_sessions(&by_key).await.expect_err("refused"),
        ] {
            assert_eq!(e.kind, ErrorKind::Refused, "{login}: {e}");
        }
        assert_eq!(scim2_standin::get_user(base, token, &uid).await, before);
        ids.push(uid);
    }
    assert!(fake.resets().is_empty());
    assert!(scim2_standin::group_members(base, token, &gid)
        .await
        .is_empty());

    // an ordinary member is managed as before
    let jdoe = c
        .create_or_adopt(&spec("jdoe", person("jdoe", "Jane")))
        .await
        .expect("create");
    let uid = jdoe.id.clone().expect("id");
    fake.add_user(&uid, false);
    c.set_enabled(&jdoe, false).await.expect("disable");
    c.revoke_sessions(&jdoe).await.expect("reset");
    assert_eq!(fake.resets(), vec![(uid, false, false)]);

    // protect_admins = false: the admin's sessions are reset
    let mut settings = SlackSettings::new(base);
    settings.api_base_url = fake.api_base();
    settings.protect_admins = false;
    let open = SlackConnector::new(
        "slack-acme",
        settings,
        Secret::new(SCIM_TOKEN),
        Secret::new(slack_fake::ADMIN_TOKEN),
    )
    .expect("connector");
    open.revoke_sessions(&AccountRef::new("adm"))
        .await
        .expect("unprotected");
    assert_eq!(fake.resets().len(), 2);
    assert!(fake.resets().iter().any(|(u, _, _)| u == &ids[2]));
}
