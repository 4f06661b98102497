//! Access certification campaigns (docs/certification.md) on both backends with a moved clock:
//! creation with a scope and the reviewer ladder (manager, entitlement owner, security),
//! certify / revoke / delegate through the admin API and through the mailed one-click links,
//! a revocation carried out by the outbox (memory apps, and a real stand-in: moto's IAM),
//! honoured by later plans until a role change, reminders and escalation, the schedule that
//! fires once per period, the completion report, and the micro-review a drift finding opens.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use connectors::aws_iam::{AwsIamConfig, AwsIamConnector};
use connectors::secret::Secret;
use connectors::{AccountRef, Connector, Entitlement};
use scim_server::admin::certification::DecisionRequest;
use scim_server::admin::in_tx;
use scim_server::store::certification as store;
use scim_server::store::{audit, notifications};
use serde_json::{json, Value};

use super::support_standins::stacks::{iam_client, start_moto};
use super::{set_dept, user, Env};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The admin API tests' policy (one-click links, `sec` a security approver) with `olivia` the
/// owner of everything on github and erp.
fn policy() -> String {
    super::admin_api::policy()
        .replace(
            "name = \"github\"\ntype = \"memory\"",
            "name = \"github\"\ntype = \"memory\"\nowners = [\"olivia\"]",
        )
        .replace(
            "name = \"erp\"\ntype = \"memory\"",
            "name = \"erp\"\ntype = \"memory\"\nowners = [\"olivia\"]",
        )
}

/// [`policy`] with reconciliation of erp and its entitlements outside the profiles reviewed.
fn review_policy() -> String {
    policy().replace(
        "name = \"erp\"\ntype = \"memory\"",
        "name = \"erp\"\ntype = \"memory\"\nreconcile = \"6h\"",
    ) + "\n[drift]\nentitlement_outside = \"review\"\n"
}

/// [`review_policy`] with erp's `prod-admin` role granted only to SREs, behind security's
/// approval.
fn gated_review_policy() -> String {
    review_policy()
        + "\n[[profile]]\nname = \"sre\"\nmatch = 'title eq \"SRE\"'\n\
           grants = [{ connector = \"erp\", kind = \"role\", id = \"prod-admin\", approval = \"security\" }]\n"
}

/// [`policy`] with one scheduled campaign scope.
fn schedule_policy() -> String {
    policy() + "\n[certification]\nschedule = \"quarterly\"\nscopes = [\"connector=erp\"]\n"
}

macro_rules! backends {
    ($policy:ident: $($name:ident),* $(,)?) => {
        pub mod $policy {
            pub mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, &super::super::$policy()) { super::super::$name(e) } } )* }
            pub mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, &super::super::$policy()) { super::super::$name(e) } } )* }
        }
    };
}

backends!(policy:
    a_campaign_is_scoped_and_addressed_along_the_ladder,
    decisions_through_the_api_and_a_revocation_through_the_outbox,
    delegation_through_the_api_and_certification_through_a_link,
    reminders_then_escalation_then_expiry,
    a_later_campaign_reviews_a_revocation_again,
    an_emergency_grant_in_force_is_reviewed_as_a_grant,
    a_decision_on_a_campaign_cancelled_meanwhile_changes_nothing,
    links_of_a_reviewer_who_lost_their_standing_no_longer_act,
);
backends!(review_policy: a_drift_finding_under_review_opens_a_micro_review);
backends!(gated_review_policy: access_gated_at_security_is_reviewed_by_security_not_the_manager);
backends!(schedule_policy: the_schedule_creates_a_period_s_campaign_once);

fn people(env: &Env) -> (String, String, String, String, String, String) {
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let olivia = env.create_user(user("olivia", "Employee", "IT", "Owner"));
    let sec = env.create_user(user("sec", "Employee", "IT", "Security"));
    let mut f = user("fay", "Employee", "Finance", "Accounts Payable");
    f[ENTERPRISE]["manager"] = json!({"value": grace});
    let fay = env.create_user(f);
    let bob = env.create_user(user("bob", "Employee", "Engineering", "Developer"));
    let dan = env.create_user(user("dan", "Employee", "Sales", "Rep"));
    env.run();
    (grace, olivia, sec, fay, bob, dan)
}

fn items(env: &Env, campaign: &str) -> Vec<store::Item> {
    in_tx(&env.store, |c| store::items(c, campaign)).unwrap()
}

fn campaign_state(env: &Env, id: &str) -> String {
    in_tx(&env.store, |c| store::get(c, id))
        .unwrap()
        .unwrap()
        .state
}

fn ent(i: &store::Item) -> Entitlement {
    serde_json::from_str(&i.entitlement).unwrap()
}

fn create(env: &Env, name: &str, scope: &str) -> String {
    env.admin
        .create_campaign(name, scope, Duration::days(14), "tester")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The certify / revoke / delegate tokens of `who`'s `access` (`role:ap on erp`) in the
/// newest review mail to `to` that lists it.
fn review_links(env: &Env, to: &str, who: &str, access: &str) -> [String; 3] {
    let person = format!("    | {who}\n  Access: {access}\n");
    let body = super::admin_api::notes(env, None)
        .into_iter()
        .rfind(|n| {
            n.kind == "certification_review"
                && n.recipients.iter().any(|r| r == to)
                && n.body.contains(&person)
        })
        .unwrap_or_else(|| panic!("no review mail to {to} about {who}'s {access}"))
        .body;
    let start = body.find(&person).unwrap();
    let rest = &body[start..];
    let link = |label: &str| {
        rest.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {body}"))
            .trim()
            .rsplit_once('/')
            .expect("a link")
            .1
            .to_string()
    };
    [link("Certify: "), link("Revoke: "), link("Delegate: ")]
}

fn review_mails(env: &Env, to: &str) -> Vec<notifications::Notification> {
    super::admin_api::notes(env, None)
        .into_iter()
        .filter(|n| n.kind == "certification_review" && n.recipients.iter().any(|r| r == to))
        .collect()
}

fn a_campaign_is_scoped_and_addressed_along_the_ladder(env: Env) {
    let (grace, olivia, sec, fay, bob, dan) = people(&env);
    // erp and github: fay's role (her manager), bob's team (no manager: the owner).
    let id = create(&env, "Q1 apps", "connector=erp,connector=github");
    let got: Vec<(String, String, String, String, String, String)> = items(&env, &id)
        .iter()
        .map(|i| {
            (
                i.user_id.clone(),
                i.connector.clone(),
                ent(i).id,
                i.source.clone(),
                i.reviewer.clone(),
                i.reviewer_level.clone(),
            )
        })
        .collect();
    let mut want = vec![
        (
            fay.clone(),
            "erp".into(),
            "ap".into(),
            "profile".into(),
            grace.clone(),
            "manager".into(),
        ),
        (
            bob.clone(),
            "github".into(),
            "eng".into(),
            "profile".into(),
            olivia.clone(),
            "owner".into(),
        ),
    ];
    want.sort();
    let mut got = got;
    got.sort();
    assert_eq!(got, want);
    // Every item was read as last applied (nothing verified yet), with the time.
    assert!(items(&env, &id)
        .iter()
        .all(|i| i.observed_from == "applied" && i.observed_at.is_some()));
    // One mail per reviewer.
    assert_eq!(review_mails(&env, &grace).len(), 1);
    assert_eq!(review_mails(&env, &olivia).len(), 1);
    // A department: Sales people's slack channels; nobody owns slack: security decides.
    let sales = create(&env, "Sales", "department=Sales");
    let its = items(&env, &sales);
    let mut users: Vec<&str> = its.iter().map(|i| i.user_id.as_str()).collect();
    users.dedup();
    let mut want_users = vec![grace.as_str(), dan.as_str()];
    want_users.sort();
    users.sort();
    users.dedup();
    assert_eq!(users, want_users);
    assert!(its.iter().all(|i| i.connector == "slack"), "{its:?}");
    assert!(
        its.iter()
            .all(|i| i.reviewer == sec && i.reviewer_level == "security"),
        "{its:?}"
    );
    // A profile, and only privileged access (none is marked privileged in this policy).
    let eng = create(&env, "Eng", "profile=engineering");
    assert!(items(&env, &eng).iter().all(|i| i.user_id == bob));
    let privileged = create(&env, "Privileged", "privileged");
    assert!(items(&env, &privileged).is_empty());
    assert_eq!(campaign_state(&env, &privileged), "completed");
    // A scope naming what the policy does not know is refused.
    assert!(env
        .admin
        .create_campaign("bad", "connector=nope", Duration::days(1), "t")
        .is_err());
    assert!(env
        .admin
        .create_campaign("bad", "colour=blue", Duration::days(1), "t")
        .is_err());
}

fn decisions_through_the_api_and_a_revocation_through_the_outbox(env: Env) {
    let (grace, _olivia, _sec, fay, bob, _dan) = people(&env);
    let srv = super::admin_api::Server::start(&env);
    let admin = srv.token("ops", &["admin"], None);
    let (s, v) = srv.post_as(
        &admin,
        "/campaigns",
        json!({"name": "Q1 apps", "scope": "connector=erp,connector=github", "due": "14d"}),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    let item_of = |u: &str| {
        items(&env, &id)
            .into_iter()
            .find(|i| i.user_id == u)
            .unwrap()
    };
    let fay_item = item_of(&fay);
    let bob_item = item_of(&bob);
    let path = |i: &store::Item| format!("/campaigns/{id}/items/{}/decision", i.id);
    let olivia_t = srv.token("olivia-t", &["approvals"], Some("olivia"));
    let grace_t = srv.token("grace-t", &["approvals"], Some("grace"));
    let dan_t = srv.token("dan-t", &["approvals"], Some("dan"));
    // A decision needs a reason; only the reviewer (or security) decides.
    let (s, v) = srv.post_as(&olivia_t, &path(&bob_item), json!({"decision": "certify"}));
    assert_eq!(s, 400, "{v}");
    let (s, v) = srv.post_as(
        &dan_t,
        &path(&fay_item),
        json!({"decision": "revoke", "reason": "not mine"}),
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = srv.post_as(
        &olivia_t,
        &path(&bob_item),
        json!({"decision": "certify", "reason": "still on the team"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(campaign_state(&env, &id), "open");
    // The manager revokes: the engine re-plans fay and the outbox removes the role.
    let (s, v) = srv.post_as(
        &grace_t,
        &path(&fay_item),
        json!({"decision": "revoke", "reason": "moved to receivables work"}),
    );
    assert_eq!(s, 200, "{v}");
    assert!(v["plan_id"].is_string(), "{v}");
    assert_eq!(v["completed"], true, "{v}");
    // Decided once.
    let (s, _) = srv.post_as(
        &grace_t,
        &path(&fay_item),
        json!({"decision": "certify", "reason": "changed my mind"}),
    );
    assert_eq!(s, 409);
    env.run();
    assert_eq!(env.holds("erp", "fay"), Some((true, vec![])));
    // Honoured by later plans: an unrelated change does not grant it back.
    env.patch_user(&fay, |d| {
        d.insert("displayName".into(), json!("Fay F."));
    });
    env.run();
    assert_eq!(env.holds("erp", "fay"), Some((true, vec![])));
    // Every decision is in the audit chain.
    let entries = in_tx(&env.store, |c| audit::list(c, None)).unwrap();
    let decisions: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e.action == "certification_decision")
        .map(|e| (e.outcome.clone(), e.actor.clone()))
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("certify".to_string(), "olivia (owner)".to_string()),
            ("revoke".to_string(), "grace (manager)".to_string()),
        ]
    );
    assert!(entries
        .iter()
        .any(|e| e.action == "certification_campaign" && e.outcome == "completed"));
    // The report: counts, reviewers, the revocation carried out.
    let (s, r) = srv.get(&format!("/campaigns/{id}/report"));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["campaign"]["state"], "completed");
    assert_eq!(r["counts"]["certify"], 1, "{r}");
    assert_eq!(r["counts"]["revoke"], 1, "{r}");
    assert_eq!(r["counts"]["revocations_carried_out"], 1, "{r}");
    assert_eq!(r["by_reviewer"]["grace"]["revoke"], 1, "{r}");
    assert_eq!(r["by_reviewer"]["olivia"]["certify"], 1, "{r}");
    assert_eq!(r["revocations"][0]["user_id"], json!(fay), "{r}");
    // Revocations in force are listed; lifting one takes the admin scope.
    let (s, v) = srv.get("/revocations");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["totalResults"], 1, "{v}");
    let rid = v["Resources"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = srv.post_as(&grace_t, &format!("/revocations/{rid}/lift"), json!({}));
    assert_eq!(s, 403);
    // A role change lifts the revocation: back in Finance AP after a move, the role returns.
    env.patch_user(&fay, |d| set_dept(d, "Sales"));
    env.run();
    env.patch_user(&fay, |d| set_dept(d, "Finance"));
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["role:ap".to_string()]))
    );
    let _ = grace;
}

/// A reviewer's decision checked against the campaign as read before it was cancelled (the
/// cancel committed in between, as from another node): nothing is decided, revoked or planned,
/// and the API says why. Before the decision re-checked the campaign's state under its lock,
/// the revoke was recorded on the cancelled campaign and the user re-planned without the role.
fn a_decision_on_a_campaign_cancelled_meanwhile_changes_nothing(env: Env) {
    use scim_server::engine::certification::{self as cert, Decision, NotDecided};
    let (_grace, _olivia, _sec, fay, _bob, _dan) = people(&env);
    let id = create(&env, "AP", "connector=erp");
    let item = items(&env, &id)
        .into_iter()
        .find(|i| i.user_id == fay)
        .unwrap();
    assert!(item.decision.is_none());
    env.admin.cancel_campaign(&id, "tester").unwrap();
    let out = in_tx(&env.store, |c| {
        cert::decide(
            &env.engine,
            c,
            &item,
            &Decision::Revoke,
            "moved on",
            "grace (manager)",
        )
    })
    .unwrap();
    assert_eq!(out.err(), Some(NotDecided::CampaignClosed));
    assert!(now_undecided(&env, &id, &item.id));
    let revocations = in_tx(&env.store, |c| store::all_revocations(c, 100)).unwrap();
    assert!(revocations.is_empty(), "{revocations:?}");
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["role:ap".to_string()]))
    );
    // Through the API: 409, and it says the campaign is closed.
    let srv = super::admin_api::Server::start(&env);
    let grace_t = srv.token("grace-t", &["approvals"], Some("grace"));
    let (s, v) = srv.post_as(
        &grace_t,
        &format!("/campaigns/{id}/items/{}/decision", item.id),
        json!({"decision": "revoke", "reason": "moved on"}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(v.to_string().contains("cancelled"), "{v}");
}

fn delegation_through_the_api_and_certification_through_a_link(env: Env) {
    let (grace, olivia, sec, _fay, _bob, dan) = people(&env);
    let id = create(&env, "Sales", "department=Sales");
    let dan_sales = items(&env, &id)
        .into_iter()
        .find(|i| i.user_id == dan && ent(i).id == "sales")
        .unwrap();
    assert_eq!(dan_sales.reviewer, sec);
    // Security delegates it to grace, who gets a mail of her own with links.
    let d = env
        .admin
        .decide_campaign_item(
            &id,
            &dan_sales.id,
            &DecisionRequest {
                decision: "delegate".into(),
                reason: Some("grace runs the sales team".into()),
                delegate_to: Some("grace".into()),
            },
            &env.as_user("sec"),
        )
        .unwrap();
    assert_eq!(d.decision, "delegate");
    let now = items(&env, &id)
        .into_iter()
        .find(|i| i.id == dan_sales.id)
        .unwrap();
    assert_eq!(
        (
            now.reviewer.as_str(),
            now.reviewer_level.as_str(),
            now.delegated_to.as_deref()
        ),
        (grace.as_str(), "delegate", Some(grace.as_str()))
    );
    assert!(now.decision.is_none());
    let mail = review_mails(&env, &grace).pop().unwrap();
    assert!(mail.subject.contains("delegated"), "{}", mail.subject);
    // The security reviewer's own links for the item no longer act.
    let [sec_certify, _, _] = review_links(&env, &sec, "dan", "channel:sales on slack");
    assert!(env.admin.preview_link(&sec_certify).is_err());
    // Grace opens her certify link: a confirmation page, nothing decided yet.
    let [certify, _, _] = review_links(&env, &grace, "dan", "channel:sales on slack");
    let p = env.admin.preview_link(&certify).unwrap();
    assert!(p.message.starts_with("Certify that"), "{}", p.message);
    assert!(now_undecided(&env, &id, &dan_sales.id));
    // Without a reason it does nothing; with one it certifies, once.
    let link = env.admin.verify_link(&certify).unwrap();
    assert!(env
        .admin
        .follow_verified_form(link, None, None, None)
        .is_err());
    assert!(now_undecided(&env, &id, &dan_sales.id));
    let link = env.admin.verify_link(&certify).unwrap();
    let done = env
        .admin
        .follow_verified_form(link, Some("needs the channel".into()), None, None)
        .unwrap();
    assert!(done.message.starts_with("Certified."), "{}", done.message);
    let link = env.admin.verify_link(&certify).unwrap();
    assert!(env
        .admin
        .follow_verified_form(link, Some("again".into()), None, None)
        .is_err());
    let decided = items(&env, &id)
        .into_iter()
        .find(|i| i.id == dan_sales.id)
        .unwrap();
    assert_eq!(decided.decision.as_deref(), Some("certify"));
    assert_eq!(
        decided.decided_by.as_deref(),
        Some(format!("one-click link to {grace} (delegate)").as_str())
    );
    // Delegating through a link names the delegate on the confirmation page's form.
    let other = items(&env, &id)
        .into_iter()
        .find(|i| i.decision.is_none() && i.user_id == dan)
        .unwrap();
    let [_, _, delegate] = review_links(&env, &sec, "dan", &format!("{} on slack", label(&other)));
    let link = env.admin.verify_link(&delegate).unwrap();
    env.admin
        .follow_verified_form(
            link,
            Some("olivia knows".into()),
            None,
            Some("olivia".into()),
        )
        .unwrap();
    let other = items(&env, &id)
        .into_iter()
        .find(|i| i.id == other.id)
        .unwrap();
    assert_eq!(other.reviewer, olivia);
    // The report counts the delegations.
    let r = env.admin.campaign_report(&id).unwrap();
    assert_eq!(r["counts"]["delegated"], 2, "{r}");
}

/// A reviewer's link checks, when followed, that they may still decide, as the admin API
/// does: a manager deactivated since, and a security reviewer the policy no longer lists, are
/// refused (403, opened or followed) and the item stays undecided; listed again, the same
/// security link acts.
fn links_of_a_reviewer_who_lost_their_standing_no_longer_act(env: Env) {
    use scim_server::admin::AdminError;
    let (grace, _olivia, sec, fay, _bob, dan) = people(&env);
    let refused = |token: &str, why: &str| {
        match env.admin.preview_link(token) {
            Err(AdminError::Forbidden(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        }
        let link = env.admin.verify_link(token).unwrap();
        match env
            .admin
            .follow_verified_form(link, Some("still needed".into()), None, None)
        {
            Err(AdminError::Forbidden(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        }
    };
    // Fay's role goes to grace, her manager, who is then deactivated.
    let apps = create(&env, "Apps", "connector=erp");
    let fay_ap = items(&env, &apps)
        .into_iter()
        .find(|i| i.user_id == fay)
        .unwrap();
    assert_eq!(
        (fay_ap.reviewer.as_str(), fay_ap.reviewer_level.as_str()),
        (grace.as_str(), "manager")
    );
    let [certify, revoke, _] = review_links(&env, &grace, "fay", "role:ap on erp");
    env.patch_user(&grace, |d| {
        d.insert("active".into(), json!(false));
    });
    refused(&certify, "no longer an active");
    refused(&revoke, "no longer an active");
    assert!(now_undecided(&env, &apps, &fay_ap.id));
    // Dan's channel goes to sec as a security approver; the policy then drops sec.
    let sales = create(&env, "Sales", "department=Sales");
    let dan_sales = items(&env, &sales)
        .into_iter()
        .find(|i| i.user_id == dan)
        .unwrap();
    assert_eq!(
        (
            dan_sales.reviewer.as_str(),
            dan_sales.reviewer_level.as_str()
        ),
        (sec.as_str(), "security")
    );
    let [certify, _, _] = review_links(
        &env,
        &sec,
        "dan",
        &format!("{} on slack", label(&dan_sales)),
    );
    let before = env.engine.policy.current();
    let mut dropped = (*before).clone();
    dropped.approvals.security.clear();
    env.engine.policy.set(dropped);
    refused(&certify, "no longer are");
    assert!(now_undecided(&env, &sales, &dan_sales.id));
    env.engine.policy.set((*before).clone());
    let link = env.admin.verify_link(&certify).unwrap();
    env.admin
        .follow_verified_form(link, Some("still needed".into()), None, None)
        .unwrap();
    assert!(!now_undecided(&env, &sales, &dan_sales.id));
}

fn label(i: &store::Item) -> String {
    let e = ent(i);
    format!("{}:{}", e.kind, e.id)
}

fn now_undecided(env: &Env, campaign: &str, item: &str) -> bool {
    items(env, campaign)
        .into_iter()
        .find(|i| i.id == item)
        .unwrap()
        .decision
        .is_none()
}

fn reminders_then_escalation_then_expiry(env: Env) {
    let (grace, olivia, sec, fay, _bob, _dan) = people(&env);
    let id = create(&env, "erp", "connector=erp");
    let item = items(&env, &id).pop().unwrap();
    assert_eq!(
        (item.user_id.as_str(), item.reviewer.as_str()),
        (fay.as_str(), grace.as_str())
    );
    let [old_link, _, _] = review_links(&env, &grace, "fay", "role:ap on erp");
    // 7 days before the due: a reminder (the default `remind = ["7d", "1d"]`).
    env.clock.advance(Duration::days(7));
    env.run();
    let mails = review_mails(&env, &grace);
    assert_eq!(mails.len(), 2);
    assert!(
        mails[1].subject.contains("reminder"),
        "{}",
        mails[1].subject
    );
    env.clock.advance(Duration::days(6));
    env.run();
    assert_eq!(review_mails(&env, &grace).len(), 3);
    // At the due, undecided: escalated to the entitlement's owner, who has 3 days.
    env.clock.advance(Duration::days(1));
    env.run();
    let now = items(&env, &id).pop().unwrap();
    assert_eq!(
        (now.reviewer.as_str(), now.reviewer_level.as_str()),
        (olivia.as_str(), "owner")
    );
    assert!(review_mails(&env, &olivia)[0].subject.contains("escalated"));
    assert!(
        env.admin.preview_link(&old_link).is_err(),
        "the manager's link acts no more"
    );
    assert_eq!(campaign_state(&env, &id), "open");
    // Three days on: security.
    env.clock.advance(Duration::days(3));
    env.run();
    let now = items(&env, &id).pop().unwrap();
    assert_eq!(
        (now.reviewer.as_str(), now.reviewer_level.as_str()),
        (sec.as_str(), "security")
    );
    // And nobody above: expired, the campaign completes.
    env.clock.advance(Duration::days(3));
    env.run();
    let now = items(&env, &id).pop().unwrap();
    assert_eq!(now.decision.as_deref(), Some("expired"));
    assert_eq!(campaign_state(&env, &id), "completed");
    let r = env.admin.campaign_report(&id).unwrap();
    assert_eq!(r["counts"]["expired"], 1, "{r}");
    let escalations = in_tx(&env.store, |c| audit::list(c, Some(&fay)))
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "certification_escalation")
        .count();
    assert_eq!(escalations, 2);
    // Nothing more happens later (before the next quarter's scheduled campaign).
    env.clock.advance(Duration::days(5));
    env.run();
    assert_eq!(review_mails(&env, &sec).len(), 1);
}

fn the_schedule_creates_a_period_s_campaign_once(env: Env) {
    let (_grace, _olivia, _sec, _fay, _bob, _dan) = people(&env);
    let scheduled = |env: &Env| {
        in_tx(&env.store, |c| store::list(c, None, 100))
            .unwrap()
            .into_iter()
            .filter(|c| c.schedule_key.is_some())
            .collect::<Vec<_>>()
    };
    assert!(scheduled(&env).is_empty());
    // The clock starts on 2025-03-03: the next period is 2025-Q2.
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 1).unwrap());
    env.run();
    let s = scheduled(&env);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].schedule_key.as_deref(), Some("2025-Q2:0"));
    assert_eq!(s[0].name, "Access review 2025-Q2 (connector=erp)");
    assert_eq!(items(&env, &s[0].id).len(), 1, "fay's erp role");
    // Fires once: later polls in the same period create nothing.
    env.run();
    env.clock.advance(Duration::days(20));
    env.run();
    assert_eq!(scheduled(&env).len(), 1);
    // The next period has its own.
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 1).unwrap());
    env.run();
    let keys: Vec<Option<String>> = scheduled(&env)
        .into_iter()
        .map(|c| c.schedule_key)
        .collect();
    assert!(keys.contains(&Some("2025-Q3:0".into())), "{keys:?}");
    assert_eq!(keys.len(), 2);
}

/// Changes made on erp by hand, outside the hub, and erp's reconciliation that finds them.
struct ByHand<'a> {
    env: &'a Env,
    rt: tokio::runtime::Runtime,
}

impl<'a> ByHand<'a> {
    fn new(env: &'a Env) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        ByHand { env, rt }
    }

    /// Gives fay the erp role `id`.
    fn grant_fay(&self, id: &str) {
        self.rt
            .block_on(
                self.env
                    .app("erp")
                    .grant(&AccountRef::new("fay"), &Entitlement::new("role", id)),
            )
            .unwrap()
    }

    fn reconcile(&self) -> scim_server::jobs::reconcile::RunReport {
        self.rt
            .block_on(scim_server::jobs::reconcile::run(
                &self.env.store,
                &self.env.engine,
                "erp",
                false,
            ))
            .unwrap()
    }
}

/// The micro-review campaigns (one per drift finding under review), newest first.
fn micro_campaigns(env: &Env) -> Vec<store::Campaign> {
    in_tx(&env.store, |c| store::list(c, None, 10))
        .unwrap()
        .into_iter()
        .filter(|c| c.kind == "micro")
        .collect()
}

fn a_drift_finding_under_review_opens_a_micro_review(env: Env) {
    let (grace, _olivia, _sec, fay, _bob, _dan) = people(&env);
    let by_hand = ByHand::new(&env);
    let grant = |id: &str| by_hand.grant_fay(id);
    let reconcile = || by_hand.reconcile();
    grant("break-glass");
    let report = reconcile();
    assert_eq!(report.reviews, 1, "{report:?}");
    // A one-item campaign for the manager; the manager's mail is the drift review mail.
    let micro = micro_campaigns(&env);
    assert_eq!(micro.len(), 1);
    let its = items(&env, &micro[0].id);
    assert_eq!(its.len(), 1);
    assert_eq!(
        (
            its[0].user_id.as_str(),
            its[0].source.as_str(),
            its[0].reviewer.as_str()
        ),
        (fay.as_str(), "outside-profile", grace.as_str())
    );
    assert_eq!(ent(&its[0]).id, "break-glass");
    assert!(its[0].finding_id.is_some());
    // A campaign created meanwhile lists it too, as outside the profile, read by drift.
    let id = create(&env, "erp", "connector=erp");
    let outside: Vec<store::Item> = items(&env, &id)
        .into_iter()
        .filter(|i| i.source == "outside-profile")
        .collect();
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert_eq!(outside[0].observed_from, "drift");
    // The manager removes it with the drift link: the micro item is revoked, the campaign
    // completes, the removal runs through the outbox.
    let body = super::admin_api::notes(&env, None)
        .into_iter()
        .rfind(|n| n.kind == "drift_review")
        .unwrap()
        .body;
    let remove = body
        .lines()
        .find_map(|l| l.strip_prefix("Remove: "))
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .1
        .to_string();
    env.admin.follow_link(&remove).unwrap();
    let its = items(&env, &micro[0].id);
    assert_eq!(its[0].decision.as_deref(), Some("revoke"));
    assert!(its[0].plan_id.is_some(), "{its:?}");
    assert_eq!(campaign_state(&env, &micro[0].id), "completed");
    env.run();
    let r = env.admin.campaign_report(&micro[0].id).unwrap();
    assert_eq!(r["revocations"][0]["carried_out"], true, "{r}");
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["role:ap".to_string()]))
    );
    // A second finding decided through the campaign instead: certified, it becomes a kept
    // exception and the drift links act no more.
    env.clock.advance(Duration::minutes(10));
    grant("audit-read");
    let report = reconcile();
    assert_eq!(report.reviews, 1, "{report:?}");
    let micro2 = micro_campaigns(&env)
        .into_iter()
        .find(|c| c.state == "open")
        .unwrap();
    let item = items(&env, &micro2.id).pop().unwrap();
    env.admin
        .decide_campaign_item(
            &micro2.id,
            &item.id,
            &DecisionRequest {
                decision: "certify".into(),
                reason: Some("auditor this quarter".into()),
                delegate_to: None,
            },
            &env.as_user("grace"),
        )
        .unwrap();
    let body = super::admin_api::notes(&env, None)
        .into_iter()
        .rfind(|n| n.kind == "drift_review")
        .unwrap()
        .body;
    let keep = body
        .lines()
        .find_map(|l| l.strip_prefix("Keep: "))
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .1
        .to_string();
    assert!(env.admin.follow_link(&keep).is_err());
    env.clock.advance(Duration::minutes(10));
    let again = reconcile();
    assert_eq!((again.opened, again.reviews), (0, 0), "kept: {again:?}");
    let _: Value = env.admin.campaign_report(&micro2.id).unwrap();
}

/// The proof of issue #15: a campaign from creation to completion whose revocation is carried
/// out against a real stand-in (moto's IAM API behind the AWS IAM connector) through the
/// manager's mailed one-click link, over HTTP.
pub fn revocation_reaches_moto_iam(env: Env) {
    let keep = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = keep.block_on(start_moto());
    let boot = iam_client(&moto.proxy.url(), &moto.key_id, &moto.secret);
    keep.block_on(async {
        boot.call("CreateGroup", &[("GroupName", "ap")])
            .await
            .unwrap();
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
        text.split("<GroupName>")
            .skip(1)
            .map(|s| {
                s.split("</GroupName>")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let (grace, _olivia, _sec, fay, _bob, _dan) = people(&env);
    assert_eq!(groups_of("fay"), vec!["ap"]);
    let srv = super::admin_api::Server::start(&env);
    let admin = srv.token("ops", &["admin"], None);
    let (s, v) = srv.post_as(
        &admin,
        "/campaigns",
        json!({"name": "ERP review", "scope": "connector=erp"}),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let [_, revoke, _] = review_links(&env, &grace, "fay", "group:ap on erp");
    // The page asks for a reason; the form posts the decision once.
    let page = srv
        .http
        .get(format!("{}/admin/v1/links/{revoke}", srv.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("name=\"reason\""), "{page}");
    assert!(page.contains(">Revoke</button>"), "{page}");
    let post = |reason: &str| {
        srv.http
            .post(format!("{}/admin/v1/links/{revoke}", srv.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("reason={reason}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("no+longer+pays+invoices"), 200);
    assert_eq!(post("again"), 409);
    env.run();
    assert!(
        groups_of("fay").is_empty(),
        "removed from IAM by the outbox"
    );
    let (s, r) = srv.get(&format!("/campaigns/{id}/report"));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["campaign"]["state"], "completed", "{r}");
    assert_eq!(r["counts"]["revoke"], 1, "{r}");
    assert_eq!(r["revocations"][0]["carried_out"], true, "{r}");
    // Post-change verification reads IAM back after the re-plan: the report says so.
    env.clock.advance(Duration::minutes(2));
    env.run();
    let (_, r) = srv.get(&format!("/campaigns/{id}/report"));
    assert_eq!(r["revocations"][0]["verification"], "verified", "{r}");
    assert_eq!(r["counts"]["revocations_verified"], 1, "{r}");
    // A report like the others: the audit chain head it was read with, and a printable page.
    assert_eq!(r["schema"], "scimhub/report/campaign/v1", "{r}");
    assert!(r["audit_head"]["seq"].as_i64().unwrap() > 0, "{r}");
    let page = srv
        .http
        .get(srv.url(&format!("/campaigns/{id}/report?format=html")))
        .bearer_auth("t")
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().unwrap();
    for needle in [
        "Access certification · completion report",
        "revocations carried out / verified",
        "<span class=\"badge good\">done</span>",
        "<td>verified</td>",
        "<svg",
    ] {
        assert!(html.contains(needle), "{needle} missing:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");
    super::reports::artifact("report-campaign.html", &html);
    let audit_entry = in_tx(&env.store, |c| audit::list(c, Some(&fay)))
        .unwrap()
        .into_iter()
        .find(|e| e.action == "certification_decision")
        .unwrap();
    assert_eq!(audit_entry.outcome, "revoke");
    assert!(
        audit_entry.detail.contains("no longer pays invoices"),
        "{}",
        audit_entry.detail
    );
}

/// erp's roles as IAM groups, for [`revocation_reaches_moto_iam`], with what updates did
/// read back a minute later.
fn iam_policy() -> String {
    policy().replace("kind = \"role\"", "kind = \"group\"")
        + "\n[verification]\ndelay = \"1m\"\nafter = [\"leaver\", \"update\"]\n"
}

backends!(iam_policy: revocation_reaches_moto_iam);

fn a_later_campaign_reviews_a_revocation_again(env: Env) {
    let (grace, _olivia, _sec, fay, _bob, _dan) = people(&env);
    let decide = |campaign: &str, item: &str, decision: &str| {
        env.admin
            .decide_campaign_item(
                campaign,
                item,
                &DecisionRequest {
                    decision: decision.into(),
                    reason: Some(format!("{decision} for the test")),
                    delegate_to: None,
                },
                &env.as_user("grace"),
            )
            .unwrap()
    };
    let first = create(&env, "erp 1", "connector=erp");
    let item = items(&env, &first).pop().unwrap();
    decide(&first, &item.id, "revoke");
    env.run();
    assert_eq!(env.holds("erp", "fay"), Some((true, vec![])));
    // The next campaign in scope lists the revocation for the manager again.
    let second = create(&env, "erp 2", "connector=erp");
    let again = items(&env, &second);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (
            again[0].user_id.as_str(),
            again[0].source.as_str(),
            again[0].reviewer.as_str()
        ),
        (fay.as_str(), "revoked", grace.as_str())
    );
    assert!(review_mails(&env, &grace)
        .last()
        .unwrap()
        .body
        .contains("REVOKED BY AN EARLIER REVIEW"));
    // Revoked again: it stays removed, and a third campaign asks again.
    decide(&second, &again[0].id, "revoke");
    env.run();
    assert_eq!(env.holds("erp", "fay"), Some((true, vec![])));
    let third = create(&env, "erp 3", "connector=erp");
    let item = items(&env, &third).pop().unwrap();
    assert_eq!(item.source, "revoked");
    // Certified: the revocation is lifted and the role comes back through the outbox.
    decide(&third, &item.id, "certify");
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["role:ap".to_string()]))
    );
    let fourth = create(&env, "erp 4", "connector=erp");
    assert_eq!(items(&env, &fourth).pop().unwrap().source, "profile");
    // An administrator can lift a revocation too: the user is re-planned at once.
    let item = items(&env, &fourth).pop().unwrap();
    decide(&fourth, &item.id, "revoke");
    env.run();
    assert_eq!(env.holds("erp", "fay"), Some((true, vec![])));
    let rid = items(&env, &fourth).pop().unwrap().revocation_id.unwrap();
    let lifted = env.admin.lift_revocation(&rid, "ops").unwrap();
    assert_eq!(lifted["lifted"], true, "{lifted}");
    assert!(env.admin.lift_revocation(&rid, "ops").is_err());
    env.run();
    assert_eq!(
        env.holds("erp", "fay"),
        Some((true, vec!["role:ap".to_string()]))
    );
    assert!(env.admin.revocations(true, 100).unwrap().is_empty());
}

/// How long opening a campaign of everything takes: `N` people (default 500) with a manager
/// each, three entitlements apiece, on SQLite. No timed assertion; run it with
/// `SCIMHUB_CERT_BENCH_USERS=2000 cargo test --test engine certification::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_campaign_creation() {
    let n: usize = std::env::var("SCIMHUB_CERT_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let env = Env::new(false, &policy()).unwrap();
    let boss = env.create_user(user("boss", "Employee", "Sales", "Manager"));
    for i in 0..n {
        let mut u = user(&format!("u{i}"), "Employee", "Finance", "Accounts Payable");
        u[ENTERPRISE]["manager"] = json!({"value": boss});
        env.create_user(u);
    }
    env.run();
    let t = std::time::Instant::now();
    let id = create(&env, "everything", "");
    let took = t.elapsed();
    let count = items(&env, &id).len();
    println!("campaign of {count} items over {n} people opened in {took:?}");
    let t = std::time::Instant::now();
    let _ = env.admin.campaign_report(&id).unwrap();
    println!("report in {:?}", t.elapsed());
}

/// Access an emergency grant holds is an item of source `grant` (not `profile`, even where a
/// profile would grant it to someone else), while the grant is in force.
fn an_emergency_grant_in_force_is_reviewed_as_a_grant(env: Env) {
    let (_grace, _olivia, _sec, _fay, bob, dan) = people(&env);
    env.admin
        .create_grant(&scim_server::admin::grants::GrantRequest {
            user: "dan",
            entitlement: "github:team:eng",
            duration: Duration::hours(4),
            reason: "covering the on-call rota",
            requested_by: "oncall",
            requester: None,
        })
        .unwrap();
    env.run();
    let id = create(&env, "github review", "connector=github");
    let sources: Vec<(String, String, String)> = items(&env, &id)
        .iter()
        .map(|i| (i.user_id.clone(), ent(i).id, i.source.clone()))
        .collect();
    assert!(
        sources.contains(&(dan.clone(), "eng".into(), "grant".into())),
        "{sources:?}"
    );
    assert!(
        sources.contains(&(bob.clone(), "eng".into(), "profile".into())),
        "{sources:?}"
    );
    // Once the grant has ended, a new campaign no longer sees the access at all.
    env.clock.advance(Duration::hours(5));
    env.run();
    let later = create(&env, "github review 2", "connector=github");
    assert!(
        items(&env, &later).iter().all(|i| i.user_id != dan),
        "{:?}",
        items(&env, &later)
    );
}

/// Someone put in a role by hand that the policy grants only behind security's approval: the
/// manager is not mailed a keep link for it, and its review (the drift finding's micro-review,
/// and its item in a campaign) starts with security, so keeping it is never decided below the
/// approval granting it needs. An entitlement no profile grants is still the manager's call.
fn access_gated_at_security_is_reviewed_by_security_not_the_manager(env: Env) {
    let (_grace, _olivia, sec, fay, _bob, _dan) = people(&env);
    let by_hand = ByHand::new(&env);
    let grant = |id: &str| by_hand.grant_fay(id);
    let reconcile = || by_hand.reconcile();
    grant("prod-admin");
    let report = reconcile();
    assert_eq!(report.reviews, 0, "no manager is asked: {report:?}");
    let mailed = super::admin_api::notes(&env, None)
        .into_iter()
        .filter(|n| n.kind == "drift_review")
        .count();
    assert_eq!(mailed, 0);
    let micro = micro_campaigns(&env);
    assert_eq!(micro.len(), 1);
    let its = items(&env, &micro[0].id);
    assert_eq!(
        (
            its[0].user_id.as_str(),
            its[0].reviewer.as_str(),
            its[0].reviewer_level.as_str()
        ),
        (fay.as_str(), sec.as_str(), "security")
    );
    let id = create(&env, "erp", "connector=erp");
    let outside: Vec<store::Item> = items(&env, &id)
        .into_iter()
        .filter(|i| i.source == "outside-profile")
        .collect();
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert_eq!(
        (
            outside[0].reviewer.as_str(),
            outside[0].reviewer_level.as_str()
        ),
        (sec.as_str(), "security")
    );
    // A role no profile grants: the manager reviews it, as before.
    grant("break-glass");
    let report = reconcile();
    assert_eq!(report.reviews, 1, "{report:?}");
    let asked = super::admin_api::notes(&env, None)
        .into_iter()
        .filter(|n| n.kind == "drift_review")
        .count();
    assert_eq!(asked, 1);
}
