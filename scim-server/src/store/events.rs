//! Engine events (`engine_events`): one row per lifecycle event the engine planned for a user
//! (joiner, mover, leaver, ...), with the plan id, how many operations it queued and how many
//! of them take access away. The blast-radius guard counts here the users who lost access.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// An event to record.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub at: DateTime<Utc>,
    pub user_id: &'a str,
    pub event: &'a str,
    pub plan_id: &'a str,
    /// Operations the plan queued.
    pub ops: i64,
    /// Of those, how many take access away (what the blast-radius guard counts).
    pub revokes: i64,
    /// The hold the operations wait behind, if any.
    pub hold_id: Option<&'a str>,
}

pub fn record(c: &mut DbConnection, e: &NewEvent<'_>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_events (at, user_id, event, plan_id, ops, revokes, hold_id) VALUES (",
    );
    q.text(fmt_ts(e.at))
        .push(", ")
        .text(e.user_id)
        .push(", ")
        .text(e.event)
        .push(", ")
        .text(e.plan_id)
        .push(", ")
        .int(e.ops)
        .push(", ")
        .int(e.revokes)
        .push(", ");
    q.bind(Bind::OptText(e.hold_id.map(str::to_string)))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// The users who lose access in the guard's view: a plan of theirs took access away (any
/// event) at or after `since`, or waits behind the staging hold `stage` (a group change being
/// planned, however long ago its batches ran).
fn losers<T>(q: &mut Sql<T>, since: DateTime<Utc>, stage: Option<&str>) {
    q.push("SELECT DISTINCT user_id FROM engine_events WHERE revokes > 0 AND (at >= ")
        .text(fmt_ts(since));
    if let Some(h) = stage {
        q.push(" OR hold_id = ").text(h);
    }
    q.push(")");
}

/// How many users lost access since `since` (see [`losers`]), `except` left out (the user being
/// planned, who is counted once as the one the guard decides about).
pub fn count_losers(
    c: &mut DbConnection,
    since: DateTime<Utc>,
    stage: Option<&str>,
    except: Option<&str>,
) -> HubResult<i64> {
    let mut q = Sql::<BigInt>::new("SELECT COUNT(*) FROM (");
    losers(&mut q, since, stage);
    if let Some(u) = except {
        q.push(" AND user_id <> ").text(u);
    }
    q.push(") l");
    Ok(q.get_result::<i64>(c)?)
}

/// The population the guard measures a burst against: users the engine holds as active, and
/// those who lost access since `since` (or under `stage`) and are no longer active, so a
/// leaver still counts in the population the burst is a share of and a mover is not counted
/// twice.
pub fn guard_population(
    c: &mut DbConnection,
    since: DateTime<Utc>,
    stage: Option<&str>,
) -> HubResult<i64> {
    let mut q = Sql::<BigInt>::new(
        "SELECT COUNT(*) FROM engine_users WHERE state = 'active' OR user_id IN (",
    );
    losers(&mut q, since, stage);
    q.push(")");
    Ok(q.get_result::<i64>(c)?)
}

/// How many users a plan behind hold `id` takes access from.
pub fn count_losers_behind(c: &mut DbConnection, id: &str) -> HubResult<i64> {
    let mut q = Sql::<BigInt>::new(
        "SELECT COUNT(DISTINCT user_id) FROM engine_events WHERE revokes > 0 AND hold_id = ",
    );
    q.text(id);
    Ok(q.get_result::<i64>(c)?)
}

/// The events recorded behind hold `id` no longer wait for it (a staging hold dissolved).
pub fn clear_hold(c: &mut DbConnection, id: &str) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_events SET hold_id = NULL WHERE hold_id = ");
    q.text(id);
    Ok(q.execute(c)?)
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
