//! The engine's per-user state: its last decision about each user (`engine_users`) and the
//! planned and actual account of each user on each connector (`engine_accounts`). Functions take
//! a connection so that they run inside the caller's transaction (the SCIM write's, for plans).

use chrono::{DateTime, Utc};
use diesel::sql_types::{Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};

use super::sql::Sql;
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::HubResult;

// ---------------------------------------------------------------------------------------------
// engine_users
// ---------------------------------------------------------------------------------------------

/// The engine's last decision about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineUser {
    pub user_id: String,
    /// `active`, `not_started`, `left`, `expired`.
    pub state: String,
    pub profiles: Vec<String>,
    pub facts: serde_json::Value,
    pub updated: DateTime<Utc>,
}

/// An `engine_users` row as read (JSON and timestamps still text).
#[derive(Queryable)]
struct EngineUserRecord {
    state: String,
    profiles: String,
    facts: String,
    updated: String,
}

pub fn get_user(c: &mut DbConnection, user_id: &str) -> HubResult<Option<EngineUser>> {
    let mut q = Sql::<(Text, Text, Text, Text)>::new(
        "SELECT state, profiles, facts, updated FROM engine_users WHERE user_id = ",
    );
    q.text(user_id);
    Ok(q.get_result::<EngineUserRecord>(c)
        .optional()?
        .map(|r| EngineUser {
            user_id: user_id.to_string(),
            state: r.state,
            profiles: serde_json::from_str(&r.profiles).unwrap_or_default(),
            facts: serde_json::from_str(&r.facts).unwrap_or_default(),
            updated: parse_ts(&r.updated).unwrap_or_default(),
        }))
}

/// Writes the user's row, with whether they hold access as their planned accounts say now: a
/// plan writes its accounts first ([`put_planned_all`]), then this, in the same statement
/// count as before.
pub fn put_user(c: &mut DbConnection, u: &EngineUser) -> HubResult<()> {
    let profiles = serde_json::to_string(&u.profiles).unwrap_or_else(|_| "[]".into());
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_users (user_id, state, profiles, facts, updated, holds_access) \
         VALUES (",
    );
    q.text(u.user_id.as_str())
        .push(", ")
        .text(u.state.as_str())
        .push(", ")
        .text(profiles)
        .push(", ")
        .text(u.facts.to_string())
        .push(", ")
        .text(fmt_ts(u.updated))
        .push(", ");
    holds_access(&mut q, u.user_id.as_str());
    q.push(
        ") ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, \
         profiles = excluded.profiles, facts = excluded.facts, updated = excluded.updated, \
         holds_access = excluded.holds_access",
    );
    q.execute(c)?;
    Ok(())
}

/// `EXISTS` an enabled planned account of `user_id`: the guard's population counts those who
/// hold access (see `events::guard_population`). `planned` is an `AccountRecord` as serde
/// writes it: `"enabled":true` appears unescaped only as its own field (inside a string the
/// quotes would be escaped).
fn holds_access<T>(q: &mut Sql<T>, user_id: &str) {
    q.push(
        "EXISTS (SELECT 1 FROM engine_accounts a WHERE a.planned LIKE '%\"enabled\":true%' \
         AND a.user_id = ",
    )
    .text(user_id)
    .push(")");
}

/// All user ids the engine knows.
pub fn user_ids(c: &mut DbConnection) -> HubResult<Vec<String>> {
    let q = Sql::<Text>::new("SELECT user_id FROM engine_users ORDER BY user_id");
    Ok(q.load::<String>(c)?)
}

// ---------------------------------------------------------------------------------------------
// engine_accounts
// ---------------------------------------------------------------------------------------------

/// A user's account on one connector: what the engine planned and what the connector last
/// reported, both JSON text.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Account {
    pub connector: String,
    pub planned: String,
    /// `None` until a worker has run an operation for it.
    pub actual: Option<String>,
}

/// A user's accounts, in connector order.
pub fn accounts(c: &mut DbConnection, user_id: &str) -> HubResult<Vec<Account>> {
    let mut q = Sql::<(Text, Text, Nullable<Text>)>::new(
        "SELECT connector, planned, actual FROM engine_accounts WHERE user_id = ",
    );
    q.text(user_id).push(" ORDER BY connector");
    Ok(q.load::<Account>(c)?)
}

/// The user's account on `connector`, read to be written back in the caller's transaction:
/// locked on PostgreSQL until it ends, so that a plan committing a new planned state in between
/// is seen rather than written over with the one read here.
pub fn account_for_update(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
) -> HubResult<Option<Account>> {
    let mut q = Sql::<(Text, Text, Nullable<Text>)>::new(
        "SELECT connector, planned, actual FROM engine_accounts WHERE user_id = ",
    );
    q.text(user_id).push(" AND connector = ").text(connector);
    super::resources::lock_for_write(c, &mut q);
    Ok(q.get_result::<Account>(c).optional()?)
}

/// One planned account outside a plan (a drift fix): the user's row learns whether they still
/// hold access, as [`put_user`] tells it after a plan.
pub fn put_planned(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
    planned: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    put_planned_all(c, user_id, &[(connector, planned)], now)?;
    let mut q = Sql::<()>::new("UPDATE engine_users SET holds_access = ");
    holds_access(&mut q, user_id);
    q.push(" WHERE user_id = ").text(user_id);
    q.execute(c)?;
    Ok(())
}

/// [`put_planned`] for several connectors of one user (each named once) in one statement: a
/// plan's records were one round trip each on PostgreSQL.
pub fn put_planned_all(
    c: &mut DbConnection,
    user_id: &str,
    records: &[(&str, &str)],
    now: DateTime<Utc>,
) -> HubResult<()> {
    let now = fmt_ts(now);
    // Five bound values a row: far below SQLite's limit in any policy's connector count.
    for chunk in records.chunks(500) {
        let mut q = Sql::<()>::new(
            "INSERT INTO engine_accounts (user_id, connector, planned, actual, updated) VALUES ",
        );
        for (i, (connector, planned)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" })
                .text(user_id)
                .push(", ")
                .text(*connector)
                .push(", ")
                .text(*planned)
                .push(", NULL, ")
                .text(now.as_str())
                .push(")");
        }
        q.push(
            " ON CONFLICT (user_id, connector) DO UPDATE SET planned = excluded.planned, \
             updated = excluded.updated",
        );
        q.execute(c)?;
    }
    Ok(())
}

/// Sets both planned and actual (worker results; discarding a hold resets planned to actual).
pub fn put_account(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
    planned: &str,
    actual: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_accounts (user_id, connector, planned, actual, updated) VALUES (",
    );
    q.text(user_id)
        .push(", ")
        .text(connector)
        .push(", ")
        .text(planned)
        .push(", ")
        .text(actual)
        .push(", ")
        .text(fmt_ts(now))
        .push(
            ") ON CONFLICT (user_id, connector) DO UPDATE SET planned = excluded.planned, \
             actual = excluded.actual, updated = excluded.updated",
        );
    q.execute(c)?;
    Ok(())
}
