//! Lifecycle engine tests: each scenario runs against the real store (SQLite file, and
//! PostgreSQL when `SCIMHUB_TEST_POSTGRES_URL` is set, one database per test), in-memory
//! connectors and a test clock that the test moves.

#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

mod admin_api;
mod audit_api;
mod certification;
mod circuit;
mod crash;
mod demo;
mod events_api;
mod grants;
mod incident_notices;
mod notify;
mod onboarding;
mod outages;
mod reports;
mod sources;
mod takeover;
mod wake;

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use connectors::memory::MemoryConnector;
use connectors::{ConnectorError, Entitlement};
use diesel::{Connection, PgConnection, RunQueryDsl};
use scim_server::admin::{in_tx, Admin};
use scim_server::auth::{Principal, Scope, UserRef};
use scim_server::clock::TestClock;
use scim_server::engine::connector_set::{default_builder, ConnectorSet};
use scim_server::engine::hook::install;
use scim_server::engine::{Cause, Engine};
use scim_server::jobs::Workers;
use scim_server::policy::reload::PolicyHandle;
use scim_server::policy::Policy;
use scim_server::store::{
    audit, engine_state, events, incidents, outbox, timers, Doc, MemberRemoval, NewMember,
    ResourceKind, Store,
};
use serde_json::{json, Value};

/// The policy every engine test runs under (also the engine's planner unit tests).
pub const POLICY: &str = include_str!("policy.toml");

/// One test environment.
#[allow(missing_debug_implementations)]
pub struct Env {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub workers: Workers,
    pub admin: Admin,
    pub clock: TestClock,
    pub apps: Vec<(String, MemoryConnector)>,
    pg: Option<(String, String)>,
    dir: std::path::PathBuf,
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        Utc::now().timestamp_micros()
    )
}

impl Env {
    /// `None` for PostgreSQL when `SCIMHUB_TEST_POSTGRES_URL` is not set.
    pub fn new(pg: bool, policy: &str) -> Option<Env> {
        let dir = std::env::temp_dir().join(unique("scimhub-engine"));
        std::fs::create_dir_all(&dir).unwrap();
        let (url, pgdb) = if pg {
            let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").ok()?;
            let name = unique("scimhub_engine");
            let mut c = PgConnection::establish(&admin_url).unwrap();
            diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                .execute(&mut c)
                .unwrap();
            let base = admin_url.rsplit_once('/').unwrap().0.to_string();
            (format!("{base}/{name}"), Some((admin_url, name)))
        } else {
            (format!("sqlite://{}", dir.join("hub.db").display()), None)
        };
        let clock = TestClock::new(Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap());
        let policy = Policy::parse(policy, "test.toml").unwrap();
        let connectors = ConnectorSet::new(default_builder());
        let mut apps = Vec::new();
        for name in policy.connectors.keys() {
            let m = MemoryConnector::new(name.clone());
            connectors.insert(name, Arc::new(m.clone()));
            apps.push((name.clone(), m));
        }
        let engine = Arc::new(Engine::new(
            PolicyHandle::fixed(policy),
            Arc::new(clock.clone()),
            connectors,
        ));
        let store = install(Store::open(&url).unwrap(), engine.clone());
        let mut workers = Workers::new(store.clone(), engine.clone());
        workers.config.base_backoff = Duration::seconds(1);
        workers.config.max_attempts = 3;
        let admin = Admin::new(store.clone(), engine.clone());
        Some(Env {
            store,
            engine,
            workers,
            admin,
            clock,
            apps,
            pg: pgdb,
            dir,
        })
    }

    /// A connection of its own to this test's PostgreSQL database (`None` on SQLite): to watch
    /// `pg_stat_activity` while the store's connections wait on each other.
    pub fn pg_observer(&self) -> Option<PgConnection> {
        let (admin_url, name) = self.pg.as_ref()?;
        let base = admin_url.rsplit_once('/').unwrap().0;
        Some(PgConnection::establish(&format!("{base}/{name}")).unwrap())
    }

    pub fn app(&self, name: &str) -> &MemoryConnector {
        &self.apps.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Entitlements `kind:id` of `key` on `app`, and whether the account is enabled.
    pub fn holds(&self, app: &str, key: &str) -> Option<(bool, Vec<String>)> {
        self.app(app).account(key).map(|a| {
            (
                a.enabled,
                a.entitlements
                    .iter()
                    .map(|e| format!("{}:{}", e.kind, e.id))
                    .collect(),
            )
        })
    }

    pub fn run(&self) -> usize {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.workers.run_until_idle())
            .unwrap()
    }

    pub fn create_user(&self, doc: Value) -> String {
        let Value::Object(doc) = doc else { panic!() };
        self.store.create(ResourceKind::User, doc, None).unwrap().id
    }

    /// Creates `doc` as reporting to the user `manager` (the enterprise `manager.value`).
    pub fn create_report(&self, mut doc: Value, manager: &str) -> String {
        doc["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
            json!({"value": manager});
        self.create_user(doc)
    }

    pub fn patch_user(&self, id: &str, f: impl Fn(&mut Doc)) {
        self.store
            .update_with(ResourceKind::User, id, None, None, |mut d| {
                f(&mut d);
                Ok(d)
            })
            .unwrap();
    }

    /// A credential acting as the directory user `user_name` (as a token issued with
    /// `--user user_name` would), with the `approvals` scope.
    pub fn as_user(&self, user_name: &str) -> Principal {
        Principal {
            client: format!("{user_name}-token"),
            scopes: vec![Scope::Approvals],
            subject: None,
            user: Some(UserRef::UserName(user_name.into())),
        }
    }

    pub fn events(&self, id: &str) -> Vec<String> {
        in_tx(&self.store, |c| events::list(c, Some(id), 100))
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| e.event)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin_url, name)) = &self.pg {
            if let Ok(mut c) = PgConnection::establish(admin_url) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut c);
            }
        }
    }
}

pub fn user(name: &str, user_type: &str, dept: &str, title: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "userType": user_type,
        "title": title,
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": dept},
    })
}

pub fn set_dept(d: &mut Doc, dept: &str) {
    d.insert(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
        json!({"department": dept}),
    );
}

/// Waits until a connection of this test's database waits for a row lock in a statement that
/// contains `statement` (PostgreSQL), so a test can act while it is parked there.
pub fn until_waiting_in(pg: &mut diesel::PgConnection, statement: &str) {
    use diesel::sql_types::{BigInt, Text};
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    for _ in 0..3000 {
        let w: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND position($1 in query) > 0",
        )
        .bind::<Text, _>(statement)
        .get_result(pg)
        .unwrap();
        if w.n > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("nothing waited for a lock in `{statement}`");
}

/// Runs `waiter` while a transaction of the test holds what `hold` locks (PostgreSQL), and once
/// `waiter` waits for a lock in a statement containing `statement`, checks that it does not hold
/// the audit chain's head meanwhile (the head's holder would stall every commit); then lets the
/// holder commit and returns what `waiter` returned. `what` names the waiter in the failure.
pub fn parked_without_the_head<T: Send>(
    env: &Env,
    hold: impl FnOnce(&mut scim_server::store::DbConnection) -> diesel::QueryResult<usize> + Send,
    waiter: impl FnOnce() -> T + Send,
    statement: &str,
    what: &str,
) -> T {
    let mut observer = env.pg_observer().expect("a PostgreSQL test");
    let (held, held_rx) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    // `move`: a failed check drops `release`, so the thread holding the lock ends.
    std::thread::scope(move |scope| {
        scope.spawn(move || {
            in_tx(&env.store, |c| {
                hold(c)?;
                held.send(()).unwrap();
                let _ = release_rx.recv();
                Ok(())
            })
            .unwrap();
        });
        held_rx.recv().unwrap();
        let waiting = scope.spawn(waiter);
        until_waiting_in(&mut observer, statement);
        let head = in_tx(&env.store, |c| {
            diesel::sql_query("SELECT seq FROM engine_audit_head WHERE id = 1 FOR UPDATE NOWAIT")
                .execute(c)?;
            Ok(())
        });
        assert!(
            head.is_ok(),
            "{what} held the chain head while it waited for a lock: {head:?}"
        );
        release.send(()).unwrap();
        waiting.join().unwrap()
    })
}

/// One test per backend.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::Env::new(false, super::POLICY) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::Env::new(true, super::POLICY) { super::$name(e) } } )* }
    };
}

backends!(
    joiner_with_and_without_approval,
    an_approval_ends_with_the_role,
    mover_with_overlap_then_acknowledge,
    mover_without_overlap,
    legacy_access_extensions_stop_at_their_limit,
    leaver_cascade_and_rehire,
    contractor_expiry_and_extension,
    sod_violation_blocked,
    blast_radius_hold,
    blast_radius_hold_despite_users_without_access,
    blast_radius_hold_with_concurrent_writers,
    retries_and_parking,
    refusals_park_at_once,
    start_date_timer,
);

fn joiner_with_and_without_approval(env: Env) {
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let ada = env.create_report(user("ada", "Employee", "Engineering", "Engineer"), &mia);
    assert_eq!(env.events(&ada), vec!["joiner"]);
    env.run();
    assert_eq!(
        env.holds("slack", "ada"),
        Some((true, vec!["channel:general".into()]))
    );
    // The team is granted at once; the org admin role waits for the manager.
    assert_eq!(
        env.holds("github", "ada"),
        Some((true, vec!["team:eng".into()]))
    );
    let pending = env.admin.approvals(Some("pending")).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].level.as_str(), "manager");
    // A later write does not request it again.
    env.patch_user(&ada, |d| {
        d.insert("title".into(), json!("Senior Engineer"));
    });
    assert_eq!(env.admin.approvals(Some("pending")).unwrap().len(), 1);
    // Decided by her manager, as the manager.
    let row = env
        .admin
        .approve(&pending[0].id, &env.as_user("mia"))
        .unwrap();
    assert_eq!(
        (row.decided_by.as_deref(), row.decided_as.as_deref()),
        (Some("mia"), Some("manager"))
    );
    assert_eq!(row.decided_by_user_id.as_deref(), Some(mia.as_str()));
    assert_eq!(row.decided_by_credential.as_deref(), Some("mia-token"));
    env.run();
    let (_, ents) = env.holds("github", "ada").unwrap();
    assert_eq!(ents, vec!["org:acme".to_string(), "team:eng".into()]);
    // Every create happened once; the audit has one entry per operation.
    let creates = env
        .app("github")
        .effects()
        .iter()
        .filter(|e| e.op == "create")
        .count();
    assert_eq!(creates, 1);
    let audit = in_tx(&env.store, |c| audit::list(c, Some(&ada))).unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "grant" && a.outcome == "done"));
}

/// An approval belongs to the role it was asked for: a mover keeps the approved access (and
/// its approval) for the overlap, then loses both; a return to the role asks the manager again
/// instead of restoring the access unasked.
fn an_approval_ends_with_the_role(env: Env) {
    let mia = env.create_user(user("mia", "Employee", "Sales", "Manager"));
    let ada = env.create_report(user("ada", "Employee", "Engineering", "Engineer"), &mia);
    env.run();
    let pending = env.admin.approvals(Some("pending")).unwrap();
    assert_eq!(pending.len(), 1);
    env.admin
        .approve(&pending[0].id, &env.as_user("mia"))
        .unwrap();
    env.run();
    assert_eq!(
        env.holds("github", "ada").unwrap().1,
        vec!["org:acme".to_string(), "team:eng".into()]
    );
    let status = || {
        in_tx(&env.store, |c| {
            scim_server::store::approvals::get(c, &pending[0].id)
        })
        .unwrap()
        .expect("the request")
    };
    env.patch_user(&ada, |d| set_dept(d, "Sales"));
    env.run();
    // The overlap keeps the access a day, and the approval with it.
    assert_eq!(status().status.as_str(), "approved");
    assert_eq!(
        env.holds("github", "ada").unwrap().1,
        vec!["org:acme".to_string(), "team:eng".into()]
    );
    env.clock.advance(Duration::hours(25));
    env.run();
    assert_eq!(env.holds("github", "ada"), Some((false, vec![])));
    // The access went: the approval ended with it (recorded, with why; who approved stays).
    let ended = status();
    assert_eq!(ended.status.as_str(), "ended");
    assert_eq!(ended.decided_by.as_deref(), Some("mia"));
    let audit = in_tx(&env.store, |c| audit::list(c, Some(&ada))).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "approval_ended"
            && e.detail
                .contains(&format!("\"approval_id\":\"{}\"", pending[0].id))),
        "no audit entry for the ended approval"
    );
    // Back in Engineering: the team at once, the admin role only once the manager approves again.
    env.patch_user(&ada, |d| set_dept(d, "Engineering"));
    env.run();
    assert_eq!(
        env.holds("github", "ada"),
        Some((true, vec!["team:eng".into()]))
    );
    let again = env.admin.approvals(Some("pending")).unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0].id, pending[0].id);
}

/// The group "Admins" (which drives the `admins` profile) with `members`; returns its id.
fn admins_group(env: &Env, members: &[String]) -> String {
    let Value::Object(doc) = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Admins",
        "members": members.iter().map(|i| json!({"value": i})).collect::<Vec<_>>(),
    }) else {
        unreachable!("a group is an object")
    };
    env.store.create(ResourceKind::Group, doc, None).unwrap().id
}

/// A role reached through a group, left in a change the guard stages: the staged plans end no
/// approval (the change could still be held and discarded), but once the change runs (below
/// the guard's share, or `held` and then confirmed) the approvals end, so coming back through
/// the group asks security again.
fn group_change_ends_approvals_once_it_runs(env: Env, held: bool) {
    env.create_user(user("sam", "Employee", "Sales", "Sec"));
    let ids: Vec<String> = (0..10)
        .map(|i| env.create_user(user(&format!("u{i:02}"), "Employee", "Sales", "Rep")))
        .collect();
    // Six of thirteen users losing access trips the guard (30 %); two do not.
    let admins = &ids[..if held { 6 } else { 2 }];
    let group = admins_group(&env, admins);
    env.run();
    let pending = env.admin.approvals(Some("pending")).unwrap();
    assert_eq!(pending.len(), admins.len(), "{pending:?}");
    for p in &pending {
        env.admin.approve(&p.id, &env.as_user("sam")).unwrap();
    }
    env.run();
    let owner = |k: &str| {
        env.holds("github", k)
            .map(|h| h.1.contains(&"org:acme".to_string()))
    };
    assert_eq!(owner("u00"), Some(true));
    let status = |id: &str| {
        in_tx(&env.store, |c| scim_server::store::approvals::get(c, id))
            .unwrap()
            .expect("the request")
            .status
    };
    env.store
        .apply_member_delta(
            &group,
            Vec::new(),
            MemberRemoval::Ids(admins.to_vec()),
            None,
        )
        .unwrap();
    env.run();
    if held {
        let holds = env.admin.holds(Some("pending")).unwrap();
        assert_eq!(holds.len(), 1, "the change is held");
        assert_eq!(owner("u00"), Some(true), "nothing runs while held");
        assert_eq!(status(&pending[0].id).as_str(), "approved");
        env.admin.confirm_hold(&holds[0].id, "sam").unwrap();
        env.run();
    } else {
        assert!(env.admin.holds(Some("pending")).unwrap().is_empty());
    }
    assert_eq!(owner("u00"), Some(false), "the role was revoked");
    for p in &pending {
        assert_eq!(status(&p.id).as_str(), "ended");
    }
    let members = admins.iter().map(|i| NewMember::new(i.clone())).collect();
    env.store
        .apply_member_delta(&group, members, MemberRemoval::None, None)
        .unwrap();
    env.run();
    assert_eq!(
        owner("u00"),
        Some(false),
        "restored without a fresh approval"
    );
    assert_eq!(
        env.admin.approvals(Some("pending")).unwrap().len(),
        admins.len()
    );
}

/// A role reached through a group and left in a change the guard stages, before security
/// decided: nothing was granted, so those users' plans change nothing downstream and leave the
/// guard nothing to hold. Their pending requests end at once, as a single user's would, rather
/// than stay open to be approved for a role they no longer have; coming back asks again.
fn group_change_ends_the_requests_of_plans_that_change_nothing(env: Env) {
    env.create_user(user("sam", "Employee", "Sales", "Sec"));
    // Engineers: their github account (team:eng) exists already, so asking for the org role
    // and leaving it change nothing there until security approves.
    let ids: Vec<String> = (0..10)
        .map(|i| {
            env.create_user(user(
                &format!("u{i:02}"),
                "Employee",
                "Engineering",
                "Engineer",
            ))
        })
        .collect();
    let admins = &ids[..3];
    let group = admins_group(&env, admins);
    env.run();
    // The org owner role the Admins profile asks security for (the engineers also wait for
    // their manager's approval of the engineering profile's admin role, which stays).
    let asked = || {
        let mut rows = env.admin.approvals(Some("pending")).unwrap();
        rows.retain(|a| a.detail["profile"] == "admins");
        rows
    };
    let pending = asked();
    assert_eq!(pending.len(), admins.len(), "{pending:?}");
    env.store
        .apply_member_delta(
            &group,
            Vec::new(),
            MemberRemoval::Ids(admins.to_vec()),
            None,
        )
        .unwrap();
    let effects = env.app("github").effects().len();
    env.run();
    assert_eq!(
        env.app("github").effects().len(),
        effects,
        "nothing to change"
    );
    assert!(env.admin.holds(None).unwrap().is_empty());
    for p in &pending {
        let request = in_tx(&env.store, |c| scim_server::store::approvals::get(c, &p.id))
            .unwrap()
            .expect("the request");
        assert_eq!(request.status.as_str(), "ended", "{}", p.id);
    }
    assert!(env
        .admin
        .approve(&pending[0].id, &env.as_user("sam"))
        .is_err());
    let members = admins.iter().map(|i| NewMember::new(i.clone())).collect();
    env.store
        .apply_member_delta(&group, members, MemberRemoval::None, None)
        .unwrap();
    env.run();
    let again = asked();
    assert_eq!(again.len(), admins.len(), "{again:?}");
    assert!(again.iter().all(|a| pending.iter().all(|p| p.id != a.id)));
    assert_eq!(
        env.holds("github", "u00"),
        Some((true, vec!["team:eng".to_string()]))
    );
}

fn mover_with_overlap_then_acknowledge(env: Env) {
    let bob = env.create_user(user("bob", "Employee", "Engineering", "Engineer"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    assert_eq!(env.events(&bob), vec!["joiner", "mover"]);
    env.run();
    // Sales access at once; engineering's team kept for the 24h overlap.
    let (_, slack) = env.holds("slack", "bob").unwrap();
    assert!(slack.contains(&"channel:sales".to_string()));
    assert_eq!(
        env.holds("github", "bob"),
        Some((true, vec!["team:eng".into()]))
    );
    env.clock.advance(Duration::hours(23));
    env.run();
    assert_eq!(
        env.holds("github", "bob").unwrap().1,
        vec!["team:eng".to_string()]
    );
    env.clock.advance(Duration::hours(2));
    env.run();
    // The overlap timer fired: the legacy access is gone and the account is disabled (no role
    // needs github any more).
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    // A summary went to security.
    let notes = in_tx(&env.store, |c| {
        scim_server::store::notifications::list(c, Some(&bob))
    })
    .unwrap();
    assert!(notes.iter().any(|n| n.kind == "mover_summary"));

    // Acknowledge path: a second move, the manager ends the overlap at once.
    env.patch_user(&bob, |d| set_dept(d, "Engineering"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    assert_eq!(
        env.holds("github", "bob").unwrap().1,
        vec!["team:eng".to_string()]
    );
    // Extended first (a second overlap timer, at the new end), then ended at once: neither
    // timer is left to fire.
    env.admin
        .legacy_access(&bob, Some(Duration::days(3)), "test")
        .unwrap();
    let overlap_timers = || {
        in_tx(&env.store, |c| timers::list(c, Some(&bob)))
            .unwrap()
            .into_iter()
            .filter(|t| t.kind == "overlap_end" && t.status == "pending")
            .count()
    };
    assert_eq!(overlap_timers(), 2);
    env.admin.legacy_access(&bob, None, "test").unwrap();
    env.run();
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    assert_eq!(overlap_timers(), 0);
}

/// However often a mover's legacy access is extended, it ends at most
/// `MAX_LEGACY_ACCESS_DAYS` after the move; then extending is refused.
fn legacy_access_extensions_stop_at_their_limit(env: Env) {
    use scim_server::admin::{AdminError, MAX_LEGACY_ACCESS_DAYS};
    use scim_server::clock::Clock;
    let bob = env.create_user(user("bob", "Employee", "Engineering", "Engineer"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    let moved = env.clock.now();
    let limit = moved + Duration::days(MAX_LEGACY_ACCESS_DAYS);
    let (_, until) = env
        .admin
        .legacy_access(&bob, Some(Duration::days(90)), "test")
        .unwrap();
    assert_eq!(until, moved + Duration::days(90));
    env.clock.advance(Duration::days(60));
    env.run();
    let (_, until) = env
        .admin
        .legacy_access(&bob, Some(Duration::days(90)), "test")
        .unwrap();
    assert_eq!(
        until, limit,
        "capped at the limit, not 150 days after the move"
    );
    // At the limit already: an extension would change nothing (and shortens nothing).
    env.clock.advance(Duration::days(1));
    match env
        .admin
        .legacy_access(&bob, Some(Duration::days(7)), "test")
    {
        Err(AdminError::Conflict(m)) => assert!(m.contains("never keeps it past"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    env.clock.set(limit - Duration::hours(1));
    env.run();
    assert_eq!(
        env.holds("github", "bob").unwrap().1,
        vec!["team:eng".to_string()]
    );
    // At the limit the access ends (the timer), and nothing is left to extend.
    env.clock.set(limit + Duration::minutes(1));
    env.run();
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    match env
        .admin
        .legacy_access(&bob, Some(Duration::days(7)), "test")
    {
        Err(AdminError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn mover_without_overlap(env: Env) {
    let cy = env.create_user(user("cy", "Employee", "Sales", "Rep"));
    env.run();
    assert!(env
        .holds("slack", "cy")
        .unwrap()
        .1
        .contains(&"channel:sales".to_string()));
    env.patch_user(&cy, |d| set_dept(d, "Support"));
    env.run();
    // Sales has no overlap: revoked immediately; birthright stays.
    assert_eq!(
        env.holds("slack", "cy"),
        Some((true, vec!["channel:general".into()]))
    );
}

fn leaver_cascade_and_rehire(env: Env) {
    let boss = env.create_user(user("boss", "Employee", "Engineering", "Manager"));
    let mut d = user("dan", "Employee", "Engineering", "Engineer");
    d["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
        json!({"value": boss});
    let dan = env.create_user(d);
    env.run();
    env.app("github").simulate_usage("dan");
    // A joiner queued after the leaver does not delay it: leavers take the priority lane.
    env.patch_user(&dan, |d| {
        d.insert("active".into(), json!(false));
    });
    let late = env.create_user(user("late", "Employee", "Sales", "Rep"));
    let rows = in_tx(&env.store, |c| {
        outbox::list_ops(c, None, Some(outbox::OutboxStatus::Pending), 100)
    })
    .unwrap();
    let first_claimable = rows.iter().filter(|r| r.priority == 100).count();
    assert!(first_claimable > 0);
    assert_eq!(env.events(&dan), vec!["joiner", "leaver"]);
    env.run();
    let gh = env.app("github").account("dan").unwrap();
    assert!(!gh.enabled);
    assert!(gh.entitlements.is_empty());
    assert_eq!((gh.sessions, gh.credentials), (0, 0));
    // Owned records went to the manager.
    assert_eq!(env.app("github").account("boss").unwrap().owned.len(), 1);
    let ops: Vec<String> = env
        .app("github")
        .effects()
        .iter()
        .filter(|e| e.key == "dan")
        .map(|e| e.op.clone())
        .collect();
    assert_eq!(
        ops,
        vec![
            "create",
            "grant",
            "disable",
            "revoke_sessions",
            "revoke_credentials",
            "transfer",
            "revoke"
        ]
    );
    let _ = late;
    // Rehire: everything comes back.
    env.patch_user(&dan, |d| {
        d.insert("active".into(), json!(true));
    });
    assert_eq!(env.events(&dan), vec!["joiner", "leaver", "rehire"]);
    env.run();
    assert_eq!(
        env.holds("github", "dan"),
        Some((true, vec!["team:eng".into()]))
    );
    // DELETE is a leaver too.
    env.store.delete(ResourceKind::User, &dan, None).unwrap();
    assert_eq!(env.events(&dan).last().map(String::as_str), Some("leaver"));
    env.run();
    assert_eq!(env.holds("slack", "dan"), Some((false, vec![])));
}

fn contractor_expiry_and_extension(env: Env) {
    let mut d = user("cora", "Contractor", "Finance", "Payable clerk");
    d["urn:example:acme:2.0:User"] =
        json!({"contractEnd": "2025-04-30", "sponsor": "sponsor@example.com"});
    let cora = env.create_user(d);
    env.run();
    // Contractor profile only; the ERP is excluded for contractors.
    assert_eq!(
        env.holds("slack", "cora"),
        Some((true, vec!["channel:contractors".into()]))
    );
    assert_eq!(env.holds("erp", "cora"), None);
    let t = in_tx(&env.store, |c| timers::list(c, Some(&cora))).unwrap();
    assert_eq!(t.iter().filter(|t| t.kind == "reminder").count(), 3);
    assert_eq!(t.iter().filter(|t| t.kind == "contract_end").count(), 1);
    // 30-day reminder.
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 3, 31, 12, 0, 0).unwrap());
    env.run();
    let notes = in_tx(&env.store, |c| {
        scim_server::store::notifications::list(c, Some(&cora))
    })
    .unwrap();
    let reminders: Vec<_> = notes
        .iter()
        .filter(|n| n.kind == "contract_reminder")
        .collect();
    assert_eq!(reminders.len(), 1);
    assert!(reminders[0]
        .recipients
        .contains(&"sponsor@example.com".to_string()));
    // Extension requested and approved: the end date moves, timers are rescheduled.
    let req = env
        .admin
        .request_extension(
            &cora,
            "2025-05-31",
            "project extended",
            "sponsor@example.com",
            None,
        )
        .unwrap();
    assert!(env
        .admin
        .request_extension(&cora, "2026-05-31", "too long", "sponsor", None)
        .is_err());
    // The sponsor (named by email in the contractor's record) decides.
    env.create_user(user("sponsor", "Employee", "Sales", "Lead"));
    let row = env.admin.approve(&req, &env.as_user("sponsor")).unwrap();
    assert_eq!(row.decided_as.as_deref(), Some("sponsor"));
    assert_eq!(
        env.admin
            .user_attr(&cora, "urn:example:acme:2.0:User:contractEnd"),
        Some(json!("2025-05-31"))
    );
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 1).unwrap());
    env.run();
    assert_eq!(env.holds("slack", "cora").map(|h| h.0), Some(true));
    // At the new end date the access expires, exactly once.
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 5, 31, 0, 0, 1).unwrap());
    env.run();
    assert_eq!(env.holds("slack", "cora"), Some((false, vec![])));
    assert_eq!(
        env.events(&cora).last().map(String::as_str),
        Some("contractor-expiry")
    );
    env.clock.advance(Duration::days(1));
    env.run();
    assert_eq!(
        env.events(&cora)
            .iter()
            .filter(|e| *e == "contractor-expiry")
            .count(),
        1
    );
}

fn sod_violation_blocked(env: Env) {
    let eve = env.create_user(user("eve", "Employee", "Finance", "Payable and Approver"));
    env.run();
    // Both roles match; the SoD rule blocks the second.
    assert_eq!(
        env.holds("erp", "eve"),
        Some((true, vec!["role:ap".into()]))
    );
    let all = env.admin.approvals(None).unwrap();
    assert!(all
        .iter()
        .any(|a| a.kind.as_str() == "sod" && a.status.as_str() == "blocked" && a.user_id == eve));
}

/// The same burst written by ten writers at once (on PostgreSQL, ten connections in parallel,
/// as several nodes would): the guard still lets exactly three through and opens one hold, since
/// each count waits for the previous leaver's commit (`store::cluster::lock_blast_guard`).
fn blast_radius_hold_with_concurrent_writers(env: Env) {
    let ids: Vec<String> = (0..10)
        .map(|i| env.create_user(user(&format!("u{i}"), "Employee", "Sales", "Rep")))
        .collect();
    env.run();
    let start = std::sync::Barrier::new(ids.len());
    std::thread::scope(|s| {
        for id in &ids {
            let (env, start) = (&env, &start);
            s.spawn(move || {
                start.wait();
                env.patch_user(id, |d| {
                    d.insert("active".into(), json!(false));
                });
            });
        }
    });
    env.run();
    let disabled = (0..10)
        .filter(|i| env.holds("slack", &format!("u{i}")).map(|h| h.0) == Some(false))
        .count();
    assert_eq!(disabled, 3);
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].users, 7);
}

/// Users u0…u9 whose Slack account is disabled.
fn sales_disabled(env: &Env) -> usize {
    (0..10)
        .filter(|i| env.holds("slack", &format!("u{i}")).map(|h| h.0) == Some(false))
        .count()
}

/// Ten sales employees (and `padding` users no profile matches) are planned, then an HR export
/// bug terminates the ten: the first 3 (30% of the 10 who hold access) go through, the other 7
/// wait behind one pending hold. Returns the ten ids.
fn ten_terminated_with_padding(env: &Env, padding: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(env.create_user(user(&format!("u{i}"), "Employee", "Sales", "Rep")));
    }
    for i in 0..padding {
        env.create_user(user(&format!("pad{i}"), "Padding", "None", "None"));
    }
    env.run();
    if padding > 0 {
        assert_eq!(
            env.holds("slack", "pad0"),
            None,
            "padding users get nothing"
        );
    }
    for id in &ids {
        env.patch_user(id, |d| {
            d.insert("active".into(), json!(false));
        });
    }
    env.run();
    assert_eq!(sales_disabled(env), 3);
    let holds = env.admin.holds(Some("pending")).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].users, 7);
    ids
}

fn blast_radius_hold(env: Env) {
    let ids = ten_terminated_with_padding(&env, 0);
    // The admin discards: nothing more happens.
    let holds = env.admin.holds(Some("pending")).unwrap();
    env.admin.discard_hold(&holds[0].id, "admin").unwrap();
    env.run();
    assert_eq!(sales_disabled(&env), 3);
    // A second burst, confirmed this time, runs.
    env.clock.advance(Duration::hours(1));
    for id in &ids[2..5] {
        env.patch_user(id, |d| {
            d.insert("title".into(), json!("x"));
        });
    }
    let holds = env.admin.holds(Some("pending")).unwrap();
    if let Some(h) = holds.first() {
        env.admin.confirm_hold(&h.id, "admin").unwrap();
    }
    env.run();
    assert_eq!(sales_disabled(&env), 5);
}

/// Users who hold no access are not the population a burst is a share of: a client that may
/// create users cannot pad it with users no profile matches and then deactivate everyone who
/// holds access under the share (30 padding users would have made 7 of 40 pass).
fn blast_radius_hold_despite_users_without_access(env: Env) {
    ten_terminated_with_padding(&env, 30);
}

fn retries_and_parking(env: Env) {
    env.app("slack")
        .fail_next([ConnectorError::retryable("slack", "503")
            .with_retry_after(std::time::Duration::from_secs(120))]);
    let fay = env.create_user(user("fay", "Employee", "Support", "Agent"));
    env.run();
    assert_eq!(env.holds("slack", "fay"), None, "waits for Retry-After");
    env.clock.advance(Duration::seconds(119));
    env.run();
    assert_eq!(env.holds("slack", "fay"), None);
    env.clock.advance(Duration::seconds(2));
    env.run();
    assert_eq!(
        env.holds("slack", "fay"),
        Some((true, vec!["channel:general".into()]))
    );
    // Permanent errors park the operation and raise an incident; the SCIM write never fails.
    env.app("slack")
        .fail_next([ConnectorError::permanent("slack", "account_limit")]);
    env.patch_user(&fay, |d| set_dept(d, "Sales"));
    env.run();
    let failed = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(&fay), Some(outbox::OutboxStatus::Failed), 10)
    })
    .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("account_limit"));
    let inc = in_tx(&env.store, incidents::list_open).unwrap();
    assert_eq!(inc.len(), 1);
    let _ = Entitlement::new("x", "y");
}

/// A connector's refusal (a protected or foreign account) is never retried: the operation is
/// parked on its first attempt and the incident says it was refused, and why.
fn refusals_park_at_once(env: Env) {
    env.app("slack").fail_next([ConnectorError::refused(
        "slack",
        "account \"Administrator\" is protected",
    )]);
    let admin = env.create_user(user("Administrator", "Employee", "Support", "Agent"));
    env.run();
    let failed = in_tx(&env.store, |c| {
        outbox::list_ops(c, Some(&admin), Some(outbox::OutboxStatus::Failed), 10)
    })
    .unwrap();
    let create = failed
        .iter()
        .find(|r| r.op.contains("create_or_adopt"))
        .expect("the create is parked");
    assert_eq!(create.attempts, 1, "not retried");
    let inc = in_tx(&env.store, incidents::list_open).unwrap();
    let refused: Vec<_> = inc
        .iter()
        .filter(|i| i.kind == "operation_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{inc:?}");
    assert!(
        refused[0].reason.contains("is protected"),
        "{}",
        refused[0].reason
    );
    assert_eq!(env.holds("slack", "Administrator"), None);
}

fn start_date_timer(env: Env) {
    let mut d = user("gus", "Employee", "Sales", "Rep");
    d["urn:example:acme:2.0:User"] = json!({"startDate": "2025-03-10"});
    let gus = env.create_user(d);
    env.run();
    assert_eq!(
        env.holds("slack", "gus"),
        None,
        "nothing before the start date"
    );
    env.clock
        .set(Utc.with_ymd_and_hms(2025, 3, 10, 0, 0, 0).unwrap());
    env.run();
    assert!(env.holds("slack", "gus").unwrap().0);
    assert_eq!(env.events(&gus), vec!["joiner", "joiner"]);
}

mod drift;
mod guard;
mod sla;
#[path = "../../connectors/tests/support_standins/mod.rs"]
mod support_standins;
mod verify;

/// The engine tests' policy with a role reached through the group "Admins", behind security.
fn admins_policy() -> String {
    format!(
        "{POLICY}\n[[profile]]\nname = \"admins\"\nmatch = 'groups.display eq \"Admins\"'\n\
         grants = [{{ connector = \"github\", kind = \"org\", id = \"acme\", role = \"owner\", approval = \"security\" }}]\n\
         \n[approvals]\nsecurity = [\"sam\"]\n"
    )
}

/// Dan, boss's report with records on github, leaves (`active = false`); returns his id.
fn a_report_who_left(env: &Env) -> String {
    let boss = env.create_user(user("boss", "Employee", "Engineering", "Manager"));
    let dan = env.create_report(user("dan", "Employee", "Engineering", "Engineer"), &boss);
    env.run();
    env.app("github").simulate_usage("dan");
    env.patch_user(&dan, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    dan
}

/// The open `records_kept` incidents.
fn records_kept_open(
    c: &mut scim_server::store::DbConnection,
) -> scim_server::error::HubResult<Vec<incidents::Incident>> {
    Ok(incidents::list_open(c)?
        .into_iter()
        .filter(|i| i.kind == "records_kept")
        .collect())
}

/// A leaver's records go only to a manager a source owns: otherwise (any scim:write client may
/// have named itself the manager) an account the connector deletes is kept disabled instead,
/// with a `records_kept` incident, until someone the HRIS names can take them.
fn leaver_records_go_only_to_a_trusted_manager(postgres: bool, manager_owned: bool) {
    let github = "name = \"github\"\ntype = \"memory\"\n";
    assert!(POLICY.contains(github));
    let mut policy = POLICY.replace(github, &format!("{github}on_leave = \"delete\"\n"));
    if !manager_owned {
        let owned =
            "owns = [\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager\",";
        assert!(policy.contains(owned));
        policy = policy.replace(owned, "owns = [");
    }
    let Some(env) = Env::new(postgres, &policy) else {
        return;
    };
    let dan = a_report_who_left(&env);
    let kept = records_kept_open;
    let incidents = in_tx(&env.store, kept).unwrap();
    if manager_owned {
        assert!(env.app("github").account("dan").is_none(), "deleted");
        assert_eq!(env.app("github").account("boss").unwrap().owned.len(), 1);
        assert!(incidents.is_empty());
        return;
    }
    // Nobody took the records: the account is disabled and kept, and a person is told.
    let gh = env.app("github").account("dan").expect("kept");
    assert!(!gh.enabled);
    assert_eq!(gh.owned.len(), 1);
    assert!(env.app("github").account("boss").unwrap().owned.is_empty());
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].connector.as_deref(), Some("github"));
    assert!(
        incidents[0].reason.contains("dan"),
        "{}",
        incidents[0].reason
    );
    // A later plan of the leaver (a re-sent record) neither deletes it nor raises again.
    env.patch_user(&dan, |d| {
        d.insert("title".into(), json!("Former engineer"));
    });
    env.run();
    assert!(env.app("github").account("dan").is_some());
    assert_eq!(in_tx(&env.store, kept).unwrap().len(), 1);
    // Rehired: the account, records and all, is his again, and the incident is over.
    env.patch_user(&dan, |d| {
        d.insert("active".into(), json!(true));
    });
    env.run();
    let gh = env.app("github").account("dan").expect("kept");
    assert!(gh.enabled);
    assert_eq!(gh.owned.len(), 1);
    assert!(in_tx(&env.store, kept).unwrap().is_empty());
}

/// A leaver's account disabled under `on_leave = "disable"`; then the policy comes to delete
/// leavers' accounts. Without a trusted manager to take the records, the next plan keeps the
/// account (already disabled) and says so, once.
fn a_disabled_leavers_account_kept_after_a_policy_change_is_reported(postgres: bool) {
    let owned = "owns = [\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager\",";
    assert!(POLICY.contains(owned));
    let disabling = POLICY.replace(owned, "owns = [");
    let Some(env) = Env::new(postgres, &disabling) else {
        return;
    };
    let dan = a_report_who_left(&env);
    let kept = records_kept_open;
    assert!(!env.app("github").account("dan").expect("disabled").enabled);
    assert!(
        in_tx(&env.store, kept).unwrap().is_empty(),
        "nothing kept yet"
    );
    let github = "name = \"github\"\ntype = \"memory\"\n";
    assert!(disabling.contains(github));
    let deleting = disabling.replace(github, &format!("{github}on_leave = \"delete\"\n"));
    env.engine
        .policy
        .set(Policy::parse(&deleting, "test.toml").unwrap());
    let replan = || {
        in_tx(&env.store, |c| env.engine.replan(c, &dan, Cause::Admin)).unwrap();
        env.run();
    };
    replan();
    let gh = env.app("github").account("dan").expect("kept, not deleted");
    assert!(!gh.enabled);
    assert_eq!(gh.owned.len(), 1);
    let incidents = in_tx(&env.store, kept).unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].connector.as_deref(), Some("github"));
    assert!(
        incidents[0].reason.contains("disabled already"),
        "{}",
        incidents[0].reason
    );
    // The next plan raises nothing more.
    replan();
    assert_eq!(in_tx(&env.store, kept).unwrap().len(), 1);
}

/// A leaver's account kept for its records, then the leaver is rehired into a role with no
/// account on that connector: the account still holds records nobody took, so it stays (the
/// incident stays open) until a trusted manager can take them; then they move and it goes.
/// `older_node_dropped_the_mark`: before the rehire, a node of a release before the
/// `kept_for_records` mark (a rolling upgrade) rewrote the planned record without it; the open
/// `records_kept` incident still keeps the account.
fn a_rehire_into_a_role_without_the_account_keeps_its_records(
    postgres: bool,
    older_node_dropped_the_mark: bool,
) {
    let github = "name = \"github\"\ntype = \"memory\"\n";
    let owned = "owns = [\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager\",";
    assert!(POLICY.contains(github) && POLICY.contains(owned));
    let trusted = POLICY.replace(github, &format!("{github}on_leave = \"delete\"\n"));
    let Some(env) = Env::new(postgres, &trusted.replace(owned, "owns = [")) else {
        return;
    };
    let dan = a_report_who_left(&env);
    let kept = records_kept_open;
    assert_eq!(in_tx(&env.store, kept).unwrap().len(), 1);
    if older_node_dropped_the_mark {
        in_tx(&env.store, |c| {
            let account = engine_state::accounts(c, &dan)?
                .into_iter()
                .find(|a| a.connector == "github")
                .expect("dan's github account");
            let mut planned: Value = serde_json::from_str(&account.planned).unwrap();
            assert_eq!(planned["kept_for_records"], true, "{planned}");
            planned.as_object_mut().unwrap().remove("kept_for_records");
            engine_state::put_planned(c, &dan, "github", &planned.to_string(), Utc::now())
        })
        .unwrap();
    }
    env.patch_user(&dan, |d| {
        d.insert("active".into(), json!(true));
        let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        // Only the department: the manager stays.
        d[enterprise]["department"] = json!("Sales");
    });
    env.run();
    assert_eq!(env.events(&dan).last().map(String::as_str), Some("rehire"));
    assert!(env.holds("slack", "dan").is_some(), "the new role's access");
    let gh = env.app("github").account("dan").expect("kept, not deleted");
    assert!(!gh.enabled);
    assert_eq!(gh.owned.len(), 1);
    assert_eq!(in_tx(&env.store, kept).unwrap().len(), 1, "still open");
    // The HRIS comes to own the manager: the next plan hands the records to boss, then deletes.
    env.engine
        .policy
        .set(Policy::parse(&trusted, "test.toml").unwrap());
    in_tx(&env.store, |c| env.engine.replan(c, &dan, Cause::Admin)).unwrap();
    env.run();
    assert!(env.app("github").account("dan").is_none(), "deleted");
    assert_eq!(env.app("github").account("boss").unwrap().owned.len(), 1);
    assert!(in_tx(&env.store, kept).unwrap().is_empty());
}

/// Two moves keep legacy access from two roles; one extension caps each part at its own
/// move's limit, so the parts end on different days: each end has its timer, and each part
/// goes at its own end, not at the first or the last.
fn two_moves_capped_on_different_days_end_at_each(postgres: bool) {
    use scim_server::admin::MAX_LEGACY_ACCESS_DAYS;
    use scim_server::clock::Clock;
    let sales = "name = \"sales\"\nmatch = 'department eq \"Sales\"'\n";
    assert!(POLICY.contains(sales));
    let policy = POLICY.replace(sales, &format!("{sales}overlap = \"24h\"\n"));
    let Some(env) = Env::new(postgres, &policy) else {
        return;
    };
    let bob = env.create_user(user("bob", "Employee", "Engineering", "Engineer"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    let first_move = env.clock.now();
    env.admin
        .legacy_access(&bob, Some(Duration::days(90)), "test")
        .unwrap();
    env.clock.advance(Duration::days(60));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Finance"));
    env.run();
    let second_move = env.clock.now();
    let (_, until) = env
        .admin
        .legacy_access(&bob, Some(Duration::days(90)), "test")
        .unwrap();
    // github's part is capped by the first move's limit, slack's runs the full 90 days.
    let github_end = first_move + Duration::days(MAX_LEGACY_ACCESS_DAYS);
    let slack_end = second_move + Duration::days(90);
    assert!(github_end < slack_end);
    assert_eq!(until, slack_end);
    let pending: Vec<_> = in_tx(&env.store, |c| timers::list(c, Some(&bob)))
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == "overlap_end" && t.status == "pending")
        .map(|t| t.due)
        .collect();
    for end in [github_end, slack_end] {
        assert!(pending.contains(&end), "a timer at {end}: {pending:?}");
    }
    let sales_channel = |env: &Env| {
        env.holds("slack", "bob")
            .unwrap()
            .1
            .contains(&"channel:sales".to_string())
    };
    env.clock.set(github_end - Duration::minutes(1));
    env.run();
    assert_eq!(
        env.holds("github", "bob").unwrap().1,
        vec!["team:eng".to_string()]
    );
    env.clock.set(github_end + Duration::minutes(1));
    env.run();
    assert_eq!(env.holds("github", "bob"), Some((false, vec![])));
    assert!(sales_channel(&env), "slack's part runs to its own end");
    env.clock.set(slack_end + Duration::minutes(1));
    env.run();
    assert!(!sales_channel(&env));
}

/// An extension never shortens legacy access that a profile keeps longer than the cap.
fn a_longer_overlap_is_not_shortened_by_an_extension(postgres: bool) {
    use scim_server::admin::AdminError;
    let overlap = "overlap = \"24h\"";
    assert!(POLICY.contains(overlap));
    let Some(env) = Env::new(postgres, &POLICY.replacen(overlap, "overlap = \"180d\"", 1)) else {
        return;
    };
    let bob = env.create_user(user("bob", "Employee", "Engineering", "Engineer"));
    env.run();
    env.patch_user(&bob, |d| set_dept(d, "Sales"));
    env.run();
    match env
        .admin
        .legacy_access(&bob, Some(Duration::days(7)), "test")
    {
        Err(AdminError::Conflict(m)) => assert!(m.contains("never keeps it past"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Still kept well past the week an extension would have ended it at.
    env.clock.advance(Duration::days(30));
    env.run();
    assert_eq!(
        env.holds("github", "bob").unwrap().1,
        vec!["team:eng".to_string()]
    );
}

/// Someone the HRIS names as their own manager (a CEO) takes nothing of their own records.
fn a_leaver_who_is_their_own_manager_keeps_the_records_for_a_person(postgres: bool) {
    let github = "name = \"github\"\ntype = \"memory\"\n";
    let policy = POLICY.replace(github, &format!("{github}on_leave = \"delete\"\n"));
    let Some(env) = Env::new(postgres, &policy) else {
        return;
    };
    let ceo = env.create_user(user("ceo", "Employee", "Engineering", "Chief"));
    env.patch_user(&ceo, |d| {
        d.insert(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
            json!({"department": "Engineering", "manager": {"value": ceo}}),
        );
    });
    env.run();
    env.app("github").simulate_usage("ceo");
    env.patch_user(&ceo, |d| {
        d.insert("active".into(), json!(false));
    });
    env.run();
    let gh = env.app("github").account("ceo").expect("kept, not deleted");
    assert!(!gh.enabled);
    assert_eq!(gh.owned.len(), 1, "nothing transferred to themselves");
}

mod legacy_access_limits {
    #[test]
    fn longer_overlap_sqlite() {
        super::a_longer_overlap_is_not_shortened_by_an_extension(false)
    }
    #[test]
    fn longer_overlap_postgres() {
        super::a_longer_overlap_is_not_shortened_by_an_extension(true)
    }
    #[test]
    fn two_moves_capped_on_different_days_sqlite() {
        super::two_moves_capped_on_different_days_end_at_each(false)
    }
    #[test]
    fn two_moves_capped_on_different_days_postgres() {
        super::two_moves_capped_on_different_days_end_at_each(true)
    }
}

mod leaver_records {
    #[test]
    fn self_manager_sqlite() {
        super::a_leaver_who_is_their_own_manager_keeps_the_records_for_a_person(false)
    }
    #[test]
    fn self_manager_postgres() {
        super::a_leaver_who_is_their_own_manager_keeps_the_records_for_a_person(true)
    }
    #[test]
    fn to_the_owned_manager_sqlite() {
        super::leaver_records_go_only_to_a_trusted_manager(false, true)
    }
    #[test]
    fn to_the_owned_manager_postgres() {
        super::leaver_records_go_only_to_a_trusted_manager(true, true)
    }
    #[test]
    fn kept_without_one_sqlite() {
        super::leaver_records_go_only_to_a_trusted_manager(false, false)
    }
    #[test]
    fn kept_without_one_postgres() {
        super::leaver_records_go_only_to_a_trusted_manager(true, false)
    }
    #[test]
    fn rehired_elsewhere_sqlite() {
        super::a_rehire_into_a_role_without_the_account_keeps_its_records(false, false)
    }
    #[test]
    fn rehired_elsewhere_postgres() {
        super::a_rehire_into_a_role_without_the_account_keeps_its_records(true, false)
    }
    #[test]
    fn rehired_elsewhere_after_an_older_node_sqlite() {
        super::a_rehire_into_a_role_without_the_account_keeps_its_records(false, true)
    }
    #[test]
    fn rehired_elsewhere_after_an_older_node_postgres() {
        super::a_rehire_into_a_role_without_the_account_keeps_its_records(true, true)
    }
    #[test]
    fn disabled_then_policy_deletes_sqlite() {
        super::a_disabled_leavers_account_kept_after_a_policy_change_is_reported(false)
    }
    #[test]
    fn disabled_then_policy_deletes_postgres() {
        super::a_disabled_leavers_account_kept_after_a_policy_change_is_reported(true)
    }
}

mod group_change_ends_approvals {
    fn run(postgres: bool, held: bool) {
        if let Some(e) = super::Env::new(postgres, &super::admins_policy()) {
            super::group_change_ends_approvals_once_it_runs(e, held)
        }
    }
    #[test]
    fn staged_sqlite() {
        run(false, false)
    }
    #[test]
    fn staged_postgres() {
        run(true, false)
    }
    #[test]
    fn held_then_confirmed_sqlite() {
        run(false, true)
    }
    #[test]
    fn held_then_confirmed_postgres() {
        run(true, true)
    }
    fn run_unchanged(postgres: bool) {
        if let Some(e) = super::Env::new(postgres, &super::admins_policy()) {
            super::group_change_ends_the_requests_of_plans_that_change_nothing(e)
        }
    }
    #[test]
    fn nothing_granted_yet_sqlite() {
        run_unchanged(false)
    }
    #[test]
    fn nothing_granted_yet_postgres() {
        run_unchanged(true)
    }
}
