//! Time-bound emergency grants (issue #15, docs/grants.md) with the engine's test clock: a grant
//! provisioned through the outbox and taken away by its expiry timer when the clock moves past
//! its end; a grant that needs approval gives nothing before it is approved; refusals (longer
//! than `[grants] max_duration`, unknown connector, inactive user, a blocking SoD rule); the
//! SoD exception path; a leaver's grants end; drift reconciliation expects an active grant's
//! entitlement and not an expired one; a real AWS IAM stand-in (moto) for one of them; the admin
//! API routes.

use chrono::Duration;
use connectors::{AccountRef, Connector, Entitlement};
use diesel::RunQueryDsl;
use scim_server::admin::grants::{GrantCreated, GrantRequest};
use scim_server::admin::{in_tx, AdminError};
use scim_server::auth::UserRef;
use scim_server::store::{audit, grants, notifications, outbox};
use serde_json::{json, Value};

use super::{user, Env, POLICY};

macro_rules! grant_backends {
    ($policy:expr; $($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, &$policy) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, &$policy) { super::$name(e) } } )* }
    };
}

/// The engine tests' policy (no security approvers, no links).
mod plain {
    use super::*;
    grant_backends!(super::super::POLICY;
        grant_is_provisioned_and_expires_by_moved_clock,
        refusals_are_clear_and_write_nothing,
        a_leavers_grants_end_and_a_rehire_does_not_get_them_back,
        revoking_early_takes_the_access_away,
        grants_of_a_period_for_the_report,
        a_request_overlapping_one_for_the_same_grant_is_refused,
    );
}

/// With a security approver (`sec`) and one-click links.
mod approvals {
    use super::*;
    grant_backends!(super::super::super::admin_api::policy();
        approval_required_grant_gives_nothing_before_approval,
        a_rejected_grant_gives_nothing,
        admin_api_creates_lists_and_revokes,
        an_approval_meeting_an_expiry_in_flight_is_refused,
        a_grant_that_waits_for_approval_is_refused_to_an_asker_who_is_nobody,
    );
}

/// The SoD rule asks security for an exception instead of blocking.
mod sod_approval {
    use super::*;
    grant_backends!(super::super::super::admin_api::policy().replace("action = \"block\"", "action = \"approval\"");
        a_grant_breaking_an_approval_sod_rule_waits_for_the_exception,
    );
}

/// With drift reconciliation on erp, entitlements outside the profiles fixed.
mod drift {
    use super::*;
    grant_backends!(super::super::super::drift::drift_policy();
        drift_expects_an_active_grant_and_not_an_expired_one,
        a_grant_in_moto_iam_is_added_and_expires_by_moved_clock,
    );
}

/// `user` asks for a grant of `ent` for themselves (a directory user asks, as a grant that
/// waits for approval requires).
fn ask(env: &Env, user: &str, ent: &str, hours: i64) -> Result<GrantCreated, AdminError> {
    ask_as(env, user, ent, hours, Some(user))
}

fn ask_as(
    env: &Env,
    user: &str,
    ent: &str,
    hours: i64,
    asker: Option<&str>,
) -> Result<GrantCreated, AdminError> {
    let asker = asker.map(|a| UserRef::UserName(a.to_string()));
    env.admin.create_grant(&GrantRequest {
        user,
        entitlement: ent,
        duration: Duration::hours(hours),
        reason: "incident INC-42",
        requested_by: "oncall",
        requester: asker.as_ref(),
    })
}

/// A grant that waits for approval needs to know who asked, who may not approve it: asked by a
/// credential that acts as nobody (or names nobody in the directory) it is refused and nothing
/// is written. One that needs no approval may still be asked so.
fn a_grant_that_waits_for_approval_is_refused_to_an_asker_who_is_nobody(env: Env) {
    env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    for asker in [None, Some("no-such-user")] {
        match ask_as(&env, "cy", "github:team:secret", 2, asker) {
            Err(AdminError::Invalid(m)) => {
                assert!(m.contains("the asker must be a directory user"), "{m}")
            }
            other => panic!("{asker:?}: {other:?}"),
        }
    }
    assert!(env.admin.grants(None, false).unwrap().is_empty());
    assert!(
        ask(&env, "cy", "github:team:secret", 2)
            .unwrap()
            .waits_for_approval
    );
}

/// The approval request `id` as the admin API lists it.
fn approval_row(env: &Env, id: &str) -> scim_server::store::approvals::ApprovalRow {
    env.admin
        .approvals(None)
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap()
}

fn grant_state(env: &Env, id: &str) -> String {
    in_tx(&env.store, |c| grants::get(c, id))
        .unwrap()
        .unwrap()
        .state
        .as_str()
        .to_string()
}

/// `(outcome)` of each `emergency_grant` audit entry of `user_id`, in order.
fn grant_audit(env: &Env, user_id: &str) -> Vec<String> {
    let mut rows = in_tx(&env.store, |c| audit::list(c, Some(user_id))).unwrap();
    rows.sort_by_key(|a| a.id);
    rows.into_iter()
        .filter(|a| a.action == "emergency_grant")
        .map(|a| a.outcome)
        .collect()
}

fn ops_on(env: &Env, app: &str, key: &str) -> Vec<String> {
    env.app(app)
        .effects()
        .iter()
        .filter(|e| e.key == key)
        .map(|e| e.op.clone())
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A request for a grant while another request's transaction for the same user and entitlement
/// is open (another admin, another node): the second waits for the first and is refused with
/// 409, so one grant exists. Before the decision locked the user's row, its open-grant check
/// did not see the first's uncommitted grant and both were made.
fn a_request_overlapping_one_for_the_same_grant_is_refused(env: Env) {
    env.create_user(user("bo", "Employee", "Sales", "Rep"));
    let cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    // bo's grant gives the stored form of the entitlement the concurrent request writes.
    let stored = ask(&env, "bo", "github:team:eng", 4).unwrap();
    let row = in_tx(&env.store, |c| {
        grants::get(c, stored.grant["id"].as_str().unwrap())
    })
    .unwrap()
    .unwrap();
    let (locked, after_lock) = std::sync::mpsc::channel::<()>();
    let now = env.engine.now();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            in_tx(&env.store, |c| {
                // What the first request holds while it decides: cy's row, then its grant.
                if matches!(c, scim_server::store::DbConnection::Postgresql(_)) {
                    diesel::sql_query("SELECT id FROM resources WHERE id = $1 FOR UPDATE")
                        .bind::<diesel::sql_types::Text, _>(&cy)
                        .execute(c)?;
                }
                grants::insert(
                    c,
                    &grants::NewGrant {
                        id: "first-request",
                        user_id: &cy,
                        connector: &row.connector,
                        entitlement: &row.entitlement,
                        reason: "incident INC-41",
                        requested_by: "oncall-1",
                        expires: now + Duration::hours(4),
                        state: grants::GrantState::Active,
                        approval_id: None,
                    },
                    now,
                )?;
                locked.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
        });
        after_lock.recv().unwrap();
        let second = ask(&env, "cy", "github:team:eng", 4);
        first.join().unwrap().unwrap();
        assert!(
            matches!(&second, Err(AdminError::Conflict(m)) if m.contains("first-request")),
            "{second:?}"
        );
    });
    let open = in_tx(&env.store, |c| grants::open_for_user(c, &cy)).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
}

fn grant_is_provisioned_and_expires_by_moved_clock(env: Env) {
    let cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    assert_eq!(
        env.holds("github", "cy"),
        None,
        "no profile gives cy github"
    );
    // github team:eng needs no approval where a profile grants it: active at once.
    let g = ask(&env, "cy", "github:team:eng", 4).unwrap();
    assert!(!g.waits_for_approval);
    assert_eq!(g.grant["state"], "active");
    assert_eq!(g.grant["label"], "github:team:eng");
    let id = g.grant["id"].as_str().unwrap().to_string();
    env.run();
    assert_eq!(
        env.holds("github", "cy"),
        Some((true, vec!["team:eng".into()]))
    );
    assert_eq!(ops_on(&env, "github", "cy"), vec!["create", "grant"]);
    // Another event re-plans cy: the grant stays.
    env.patch_user(&cy, |d| {
        d.insert("title".into(), json!("Senior Rep"));
    });
    env.run();
    assert_eq!(
        env.holds("github", "cy"),
        Some((true, vec!["team:eng".into()]))
    );
    let active = env.admin.grants(Some("cy"), true).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["in_force"], true);
    // A minute before the end nothing changes.
    env.clock.advance(Duration::hours(4) - Duration::minutes(1));
    env.run();
    assert_eq!(grant_state(&env, &id), "active");
    assert_eq!(
        env.holds("github", "cy").unwrap().1,
        vec!["team:eng".to_string()]
    );
    // The clock moves past the end: the timer expires the grant and the outbox removes it
    // (the account goes too: nothing else gives cy github).
    env.clock.advance(Duration::minutes(2));
    env.run();
    assert_eq!(grant_state(&env, &id), "expired");
    assert_eq!(env.holds("github", "cy"), Some((false, vec![])));
    let ops = ops_on(&env, "github", "cy");
    assert!(ops.contains(&"revoke".to_string()), "{ops:?}");
    let done = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(&cy), Some(outbox::OutboxStatus::Done), 100)
    })
    .unwrap();
    assert!(done.iter().any(|o| o.op.contains("revoke")), "{done:?}");
    assert!(env.admin.grants(Some("cy"), true).unwrap().is_empty());
    assert_eq!(
        grant_audit(&env, &cy),
        vec!["requested", "activated", "expired"]
    );
    // Exactly once: later runs change nothing.
    env.clock.advance(Duration::days(1));
    env.run();
    assert_eq!(
        ops_on(&env, "github", "cy")
            .iter()
            .filter(|o| *o == "grant")
            .count(),
        1
    );
}

fn refusals_are_clear_and_write_nothing(env: Env) {
    let _eve = env.create_user(user("eve", "Employee", "Finance", "Payable clerk"));
    let _cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    let mut gone = user("gone", "Employee", "Sales", "Rep");
    gone["active"] = json!(false);
    env.create_user(gone);
    env.run();
    let msg = |r: Result<GrantCreated, AdminError>| match r {
        Err(e) => e.to_string(),
        Ok(g) => panic!("accepted: {g:?}"),
    };
    let long = msg(ask(&env, "cy", "github:team:eng", 96));
    assert!(
        long.contains("at most 3d")
            && long.contains("max_duration")
            && long.contains("4d was asked"),
        "{long}"
    );
    let unknown = msg(ask(&env, "cy", "jira:group:admins", 1));
    assert!(unknown.contains("no connector \"jira\""), "{unknown}");
    let shape = msg(ask(&env, "cy", "github-team-eng", 1));
    assert!(shape.contains("CONNECTOR:KIND:ID"), "{shape}");
    let nobody = msg(ask(&env, "nobody", "github:team:eng", 1));
    assert!(nobody.contains("not found"), "{nobody}");
    let left = msg(ask(&env, "gone", "github:team:eng", 1));
    assert!(left.contains("never be provisioned"), "{left}");
    let mut cora = user("cora", "Contractor", "Finance", "Payable clerk");
    cora["urn:example:acme:2.0:User"] = json!({"contractEnd": "2025-04-30"});
    env.create_user(cora);
    let excluded = msg(ask(&env, "cora", "erp:role:badge", 1));
    assert!(excluded.contains("exclude_connectors"), "{excluded}");
    // eve holds erp role:ap; approving payments too breaks the blocking SoD rule.
    let sod = msg(ask(&env, "eve", "erp:role:approve", 1));
    assert!(
        sod.contains("pay-and-approve") && sod.contains("refused"),
        "{sod}"
    );
    // An entitlement no profile grants needs security approval, and this policy has no
    // security approver: refused rather than left undecidable.
    let undecidable = msg(ask(&env, "cy", "github:team:secret", 1));
    assert!(
        undecidable.contains("[approvals] security"),
        "{undecidable}"
    );
    let empty = env.admin.create_grant(&GrantRequest {
        user: "cy",
        entitlement: "github:team:eng",
        duration: Duration::hours(1),
        reason: "  ",
        requested_by: "oncall",
        requester: None,
    });
    assert!(msg(empty).contains("reason"));
    assert!(env.admin.grants(None, false).unwrap().is_empty());
    // A second open grant of the same entitlement is a conflict.
    ask(&env, "cy", "github:team:eng", 1).unwrap();
    let twice = ask(&env, "cy", "github:team:eng", 2);
    assert!(matches!(twice, Err(AdminError::Conflict(_))), "{twice:?}");
}

fn a_leavers_grants_end_and_a_rehire_does_not_get_them_back(env: Env) {
    let cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    let id = ask(&env, "cy", "github:team:eng", 8).unwrap().grant["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.run();
    assert!(env.holds("github", "cy").unwrap().0);
    env.patch_user(&cy, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    assert_eq!(grant_state(&env, &id), "revoked");
    assert_eq!(env.holds("github", "cy"), Some((false, vec![])));
    let row = in_tx(&env.store, |c| grants::get(c, &id)).unwrap().unwrap();
    assert_eq!(row.revoked_by.as_deref(), Some("engine"));
    // Rehired within the grant's window: the emergency access does not come back.
    env.patch_user(&cy, |d| {
        d.insert("active".into(), json!(true));
    });
    env.run();
    assert_eq!(env.holds("github", "cy"), Some((false, vec![])));
    assert_eq!(
        grant_audit(&env, &cy),
        vec!["requested", "activated", "revoked"]
    );
}

fn revoking_early_takes_the_access_away(env: Env) {
    let _cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    let id = ask(&env, "cy", "github:team:eng", 8).unwrap().grant["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.run();
    assert!(env.holds("github", "cy").unwrap().0);
    assert!(env.admin.revoke_grant(&id, "oncall", " ").is_err());
    let v = env
        .admin
        .revoke_grant(&id, "oncall", "incident closed")
        .unwrap();
    assert_eq!(v["state"], "revoked");
    assert_eq!(v["revoked_by"], "oncall");
    env.run();
    assert_eq!(env.holds("github", "cy"), Some((false, vec![])));
    assert!(matches!(
        env.admin.revoke_grant(&id, "oncall", "again"),
        Err(AdminError::Conflict(_))
    ));
    // Its expiry timer was cancelled: nothing happens at the old end.
    env.clock.advance(Duration::hours(9));
    env.run();
    assert_eq!(grant_state(&env, &id), "revoked");
}

fn approval_required_grant_gives_nothing_before_approval(env: Env) {
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let mut a = user("ada", "Employee", "Sales", "Rep");
    a["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
        json!({"value": mia});
    let ada = env.create_user(a);
    env.run();
    // The org admin role needs the manager's approval where the policy grants it.
    let g = ask(&env, "ada", "github:org:acme:admin", 8).unwrap();
    assert!(g.waits_for_approval);
    assert_eq!(g.grant["state"], "pending_approval");
    let req = g.approval.clone().unwrap();
    assert_eq!(
        (req.kind.as_str(), req.level.as_str()),
        ("grant", "manager")
    );
    env.run();
    assert_eq!(env.holds("github", "ada"), None, "nothing before approval");
    // The manager was asked, with links of her own.
    let notes = in_tx(&env.store, |c| notifications::list(c, Some(&ada))).unwrap();
    let asked: Vec<_> = notes
        .iter()
        .filter(|n| n.kind == "approval_request")
        .collect();
    assert!(
        asked
            .iter()
            .any(|n| n.recipients.contains(&"mia@example.com".to_string())
                && n.body.contains("emergency grant until")
                && n.body.contains("/links/")),
        "{asked:?}"
    );
    // ada cannot approve her own access.
    assert!(env.admin.approve(&req.id, &env.as_user("ada")).is_err());
    // mia follows the approve link of her mail.
    let mail = asked
        .iter()
        .find(|n| n.recipients.contains(&"mia@example.com".to_string()))
        .unwrap();
    let approve = mail
        .body
        .lines()
        .find_map(|l| l.strip_prefix("Approve: "))
        .unwrap();
    let token = approve.rsplit("/links/").next().unwrap();
    env.admin.follow_link(token).unwrap();
    let row = approval_row(&env, &req.id);
    assert_eq!(row.status.as_str(), "approved");
    assert_eq!(row.decided_as.as_deref(), Some("manager"));
    let id = g.grant["id"].as_str().unwrap();
    assert_eq!(grant_state(&env, id), "active");
    env.run();
    assert_eq!(
        env.holds("github", "ada").unwrap().1,
        vec!["org:acme".to_string()]
    );
    assert_eq!(
        grant_audit(&env, &ada),
        vec!["requested", "activated"],
        "approval activates"
    );
    // It still ends at the time asked for.
    env.clock.advance(Duration::hours(8) + Duration::seconds(1));
    env.run();
    assert_eq!(grant_state(&env, id), "expired");
    assert_eq!(env.holds("github", "ada"), Some((false, vec![])));
}

/// The manager approves while the grant's expiry is being committed (its timer, or another
/// node): the approval waits for it and is refused, and the request stays pending. Before the
/// decision locked the grant it checked, it read the grant still pending, recorded the
/// request as approved, and then found nothing to activate.
fn an_approval_meeting_an_expiry_in_flight_is_refused(env: Env) {
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let mut a = user("ada", "Employee", "Sales", "Rep");
    a["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
        json!({"value": mia});
    env.create_user(a);
    env.run();
    let g = ask(&env, "ada", "github:org:acme:admin", 8).unwrap();
    let req = g.approval.clone().unwrap();
    let id = g.grant["id"].as_str().unwrap().to_string();
    let (expiring, in_flight) = std::sync::mpsc::channel();
    let store = env.store.clone();
    let now = env.engine.now();
    let expiry = {
        let id = id.clone();
        std::thread::spawn(move || {
            in_tx(&store, |c| {
                assert!(grants::expire(c, &id, now)?);
                expiring.send(()).unwrap();
                // Open long enough for the approval to reach its check of the grant.
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
            .unwrap()
        })
    };
    in_flight.recv().unwrap();
    let decided = env.admin.approve(&req.id, &env.as_user("mia"));
    expiry.join().unwrap();
    assert!(
        matches!(&decided, Err(AdminError::Conflict(m)) if m.contains("expired")),
        "{decided:?}"
    );
    let row = approval_row(&env, &req.id);
    assert_eq!(row.status.as_str(), "pending");
    assert_eq!(grant_state(&env, &id), "expired");
    env.run();
    assert_eq!(env.holds("github", "ada"), None, "nothing was granted");
}

fn a_rejected_grant_gives_nothing(env: Env) {
    let _sec = env.create_user(user("sec", "Employee", "Security", "Analyst"));
    let _cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    // No profile grants this team: security decides.
    let g = ask(&env, "cy", "github:team:secret", 2).unwrap();
    let req = g.approval.clone().unwrap();
    assert_eq!(req.level.as_str(), "security");
    env.admin
        .reject(&req.id, &env.as_user("sec"), Some("not for sales"))
        .unwrap();
    let id = g.grant["id"].as_str().unwrap();
    assert_eq!(grant_state(&env, id), "rejected");
    env.run();
    assert_eq!(env.holds("github", "cy"), None);
    // A pending one past its end cannot be approved any more.
    let late = ask(&env, "cy", "github:team:secret", 1).unwrap();
    env.clock.advance(Duration::hours(2));
    env.run();
    assert_eq!(
        grant_state(&env, late.grant["id"].as_str().unwrap()),
        "expired"
    );
    let r = env
        .admin
        .approve(&late.approval.unwrap().id, &env.as_user("sec"));
    assert!(matches!(r, Err(AdminError::Conflict(_))), "{r:?}");
    env.run();
    assert_eq!(env.holds("github", "cy"), None);
}

fn a_grant_breaking_an_approval_sod_rule_waits_for_the_exception(env: Env) {
    let _sec = env.create_user(user("sec", "Employee", "Security", "Analyst"));
    let eve = env.create_user(user("eve", "Employee", "Finance", "Payable clerk"));
    env.run();
    assert_eq!(
        env.holds("erp", "eve"),
        Some((true, vec!["role:ap".into()]))
    );
    // role:approve needs no approval where its profile grants it, but with role:ap it breaks
    // the rule, which asks security for an exception.
    let g = ask(&env, "eve", "erp:role:approve", 4).unwrap();
    assert_eq!(g.sod_exception.as_deref(), Some("pay-and-approve"));
    assert_eq!(g.grant["state"], "active");
    env.run();
    assert_eq!(
        env.holds("erp", "eve"),
        Some((true, vec!["role:ap".into()])),
        "withheld until the exception is approved (the profile's role:ap stays)"
    );
    let pending = env.admin.approvals(Some("pending")).unwrap();
    let sod = pending
        .iter()
        .find(|a| a.kind.as_str() == "sod" && a.user_id == eve)
        .expect("a SoD exception request");
    env.admin.approve(&sod.id, &env.as_user("sec")).unwrap();
    env.run();
    let (_, ents) = env.holds("erp", "eve").unwrap();
    assert_eq!(ents, vec!["role:ap".to_string(), "role:approve".into()]);
    env.clock.advance(Duration::hours(5));
    env.run();
    assert_eq!(
        env.holds("erp", "eve"),
        Some((true, vec!["role:ap".into()]))
    );
}

fn admin_api_creates_lists_and_revokes(env: Env) {
    let srv = super::admin_api::Server::start(&env);
    let cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    let body = json!({"entitlement": "github:team:eng", "duration": "4h", "reason": "INC-7"});
    // SCIM clients are not administrators.
    let (s, _) = srv.post_as(
        &srv.scim_token,
        &format!("/users/{cy}/grants"),
        body.clone(),
    );
    assert_eq!(s, 403);
    let (s, v) = srv.post(
        &format!("/users/{cy}/grants"),
        json!({"entitlement": "github:team:eng", "duration": "100h", "reason": "INC-7"}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("max_duration"),
        "{v}"
    );
    let (s, v) = srv.post(&format!("/users/{cy}/grants"), body);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["waits_for_approval"], false);
    assert_eq!(v["grant"]["entitlement"]["kind"], "team");
    let id = v["grant"]["id"].as_str().unwrap().to_string();
    env.run();
    assert!(env.holds("github", "cy").unwrap().0);
    let (s, v) = srv.get("/grants?active=true");
    assert_eq!(s, 200);
    assert_eq!(v["totalResults"], 1);
    assert_eq!(v["Resources"][0]["id"], id.as_str());
    let (s, v) = srv.get("/grants?user=cy");
    assert_eq!((s, v["totalResults"].clone()), (200, json!(1)));
    let (s, v) = srv.post(&format!("/grants/{id}/revoke"), json!({}));
    assert_eq!(s, 400, "a revocation needs a reason: {v}");
    let (s, v) = srv.post(&format!("/grants/{id}/revoke"), json!({"reason": "done"}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "revoked");
    let (s, _) = srv.post(&format!("/grants/{id}/revoke"), json!({"reason": "done"}));
    assert_eq!(s, 409);
    env.run();
    assert_eq!(env.holds("github", "cy"), Some((false, vec![])));
    let (_, v) = srv.get("/grants?active=true");
    assert_eq!(v["totalResults"], 0);
    let (s, _) = srv.post("/grants/nope/revoke", json!({"reason": "x"}));
    assert_eq!(s, 404);
    let _: Value = v;
}

fn drift_expects_an_active_grant_and_not_an_expired_one(env: Env) {
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    // erp's badge group needs no approval where its profile grants it.
    let g = ask(&env, "fay", "erp:group:badge", 4).unwrap();
    assert_eq!(g.grant["state"], "active");
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["group:ap".into(), "group:badge".into()]))
    );
    let block = rt();
    let reconcile = || {
        block
            .block_on(scim_server::jobs::reconcile::run(
                &env.store,
                &env.engine,
                "erp",
                false,
            ))
            .unwrap()
    };
    let report = reconcile();
    assert!(
        report.counts.is_empty(),
        "an active grant is expected: {report:?}"
    );
    assert!(report.fixes.is_empty(), "{report:?}");
    // Expired: the outbox takes it away; put back by hand, it is drift, and fixed.
    env.clock.advance(Duration::hours(4) + Duration::minutes(1));
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["group:ap".into()]))
    );
    block
        .block_on(
            env.app("erp")
                .grant(&AccountRef::new("fay"), &Entitlement::new("group", "badge")),
        )
        .unwrap();
    let report = reconcile();
    assert_eq!(
        report.counts.get("entitlement_outside").copied(),
        Some(1),
        "an expired grant is not expected: {report:?}"
    );
    assert_eq!(report.fixes.len(), 1, "{report:?}");
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["group:ap".into()]))
    );
}

fn grants_of_a_period_for_the_report(env: Env) {
    use chrono::{TimeZone, Utc};
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2025, 3, 3, h, m, 0).unwrap();
    let _cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    // A: 09:00 to 13:00; its timer runs late, at 14:00.
    let a = ask(&env, "cy", "github:team:eng", 4).unwrap().grant["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.clock.set(at(14, 0));
    env.run();
    // B: 14:00, revoked at 14:20.
    let b = ask(&env, "cy", "github:team:eng", 1).unwrap().grant["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.clock.set(at(14, 20));
    env.admin.revoke_grant(&b, "oncall", "done").unwrap();
    let ids = |from, to| -> Vec<String> {
        env.admin
            .grants_in_period(from, to)
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect()
    };
    assert!(ids(at(8, 0), at(9, 0)).is_empty());
    assert_eq!(ids(at(10, 0), at(11, 0)), vec![a.clone()]);
    assert!(ids(at(13, 30), at(13, 45)).is_empty(), "A ended at 13:00");
    assert_eq!(ids(at(14, 0), at(14, 10)), vec![b.clone()]);
    assert!(
        ids(at(14, 30), at(15, 0)).is_empty(),
        "B was revoked at 14:20"
    );
    assert_eq!(ids(at(9, 0), at(15, 0)), vec![a, b]);
}

/// The same life against a real AWS IAM stand-in (moto behind its signing proxy) in place of
/// erp: the membership is added through the outbox, drift expects it, and it is removed when
/// the clock moves past the grant's end.
fn a_grant_in_moto_iam_is_added_and_expires_by_moved_clock(env: Env) {
    use connectors::aws_iam::{AwsIamConfig, AwsIamConnector};
    use connectors::secret::Secret;
    use std::sync::Arc;

    use super::support_standins::stacks::{iam_client, start_moto};
    let keep = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = keep.block_on(start_moto());
    let boot = iam_client(&moto.proxy.url(), &moto.key_id, &moto.secret);
    keep.block_on(async {
        for g in ["ap", "badge"] {
            boot.call("CreateGroup", &[("GroupName", g)]).await.unwrap();
        }
    });
    let mut cfg = AwsIamConfig::new(
        "erp",
        moto.proxy.url(),
        Secret::new(moto.key_id.clone()),
        Secret::new(moto.secret.clone()),
    );
    cfg.path = "/scimhub/".into();
    cfg.timeout = std::time::Duration::from_secs(10);
    env.engine
        .connectors
        .insert("erp", Arc::new(AwsIamConnector::new(cfg).unwrap()));
    let groups_of = |u: &str| -> Vec<String> {
        let text = keep
            .block_on(boot.call("ListGroupsForUser", &[("UserName", u)]))
            .unwrap();
        let mut out: Vec<String> = text
            .split("<GroupName>")
            .skip(1)
            .filter_map(|s| s.split("</GroupName>").next())
            .map(str::to_string)
            .collect();
        out.sort();
        out
    };
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    assert_eq!(groups_of("fay"), vec!["ap"]);
    let g = ask(&env, "fay", "erp:group:badge", 2).unwrap();
    env.run();
    assert_eq!(
        groups_of("fay"),
        vec!["ap", "badge"],
        "added through the outbox"
    );
    let report = keep
        .block_on(scim_server::jobs::reconcile::run(
            &env.store,
            &env.engine,
            "erp",
            false,
        ))
        .unwrap();
    assert!(report.counts.is_empty(), "{report:?}");
    env.clock.advance(Duration::hours(2) + Duration::seconds(1));
    env.run();
    assert_eq!(
        grant_state(&env, g.grant["id"].as_str().unwrap()),
        "expired"
    );
    assert_eq!(groups_of("fay"), vec!["ap"], "removed at expiry");
}
