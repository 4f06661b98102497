//! Engine events (`engine_events`): one row per lifecycle event the engine planned for a user
//! (joiner, mover, leaver, ...), with the plan id and how many operations it queued. The
//! blast-radius check counts recent deprovisions here.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

pub fn record(
    c: &mut DbConnection,
    at: DateTime<Utc>,
    user_id: &str,
    event: &str,
    plan_id: &str,
    ops: i64,
    hold_id: Option<&str>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_events (at, user_id, event, plan_id, ops, hold_id) VALUES (",
    );
    q.text(fmt_ts(at))
        .push(", ")
        .text(user_id)
        .push(", ")
        .text(event)
        .push(", ")
        .text(plan_id)
        .push(", ")
        .int(ops)
        .push(", ");
    q.bind(Bind::OptText(hold_id.map(str::to_string))).push(")");
    q.execute(c)?;
    Ok(())
}

/// Deprovisioning events (leaver, contractor-expiry) with operations since `since`.
pub fn count_deprovisions_since(c: &mut DbConnection, since: DateTime<Utc>) -> HubResult<i64> {
    let mut q = Sql::<BigInt>::new(
        "SELECT COUNT(DISTINCT user_id) FROM engine_events WHERE event IN ('leaver', \
         'contractor-expiry') AND ops > 0 AND at >= ",
    );
    q.text(fmt_ts(since));
    Ok(q.get_result::<i64>(c)?)
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Event {
    /// RFC 3339, as stored.
    pub at: String,
    pub user_id: String,
    pub event: String,
    pub plan_id: String,
    /// Operations the plan queued.
    pub ops: i64,
    /// The hold the operations wait behind, if any.
    pub hold_id: Option<String>,
}

/// Recent events, newest first.
pub fn list(c: &mut DbConnection, user_id: Option<&str>, limit: i64) -> HubResult<Vec<Event>> {
    let mut q = Sql::<(Text, Text, Text, Text, BigInt, Nullable<Text>)>::new(
        "SELECT at, user_id, event, plan_id, ops, hold_id FROM engine_events WHERE 1 = 1",
    );
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id DESC").limit(limit);
    Ok(q.load::<Event>(c)?)
}
