//! The Okta connector against a stateful fake of Okta's Management API (support/okta_fake.rs),
//! which enforces SSWS auth, required profile fields, duplicate logins and the user lifecycle
//! state machine.

#[path = "support/okta_fake.rs"]
mod okta_fake;
#[path = "support/scim_http.rs"]
mod scim_http;

use std::time::{Duration, Instant};

use connectors::okta::{OktaConnector, OktaDisable, OktaGroupRef, OktaSettings};
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Capability, Connector, Entitlement, ErrorKind};
use serde_json::{json, Value};

fn spec(login: &str, first: &str) -> AccountSpec {
    AccountSpec {
        account: AccountRef::new(login),
        attributes: json!({
            "userName": login,
            "name": {"givenName": first, "familyName": "Doe"},
            "emails": [{"value": login, "primary": true}],
            "displayName": format!("{first} Doe"),
        })
        .as_object()
        .cloned()
        .expect("object"),
    }
}

fn connector(fake: &okta_fake::OktaFake, tweak: impl FnOnce(&mut OktaSettings)) -> OktaConnector {
    let mut settings = OktaSettings::new(fake.base_url());
    settings.timeout_ms = 5_000;
    tweak(&mut settings);
    OktaConnector::new("okta-acme", settings, Secret::new(okta_fake::TOKEN)).expect("connector")
}

#[tokio::test]
async fn okta_joiner_mover_leaver() {
    let fake = okta_fake::start().await;
    let eng = fake.add_group("Engineering");
    let c = connector(&fake, |s| {
        s.federated = true;
        s.groups_by = OktaGroupRef::Name;
        s.page_size = 2;
    });
    let caps = c.capabilities();
    assert!(caps.supports(Capability::RevokeSessions));
    assert!(caps.supports(Capability::ListAccounts));

    // create (federated → ACTIVE), again → adopt
    let acct = c
        .create_or_adopt(&spec("jdoe@example.com", "Jane"))
        .await
        .expect("create");
    let uid = acct.id.clone().expect("id");
    assert_eq!(fake.user(&uid).expect("user").status, "ACTIVE");
    let again = c
        .create_or_adopt(&spec("jdoe@example.com", "Jane"))
        .await
        .expect("adopt");
    assert_eq!(again.id.as_deref(), Some(uid.as_str()));
    assert_eq!(fake.state.lock().expect("lock").users.len(), 1);

    // adopt a pre-existing user and bring its profile to the spec
    let pre = fake.add_active_user("asmith@example.com", "Old");
    let adopted = c
        .create_or_adopt(&spec("asmith@example.com", "Alex"))
        .await
        .expect("adopt");
    assert_eq!(adopted.id.as_deref(), Some(pre.as_str()));
    assert_eq!(fake.user(&pre).expect("user").profile["firstName"], "Alex");

    // update
    c.update(&spec("jdoe@example.com", "Janet"))
        .await
        .expect("update");
    assert_eq!(fake.user(&uid).expect("user").profile["firstName"], "Janet");

    // grant / read back / revoke (by group name)
    let group = Entitlement::new("group", "Engineering");
    c.grant(&acct, &group).await.expect("grant");
    c.grant(&AccountRef::new("jdoe@example.com"), &group)
        .await
        .expect("grant again");
    assert_eq!(fake.members(&eng), vec![uid.clone()]);
    let state = c
        .read(&AccountRef::new("jdoe@example.com"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(state.account.id.as_deref(), Some(uid.as_str()));
    assert!(state.enabled);
    assert_eq!(state.entitlements, vec![group.clone()]);
    assert_eq!(state.attributes["name"]["givenName"], "Janet");
    c.revoke(&acct, &group).await.expect("revoke");
    c.revoke(&acct, &group).await.expect("revoke again");
    assert!(fake.members(&eng).is_empty());
    let err = c
        .grant(&acct, &Entitlement::new("group", "Nope"))
        .await
        .expect_err("no group");
    assert_eq!(err.kind, ErrorKind::Permanent);

    // leaver: suspend + clear sessions; idempotent
    fake.set_sessions(&uid, 3);
    c.set_enabled(&acct, false).await.expect("suspend");
    c.set_enabled(&acct, false).await.expect("suspend again");
    assert_eq!(fake.user(&uid).expect("user").status, "SUSPENDED");
    c.revoke_sessions(&acct).await.expect("sessions");
    let u = fake.user(&uid).expect("user");
    assert_eq!((u.sessions, u.oauth_tokens), (0, 3));
    c.revoke_credentials(&acct).await.expect("oauth tokens");
    assert_eq!(fake.user(&uid).expect("user").oauth_tokens, 0);
    assert!(!c.read(&acct).await.expect("read").expect("exists").enabled);

    // rehire: unsuspend
    c.set_enabled(&acct, true).await.expect("unsuspend");
    c.set_enabled(&acct, true).await.expect("enable again");
    assert_eq!(fake.user(&uid).expect("user").status, "ACTIVE");

    // list with Link pagination (2 per page)
    c.create_or_adopt(&spec("third@example.com", "T"))
        .await
        .expect("third");
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let p = c.list_accounts(page.as_deref()).await.expect("list");
        assert!(p.accounts.len() <= 2);
        seen.extend(p.accounts.into_iter().map(|a| a.account.key));
        match p.next {
            Some(n) => page = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "asmith@example.com",
            "jdoe@example.com",
            "third@example.com"
        ]
    );

    // delete: deactivate then delete; gone is success
    c.delete(&acct).await.expect("delete");
    assert!(fake.user(&uid).is_none());
    c.delete(&acct).await.expect("delete again");
    assert!(c.read(&acct).await.expect("read").is_none());
    c.revoke_sessions(&acct)
        .await
        .expect("no user, no sessions");
}

#[tokio::test]
async fn okta_state_machine_is_respected() {
    let fake = okta_fake::start().await;
    // Not federated: created without credentials → PROVISIONED, which cannot be suspended, so
    // disabling deactivates.
    let c = connector(&fake, |_| {});
    let acct = c
        .create_or_adopt(&spec("prov@example.com", "P"))
        .await
        .expect("create");
    let uid = acct.id.clone().expect("id");
    assert_eq!(fake.user(&uid).expect("user").status, "PROVISIONED");
    c.set_enabled(&acct, false).await.expect("disable");
    assert_eq!(fake.user(&uid).expect("user").status, "DEPROVISIONED");
    c.set_enabled(&acct, true).await.expect("reactivate");
    assert_eq!(fake.user(&uid).expect("user").status, "PROVISIONED");

    // Deactivate mode on an ACTIVE user
    let d = connector(&fake, |s| s.disable = OktaDisable::Deactivate);
    let active = fake.add_active_user("act@example.com", "A");
    d.set_enabled(&AccountRef::new("act@example.com"), false)
        .await
        .expect("deactivate");
    assert_eq!(fake.user(&active).expect("user").status, "DEPROVISIONED");
    d.set_enabled(&AccountRef::new("act@example.com"), false)
        .await
        .expect("again");

    // Okta refuses an incomplete profile: permanent, with Okta's causes
    let bad = AccountSpec {
        account: AccountRef::new("x@example.com"),
        attributes: json!({"userName": "x@example.com"})
            .as_object()
            .cloned()
            .expect("object"),
    };
    let err = c.create_or_adopt(&bad).await.expect_err("400");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("E0000001"), "{err}");
    assert!(
        err.message
            .contains("firstName: The field cannot be left blank"),
        "{err}"
    );

    // The fake itself refuses what Okta refuses
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/api/v1/users/{active}/lifecycle/suspend",
            fake.base_url()
        ))
        .header("Authorization", format!("SSWS {}", okta_fake::TOKEN))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400, "suspend from DEPROVISIONED");
    let r = http
        .get(format!("{}/api/v1/users/me", fake.base_url()))
        .bearer_auth(okta_fake::TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401, "Bearer is not SSWS");
}

#[tokio::test]
async fn okta_errors_rate_limits_and_timeouts() {
    let fake = okta_fake::start().await;

    // invalid token: E0000011, permanent, token never printed
    let mut settings = OktaSettings::new(fake.base_url());
    settings.timeout_ms = 5_000;
    let wrong = "00wrongOktaTokenValue";
    let bad = OktaConnector::new("okta", settings, Secret::new(wrong)).expect("connector");
    let err = bad
        .read(&AccountRef::new("jdoe@example.com"))
        .await
        .expect_err("401");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("E0000011"), "{err}");
    assert!(!format!("{err} {err:?} {bad:?}").contains(wrong));

    // rate limit: E0000047 with X-Rate-Limit-Reset → retryable with a wait
    let c = connector(&fake, |_| {});
    fake.state.lock().expect("lock").rate_limited = 1;
    let err = c
        .read(&AccountRef::new("jdoe@example.com"))
        .await
        .expect_err("429");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message.contains("E0000047"), "{err}");
    let wait = err.retry_after.expect("retry after");
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(3),
        "{wait:?}"
    );
    assert!(c
        .read(&AccountRef::new("jdoe@example.com"))
        .await
        .expect("read")
        .is_none());

    // timeout
    let silent = scim_http::serve_silent().await;
    let mut settings = OktaSettings::new(silent.url(""));
    settings.timeout_ms = 500;
    let slow = OktaConnector::new("okta", settings, Secret::new(okta_fake::TOKEN)).expect("c");
    let started = Instant::now();
    let err = slow
        .revoke_sessions(&AccountRef::new("u"))
        .await
        .expect_err("timeout");
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn settings_deserialize_from_policy_json() {
    let s: OktaSettings = serde_json::from_value::<OktaSettings>(json!({
        "base_url": "https://acme.okta.com", "disable": "deactivate", "groups_by": "name",
        "federated": true
    }))
    .expect("settings");
    assert_eq!(s.disable, OktaDisable::Deactivate);
    let _ = Value::Null;
}

/// Super/org admins and protected logins are never adopted, changed, suspended, deleted,
/// regrouped or signed out (refused, state unchanged); `adopt = "never"` refuses existing users;
/// an ordinary user is still managed.
#[tokio::test]
async fn okta_admins_and_protected_logins_are_never_touched() {
    let fake = okta_fake::start().await;
    let eng = fake.add_group("Engineering");
    let boss = fake.add_active_user("boss@example.com", "Boss");
    fake.assign_role(&boss, "SUPER_ADMIN");
    let glass = fake.add_active_user("break-glass-1@example.com", "Glass");
    let plain = fake.add_active_user("plain@example.com", "Plain");
    let c = connector(&fake, |s| {
        s.protected_accounts = vec!["BREAK-GLASS-*".into()];
    });
    for (login, id) in [
        ("boss@example.com", &boss),
        ("break-glass-1@example.com", &glass),
    ] {
        let before = fake.user(id).expect("user");
        let acct = AccountRef::new(login).with_id(id.clone());
        let group = Entitlement::new("group", eng.clone());
        for e in [
            c.create_or_adopt(&spec(login, "Mallory"))
                .await
                .expect_err("refused"),
            c.update(&spec(login, "Mallory"))
                .await
                .expect_err("refused"),
            c.set_enabled(&acct, false).await.expect_err("refused"),
            c.delete(&acct).await.expect_err("refused"),
            c.grant(&acct, &group).await.expect_err("refused"),
            c.revoke_sessions(&acct).await.expect_err("refused"),
            c.revoke_credentials(&acct).await.expect_err("refused"),
        ] {
            assert_eq!(e.kind, ErrorKind::Refused, "{login}: {e}");
        }
        let after = fake.user(id).expect("user");
        assert_eq!(
            (
                &after.status,
                &after.profile,
                after.sessions,
                after.oauth_tokens
            ),
            (
                &before.status,
                &before.profile,
                before.sessions,
                before.oauth_tokens
            ),
            "{login}"
        );
        assert!(fake.members(&eng).is_empty());
    }
    // an admin role outside `protected_roles` does not protect; `[]` turns the lookup off
    fake.assign_role(&plain, "READ_ONLY_ADMIN");
    let acct = AccountRef::new("plain@example.com").with_id(plain.clone());
    c.revoke_sessions(&acct).await.expect("ordinary user");
    assert_eq!(fake.user(&plain).expect("user").sessions, 0);
    let no_roles = connector(&fake, |s| s.protected_roles = Vec::new());
    no_roles
        .revoke_sessions(&AccountRef::new("boss@example.com"))
        .await
        .expect("roles not checked");
    // adopt = "never": an existing user is refused, a new one is created
    let never = connector(&fake, |s| s.adopt = connectors::ownership::Adopt::Never);
    let e = never
        .create_or_adopt(&spec("plain@example.com", "Plain"))
        .await
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    never
        .create_or_adopt(&spec("fresh@example.com", "Fresh"))
        .await
        .expect("create");
}

/// Okta resolves `/users/{x}` as an id, a login, a login's short name or `me` (the API token's
/// owner). A userName of `me`, or of another user's short name, used to adopt that user (the red
/// team's run renamed the token's service account) and could then suspend it; now the answer
/// must carry the login asked for, `me` is refused outright, and an id lookup must return that
/// id. Nothing is changed in Okta.
#[tokio::test]
async fn okta_lookups_that_resolve_to_another_user_are_refused() {
    let fake = okta_fake::start().await;
    let svc = fake.add_active_user("svc-scimhub@example.com", "Service");
    fake.set_token_owner(&svc);
    let ceo = fake.add_active_user("ceo@example.com", "Chief");
    let c = connector(&fake, |_| {});
    let before: Vec<_> = [&svc, &ceo]
        .iter()
        .map(|id| fake.user(id).expect("user"))
        .map(|u| (u.status, u.profile, u.sessions))
        .collect();
    for login in ["me", "ME", "ceo", "svc-scimhub"] {
        let acct = AccountRef::new(login);
        for e in [
            c.create_or_adopt(&spec(login, "Mallory")).await.map(|_| ()),
            c.update(&spec(login, "Mallory")).await,
            c.set_enabled(&acct, false).await,
            c.delete(&acct).await,
            c.revoke_sessions(&acct).await,
            c.read(&acct).await.map(|_| ()),
        ] {
            let e = e.expect_err(login);
            assert_eq!(e.kind, ErrorKind::Refused, "{login}: {e}");
        }
    }
    // an id lookup answered with another id (`me` as a stored id) is refused too
    let e = c
        .set_enabled(&AccountRef::new("x@example.com").with_id("me"), false)
        .await
        .expect_err("id me");
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    let after: Vec<_> = [&svc, &ceo]
        .iter()
        .map(|id| fake.user(id).expect("user"))
        .map(|u| (u.status, u.profile, u.sessions))
        .collect();
    assert_eq!(after, before);
    // the full login, in any case, is still found and managed
    c.set_enabled(&AccountRef::new("CEO@example.com"), false)
        .await
        .expect("same login");
    assert_eq!(fake.user(&ceo).expect("user").status, "SUSPENDED");
}

/// An endpoint whose group listing answers every page with the same `next` cursor does not
/// hold the worker forever: the read fails (permanently) once the cursor repeats.
#[tokio::test]
async fn a_group_listing_whose_cursor_never_moves_is_an_error() {
    let server = scim_http::serve(|req: scim_http::Request| {
        if req.raw_path.ends_with("/groups") {
            return scim_http::Response::json(200, json!([])).with_header(
                "Link",
                "<http://127.0.0.1/api/v1/users/00u1/groups?after=same&limit=200>; rel=\"next\"",
            );
        }
        scim_http::Response::json(
            200,
            json!({"id": "00u1", "status": "ACTIVE",
                   "profile": {"login": "jdoe@example.com", "email": "jdoe@example.com"}}),
        )
    })
    .await;
    let mut settings = OktaSettings::new(server.url(""));
    settings.timeout_ms = 5_000;
    let c = OktaConnector::new("okta", settings, Secret::new(okta_fake::TOKEN)).expect("c");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        c.read(&AccountRef::new("jdoe@example.com")),
    )
    .await
    .expect("the listing ends")
    .expect_err("a cursor that never moves");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.message.contains("repeats cursor"), "{err}");
}
