//! Event SLAs (`[sla]`) and steps a connector cannot do (`[leaver] required`), on both backends:
//! the breach is raised by the durable deadline timer at the deadline (the test clock is moved
//! to one second before it, then to it), a completion records the actual time, and a leaver on
//! a connector without session revocation records the step as not supported (an incident only
//! when the policy requires it).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use connectors::memory::MemoryConnector;
use connectors::{
    AccountRef, AccountSpec, Capabilities, Capability, Connector, ConnectorError, Entitlement,
};
use scim_server::admin::in_tx;
use scim_server::admin::simulate::SimulationRequest;
use scim_server::service::{schemas::registry, Schemas};
use scim_server::store::{events, incidents, timers};
use serde_json::json;

use super::{parked_without_the_head, user, Env, POLICY};

/// One test per backend, under `policy`.
macro_rules! with_policy {
    ($policy:expr; $($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::Env::new(false, &$policy) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::Env::new(true, &$policy) { super::$name(e) } } )* }
    };
}

fn sla_policy() -> String {
    format!("{POLICY}\n[sla]\nleaver = \"1h\"\n")
}

mod deadline {
    with_policy!(super::sla_policy();
        leaver_past_its_sla_is_an_incident_at_the_deadline,
        leaver_in_time_meets_its_sla,
        the_last_two_operations_recorded_at_once_complete_the_event,
        a_worker_waiting_for_its_event_row_does_not_hold_the_chain_head,
    );
    use super::*;
}

fn required_policy() -> String {
    format!("{POLICY}\n[leaver]\nrequired = [\"revoke_sessions\"]\n")
}

mod unsupported_required {
    with_policy!(super::required_policy(); leaver_without_session_revocation_required);
    use super::*;
}

mod unsupported_optional {
    with_policy!(super::POLICY; leaver_without_session_revocation_optional);
    use super::*;
}

fn sla_breaches(env: &Env) -> Vec<incidents::Incident> {
    in_tx(&env.store, incidents::list_open)
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == "sla_breach")
        .collect()
}

fn leaver_event(env: &Env, id: &str) -> events::EventSla {
    in_tx(&env.store, |c| events::sla_list(c, id))
        .unwrap()
        .into_iter()
        .rfind(|e| e.event == "leaver")
        .expect("a leaver event")
}

fn leave(env: &Env, id: &str) {
    env.patch_user(id, |d| {
        d.insert("active".into(), json!(false));
    });
}

fn leaver_past_its_sla_is_an_incident_at_the_deadline(env: Env) {
    let dan = env.create_user(user("dan", "Employee", "Sales", "Rep"));
    env.run();
    // Slack is down for two hours: the leaver's first operation waits for its Retry-After.
    env.app("slack")
        .fail_next([ConnectorError::retryable("slack", "503 unavailable")
            .with_retry_after(std::time::Duration::from_secs(7200))]);
    let left_at = env.engine.now();
    leave(&env, &dan);
    let deadline = left_at + Duration::hours(1);
    let e = leaver_event(&env, &dan);
    assert_eq!(e.sla_due, Some(deadline));
    env.run();
    assert_eq!(env.holds("slack", "dan").map(|h| h.0), Some(true));

    // One second before the deadline: nothing yet.
    env.clock.set(deadline - Duration::seconds(1));
    env.run();
    assert!(sla_breaches(&env).is_empty());
    assert_eq!(leaver_event(&env, &dan).sla_result, None);

    // At the deadline, the plan still running: one incident, naming what is outstanding.
    env.clock.set(deadline);
    env.run();
    let breaches = sla_breaches(&env);
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    let b = &breaches[0];
    assert_eq!(b.user_id.as_deref(), Some(dan.as_str()));
    assert_eq!(b.connector.as_deref(), Some("slack"));
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&b.created).unwrap(),
        deadline
    );
    assert!(b.reason.contains("leaver of dan"), "{}", b.reason);
    assert!(
        b.reason
            .contains("set_enabled dan false (pending, 1 attempt(s), last error: 503"),
        "{}",
        b.reason
    );
    let e = leaver_event(&env, &dan);
    assert_eq!(
        (e.sla_result.as_deref(), e.completed),
        (Some("breached"), None)
    );

    // Later runs raise nothing more.
    env.clock.advance(Duration::minutes(30));
    env.run();
    assert_eq!(sla_breaches(&env).len(), 1);

    // Slack is back: the plan completes; the event records the actual time, still breached.
    env.clock.set(left_at + Duration::hours(2));
    env.run();
    assert_eq!(env.holds("slack", "dan"), Some((false, vec![])));
    let e = leaver_event(&env, &dan);
    assert_eq!(e.completed, Some(left_at + Duration::hours(2)));
    assert_eq!(e.sla_seconds, Some(7200));
    assert_eq!(e.sla_result.as_deref(), Some("breached"));
    assert_eq!(sla_breaches(&env).len(), 1);
    // /metrics counts the breach at the deadline and the late completion, per event type.
    let text = scim_server::metrics::render(
        &env.store,
        scim_server::metrics::EngineGauges::On { guard: None },
        100,
    )
    .unwrap();
    for result in ["breached", "late"] {
        assert!(
            text.contains(&format!(
                "scimhub_sla_results_total{{event=\"leaver\",result=\"{result}\"}}"
            )),
            "{text}"
        );
    }
}

fn leaver_in_time_meets_its_sla(env: Env) {
    let eva = env.create_user(user("eva", "Employee", "Sales", "Rep"));
    env.run();
    // The joiner has no SLA: no deadline, but its completion is recorded.
    let joiner = in_tx(&env.store, |c| events::sla_list(c, &eva)).unwrap()[0].clone();
    assert_eq!((joiner.sla_due, joiner.sla_result), (None, None));
    assert_eq!(joiner.completed, Some(joiner.at));
    let left_at = env.engine.now();
    leave(&env, &eva);
    env.clock.advance(Duration::minutes(10));
    env.run();
    assert_eq!(env.holds("slack", "eva"), Some((false, vec![])));
    let e = leaver_event(&env, &eva);
    assert_eq!(e.sla_result.as_deref(), Some("met"));
    assert_eq!(e.completed, Some(left_at + Duration::minutes(10)));
    assert_eq!(e.sla_seconds, Some(600));
    // The deadline timer is gone; past the deadline nothing is raised.
    let t = in_tx(&env.store, |c| timers::list(c, Some(&eva))).unwrap();
    let deadline: Vec<_> = t.iter().filter(|t| t.kind == "sla_deadline").collect();
    assert_eq!(deadline.len(), 1);
    assert_eq!(deadline[0].status, "cancelled");
    env.clock.advance(Duration::hours(2));
    env.run();
    assert!(sla_breaches(&env).is_empty());
    assert_eq!(leaver_event(&env, &eva).sla_result.as_deref(), Some("met"));
}

/// The memory stand-in without session revocation (as e.g. a plain SCIM app).
#[derive(Debug)]
struct NoSessions(MemoryConnector);

#[async_trait]
impl Connector for NoSessions {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        let mut c = self.0.capabilities();
        c.operations.retain(|o| *o != Capability::RevokeSessions);
        c
    }
    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        self.0.create_or_adopt(spec).await
    }
    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.0.update(spec).await
    }
    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        self.0.set_enabled(account, enabled).await
    }
    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.0.delete(account).await
    }
    async fn grant(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.0.grant(account, e).await
    }
    async fn revoke(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.0.revoke(account, e).await
    }
    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.0.revoke_credentials(account).await
    }
}

/// A leaver on slack without session revocation: `simulate` shows the step as not supported,
/// the event records it; returns the incidents raised about it.
fn leaver_on_a_connector_without_sessions(env: &Env) -> Vec<incidents::Incident> {
    env.engine
        .connectors
        .insert("slack", Arc::new(NoSessions(env.app("slack").clone())));
    let mut doc = user("fin", "Employee", "Sales", "Rep");
    // Listed, so the simulated PATCH passes strict validation.
    doc["schemas"].as_array_mut().unwrap().push(json!(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    ));
    let fin = env.create_user(doc);
    env.run();
    let schemas = Schemas::new(registry(), false).unwrap();
    let sim = env
        .admin
        .dry_run(
            &schemas,
            &serde_json::from_value::<SimulationRequest>(
                json!({"user": "fin", "set": {"active": false}}),
            )
            .unwrap(),
        )
        .unwrap();
    let u = &sim["users"][0];
    assert_eq!(u["event"], "leaver", "{sim}");
    assert_eq!(
        u["unsupported"][0]["note"], "not supported by slack: revoke_sessions",
        "{sim}"
    );
    let required = env
        .engine
        .policy
        .current()
        .leaver
        .requires("revoke_sessions");
    assert_eq!(u["unsupported"][0]["required"], required, "{sim}");
    leave(env, &fin);
    env.run();
    // The rest of the leaver ran.
    assert_eq!(env.holds("slack", "fin"), Some((false, vec![])));
    assert_eq!(
        leaver_event(env, &fin).unsupported,
        vec!["not supported by slack: revoke_sessions".to_string()]
    );
    in_tx(&env.store, incidents::list_open)
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == "unsupported_step")
        .collect()
}

fn leaver_without_session_revocation_required(env: Env) {
    let inc = leaver_on_a_connector_without_sessions(&env);
    assert_eq!(inc.len(), 1, "{inc:?}");
    assert_eq!(inc[0].connector.as_deref(), Some("slack"));
    assert!(
        inc[0]
            .reason
            .contains("step revoke_sessions is required by the policy"),
        "{}",
        inc[0].reason
    );
}

fn leaver_without_session_revocation_optional(env: Env) {
    assert!(leaver_on_a_connector_without_sessions(&env).is_empty());
}

/// Two workers record a plan's last two operations (on two systems) in overlapping
/// transactions: the event is completed once, with its SLA result. Before the completion
/// locked the event's row first, each worker saw the other's operation still outstanding and
/// neither completed the event, which then never recorded its time (and reported no result).
fn the_last_two_operations_recorded_at_once_complete_the_event(env: Env) {
    use scim_server::engine::sla;
    use scim_server::store::outbox;
    // Slack and the ERP: a leaver's plan has operations on both.
    let dan = env.create_user(user("dan", "Employee", "Finance", "Accounts Payable"));
    env.run();
    leave(&env, &dan);
    let plan = leaver_event(&env, &dan).plan_id;
    let lease = Duration::minutes(5);
    let finish = |c: &mut scim_server::store::DbConnection, row: &outbox::OutboxRow| {
        assert!(outbox::finish(c, row, env.engine.now())?);
        sla::operation_done(c, &plan, env.engine.now())
    };
    // Record the plan's operations one by one until its last two are claimed at once.
    let last_two = loop {
        let (claimed, outstanding) = in_tx(&env.store, |c| {
            let claimed = outbox::claim(c, "test", env.engine.now(), lease, i64::MIN, 100)?;
            Ok((claimed, outbox::outstanding(c, &plan)?))
        })
        .unwrap();
        let mut mine: Vec<_> = claimed.into_iter().filter(|r| r.plan_id == plan).collect();
        assert!(!mine.is_empty(), "{outstanding:?}");
        if outstanding.len() == 2 && mine.len() == 2 {
            break mine;
        }
        // One of the system with the most left, so that each keeps one to the end.
        let left = |r: &outbox::OutboxRow| {
            outstanding
                .iter()
                .filter(|o| o.connector == r.connector)
                .count()
        };
        let at = (0..mine.len()).max_by_key(|&i| left(&mine[i])).unwrap();
        let first = mine.remove(at);
        in_tx(&env.store, |c| finish(c, &first)).unwrap();
        // The rest go back to pending: claimed again on the next turn.
        in_tx(&env.store, |c| {
            for r in &mine {
                outbox::retry_later(c, r, env.engine.now(), "test")?;
            }
            Ok(())
        })
        .unwrap();
    };
    assert_ne!(last_two[0].connector, last_two[1].connector);
    let (recorded, after_record) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            in_tx(&env.store, |c| {
                let done = finish(c, &last_two[0])?;
                recorded.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(done)
            })
            .unwrap()
        });
        after_record.recv().unwrap();
        let second = in_tx(&env.store, |c| finish(c, &last_two[1])).unwrap();
        let first = first.join().unwrap();
        assert_eq!(
            usize::from(first.is_some()) + usize::from(second.is_some()),
            1,
            "{first:?} {second:?}"
        );
    });
    let e = leaver_event(&env, &dan);
    assert!(e.completed.is_some(), "{e:?}");
    assert_eq!(e.sla_result.as_deref(), Some("met"));
}

/// A worker recording a plan's operation while the plan's SLA deadline fires (PostgreSQL:
/// several writers). The firing holds the event's row and then appends to the audit chain; the
/// worker locks the event's row to complete the event. Before the worker held its audit entries
/// to the end of its transaction, it took the chain's head first and then waited for the event
/// row: a deadlock that PostgreSQL broke only after `deadlock_timeout`, with every SCIM commit
/// waiting on the head meanwhile. The test holds the event row as the firing does and checks
/// that the worker parked on it leaves the head free.
fn a_worker_waiting_for_its_event_row_does_not_hold_the_chain_head(env: Env) {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    if env.pg_observer().is_none() {
        return; // One writer on SQLite: the two run one after the other.
    }
    let eva = env.create_user(user("eva", "Employee", "Sales", "Rep"));
    env.run();
    leave(&env, &eva);
    let plan = leaver_event(&env, &eva).plan_id;
    let env = &env;
    let ran = parked_without_the_head(
        env,
        |c| {
            diesel::sql_query("SELECT plan_id FROM engine_events WHERE plan_id = $1 FOR UPDATE")
                .bind::<Text, _>(&plan)
                .execute(c)
        },
        || env.run(),
        "FROM engine_events",
        "the worker",
    );
    assert!(ran > 0);
    assert_eq!(
        leaver_event(env, &eva).sla_result.as_deref(),
        Some("met"),
        "the event completed once the row was free"
    );
}
