//! Drift reconciliation against the engine's records, with a moved clock: findings on the
//! memory apps (every kind, the schedule, first/last seen and closing), an account created by
//! hand in a real slapd found as an orphan (a protected one left alone), and a group membership
//! added by hand in moto IAM found as an entitlement outside the profiles and removed through
//! the outbox under `fix`.

use std::sync::Arc;

use chrono::Duration;
use connectors::aws_iam::{AwsIamConfig, AwsIamConnector};
use connectors::ldap::{
    DisableMethod, GenericLdap, LdapConfig, LdapConnector, LdapFlavor, LdapOwnership, LdapTls,
};
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Connector, Entitlement};
use scim_server::admin::in_tx;
use scim_server::jobs::reconcile::{self, RunReport};
use scim_server::store::drift::{self, Filter, Finding};
use serde_json::json;

use super::support_standins::stacks::{iam_client, start_moto, xml_field, Slapd};
use super::{incidents, user, Env, POLICY};

/// The engine tests' policy with reconciliation: `erp` every 6 hours, entitlements outside the
/// profiles fixed everywhere, the rest reported; erp's roles are IAM-style groups so a real IAM
/// connector can stand in for it.
pub fn drift_policy() -> String {
    POLICY
        .replace(
            "name = \"erp\"\ntype = \"memory\"",
            "name = \"erp\"\ntype = \"memory\"\nreconcile = \"6h\"",
        )
        .replace("kind = \"role\"", "kind = \"group\"")
        + "\n[drift]\nentitlement_outside = \"fix\"\n"
}

/// [`drift_policy`] with one-click links (as the admin API tests configure them) and
/// entitlements outside the profiles sent to the user's manager for review.
fn review_policy() -> String {
    super::admin_api::policy()
        .replace(
            "name = \"erp\"\ntype = \"memory\"",
            "name = \"erp\"\ntype = \"memory\"\nreconcile = \"6h\"",
        )
        .replace("kind = \"role\"", "kind = \"group\"")
        + "\n[drift]\nentitlement_outside = \"review\"\nreview_expiry = \"30d\"\n"
}

macro_rules! review_backends {
    ($($name:ident),* $(,)?) => {
        mod review_sqlite { $( #[test] fn $name() { if let Some(e) = super::Env::new(false, &super::review_policy()) { super::$name(e) } } )* }
        mod review_postgres { $( #[test] fn $name() { if let Some(e) = super::Env::new(true, &super::review_policy()) { super::$name(e) } } )* }
    };
}

macro_rules! orphan_fix_backends {
    ($($name:ident),* $(,)?) => {
        mod orphan_fix_sqlite { $( #[test] fn $name() { if let Some(e) = super::Env::new(false, &(super::drift_policy() + "orphan = \"fix\"\n")) { super::$name(e) } } )* }
        mod orphan_fix_postgres { $( #[test] fn $name() { if let Some(e) = super::Env::new(true, &(super::drift_policy() + "orphan = \"fix\"\n")) { super::$name(e) } } )* }
    };
}

orphan_fix_backends!(
    orphans_are_disabled_under_fix_and_stay_known,
    disabled_orphans_count_toward_the_next_leavers_guard,
);

/// Orphans a reconciliation disables are access taken away within the guard's window, as
/// leavers are: the leavers after them are judged with them. (Before, they counted only in
/// the reconciliation's own check, so a purge just under the share and then leavers just under
/// it took away more than the guard allows.)
fn disabled_orphans_count_toward_the_next_leavers_guard(env: Env) {
    let ids: Vec<String> = (0..9)
        .map(|i| env.create_user(user(&format!("p{i}"), "Employee", "Sales", "Rep")))
        .collect();
    env.run();
    let block = rt();
    for ghost in ["ghost1", "ghost2"] {
        block
            .block_on(env.app("erp").create_or_adopt(&AccountSpec {
                account: AccountRef::new(ghost),
                attributes: serde_json::Map::new(),
            }))
            .unwrap();
    }
    // Two of eleven (the nine users and the two orphans): under 30 %, disabled at once.
    let report = reconcile(&env, "erp", false);
    assert_eq!(report.fixes.len(), 2, "{report:?}");
    assert_eq!(report.held, None);
    env.run();
    // A first leaver makes three of eleven (27 %): allowed.
    env.patch_user(&ids[0], |d| {
        d.insert("active".into(), json!(false));
    });
    assert!(env.admin.holds(Some("pending")).unwrap().is_empty());
    // A second makes four of eleven (36 %): held. Without the orphans it would be two of nine.
    env.patch_user(&ids[1], |d| {
        d.insert("active".into(), json!(false));
    });
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
}

fn orphans_are_disabled_under_fix_and_stay_known(env: Env) {
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    let block = rt();
    block
        .block_on(env.app("erp").create_or_adopt(&AccountSpec {
            account: AccountRef::new("ghost"),
            attributes: serde_json::Map::new(),
        }))
        .unwrap();
    let report = reconcile(&env, "erp", false);
    assert_eq!(report.fixes, vec!["set_enabled false ghost"], "{report:?}");
    assert_eq!(report.held, None);
    env.run();
    assert!(
        !env.app("erp").account("ghost").unwrap().enabled,
        "disabled (on_leave)"
    );
    // The next run knows the disabled orphan: nothing open.
    env.clock.advance(Duration::minutes(5));
    let again = reconcile(&env, "erp", false);
    assert_eq!((again.opened, again.closed), (0, 1), "{again:?}");
    assert!(findings(&env, "erp", Some("open")).is_empty());
    // Enabled again by hand: an orphan again, disabled again.
    block
        .block_on(env.app("erp").set_enabled(&AccountRef::new("ghost"), true))
        .unwrap();
    let third = reconcile(&env, "erp", false);
    assert_eq!(
        keys(&findings(&env, "erp", Some("open"))),
        vec![k("orphan", "ghost", "")],
        "{third:?}"
    );
    env.run();
    assert!(!env.app("erp").account("ghost").unwrap().enabled);
}

review_backends!(
    the_manager_keeps_one_grant_and_removes_another,
    a_deactivated_managers_review_links_no_longer_act,
    admin_api_runs_reconciliation_and_lists_findings,
);

fn admin_api_runs_reconciliation_and_lists_findings(env: Env) {
    let srv = super::admin_api::Server::start(&env);
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    rt().block_on(
        env.app("erp")
            .grant(&AccountRef::new("fay"), &Entitlement::new("group", "extra")),
    )
    .unwrap();
    // A dry run answers the findings and writes nothing.
    let (s, v) = srv.post("/reconcile?connector=erp&dry_run=true", json!({}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["runs"][0]["dry_run"], true);
    assert_eq!(v["runs"][0]["counts"]["entitlement_outside"], 1, "{v}");
    assert_eq!(v["runs"][0]["findings"][0]["entitlement"]["id"], "extra");
    let (s, v) = srv.get("/drift");
    assert_eq!(s, 200);
    assert_eq!(v["totalResults"], 0, "{v}");
    // A real run of every connector that can list accounts.
    let (s, v) = srv.post("/reconcile", json!({}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["runs"].as_array().unwrap().len(), 3, "{v}");
    let (s, v) = srv.get("/drift?connector=erp&kind=entitlement_outside");
    assert_eq!(s, 200);
    assert_eq!(v["totalResults"], 1, "{v}");
    let f = &v["Resources"][0];
    assert_eq!(
        (
            f["account"].as_str(),
            f["entitlement"].as_str(),
            f["status"].as_str(),
            f["action"].as_str()
        ),
        (
            Some("fay"),
            Some("group:extra"),
            Some("open"),
            Some("review")
        )
    );
    assert_eq!(srv.get("/drift?status=closed").1["totalResults"], 0);
    assert_eq!(srv.get("/drift?kind=nonsense").0, 400);
    assert_eq!(srv.post("/reconcile?connector=nope", json!({})).0, 404);
    // Without the admin scope: refused.
    let weak = srv.token("weak", &["scim:read"], None);
    assert_eq!(srv.post_as(&weak, "/reconcile", json!({})).0, 403);
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The keep and remove links of the last drift review mail to `to` (a user id).
fn review_links(env: &Env, to: &str) -> (String, String) {
    let body = super::admin_api::notes(env, None)
        .into_iter()
        .rfind(|n| {
            n.kind == "drift_review"
                && n.recipients
                    .iter()
                    .any(|r| r.contains(to) || r.contains("grace"))
        })
        .unwrap_or_else(|| panic!("no drift review mail"))
        .body;
    let link = |label: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {body}"))
            .trim()
            .rsplit_once('/')
            .expect("a link")
            .1
            .to_string()
    };
    (link("Keep: "), link("Remove: "))
}

fn the_manager_keeps_one_grant_and_removes_another(env: Env) {
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let mut f = user("fay", "Employee", "Finance", "Accounts Payable");
    f[ENTERPRISE]["manager"] = json!({"value": grace});
    let _fay = env.create_user(f);
    env.run();
    let block = rt();
    let grant = |id: &str| {
        block
            .block_on(
                env.app("erp")
                    .grant(&AccountRef::new("fay"), &Entitlement::new("group", id)),
            )
            .unwrap()
    };
    grant("break-glass");
    let report = reconcile(&env, "erp", false);
    assert_eq!(report.reviews, 1, "{report:?}");
    let (keep, remove) = review_links(&env, &grace);
    // Opening the link shows what keeping does; nothing changes.
    let preview = env.admin.preview_link(&keep).unwrap();
    assert!(
        preview
            .message
            .starts_with("Keep entitlement_outside group:break-glass"),
        "{}",
        preview.message
    );
    let done = env.admin.follow_link(&keep).unwrap();
    assert!(done.message.starts_with("Kept."), "{}", done.message);
    // One use per finding: the other link no longer acts.
    assert!(env.admin.follow_link(&remove).is_err());
    assert!(findings(&env, "erp", Some("open")).is_empty());
    // The exception is honoured: later runs neither report nor ask again.
    env.clock.advance(Duration::hours(1));
    let again = reconcile(&env, "erp", false);
    assert_eq!((again.opened, again.reviews), (0, 0), "{again:?}");
    assert!(again.findings.is_empty(), "{again:?}");
    // A second grant by hand: the manager removes it; the correction runs through the outbox.
    grant("shadow-admin");
    let third = reconcile(&env, "erp", false);
    assert_eq!(third.reviews, 1, "{third:?}");
    let (_, remove) = review_links(&env, &grace);
    let done = env.admin.follow_link(&remove).unwrap();
    assert!(
        done.message.starts_with("Removal planned."),
        "{}",
        done.message
    );
    env.run();
    let held = env.holds("erp", "fay").unwrap().1;
    assert!(held.contains(&"group:break-glass".to_string()), "{held:?}");
    assert!(
        !held.contains(&"group:shadow-admin".to_string()),
        "{held:?}"
    );
    // Past the exception's expiry the kept grant is a finding again.
    env.clock.advance(Duration::days(31));
    let later = reconcile(&env, "erp", false);
    assert_eq!(
        keys(&findings(&env, "erp", Some("open"))),
        vec![k("entitlement_outside", "fay", "group:break-glass")],
        "{later:?}"
    );
}

/// A review link mailed to a manager who is deactivated since is refused (403) whether kept
/// or removed, opened or followed: the finding stays open and the grant stays.
fn a_deactivated_managers_review_links_no_longer_act(env: Env) {
    use scim_server::admin::AdminError;
    let grace = env.create_user(user("grace", "Employee", "Sales", "Manager"));
    let mut f = user("fay", "Employee", "Finance", "Accounts Payable");
    f[ENTERPRISE]["manager"] = json!({"value": grace});
    env.create_user(f);
    env.run();
    rt().block_on(env.app("erp").grant(
        &AccountRef::new("fay"),
        &Entitlement::new("group", "break-glass"),
    ))
    .unwrap();
    assert_eq!(reconcile(&env, "erp", false).reviews, 1);
    let (keep, remove) = review_links(&env, &grace);
    env.patch_user(&grace, |d| {
        d.insert("active".into(), json!(false));
    });
    for link in [&keep, &remove] {
        let refused = |r: Result<_, AdminError>| match r {
            Err(AdminError::Forbidden(m)) => assert!(m.contains("no longer an active"), "{m}"),
            other => panic!("{other:?}"),
        };
        refused(env.admin.preview_link(link).map(|_| ()));
        refused(env.admin.follow_link(link).map(|_| ()));
    }
    assert_eq!(
        keys(&findings(&env, "erp", Some("open"))),
        vec![k("entitlement_outside", "fay", "group:break-glass")]
    );
    env.run();
    let held = env.holds("erp", "fay").unwrap().1;
    assert!(held.contains(&"group:break-glass".to_string()), "{held:?}");
}

macro_rules! drift_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::Env::new(false, &super::drift_policy()) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::Env::new(true, &super::drift_policy()) { super::$name(e) } } )* }
    };
}

drift_backends!(
    memory_apps_give_every_finding_kind_and_fix_extra_entitlements,
    the_schedule_runs_and_unseen_findings_close,
    a_dry_run_writes_nothing,
    an_account_added_by_hand_in_slapd_is_an_orphan,
    a_group_added_by_hand_in_moto_iam_is_removed_through_the_outbox,
    a_second_run_of_a_connector_waits_for_the_first,
    a_fix_and_a_write_of_the_same_user_take_turns,
);

/// A reconciliation fixing a user while a SCIM write of that user is planning (it holds the
/// user's row and then writes the user's accounts): the fix waits for the write instead of
/// deadlocking with it. It locked the user only when its re-plan read them, after it had
/// written the user's account record: the reverse of the write's order.
fn a_fix_and_a_write_of_the_same_user_take_turns(env: Env) {
    use diesel::RunQueryDsl;
    use scim_server::store::engine_state;
    let fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    rt().block_on(async {
        env.app("erp")
            .grant(
                &AccountRef::new("fay"),
                &Entitlement::new("group", "approve"),
            )
            .await
            .unwrap()
    });
    let (locked, after_lock) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let write = scope.spawn(|| {
            in_tx(&env.store, |c| {
                // What a SCIM write of fay holds while it plans: her row, then her accounts.
                if matches!(c, scim_server::store::DbConnection::Postgresql(_)) {
                    diesel::sql_query("SELECT id FROM resources WHERE id = $1 FOR UPDATE")
                        .bind::<diesel::sql_types::Text, _>(&fay)
                        .execute(c)?;
                }
                locked.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                let planned = engine_state::accounts(c, &fay)?
                    .into_iter()
                    .find(|a| a.connector == "erp")
                    .unwrap()
                    .planned;
                engine_state::put_planned(c, &fay, "erp", &planned, chrono::Utc::now())
            })
        });
        after_lock.recv().unwrap();
        let report = reconcile(&env, "erp", false);
        assert_eq!(report.replanned, 1, "{report:?}");
        write.join().unwrap().unwrap();
    });
}

/// Two runs of one connector must not overlap (the second would close what the first saw):
/// while a run holds the connector's lease another is refused; a dry run is not; once the
/// lease is released (or expired) runs go ahead.
fn a_second_run_of_a_connector_waits_for_the_first(env: Env) {
    let now = env.engine.now();
    assert!(in_tx(&env.store, |c| drift::take_run_lease(
        c,
        "erp",
        "other-node-run",
        now,
        now + Duration::minutes(10)
    ))
    .unwrap());
    let refused = rt()
        .block_on(reconcile::run(&env.store, &env.engine, "erp", false))
        .unwrap_err();
    assert!(
        refused.to_string().contains("already in progress"),
        "{refused}"
    );
    // A dry run writes nothing and needs no lease.
    reconcile(&env, "erp", true);
    // Past the lease the run goes ahead, and it releases its own lease when done.
    env.clock.advance(Duration::minutes(11));
    reconcile(&env, "erp", false);
    reconcile(&env, "erp", false);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn reconcile(env: &Env, connector: &str, dry_run: bool) -> RunReport {
    rt().block_on(reconcile::run(&env.store, &env.engine, connector, dry_run))
        .unwrap()
}

fn findings(env: &Env, connector: &str, status: Option<&str>) -> Vec<Finding> {
    in_tx(&env.store, |c| {
        drift::list(
            c,
            &Filter {
                connector: Some(connector),
                kind: None,
                status,
            },
            1000,
        )
    })
    .unwrap()
}

fn keys(f: &[Finding]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = f
        .iter()
        .map(|f| (f.kind.clone(), f.account.clone(), f.entitlement.clone()))
        .collect();
    v.sort();
    v
}

fn k(kind: &str, account: &str, ent: &str) -> (String, String, String) {
    (kind.into(), account.into(), ent.into())
}

fn memory_apps_give_every_finding_kind_and_fix_extra_entitlements(env: Env) {
    let ann = env.create_user(user("ann", "Employee", "Engineering", "Engineer"));
    let fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    let bob = env.create_user(user("bob", "Employee", "Finance", "Accounts Payable"));
    let cy = env.create_user(user("cy", "Employee", "Finance", "Accounts Payable"));
    env.run();
    let erp = env.app("erp");
    let block = rt();
    // By hand on erp: an account nobody has, an emergency grant to fay, bob's role taken away,
    // cy's account gone, and fay's title changed.
    block.block_on(async {
        erp.create_or_adopt(&AccountSpec {
            account: AccountRef::new("ghost"),
            attributes: serde_json::Map::new(),
        })
        .await
        .unwrap();
        erp.grant(
            &AccountRef::new("fay"),
            &Entitlement::new("group", "approve"),
        )
        .await
        .unwrap();
        erp.revoke(&AccountRef::new("bob"), &Entitlement::new("group", "ap"))
            .await
            .unwrap();
        erp.delete(&AccountRef::new("cy")).await.unwrap();
        let mut spec = AccountSpec {
            account: AccountRef::new("fay"),
            attributes: erp.account("fay").unwrap().attributes,
        };
        spec.attributes
            .insert("title".into(), json!("Someone Else"));
        erp.update(&spec).await.unwrap();
    });
    // Ann leaves; her slack account is enabled again by hand.
    env.patch_user(&ann, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    block
        .block_on(env.app("slack").set_enabled(&AccountRef::new("ann"), true))
        .unwrap();
    let report = reconcile(&env, "erp", false);
    assert_eq!(report.opened, 5, "{report:?}");
    assert_eq!(
        keys(&findings(&env, "erp", Some("open"))),
        vec![
            k("attribute_drift", "fay", ""),
            k("entitlement_outside", "fay", "group:approve"),
            k("missing_account", "cy", ""),
            k("missing_entitlement", "bob", "group:ap"),
            k("orphan", "ghost", ""),
        ]
    );
    let slack = reconcile(&env, "slack", false);
    assert_eq!(
        keys(&findings(&env, "slack", Some("open"))),
        vec![k("departed", "ann", "")],
        "{slack:?}"
    );
    let f = &findings(&env, "slack", None)[0];
    assert_eq!(f.user_id.as_deref(), Some(ann.as_str()));
    // Incidents for the kinds [drift] incidents lists (orphan, departed, entitlement_outside).
    let drift_incidents: Vec<_> = in_tx(&env.store, incidents::list_open)
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == "drift")
        .collect();
    assert_eq!(drift_incidents.len(), 3, "{drift_incidents:?}");
    // fix: the emergency grant is revoked through the outbox; the rest is only reported.
    assert_eq!(report.replanned, 1);
    env.run();
    let (enabled, ents) = env.holds("erp", "fay").unwrap();
    assert!(enabled);
    assert_eq!(ents, vec!["group:ap"]);
    assert!(env.app("erp").account("ghost").unwrap().enabled);
    assert!(
        env.holds("slack", "ann").unwrap().0,
        "departed is reported only"
    );
    // The next run no longer sees the grant: closed, not deleted; the others' last_seen moves.
    env.clock.advance(Duration::hours(1));
    let again = reconcile(&env, "erp", false);
    assert_eq!((again.opened, again.closed), (0, 1), "{again:?}");
    let all = findings(&env, "erp", None);
    let grant = all
        .iter()
        .find(|f| f.kind == "entitlement_outside")
        .unwrap();
    assert_eq!(grant.status, "closed");
    assert!(grant.closed_at.is_some());
    let orphan = all.iter().find(|f| f.kind == "orphan").unwrap();
    assert!(orphan.last_seen > orphan.first_seen);
    let _ = (fay, bob, cy);
}

fn the_schedule_runs_and_unseen_findings_close(env: Env) {
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    let block = rt();
    block
        .block_on(
            env.app("erp")
                .grant(&AccountRef::new("fay"), &Entitlement::new("group", "extra")),
        )
        .unwrap();
    // Not before the schedule's first run, 6 hours on.
    env.clock.advance(Duration::hours(5));
    env.run();
    assert!(findings(&env, "erp", None).is_empty());
    env.clock.advance(Duration::hours(1));
    env.run();
    let f = findings(&env, "erp", None);
    assert_eq!(
        keys(&f),
        vec![k("entitlement_outside", "fay", "group:extra")]
    );
    // Fixed by the same run_until_idle (the revoke ran); the next scheduled run closes it.
    assert_eq!(env.holds("erp", "fay").unwrap().1, vec!["group:ap"]);
    env.clock.advance(Duration::hours(6));
    env.run();
    let f = findings(&env, "erp", None);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, "closed");
    // Other connectors have no schedule.
    assert!(findings(&env, "slack", None).is_empty());
}

fn a_dry_run_writes_nothing(env: Env) {
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    rt().block_on(
        env.app("erp")
            .grant(&AccountRef::new("fay"), &Entitlement::new("group", "extra")),
    )
    .unwrap();
    let calls = env.app("erp").state().calls;
    let report = reconcile(&env, "erp", true);
    assert!(report.dry_run);
    assert_eq!(report.counts.get("entitlement_outside"), Some(&1));
    assert_eq!(report.fixes, vec!["revoke fay group:extra"]);
    assert!(findings(&env, "erp", None).is_empty());
    assert_eq!(env.run(), 0, "nothing was queued");
    // Only the listing called the system.
    assert_eq!(env.app("erp").state().calls, calls + 1);
    assert!(env
        .holds("erp", "fay")
        .unwrap()
        .1
        .contains(&"group:extra".to_string()));
}

const ADMIN: &str = "cn=admin,dc=example,dc=com";

fn ldap_config(slapd: &Slapd) -> LdapConfig {
    LdapConfig {
        name: "erp".into(),
        url: format!("ldap://127.0.0.1:{}", slapd.port),
        tls: LdapTls::StartTls,
        ca_file: Some(slapd.ca()),
        bind_dn: ADMIN.into(),
        bind_password: Secret::new("adminpw"),
        search_base: "dc=example,dc=com".into(),
        users_dn: "ou=people,dc=example,dc=com".into(),
        groups_dn: "ou=groups,dc=example,dc=com".into(),
        timeout: std::time::Duration::from_secs(5),
        page_size: 2,
        flavor: LdapFlavor::Generic(GenericLdap {
            disable: DisableMethod::MoveToOu("ou=disabled,dc=example,dc=com".into()),
            disable_removes_groups: false,
            placeholder_member: "cn=placeholder,ou=people,dc=example,dc=com".into(),
        }),
        ownership: LdapOwnership {
            protected_accounts: vec!["svc-*".into()],
            ..LdapOwnership::default()
        },
    }
}

/// Adds an entry as the directory's admin, outside the hub.
async fn add_by_hand(slapd: &Slapd, dn: &str, attrs: &[(&str, &str)]) {
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(
        ldap3::LdapConnSettings::new().set_no_tls_verify(true),
        &format!("ldap://127.0.0.1:{}", slapd.port),
    )
    .await
    .unwrap();
    tokio::spawn(async move { conn.drive().await });
    ldap.simple_bind(ADMIN, "adminpw")
        .await
        .unwrap()
        .success()
        .unwrap();
    let attrs: Vec<(&str, std::collections::HashSet<&str>)> =
        attrs.iter().map(|(a, v)| (*a, [*v].into())).collect();
    ldap.add(dn, attrs).await.unwrap().success().unwrap();
    let _ = ldap.unbind().await;
}

fn an_account_added_by_hand_in_slapd_is_an_orphan(env: Env) {
    let slapd = Slapd::start();
    env.engine.connectors.insert(
        "erp",
        Arc::new(LdapConnector::new(ldap_config(&slapd)).unwrap()),
    );
    let block = rt();
    let person = |uid: &'static str| {
        [
            ("objectClass", "inetOrgPerson"),
            ("uid", uid),
            ("cn", uid),
            ("sn", uid),
        ]
    };
    block.block_on(add_by_hand(
        &slapd,
        "cn=ap,ou=groups,dc=example,dc=com",
        &[
            ("objectClass", "groupOfNames"),
            ("cn", "ap"),
            ("member", "cn=placeholder,ou=people,dc=example,dc=com"),
        ],
    ));
    let mut doc = user("fay", "Employee", "Finance", "Accounts Payable");
    doc["name"] = json!({"givenName": "Fay", "familyName": "Ng"});
    let _fay = env.create_user(doc);
    env.run();
    block.block_on(async {
        for uid in ["mallory", "svc-backup"] {
            add_by_hand(
                &slapd,
                &format!("uid={uid},ou=people,dc=example,dc=com"),
                &person(uid),
            )
            .await;
        }
    });
    let report = reconcile(&env, "erp", false);
    assert!(report.listed >= 3, "{report:?}");
    assert!(report.excluded >= 1, "svc-backup is protected: {report:?}");
    let open = findings(&env, "erp", Some("open"));
    let orphans: Vec<&str> = open
        .iter()
        .filter(|f| f.kind == "orphan")
        .map(|f| f.account.as_str())
        .collect();
    assert!(orphans.contains(&"mallory"), "{open:?}");
    assert!(
        !open.iter().any(|f| f.account == "svc-backup"),
        "protected accounts are never reported: {open:?}"
    );
    // The hub's own account matches its record: no finding about fay.
    assert!(!open.iter().any(|f| f.account == "fay"), "{open:?}");
    // Orphans are reported, never touched without `fix`.
    assert_eq!(env.run(), 0);
}

fn a_group_added_by_hand_in_moto_iam_is_removed_through_the_outbox(env: Env) {
    // The proxy in front of moto runs on this runtime for the whole test.
    let keep = rt();
    let moto = keep.block_on(start_moto());
    let boot = iam_client(&moto.proxy.url(), &moto.key_id, &moto.secret);
    keep.block_on(async {
        for g in ["ap", "admins"] {
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
            .map(|s| {
                s.split("</GroupName>")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        out.sort();
        out
    };
    let _fay = env.create_user(user("fay", "Employee", "Finance", "Accounts Payable"));
    env.run();
    assert_eq!(groups_of("fay"), vec!["ap"]);
    // A membership added by hand through IAM's own API.
    let added = keep
        .block_on(boot.call(
            "AddUserToGroup",
            &[("UserName", "fay"), ("GroupName", "admins")],
        ))
        .unwrap();
    assert!(!xml_field(&added, "RequestId").is_empty() || added.contains("Response"));
    assert_eq!(groups_of("fay"), vec!["admins", "ap"]);
    let report = reconcile(&env, "erp", false);
    assert_eq!(
        keys(&findings(&env, "erp", Some("open"))),
        vec![k("entitlement_outside", "fay", "group:admins")],
        "{report:?}"
    );
    assert_eq!(report.replanned, 1);
    let revokes: Vec<String> = in_tx(&env.store, |c| super::outbox::list_ops(c, None, None, 1000))
        .unwrap()
        .into_iter()
        .map(|r| r.op)
        .filter(|op| op.contains("\"revoke\""))
        .collect();
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    env.run();
    assert_eq!(groups_of("fay"), vec!["ap"], "removed through the outbox");
    env.clock.advance(Duration::minutes(5));
    let again = reconcile(&env, "erp", false);
    assert_eq!(again.closed, 1, "{again:?}");
    assert!(findings(&env, "erp", Some("open")).is_empty());
}

/// The benchmark of issue #14: reconcile 100,000 accounts on the memory connector (95,000 of
/// them the engine's, 1,000 of those with an extra entitlement, 5,000 orphans), printing the
/// time and the process's peak RSS. No timed assertion; run it with
/// `cargo test --release --test engine drift::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_reconcile_100k_accounts() {
    use scim_server::engine::plan::AccountRecord;
    use scim_server::store::engine_state::{self, EngineUser};
    const N: usize = 100_000;
    const OURS: usize = 95_000;
    // Findings reported, nothing fixed: the run is measured, not re-planning.
    let env = Env::new(
        false,
        &POLICY.replace("kind = \"role\"", "kind = \"group\""),
    )
    .unwrap();
    let erp = env.app("erp");
    let block = rt();
    let now = env.engine.now();
    let t0 = std::time::Instant::now();
    block.block_on(async {
        for i in 0..N {
            let key = format!("user{i:06}");
            erp.create_or_adopt(&AccountSpec {
                account: AccountRef::new(key.clone()),
                attributes: serde_json::Map::new(),
            })
            .await
            .unwrap();
            erp.grant(
                &AccountRef::new(key.clone()),
                &Entitlement::new("group", "ap"),
            )
            .await
            .unwrap();
            if i % 95 == 0 && i < OURS {
                erp.grant(&AccountRef::new(key), &Entitlement::new("group", "extra"))
                    .await
                    .unwrap();
            }
        }
    });
    in_tx(&env.store, |c| {
        for i in 0..OURS {
            let user_id = format!("u{i:06}");
            engine_state::put_user(
                c,
                &EngineUser {
                    user_id: user_id.clone(),
                    state: "active".into(),
                    profiles: vec!["finance-ap".into()],
                    facts: json!({}),
                    updated: now,
                },
            )?;
            let rec = AccountRecord {
                exists: true,
                enabled: true,
                key: format!("user{i:06}"),
                id: None,
                attributes_hash: String::new(),
                entitlements: [Entitlement::new("group", "ap")].into(),
                kept_for_records: false,
            };
            engine_state::put_planned(
                c,
                &user_id,
                "erp",
                &serde_json::to_string(&rec).unwrap(),
                now,
            )?;
        }
        Ok(())
    })
    .unwrap();
    let setup = t0.elapsed();
    let status = |field: &str| {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string() + " kB")
            .unwrap_or_else(|| "?".into())
    };
    let before = status("VmRSS");
    // Resets the peak (VmHWM) so it covers the run only (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t1 = std::time::Instant::now();
    let report = rt()
        .block_on(reconcile::run(&env.store, &env.engine, "erp", false))
        .unwrap();
    let run = t1.elapsed();
    let peak = status("VmHWM");
    println!(
        "reconcile of {} accounts: {:.1} s (setup {:.1} s); findings {:?}; opened {}; \
         RSS before the run {before} (the memory system's 100k accounts and the store), \
         peak during the run {peak}",
        report.listed,
        run.as_secs_f64(),
        setup.as_secs_f64(),
        report.counts,
        report.opened
    );
    assert_eq!(report.listed, N);
    assert_eq!(report.counts.get("orphan"), Some(&(N - OURS)));
}

/// `scimhub reconcile` with the real binary: a dry run prints the findings and stores nothing;
/// a run stores them.
#[test]
fn the_cli_reconciles_and_dry_runs() {
    let dir = std::env::temp_dir().join(format!("scimhub-drift-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("app.json");
    std::fs::write(
        &state,
        json!({"accounts": {"ghost": {"id": "1", "enabled": true, "attributes": {},
            "entitlements": [], "sessions": 0, "credentials": 0, "owned": []}},
            "effects": [], "calls": 0})
        .to_string(),
    )
    .unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[connector]]\nname = \"app\"\ntype = \"memory\"\nsettings = {{ file = \"{}\" }}\n",
            state.display()
        ),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.join("hub.db").display());
    let run = |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scimhub"));
        cmd.args(["reconcile", "--connector", "app", "--database-url", &db])
            .arg("--policy")
            .arg(&policy)
            .env_remove("RUST_LOG");
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let stored = || {
        let store = scim_server::store::Store::open(&db).unwrap();
        in_tx(&store, |c| drift::list(c, &Filter::default(), 10)).unwrap()
    };
    let v = run(true);
    assert_eq!(v[0]["dry_run"], true, "{v}");
    assert_eq!(v[0]["counts"]["orphan"], 1, "{v}");
    assert_eq!(v[0]["findings"][0]["account"], "ghost");
    assert!(stored().is_empty(), "a dry run writes nothing");
    let v = run(false);
    assert_eq!(v[0]["opened"], 1, "{v}");
    let f = stored();
    assert_eq!(keys(&f), vec![k("orphan", "ghost", "")]);
    let _ = std::fs::remove_dir_all(&dir);
}
