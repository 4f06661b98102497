//! Connector health (`connector_health`): the durable state of each connector's circuit
//! breaker, one row per connector (absent: closed, never failed). What the transitions are is
//! `jobs::circuit`'s rule; this module reads and writes the row, and holds the one write that
//! must be decided by the database rather than by a process: who runs the half-open probe.
//!
//! Functions take a connection so that they run in the caller's transaction (the runner records
//! an operation's outcome and its circuit's transition in one).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::text_enum::text_enum;
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::HubResult;

text_enum! {
    /// Where a connector's circuit is.
    pub enum CircuitState {
        /// Operations run; retryable failures are counted.
        Closed = "closed",
        /// The connector failed too often in a row: its operations wait (nobody claims them)
        /// until the next probe is due.
        Open = "open",
        /// One operation, the probe, is running; the others still wait for its outcome.
        HalfOpen = "half_open",
    }
}

impl CircuitState {
    /// The value of `scimhub_connector_circuit_state`: closed 0, half-open 1, open 2.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// One connector's circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub connector: String,
    pub state: CircuitState,
    /// Retryable failures since the last call that got an answer.
    pub consecutive_failures: i64,
    /// When the current outage began (the circuit opened from closed); kept while it re-opens
    /// after failed probes, cleared when it closes.
    pub opened_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// When an open circuit lets one probe through.
    pub next_probe_at: Option<DateTime<Utc>>,
    /// While half-open: when the probe's claim is given up (its worker died) and another probe
    /// may be claimed.
    pub probe_until: Option<DateTime<Utc>>,
    pub updated: DateTime<Utc>,
}

impl Health {
    /// A closed circuit that never failed.
    pub fn closed(connector: &str, now: DateTime<Utc>) -> Health {
        Health {
            connector: connector.to_string(),
            state: CircuitState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            last_error: None,
            next_probe_at: None,
            probe_until: None,
            updated: now,
        }
    }
}

type HealthSt = (
    Text,
    Text,
    BigInt,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Text,
);

#[derive(Queryable)]
struct HealthRecord {
    connector: String,
    state: String,
    consecutive_failures: i64,
    opened_at: Option<String>,
    last_error: Option<String>,
    next_probe_at: Option<String>,
    probe_until: Option<String>,
    updated: String,
}

impl HealthRecord {
    fn into_health(self) -> HubResult<Health> {
        Ok(Health {
            connector: self.connector,
            state: CircuitState::from_stored(&self.state)?,
            consecutive_failures: self.consecutive_failures,
            opened_at: self.opened_at.as_deref().and_then(parse_ts),
            last_error: self.last_error,
            next_probe_at: self.next_probe_at.as_deref().and_then(parse_ts),
            probe_until: self.probe_until.as_deref().and_then(parse_ts),
            updated: parse_ts(&self.updated).unwrap_or_default(),
        })
    }
}

const COLS: &str = "SELECT connector, state, consecutive_failures, opened_at, last_error, \
     next_probe_at, probe_until, updated FROM connector_health";

/// Adds a closed row for `connector` unless it has one.
pub fn ensure(c: &mut DbConnection, connector: &str, now: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO connector_health (connector, state, consecutive_failures, updated) VALUES (",
    );
    q.text(connector)
        .push(", 'closed', 0, ")
        .text(fmt_ts(now))
        .push(") ON CONFLICT (connector) DO NOTHING");
    q.execute(c)?;
    Ok(())
}

/// The circuit of `connector` (`None`: no row, i.e. closed and never failed).
pub fn get(c: &mut DbConnection, connector: &str) -> HubResult<Option<Health>> {
    let mut q = Sql::<HealthSt>::new(COLS);
    q.push(" WHERE connector = ").text(connector);
    q.get_result::<HealthRecord>(c)
        .optional()?
        .map(HealthRecord::into_health)
        .transpose()
}

/// The circuit of `connector`, its row created if missing and locked until the caller's
/// transaction ends (PostgreSQL `FOR UPDATE`; SQLite has a single writer), so that concurrent
/// outcomes of the same connector apply one after the other.
pub fn lock(c: &mut DbConnection, connector: &str, now: DateTime<Utc>) -> HubResult<Health> {
    ensure(c, connector, now)?;
    let mut q = Sql::<HealthSt>::new(COLS);
    q.push(" WHERE connector = ").text(connector);
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE");
    }
    q.get_result::<HealthRecord>(c)?.into_health()
}

/// Writes `h` (read with [`lock`] in the same transaction).
pub fn put(c: &mut DbConnection, h: &Health) -> HubResult<()> {
    let ts = |t: Option<DateTime<Utc>>| Bind::OptText(t.map(fmt_ts));
    let mut q = Sql::<()>::new("UPDATE connector_health SET state = ");
    q.text(h.state.as_str())
        .push(", consecutive_failures = ")
        .int(h.consecutive_failures)
        .push(", opened_at = ")
        .bind(ts(h.opened_at))
        .push(", last_error = ")
        .bind(Bind::OptText(h.last_error.clone()))
        .push(", next_probe_at = ")
        .bind(ts(h.next_probe_at))
        .push(", probe_until = ")
        .bind(ts(h.probe_until))
        .push(", updated = ")
        .text(fmt_ts(h.updated))
        .push(" WHERE connector = ")
        .text(h.connector.as_str());
    q.execute(c)?;
    Ok(())
}

/// Every connector's circuit, by name.
pub fn list(c: &mut DbConnection) -> HubResult<Vec<Health>> {
    let mut q = Sql::<HealthSt>::new(COLS);
    q.push(" ORDER BY connector");
    q.load::<HealthRecord>(c)?
        .into_iter()
        .map(HealthRecord::into_health)
        .collect()
}

/// The connectors whose circuit is not closed (candidates for a probe), by name.
pub fn not_closed(c: &mut DbConnection) -> HubResult<Vec<String>> {
    let q = Sql::<Text>::new(
        "SELECT connector FROM connector_health WHERE state <> 'closed' ORDER BY connector",
    );
    Ok(q.load::<String>(c)?)
}

/// Takes the probe of `connector`'s circuit: open with its probe due, or half-open with a probe
/// whose claim ran out (its worker died), and no operation of the connector running under a
/// live lease. It becomes half-open until `probe_until`. One conditional UPDATE, so across
/// worker tasks and nodes exactly one caller wins: on PostgreSQL a concurrent caller waits for
/// the winner's row lock and then re-checks the condition on the row as the winner left it
/// (half-open, `probe_until` in the future), which fails. Returns whether this caller won.
pub fn take_probe(
    c: &mut DbConnection,
    connector: &str,
    now: DateTime<Utc>,
    probe_until: DateTime<Utc>,
) -> HubResult<bool> {
    let now_s = fmt_ts(now);
    let mut q = Sql::<()>::new("UPDATE connector_health SET state = 'half_open', probe_until = ");
    q.text(fmt_ts(probe_until))
        .push(", updated = ")
        .text(now_s.as_str())
        .push(" WHERE connector = ")
        .text(connector)
        .push(" AND ((state = 'open' AND next_probe_at <= ")
        .text(now_s.as_str())
        .push(") OR (state = 'half_open' AND (probe_until IS NULL OR probe_until < ")
        .text(now_s.as_str())
        .push("))) AND NOT EXISTS (SELECT 1 FROM engine_outbox o WHERE o.connector = ")
        .text(connector)
        .push(" AND o.status = 'running' AND o.lease_until >= ")
        .text(now_s.as_str())
        .push(")");
    Ok(q.execute(c)? > 0)
}

/// Gives a probe taken with [`take_probe`] back (no operation of the connector was claimable):
/// the circuit is open again with its probe still due. In the same transaction as the take, so
/// no other caller ever sees it half-open.
pub fn give_back_probe(c: &mut DbConnection, connector: &str) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "UPDATE connector_health SET state = 'open', probe_until = NULL \
         WHERE state = 'half_open' AND connector = ",
    );
    q.text(connector);
    q.execute(c)?;
    Ok(())
}

/// An operator says the connector is back (`outbox retry --connector`): a circuit that is not
/// closed lets one probe through at once. Returns whether the circuit was open or half-open.
pub fn probe_now(c: &mut DbConnection, connector: &str, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE connector_health SET state = 'open', probe_until = NULL, next_probe_at = ",
    );
    q.text(fmt_ts(now))
        .push(", updated = ")
        .text(fmt_ts(now))
        .push(" WHERE state <> 'closed' AND connector = ")
        .text(connector);
    Ok(q.execute(c)? > 0)
}

/// Puts every half-open circuit back to open with its probe due (a single-node SQLite process
/// at start: the probes in flight belonged to the process that stopped). Returns how many.
pub fn release_probes(c: &mut DbConnection) -> HubResult<usize> {
    let q = Sql::<()>::new(
        "UPDATE connector_health SET state = 'open', probe_until = NULL \
         WHERE state = 'half_open'",
    );
    Ok(q.execute(c)?)
}
