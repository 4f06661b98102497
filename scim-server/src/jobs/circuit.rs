//! The circuit breaker of each connector (issue #14, outages).
//!
//! A connector that keeps failing (retryable errors: network, timeouts, 5xx, 429) would
//! otherwise burn the retry budget of every queued operation and park them all. Instead, after
//! `circuit_failures` retryable failures in a row (policy, default 5) its circuit **opens**:
//! its operations wait (the claim skips them, their attempts are not touched; the operation
//! whose failure opened it, and any that were already running, get their attempt back) and a
//! `connector_unhealthy` incident is raised, once per outage. Every `circuit_probe` (default
//! 30 s) exactly one operation is claimed as the **probe** (half-open); the database decides
//! who takes it ([`connector_health::take_probe`]), so this holds across worker tasks and
//! PostgreSQL nodes. A probe that fails re-opens the circuit for another interval (same outage,
//! same incident); any call that gets an answer (done, or a non-retryable error: the system is
//! reachable and said no) **closes** it: the incident is resolved with a note, and the
//! connector's waiting operations become due at once with a fresh retry budget, claimed again
//! in their per-user order (the claim's rule is unchanged: an operation runs only once every
//! earlier one of its user and connector is done or parked). Non-retryable errors never count
//! towards opening.
//!
//! The state lives in `connector_health` (durable: a restart keeps an open circuit open). The
//! transitions themselves are pure ([`on_failure`], [`on_answer`]) and tested with a test
//! clock; [`failed`], [`answered`] and [`claim_probes`] apply them in the runner's
//! transactions. `scimhub outbox retry --connector X` (an operator says it is back) makes the
//! probe due at once ([`connector_health::probe_now`]).

use chrono::{DateTime, Duration, Utc};

use crate::error::HubResult;
use crate::policy::ConnectorDef;
use crate::store::connector_health::{self, CircuitState, Health};
use crate::store::outbox::{self, OutboxRow};
use crate::store::{incidents, verifications, DbConnection};

/// Retryable failures in a row that open a circuit unless the connector sets
/// `circuit_failures`.
pub const DEFAULT_FAILURES: i64 = crate::policy::DEFAULT_CIRCUIT_FAILURES;
/// How long an open circuit waits before a probe unless the connector sets `circuit_probe`.
pub const DEFAULT_PROBE_SECS: i64 = crate::policy::DEFAULT_CIRCUIT_PROBE_SECS;

/// The incident kind raised when a circuit opens.
pub const UNHEALTHY: &str = "connector_unhealthy";

/// One connector's circuit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    pub failures: i64,
    pub probe: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failures: DEFAULT_FAILURES,
            probe: Duration::seconds(DEFAULT_PROBE_SECS),
        }
    }
}

impl CircuitConfig {
    /// The settings of a connector of the policy (`None`: not in the policy, the defaults).
    pub fn of(def: Option<&ConnectorDef>) -> CircuitConfig {
        let d = CircuitConfig::default();
        CircuitConfig {
            failures: def.and_then(|c| c.circuit_failures).unwrap_or(d.failures),
            probe: def.and_then(|c| c.circuit_probe).unwrap_or(d.probe),
        }
    }
}

/// What one outcome did to a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed state (a failure counted, or a success on a closed circuit).
    Stay,
    /// Closed to open: an outage began.
    Opened,
    /// A probe (or a call still running from before) failed: open again until the next probe.
    Reopened,
    /// Open or half-open to closed: the outage is over.
    Closed,
}

/// A retryable failure at `now`. Closed: counted, and the circuit opens at `cfg.failures` in a
/// row. Half-open: the probe failed, open again until `now + cfg.probe`. Open: an operation
/// claimed before the circuit opened failed too; nothing changes but the error.
pub fn on_failure(
    h: &mut Health,
    cfg: &CircuitConfig,
    error: &str,
    now: DateTime<Utc>,
) -> Transition {
    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
    h.last_error = Some(error.to_string());
    h.updated = now;
    match h.state {
        CircuitState::Closed if h.consecutive_failures >= cfg.failures.max(1) => {
            h.state = CircuitState::Open;
            h.opened_at = Some(now);
            h.next_probe_at = Some(now + cfg.probe);
            h.probe_until = None;
            Transition::Opened
        }
        CircuitState::Closed => Transition::Stay,
        CircuitState::HalfOpen => {
            h.state = CircuitState::Open;
            h.opened_at.get_or_insert(now);
            h.next_probe_at = Some(now + cfg.probe);
            h.probe_until = None;
            Transition::Reopened
        }
        CircuitState::Open => Transition::Stay,
    }
}

/// A call got an answer at `now` (done, or a non-retryable error): the connector is reachable.
/// The failure count starts again and a circuit that is not closed closes.
pub fn on_answer(h: &mut Health, now: DateTime<Utc>) -> Transition {
    h.consecutive_failures = 0;
    h.updated = now;
    if h.state == CircuitState::Closed {
        return Transition::Stay;
    }
    h.state = CircuitState::Closed;
    h.opened_at = None;
    h.next_probe_at = None;
    h.probe_until = None;
    Transition::Closed
}

/// When an operation of a connector in state `h` that just failed retryably runs again: `None`
/// while the circuit is closed (the operation's own backoff applies), else the next probe.
pub fn wait_until(h: &Health) -> Option<DateTime<Utc>> {
    match h.state {
        CircuitState::Closed => None,
        _ => Some(h.next_probe_at.unwrap_or(h.updated)),
    }
}

/// The dedupe key of the incident of the outage that began at `opened_at`.
fn incident_key(connector: &str, opened_at: Option<DateTime<Utc>>) -> String {
    format!(
        "{UNHEALTHY}:{connector}:{}",
        opened_at.map(|t| t.to_rfc3339()).unwrap_or_default()
    )
}

/// Records a retryable failure of `connector` in the caller's transaction (the row locked until
/// it ends); raises the outage's incident when the circuit opens. Returns when the operation
/// should run again when the circuit is not closed (it then waits for the probe, its attempt
/// given back), `None` when the operation's own backoff applies.
pub fn failed(
    c: &mut DbConnection,
    connector: &str,
    cfg: &CircuitConfig,
    error: &str,
    now: DateTime<Utc>,
) -> HubResult<Option<DateTime<Utc>>> {
    let mut h = connector_health::lock(c, connector, now)?;
    let t = on_failure(&mut h, cfg, error, now);
    connector_health::put(c, &h)?;
    match t {
        Transition::Opened => {
            tracing::warn!(
                connector,
                failures = h.consecutive_failures,
                error,
                "connector circuit opened: its operations wait for a probe"
            );
            let reason = format!(
                "{connector} failed {} times in a row (last error: {error}); its operations \
                 wait instead of using up their retries, and one is tried every {} as a probe. \
                 When it is back, `scimhub outbox retry --connector {connector}` probes at once.",
                h.consecutive_failures,
                crate::policy::fmt_duration(cfg.probe),
            );
            incidents::raise_once(
                c,
                &incidents::NewIncident {
                    kind: UNHEALTHY,
                    user_id: None,
                    connector: Some(connector),
                    reason: &reason,
                    dedupe_key: &incident_key(connector, h.opened_at),
                },
                now,
            )?;
        }
        Transition::Reopened => {
            tracing::info!(
                connector,
                error,
                "connector probe failed: circuit open again"
            )
        }
        Transition::Stay | Transition::Closed => {}
    }
    Ok(wait_until(&h))
}

/// Records that a call to `connector` got an answer, in the caller's transaction. When that
/// closes its circuit: the outage's incident is resolved with a note and the connector's
/// waiting operations are due at once with a fresh budget. Returns whether it closed (the
/// caller wakes the workers). A closed circuit without failures is not written.
pub fn answered(c: &mut DbConnection, connector: &str, now: DateTime<Utc>) -> HubResult<bool> {
    match connector_health::get(c, connector)? {
        None => return Ok(false),
        Some(h) if h.state == CircuitState::Closed && h.consecutive_failures == 0 => {
            return Ok(false)
        }
        Some(_) => {}
    }
    let mut h = connector_health::lock(c, connector, now)?;
    let opened_at = h.opened_at;
    if on_answer(&mut h, now) != Transition::Closed {
        connector_health::put(c, &h)?;
        return Ok(false);
    }
    connector_health::put(c, &h)?;
    let resumed = outbox::resume_waiting(c, connector, now)?;
    let down = opened_at
        .map(|t| crate::policy::fmt_duration(now - t))
        .unwrap_or_default();
    let note = format!(
        "{connector} answered again at {}: circuit closed after {down}; {resumed} waiting \
         operation(s) resumed in order",
        now.to_rfc3339()
    );
    incidents::resolve_key(
        c,
        &incident_key(connector, opened_at),
        "scimhub",
        &note,
        now,
    )?;
    // Checks that found the system unreadable during the outage read it again; each waits
    // for the connector's resumed operations of its user before reading.
    for (user, plan) in verifications::unreadable_on(c, connector)? {
        verifications::rearm(c, &user, &plan, connector, now, now)?;
    }
    tracing::info!(connector, resumed, "connector circuit closed");
    Ok(true)
}

/// Claims the probes this lane may run now: for each connector whose circuit is not closed and
/// whose probe is due, the probe is taken in the database and one operation of the connector
/// claimed; when none is claimable the probe is given back. At most `limit`.
pub fn claim_probes(
    c: &mut DbConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
    min_priority: i64,
    limit: usize,
) -> HubResult<Vec<OutboxRow>> {
    let mut out = Vec::new();
    for connector in connector_health::not_closed(c)? {
        if out.len() >= limit {
            break;
        }
        if !connector_health::take_probe(c, &connector, now, now + lease)? {
            continue;
        }
        match outbox::claim_probe(c, &connector, owner, now, lease, min_priority)? {
            Some(row) => {
                tracing::info!(connector, outbox_id = row.id, "connector probe claimed");
                out.push(row);
            }
            None => connector_health::give_back_probe(c, &connector)?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::clock::{Clock, TestClock};

    fn setup() -> (TestClock, Health, CircuitConfig) {
        let clock = TestClock::new(Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap());
        let h = Health::closed("ldap", clock.now());
        let cfg = CircuitConfig {
            failures: 3,
            probe: Duration::seconds(30),
        };
        (clock, h, cfg)
    }

    #[test]
    fn opens_after_n_failures_in_a_row_and_waits_for_the_probe() {
        let (clock, mut h, cfg) = setup();
        assert_eq!(
            on_failure(&mut h, &cfg, "503", clock.now()),
            Transition::Stay
        );
        assert_eq!(
            wait_until(&h),
            None,
            "closed: the operation's backoff applies"
        );
        assert_eq!(
            on_failure(&mut h, &cfg, "503", clock.now()),
            Transition::Stay
        );
        clock.advance(Duration::seconds(5));
        let opened = clock.now();
        assert_eq!(
            on_failure(&mut h, &cfg, "timeout", opened),
            Transition::Opened
        );
        assert_eq!(h.state, CircuitState::Open);
        assert_eq!(h.opened_at, Some(opened));
        assert_eq!(h.next_probe_at, Some(opened + Duration::seconds(30)));
        assert_eq!(wait_until(&h), Some(opened + Duration::seconds(30)));
        assert_eq!(h.last_error.as_deref(), Some("timeout"));
        // A call claimed before it opened fails too: still open, the probe time unchanged.
        clock.advance(Duration::seconds(1));
        assert_eq!(
            on_failure(&mut h, &cfg, "503", clock.now()),
            Transition::Stay
        );
        assert_eq!(h.next_probe_at, Some(opened + Duration::seconds(30)));
    }

    #[test]
    fn an_answer_resets_the_count() {
        let (clock, mut h, cfg) = setup();
        on_failure(&mut h, &cfg, "503", clock.now());
        on_failure(&mut h, &cfg, "503", clock.now());
        assert_eq!(on_answer(&mut h, clock.now()), Transition::Stay);
        assert_eq!(h.consecutive_failures, 0);
        on_failure(&mut h, &cfg, "503", clock.now());
        on_failure(&mut h, &cfg, "503", clock.now());
        assert_eq!(h.state, CircuitState::Closed, "not three in a row");
    }

    #[test]
    fn a_failed_probe_reopens_the_same_outage_and_a_good_one_closes() {
        let (clock, mut h, cfg) = setup();
        let opened = clock.now();
        for _ in 0..3 {
            on_failure(&mut h, &cfg, "503", opened);
        }
        // The probe is taken in the database (half-open) at the probe time.
        clock.advance(Duration::seconds(30));
        h.state = CircuitState::HalfOpen;
        h.probe_until = Some(clock.now() + Duration::seconds(15));
        assert_eq!(
            on_failure(&mut h, &cfg, "503", clock.now()),
            Transition::Reopened
        );
        assert_eq!(h.state, CircuitState::Open);
        assert_eq!(h.opened_at, Some(opened), "the same outage");
        assert_eq!(h.next_probe_at, Some(clock.now() + Duration::seconds(30)));
        assert_eq!(h.probe_until, None);
        clock.advance(Duration::seconds(30));
        h.state = CircuitState::HalfOpen;
        assert_eq!(on_answer(&mut h, clock.now()), Transition::Closed);
        assert_eq!(h.state, CircuitState::Closed);
        assert_eq!(
            (h.consecutive_failures, h.opened_at, h.next_probe_at),
            (0, None, None)
        );
        assert_eq!(wait_until(&h), None);
    }

    #[test]
    fn defaults_and_policy_settings() {
        assert_eq!(
            CircuitConfig::of(None),
            CircuitConfig {
                failures: 5,
                probe: Duration::seconds(30)
            }
        );
        let policy = crate::policy::Policy::parse(
            "[[connector]]\nname = \"ldap\"\ntype = \"memory\"\ncircuit_failures = 2\n\
             circuit_probe = \"2m\"\n",
            "p.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            CircuitConfig::of(policy.connectors.get("ldap")),
            CircuitConfig {
                failures: 2,
                probe: Duration::minutes(2)
            }
        );
    }
}
