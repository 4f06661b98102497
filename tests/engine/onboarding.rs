//! Bulk onboarding confirmation (issue #15) for joiners outside a /Bulk request or an import
//! run: one client's joiners close together are one burst (`[notify] onboarding_window`); its
//! confirmation is queued once, when the window passed and every plan is final, to the HR and
//! IT leads; a burst under `onboarding_min_joiners` and another client's joiners get none.
//! SQLite and PostgreSQL.

use chrono::Duration;
use scim_server::admin::in_tx;
use scim_server::store::{notifications, ResourceKind};
use serde_json::Value;

use super::{parked_without_the_head, user, Env, POLICY};

fn policy() -> String {
    POLICY.replace(
        "[notify]\n",
        "[notify]\nhr_leads = [\"hr-lead@example.com\"]\nit_leads = [\"it-lead@example.com\"]\n\
         onboarding_window = \"5m\"\nonboarding_min_joiners = 3\n",
    )
}

fn joiner(env: &Env, name: &str, client: &str) -> String {
    let Value::Object(doc) = user(name, "Employee", "Engineering", "Engineer") else {
        panic!()
    };
    env.store
        .create(ResourceKind::User, doc, Some(client))
        .unwrap()
        .id
}

fn confirmations(env: &Env) -> Vec<notifications::Notification> {
    in_tx(&env.store, |c| notifications::list(c, None))
        .unwrap()
        .into_iter()
        .filter(|n| n.kind == "onboarding_confirmation")
        .collect()
}

fn window_burst(pg: bool) {
    let Some(env) = Env::new(pg, &policy()) else {
        return;
    };
    for name in ["wanda", "walt", "wes"] {
        joiner(&env, name, "okta");
        env.clock.advance(Duration::minutes(2));
    }
    // Two joiners of another client: their own burst, under the minimum.
    joiner(&env, "olga", "workday");
    joiner(&env, "otto", "workday");
    env.run();
    // Every plan is done, but the window is still open: nothing yet.
    assert!(confirmations(&env).is_empty());
    env.clock.advance(Duration::minutes(6));
    env.run();
    let mails = confirmations(&env);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(
        m.recipients,
        vec![
            "hr-lead@example.com".to_string(),
            "it-lead@example.com".to_string()
        ]
    );
    assert!(m.subject.contains("3 joiners from okta"), "{}", m.subject);
    for name in ["wanda", "walt", "wes"] {
        assert!(m.body.contains(name), "{name}: {}", m.body);
    }
    assert!(
        !m.body.contains("olga") && !m.body.contains("otto"),
        "{}",
        m.body
    );
    assert!(m.body.contains("joiners sent close together"), "{}", m.body);
    // Once per burst.
    env.clock.advance(Duration::minutes(6));
    env.run();
    assert_eq!(confirmations(&env).len(), 1);
}

#[test]
fn window_burst_is_confirmed_once_sqlite() {
    window_burst(false);
}

#[test]
fn window_burst_is_confirmed_once_postgres() {
    window_burst(true);
}

/// A joiner that waits for its client's window lock (another writer or node is opening the
/// client's window) must not hold the audit chain's head meanwhile: the lock's holder takes the
/// head before it commits, and every SCIM commit waits on the head. A write that does not hold
/// its appends back (outside group commit) appended its plan's entries before it joined the
/// burst, so it held the head while it waited. PostgreSQL only (one writer on SQLite).
#[test]
fn a_joiner_waiting_for_its_clients_window_does_not_hold_the_chain_head() {
    use diesel::RunQueryDsl;
    let Some(env) = Env::new(true, &policy()) else {
        return;
    };
    parked_without_the_head(
        &env,
        // The client's window lock (`store::cluster::lock_client_window`).
        |c| {
            diesel::sql_query("SELECT pg_advisory_xact_lock(1935895921, hashtext('okta'))")
                .execute(c)
        },
        || joiner(&env, "wanda", "okta"),
        "pg_advisory_xact_lock",
        "the joiner",
    );
}
