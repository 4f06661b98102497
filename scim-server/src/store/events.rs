//! Engine events (`engine_events`): one row per lifecycle event the engine planned for a user
//! (joiner, mover, leaver, ...), with the plan id, how many operations it queued and how many
//! of them take access away. The blast-radius guard counts here the users who lost access.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, DbConnection};
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
    /// When the plan's SLA ends (`at` plus the policy's `[sla]` for the event), if it has one.
    pub sla_due: Option<DateTime<Utc>>,
    /// Steps the policy expected that a connector cannot do ("not supported by CONNECTOR:
    /// STEP").
    pub unsupported: &'a [String],
}

pub fn record(c: &mut DbConnection, e: &NewEvent<'_>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_events (at, user_id, event, plan_id, ops, revokes, hold_id, sla_due, \
         unsupported) VALUES (",
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
        .push(", ")
        .bind(Bind::OptText(e.sla_due.map(fmt_ts)))
        .push(", ")
        .bind(Bind::OptText((!e.unsupported.is_empty()).then(|| {
            serde_json::to_string(e.unsupported).unwrap_or_default()
        })))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// What an SLA result is.
pub const SLA_MET: &str = "met";
pub const SLA_BREACHED: &str = "breached";

/// An event's SLA record and completion, for the SLA timer and the reports.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSla {
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub event: String,
    pub plan_id: String,
    /// When the SLA ends (`None`: the policy sets none for the event).
    pub sla_due: Option<DateTime<Utc>>,
    /// When the plan's last operation was done.
    pub completed: Option<DateTime<Utc>>,
    /// [`SLA_MET`] or [`SLA_BREACHED`]; `breached` from the deadline on when the plan was not
    /// complete then; `None` while the plan runs within its SLA (or has none).
    pub sla_result: Option<String>,
    /// Seconds from the event to completion.
    pub sla_seconds: Option<i64>,
    /// "not supported by CONNECTOR: STEP" for each step a connector could not do.
    pub unsupported: Vec<String>,
}

type SlaSt = (
    Text,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<BigInt>,
    Nullable<Text>,
);

#[derive(Queryable)]
struct SlaRow {
    at: String,
    user_id: String,
    event: String,
    plan_id: String,
    sla_due: Option<String>,
    completed: Option<String>,
    sla_result: Option<String>,
    sla_seconds: Option<i64>,
    unsupported: Option<String>,
}

impl From<SlaRow> for EventSla {
    fn from(r: SlaRow) -> Self {
        EventSla {
            at: parse_ts(&r.at).unwrap_or_default(),
            user_id: r.user_id,
            event: r.event,
            plan_id: r.plan_id,
            sla_due: r.sla_due.as_deref().and_then(parse_ts),
            completed: r.completed.as_deref().and_then(parse_ts),
            sla_result: r.sla_result,
            sla_seconds: r.sla_seconds,
            unsupported: r
                .unsupported
                .and_then(|u| serde_json::from_str(&u).ok())
                .unwrap_or_default(),
        }
    }
}

const SLA_COLS: &str = "SELECT at, user_id, event, plan_id, sla_due, completed, sla_result, \
                        sla_seconds, unsupported FROM engine_events ";

/// The event recorded for plan `plan_id`.
pub fn by_plan(c: &mut DbConnection, plan_id: &str) -> HubResult<Option<EventSla>> {
    by_plan_sql(c, plan_id, false)
}

/// [`by_plan`], the event's row locked until the transaction ends (PostgreSQL; SQLite has one
/// writer): the workers recording a plan's operations, and its SLA deadline, take turns on
/// it, so each sees what the one before it committed.
pub fn by_plan_for_update(c: &mut DbConnection, plan_id: &str) -> HubResult<Option<EventSla>> {
    by_plan_sql(c, plan_id, true)
}

fn by_plan_sql(
    c: &mut DbConnection,
    plan_id: &str,
    for_update: bool,
) -> HubResult<Option<EventSla>> {
    let mut q = Sql::<SlaSt>::new(SLA_COLS);
    q.push("WHERE plan_id = ").text(plan_id).limit(1);
    if for_update {
        super::resources::lock_for_write(c, &mut q);
    }
    Ok(q.load::<SlaRow>(c)?.into_iter().next().map(EventSla::from))
}

/// A user's events with their SLA records, oldest first.
pub fn sla_list(c: &mut DbConnection, user_id: &str) -> HubResult<Vec<EventSla>> {
    let mut q = Sql::<SlaSt>::new(SLA_COLS);
    q.push("WHERE user_id = ")
        .text(user_id)
        .push(" ORDER BY id");
    Ok(q.load::<SlaRow>(c)?
        .into_iter()
        .map(EventSla::from)
        .collect())
}

/// The SLA of plan `plan_id` ran out before it was complete: its result is `breached` now
/// (the completion time is recorded when it comes). False when it was already complete or
/// marked.
pub fn mark_breached(c: &mut DbConnection, plan_id: &str) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_events SET sla_result = ");
    q.text(SLA_BREACHED)
        .push(" WHERE plan_id = ")
        .text(plan_id)
        .push(" AND completed IS NULL AND sla_result IS NULL");
    Ok(q.execute(c)? > 0)
}

/// Records that plan `plan_id`'s last operation was done at `now`: the completion time, how
/// long it took, and the SLA result (breached when marked so at the deadline or done after it,
/// met otherwise). Once only; `None` when there is nothing to record.
pub fn complete(
    c: &mut DbConnection,
    plan_id: &str,
    now: DateTime<Utc>,
) -> HubResult<Option<EventSla>> {
    // Locked: a deadline that marked the event breached after a plain read would be written
    // over with `met` here.
    let Some(mut e) = by_plan_for_update(c, plan_id)? else {
        return Ok(None);
    };
    if e.completed.is_some() {
        return Ok(None);
    }
    let result = e.sla_due.map(|due| {
        if e.sla_result.as_deref() == Some(SLA_BREACHED) || now > due {
            SLA_BREACHED
        } else {
            SLA_MET
        }
    });
    let seconds = (now - e.at).num_seconds().max(0);
    let mut q = Sql::<()>::new("UPDATE engine_events SET completed = ");
    q.text(fmt_ts(now))
        .push(", sla_seconds = ")
        .int(seconds)
        .push(", sla_result = ")
        .bind(Bind::OptText(result.map(str::to_string)))
        .push(" WHERE plan_id = ")
        .text(plan_id)
        .push(" AND completed IS NULL");
    q.execute(c)?;
    e.completed = Some(now);
    e.sla_seconds = Some(seconds);
    e.sla_result = result.map(str::to_string);
    Ok(Some(e))
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

/// The population the guard measures a burst against: active users who hold access (an
/// enabled account planned on some connector), and those who lost access since `since` (or
/// under `stage`), so a leaver still counts in the population the burst is a share of and a
/// mover is not counted twice.
///
/// Users who hold nothing cannot lose anything: counting them let a client that may create
/// users pad the population with users no profile matches just before it deactivated the
/// real ones, and stay under the share.
pub fn guard_population(
    c: &mut DbConnection,
    since: DateTime<Utc>,
    stage: Option<&str>,
) -> HubResult<i64> {
    // The second count: losers the engine holds no user row for (orphan accounts a
    // reconciliation disabled) are in the population too, as they are among the losers. Kept
    // apart from the first (a scan of the users) so that it touches only the few losers.
    // `holds_access` is kept with the user's row (`engine_state::put_user`), so this stays one
    // scan of the users: probing each user's accounts made it 8 times slower at 100,000 users,
    // under the guard's lock.
    let mut q = Sql::<BigInt>::new(
        "SELECT (SELECT COUNT(*) FROM engine_users WHERE (state = 'active' AND holds_access) \
         OR user_id IN (",
    );
    losers(&mut q, since, stage);
    q.push(")) + (SELECT COUNT(*) FROM (");
    losers(&mut q, since, stage);
    q.push(") l WHERE NOT EXISTS (SELECT 1 FROM engine_users u WHERE u.user_id = l.user_id))");
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

/// An event with everything stored on its row: the record the admin API and the reports read.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The row's id: the event's id in the admin API.
    pub id: i64,
    /// When the event happened: the SCIM request (or the timer or decision) that caused it.
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub event: String,
    pub plan_id: String,
    pub ops: i64,
    pub revokes: i64,
    pub hold_id: Option<String>,
    pub sla_due: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub sla_result: Option<String>,
    pub sla_seconds: Option<i64>,
    pub unsupported: Vec<String>,
}

type RecordSt = (
    BigInt,
    Text,
    Text,
    Text,
    Text,
    BigInt,
    BigInt,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<BigInt>,
    Nullable<Text>,
);

#[derive(Queryable)]
struct RecordRow {
    id: i64,
    at: String,
    user_id: String,
    event: String,
    plan_id: String,
    ops: i64,
    revokes: i64,
    hold_id: Option<String>,
    sla_due: Option<String>,
    completed: Option<String>,
    sla_result: Option<String>,
    sla_seconds: Option<i64>,
    unsupported: Option<String>,
}

impl From<RecordRow> for EventRecord {
    fn from(r: RecordRow) -> Self {
        EventRecord {
            id: r.id,
            at: parse_ts(&r.at).unwrap_or_default(),
            user_id: r.user_id,
            event: r.event,
            plan_id: r.plan_id,
            ops: r.ops,
            revokes: r.revokes,
            hold_id: r.hold_id,
            sla_due: r.sla_due.as_deref().and_then(parse_ts),
            completed: r.completed.as_deref().and_then(parse_ts),
            sla_result: r.sla_result,
            sla_seconds: r.sla_seconds,
            unsupported: r
                .unsupported
                .and_then(|u| serde_json::from_str(&u).ok())
                .unwrap_or_default(),
        }
    }
}

const RECORD_COLS: &str = "SELECT id, at, user_id, event, plan_id, ops, revokes, hold_id, \
     sla_due, completed, sla_result, sla_seconds, unsupported FROM engine_events WHERE 1 = 1";

/// Which events [`records`] returns: all filters optional and combined.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub user_id: Option<String>,
    /// The event kind (`joiner`, `mover`, `leaver`, ...).
    pub event: Option<String>,
    /// Events at or after.
    pub since: Option<DateTime<Utc>>,
    /// Events before.
    pub until: Option<DateTime<Utc>>,
    /// Events with an id below (the next page after one that ended at this id).
    pub before_id: Option<i64>,
}

/// Events matching `f`, newest first, at most `limit`.
pub fn records(c: &mut DbConnection, f: &RecordFilter, limit: i64) -> HubResult<Vec<EventRecord>> {
    let mut q = Sql::<RecordSt>::new(RECORD_COLS);
    if let Some(u) = &f.user_id {
        q.push(" AND user_id = ").text(u.as_str());
    }
    if let Some(e) = &f.event {
        q.push(" AND event = ").text(e.as_str());
    }
    // Stored times are RFC 3339 with microseconds in UTC: they order as text.
    if let Some(t) = f.since {
        q.push(" AND at >= ").text(fmt_ts(t));
    }
    if let Some(t) = f.until {
        q.push(" AND at < ").text(fmt_ts(t));
    }
    if let Some(id) = f.before_id {
        q.push(" AND id < ").int(id);
    }
    q.push(" ORDER BY id DESC").limit(limit);
    Ok(q.load::<RecordRow>(c)?
        .into_iter()
        .map(EventRecord::from)
        .collect())
}

/// The events of one kind in a period and how their SLAs went: the period report's counts.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct KindStats {
    pub event: String,
    pub total: i64,
    /// Events whose plan completed.
    pub completed: i64,
    /// Events the policy set an SLA for.
    pub with_sla: i64,
    pub met: i64,
    pub breached: i64,
    /// The longest time from an event to its completion, in seconds.
    pub max_seconds: Option<i64>,
}

/// [`KindStats`] per event kind of the events at or after `from` and before `to`, by kind.
pub fn kind_stats(
    c: &mut DbConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> HubResult<Vec<KindStats>> {
    let mut q = Sql::<(
        Text,
        BigInt,
        BigInt,
        BigInt,
        BigInt,
        BigInt,
        Nullable<BigInt>,
    )>::new(
        "SELECT event, COUNT(*), \
         SUM(CASE WHEN completed IS NOT NULL THEN 1 ELSE 0 END), \
         SUM(CASE WHEN sla_due IS NOT NULL THEN 1 ELSE 0 END), \
         SUM(CASE WHEN sla_result = 'met' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN sla_result = 'breached' THEN 1 ELSE 0 END), \
         MAX(sla_seconds) FROM engine_events WHERE at >= ",
    );
    q.text(fmt_ts(from))
        .push(" AND at < ")
        .text(fmt_ts(to))
        .push(" GROUP BY event ORDER BY event");
    Ok(q.load::<KindStats>(c)?)
}

/// The id of the event of plan `plan_id`.
pub fn record_id_by_plan(c: &mut DbConnection, plan_id: &str) -> HubResult<Option<i64>> {
    let mut q = Sql::<BigInt>::new("SELECT id FROM engine_events WHERE plan_id = ");
    q.text(plan_id).push(" ORDER BY id DESC").limit(1);
    Ok(q.load::<i64>(c)?.into_iter().next())
}

/// One event by id.
pub fn record_by_id(c: &mut DbConnection, id: i64) -> HubResult<Option<EventRecord>> {
    let mut q = Sql::<RecordSt>::new(RECORD_COLS);
    q.push(" AND id = ").int(id);
    Ok(q.load::<RecordRow>(c)?
        .into_iter()
        .next()
        .map(EventRecord::from))
}
