//! GitHub connector against a stateful stand-in with GitHub's own OpenAPI contract in front:
//!
//!   connector -> watcher -> prism proxy --errors (GitHub's OpenAPI, @octokit/openapi, trimmed)
//!             -> router -> emulate@0.12.2 (GitHub emulator, Node 22)
//!
//! prism validates every request and every response against GitHub's description; with
//! `--errors` a violation becomes an error response, and the watcher records every response
//! head so the tests also fail on `sl-violations` that only come as headers.
//! emulate has no invitations API and no `DELETE /orgs/{org}/memberships/{username}`: the router
//! serves invitations from its own small table and maps the membership DELETE to emulate's
//! `DELETE /orgs/{org}/members/{username}` (cancelling the login's invitations, as GitHub does).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support_standins;

use std::time::{Duration, Instant};

use connectors::github::{GitHubConfig, GitHubConnector};
use connectors::ownership::Adopt;
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Capability, Connector, Entitlement, ErrorKind};
use serde_json::{json, Value};
use support_standins::stacks::*;
use support_standins::*;

const ADMIN_TOKEN: &str = "ghp_scimhub_admin_token";
const PLAIN_TOKEN: &str = "ghp_plain_user_token";

fn simple_user(login: &str, id: u64) -> Value {
    let u = format!("https://api.github.com/users/{login}");
    json!({
        "login": login, "id": id, "node_id": format!("U_{id}"),
        "avatar_url": format!("https://avatars.example/u/{id}"), "gravatar_id": "",
        "url": u, "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{u}/followers"), "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"), "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"), "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"), "type": "User", "site_admin": false
    })
}

fn invitation(id: u64, login: Option<&str>, email: Option<&str>) -> Value {
    json!({
        "id": id, "login": login, "email": email, "role": "direct_member",
        "created_at": "2026-01-02T03:04:05Z", "inviter": simple_user("hub-admin", 3),
        "team_count": 0, "node_id": format!("OI_{id}"),
        "invitation_teams_url": format!("https://api.github.com/organizations/1/invitations/{id}/teams"),
        "failed_at": null, "failed_reason": null
    })
}

impl Stack {
    fn connector(&self, token: &str, page_size: u32) -> GitHubConnector {
        self.connector_with(token, page_size, |_| {})
    }

    fn connector_with(
        &self,
        token: &str,
        page_size: u32,
        adjust: impl FnOnce(&mut GitHubConfig),
    ) -> GitHubConnector {
        let mut cfg = GitHubConfig::new("github-test", "acme", Secret::new(token));
        cfg.api_base = format!("http://{}", self.watcher.addr);
        cfg.teams = vec!["engineering".into(), "oncall".into()];
        cfg.timeout = Duration::from_secs(10);
        cfg.page_size = page_size;
        adjust(&mut cfg);
        GitHubConnector::new(cfg).unwrap()
    }

    fn router_saw(&self, method: &str, path_prefix: &str) -> usize {
        self.router
            .recorded()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }
}

fn spec(login: &str) -> AccountSpec {
    let mut attributes = serde_json::Map::new();
    attributes.insert("userName".into(), json!(login));
    AccountSpec {
        account: AccountRef::new(login),
        attributes,
    }
}

fn sorted(mut v: Vec<Entitlement>) -> Vec<Entitlement> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_lifecycle_through_prism_and_emulate() {
    let s = Stack::start().await;
    let c = s.connector(ADMIN_TOKEN, 2);
    let caps = c.capabilities();
    assert!(
        caps.knows_kind("org")
            && caps.knows_kind("team")
            && caps.supports(Capability::ListAccounts)
    );
    let org = |role: &str| Entitlement::new("org", "acme").with_role(role);

    // create: PUT membership as member
    let jdoe = c.create_or_adopt(&spec("jdoe")).await.expect("create");
    assert!(
        jdoe.id
            .as_deref()
            .is_some_and(|id| id.parse::<u64>().is_ok()),
        "{jdoe:?}"
    );
    let st = c.read(&jdoe).await.unwrap().expect("member");
    assert!(st.enabled);
    assert_eq!(st.entitlements, vec![org("member")]);
    assert_eq!(s.router_saw("PUT", "/orgs/acme/memberships/jdoe"), 1);

    // adopt: existing members are not re-PUT; an org owner is never adopted
    let legacy = c.create_or_adopt(&spec("legacy")).await.expect("adopt");
    let e = c.create_or_adopt(&spec("hub-admin")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert!(e.message.contains("owner"), "{e}");
    c.create_or_adopt(&spec("jdoe")).await.expect("adopt again");
    assert_eq!(s.router_saw("PUT", "/orgs/acme/memberships/legacy"), 0);
    assert_eq!(s.router_saw("PUT", "/orgs/acme/memberships/hub-admin"), 0);
    assert_eq!(s.router_saw("PUT", "/orgs/acme/memberships/jdoe"), 1);
    let admin = AccountRef::new("hub-admin");
    assert_eq!(
        c.read(&admin).await.unwrap().unwrap().entitlements,
        vec![org("admin")]
    );
    assert_eq!(
        legacy.id.as_deref().map(|i| i.parse::<u64>().is_ok()),
        Some(true)
    );

    // adopt = "never" refuses an existing member; protected logins and unmanaged teams are
    // refused whatever the operation, and nothing is sent
    let never = s.connector_with(ADMIN_TOKEN, 2, |c| c.adopt = Adopt::Never);
    let e = never.create_or_adopt(&spec("legacy")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    let guarded = s.connector_with(ADMIN_TOKEN, 2, |c| {
        c.protected_accounts = vec!["LEG*".into()]
    });
    let before = c.read(&legacy).await.unwrap().unwrap();
    for e in [
        guarded.create_or_adopt(&spec("legacy")).await.unwrap_err(),
        guarded.set_enabled(&legacy, false).await.unwrap_err(),
        guarded.delete(&legacy).await.unwrap_err(),
        guarded.grant(&legacy, &org("admin")).await.unwrap_err(),
        c.grant(&jdoe, &Entitlement::new("team", "secret-council"))
            .await
            .unwrap_err(),
        c.revoke(&jdoe, &Entitlement::new("team", "other-org/oncall"))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    }
    assert_eq!(c.read(&legacy).await.unwrap().unwrap(), before);
    assert_eq!(s.router_saw("PUT", "/orgs/acme/memberships/legacy"), 0);
    assert_eq!(s.router_saw("DELETE", "/orgs/acme/memberships/legacy"), 0);
    assert_eq!(s.router_saw("PUT", "/orgs/acme/teams/secret-council"), 0);

    // update: nothing to change on GitHub, but the membership must exist
    c.update(&spec("jdoe")).await.expect("update");
    let e = c.update(&spec("rroe")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);

    // grant: team member, then the org admin role (a role change, i.e. GitHub's "update")
    let eng = Entitlement::new("team", "engineering").with_role("member");
    let oncall = Entitlement::new("team", "acme/oncall").with_role("member");
    c.grant(&jdoe, &eng).await.expect("team");
    c.grant(&jdoe, &eng).await.expect("team again");
    c.grant(&jdoe, &oncall).await.expect("team 2");
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert_eq!(
        sorted(st.entitlements),
        sorted(vec![
            org("member"),
            Entitlement::new("team", "engineering").with_role("member"),
            Entitlement::new("team", "oncall").with_role("member"),
        ])
    );
    // invalid roles never reach GitHub
    let e = c.grant(&jdoe, &org("emperor")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    let e = c
        .grant(&jdoe, &Entitlement::new("group", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);

    // revoke: the admin role of a non-owner is a no-op, a team (twice: idempotent)
    c.revoke(&jdoe, &org("admin")).await.expect("not an owner");
    for _ in 0..2 {
        c.revoke(&jdoe, &Entitlement::new("team", "oncall"))
            .await
            .expect("revoke team");
    }
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert_eq!(
        sorted(st.entitlements),
        sorted(vec![
            org("member"),
            Entitlement::new("team", "engineering").with_role("member")
        ])
    );

    // list: per_page=2, following Link rel="next" (re-based on our endpoint, so through prism)
    let mut logins = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let p = c.list_accounts(token.as_deref()).await.expect("list");
        pages += 1;
        logins.extend(p.accounts.iter().map(|a| a.account.key.clone()));
        match p.next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    logins.sort();
    assert_eq!(logins, vec!["hub-admin", "jdoe", "legacy"]);
    assert!(pages >= 2, "{pages}");
    let pages_through_prism = s
        .watcher
        .recorded()
        .iter()
        .filter(|r| r.path.starts_with("/orgs/acme/members?"))
        .count();
    assert_eq!(pages_through_prism, pages);

    // disable = removal from the org; enable adds back as member
    c.set_enabled(&legacy, false).await.expect("disable");
    assert!(c.read(&legacy).await.unwrap().is_none());
    c.set_enabled(&legacy, false).await.expect("disable twice");
    c.set_enabled(&legacy, true).await.expect("enable");
    assert_eq!(
        c.read(&legacy).await.unwrap().unwrap().entitlements,
        vec![org("member")]
    );

    // delete; again is success; revoke on a gone member is success
    c.delete(&jdoe).await.expect("delete");
    assert!(c.read(&jdoe).await.unwrap().is_none());
    c.delete(&jdoe).await.expect("delete again");
    c.revoke(&jdoe, &Entitlement::new("team", "engineering"))
        .await
        .expect("revoke gone");

    // the hub may make a member an owner; from then on it never touches the membership
    let bulk1 = c.create_or_adopt(&spec("bulk1")).await.expect("create");
    c.grant(&bulk1, &org("admin")).await.expect("org admin");
    let before = c.read(&bulk1).await.unwrap().unwrap();
    assert!(before.entitlements.contains(&org("admin")));
    let puts = s.router_saw("PUT", "/orgs/acme/memberships/bulk1");
    let refused = [
        c.revoke(&bulk1, &org("admin")).await.unwrap_err(),
        c.revoke(&bulk1, &org("member")).await.unwrap_err(),
        c.grant(&bulk1, &eng).await.unwrap_err(),
        c.set_enabled(&bulk1, false).await.unwrap_err(),
        c.delete(&bulk1).await.unwrap_err(),
        c.update(&spec("bulk1")).await.unwrap_err(),
    ];
    for e in refused {
        assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    }
    assert_eq!(c.read(&bulk1).await.unwrap().unwrap(), before);
    assert_eq!(s.router_saw("PUT", "/orgs/acme/memberships/bulk1"), puts);
    assert_eq!(s.router_saw("DELETE", "/orgs/acme/memberships/bulk1"), 0);

    // a token without owner rights: permanent
    let plain = s.connector(PLAIN_TOKEN, 2);
    let e = plain.create_or_adopt(&spec("rroe")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("403"), "{e}");
    assert!(!format!("{e} {e:?} {plain:?}").contains(PLAIN_TOKEN));
    assert!(!format!("{c:?}").contains(ADMIN_TOKEN));

    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pending_invitations_list_and_cancel() {
    let s = Stack::start().await;
    s.invitations.lock().unwrap().extend([
        invitation(1001, Some("rroe"), Some("rroe@example.com")),
        invitation(1002, None, Some("new.hire@example.com")),
        invitation(1003, Some("bulk1"), None),
    ]);
    let c = s.connector(ADMIN_TOKEN, 50);
    let inv = c.pending_invitations().await.expect("list invitations");
    assert_eq!(inv.len(), 3);
    assert_eq!(inv[1].email.as_deref(), Some("new.hire@example.com"));
    assert_eq!(inv[0].login.as_deref(), Some("rroe"));
    c.cancel_invitation(1002).await.expect("cancel");
    c.cancel_invitation(1002).await.expect("cancel again");
    // leaving cancels what is pending for the login
    c.delete(&AccountRef::new("rroe"))
        .await
        .expect("delete invitee");
    c.delete(&AccountRef::new("bulk1"))
        .await
        .expect("delete invitee");
    assert!(c.pending_invitations().await.unwrap().is_empty());
    s.assert_no_violations();
}

/// emulate accepts any unknown token (a fidelity gap), so GitHub's documented answer to a bad
/// token, `401 {"message":"Bad credentials"}`, comes from a tiny responder; the stand-in's own
/// permission check (403 for a non-owner token) is covered in the lifecycle test.
#[tokio::test]
async fn github_bad_token_is_permanent_and_never_printed() {
    let r = Responder::canned(
        401,
        &[("content-type", "application/json; charset=utf-8")],
        r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#,
    )
    .await;
    let bad = "ghp_this_token_does_not_exist_0123456789";
    let mut cfg = GitHubConfig::new("github-test", "acme", Secret::new(bad));
    cfg.api_base = format!("http://{}", r.addr);
    let c = GitHubConnector::new(cfg).unwrap();
    let e = c.read(&AccountRef::new("legacy")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("401 Bad credentials"), "{e}");
    assert!(!format!("{e} {e:?} {c:?}").contains(bad));
    assert_eq!(
        r.recorded()[0]
            .header("authorization")
            .map(|h| h.contains(bad)),
        Some(true)
    );
}

fn canned_connector(r: &Responder) -> GitHubConnector {
    let mut cfg = GitHubConfig::new("github-test", "acme", Secret::new("ghp_canned_token_value"));
    cfg.api_base = format!("http://{}", r.addr);
    cfg.timeout = Duration::from_secs(5);
    cfg.teams = vec!["eng".into()];
    GitHubConnector::new(cfg).unwrap()
}

#[tokio::test]
async fn github_rate_limits_are_retryable_with_retry_after() {
    // primary: 429 + Retry-After
    let r = Responder::canned(
        429,
        &[("retry-after", "5")],
        r#"{"message":"Too Many Requests"}"#,
    )
    .await;
    let e = canned_connector(&r)
        .read(&AccountRef::new("x"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.retry_after),
        (ErrorKind::Retryable, Some(Duration::from_secs(5))),
        "{e}"
    );
    let req = &r.recorded()[0];
    assert_eq!(
        req.header("authorization"),
        Some("Bearer ghp_canned_token_value")
    );
    assert_eq!(req.header("x-github-api-version"), Some("2022-11-28"));
    assert!(!e.message.contains("ghp_canned_token_value"));

    // primary exhausted: 403 + x-ratelimit-remaining: 0 -> wait until x-ratelimit-reset
    let reset = (chrono::Utc::now().timestamp() + 120).to_string();
    let r = Responder::canned(
        403,
        &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset.as_str())],
        r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#,
    )
    .await;
    let e = canned_connector(&r).list_accounts(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e}");
    let wait = e.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );

    // secondary: 403 with retry-after
    let r = Responder::canned(
        403,
        &[("retry-after", "30")],
        r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#,
    )
    .await;
    let e = canned_connector(&r)
        .grant(&AccountRef::new("x"), &Entitlement::new("team", "eng"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.retry_after),
        (ErrorKind::Retryable, Some(Duration::from_secs(30))),
        "{e}"
    );

    // secondary without headers: at least a minute
    let r = Responder::canned(
        403,
        &[],
        r#"{"message":"You have exceeded a secondary rate limit."}"#,
    )
    .await;
    let e = canned_connector(&r)
        .delete(&AccountRef::new("x"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.retry_after),
        (ErrorKind::Retryable, Some(Duration::from_secs(60))),
        "{e}"
    );

    // 5xx retryable; 422 permanent with GitHub's error JSON in the message
    let r = Responder::canned(502, &[], "").await;
    assert!(canned_connector(&r)
        .read(&AccountRef::new("x"))
        .await
        .unwrap_err()
        .is_retryable());
    let r = Responder::canned(
        422,
        &[],
        r#"{"message":"Validation Failed","errors":[{"resource":"Membership","code":"invalid"}]}"#,
    )
    .await;
    let e = canned_connector(&r)
        .create_or_adopt(&spec("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(e.message.contains("Validation Failed"), "{e}");
}

#[tokio::test]
async fn github_timeout_is_retryable() {
    let addr = silent_listener().await;
    let mut cfg = GitHubConfig::new("github-test", "acme", Secret::new("ghp_x"));
    cfg.api_base = format!("http://{addr}");
    cfg.timeout = Duration::from_millis(500);
    let c = GitHubConnector::new(cfg).unwrap();
    let start = Instant::now();
    let e = c.read(&AccountRef::new("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
}
