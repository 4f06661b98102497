//! The aggregate reads behind `/metrics`' database gauges (`crate::metrics::DB_GAUGES`): each is
//! one `GROUP BY` over a status the claim or list indexes lead with, so a scrape reads a bounded
//! number of rows whatever the tables' size, on a reader connection.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::Sql;
use super::{parse_ts, DbConnection};
use crate::error::HubResult;

/// What every gauge query may need.
#[derive(Debug, Clone)]
pub struct ScrapeContext {
    pub now: DateTime<Utc>,
    /// The lowest outbox priority of the priority lane (the runner's lane split).
    pub priority_lane: i64,
}

/// One sample: label values (in the gauge's label order) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeRow {
    pub labels: Vec<String>,
    pub value: f64,
}

#[derive(Queryable)]
struct Counted3 {
    a: String,
    b: String,
    c: String,
    n: i64,
}

#[derive(Queryable)]
struct Oldest {
    connector: String,
    lane: String,
    created: Option<String>,
}

#[derive(Queryable)]
struct Counted1 {
    a: String,
    n: i64,
}

fn lane_case(ctx: &ScrapeContext) -> Sql<()> {
    let mut s = Sql::<()>::new("CASE WHEN priority >= ");
    s.int(ctx.priority_lane)
        .push(" THEN 'priority' ELSE 'normal' END");
    s
}

/// Operations not done (pending, running, held, failed) by connector, lane and status.
pub fn outbox_depth(c: &mut DbConnection, ctx: &ScrapeContext) -> HubResult<Vec<GaugeRow>> {
    let mut q = Sql::<(Text, Text, Text, BigInt)>::new("SELECT connector, ");
    q.append(&lane_case(ctx)).push(
        " AS lane, status, COUNT(*) FROM engine_outbox \
         WHERE status IN ('pending', 'running', 'held', 'failed') \
         GROUP BY connector, lane, status ORDER BY connector, lane, status",
    );
    Ok(q.load::<Counted3>(c)?
        .into_iter()
        .map(|r| GaugeRow {
            labels: vec![r.a, r.b, r.c],
            value: r.n as f64,
        })
        .collect())
}

/// Seconds since the oldest pending operation was queued, by connector and lane.
pub fn outbox_oldest_pending_age(
    c: &mut DbConnection,
    ctx: &ScrapeContext,
) -> HubResult<Vec<GaugeRow>> {
    let mut q = Sql::<(Text, Text, Nullable<Text>)>::new("SELECT connector, ");
    q.append(&lane_case(ctx)).push(
        " AS lane, MIN(created) FROM engine_outbox WHERE status = 'pending' \
         GROUP BY connector, lane ORDER BY connector, lane",
    );
    Ok(q.load::<Oldest>(c)?
        .into_iter()
        .filter_map(|r| {
            let created = parse_ts(r.created.as_deref()?)?;
            let age = (ctx.now - created).num_milliseconds().max(0) as f64 / 1000.0;
            Some(GaugeRow {
                labels: vec![r.connector, r.lane],
                value: age,
            })
        })
        .collect())
}

fn count_by(c: &mut DbConnection, sql: &str) -> HubResult<Vec<GaugeRow>> {
    Ok(Sql::<(Text, BigInt)>::new(sql)
        .load::<Counted1>(c)?
        .into_iter()
        .map(|r| GaugeRow {
            labels: vec![r.a],
            value: r.n as f64,
        })
        .collect())
}

/// Open incidents by kind.
pub fn open_incidents(c: &mut DbConnection, _: &ScrapeContext) -> HubResult<Vec<GaugeRow>> {
    count_by(
        c,
        "SELECT kind, COUNT(*) FROM engine_incidents WHERE status = 'open' \
         GROUP BY kind ORDER BY kind",
    )
}

/// Notifications not sent, by status.
pub fn notification_backlog(c: &mut DbConnection, _: &ScrapeContext) -> HubResult<Vec<GaugeRow>> {
    count_by(
        c,
        "SELECT status, COUNT(*) FROM engine_notifications \
         WHERE status IN ('pending', 'running', 'failed') GROUP BY status ORDER BY status",
    )
}

/// Holds waiting for an admin (one row, no labels).
pub fn holds_pending(c: &mut DbConnection, _: &ScrapeContext) -> HubResult<Vec<GaugeRow>> {
    let rows = count_by(
        c,
        "SELECT status, COUNT(*) FROM engine_holds WHERE status = 'pending' GROUP BY status",
    )?;
    let n = rows.first().map_or(0.0, |r| r.value);
    Ok(vec![GaugeRow {
        labels: Vec::new(),
        value: n,
    }])
}

/// Each connector's circuit state (closed 0, half-open 1, open 2), from `connector_health`
/// (one row per connector).
pub fn circuit_state(c: &mut DbConnection, _: &ScrapeContext) -> HubResult<Vec<GaugeRow>> {
    Ok(super::connector_health::list(c)?
        .into_iter()
        .map(|h| GaugeRow {
            labels: vec![h.connector],
            value: h.state.gauge(),
        })
        .collect())
}
