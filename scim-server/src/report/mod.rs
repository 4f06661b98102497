//! Reports for operators and auditors (docs/reports.md): what happened, assembled from the
//! engine's records in one read snapshot together with the audit chain head, as typed data
//! (serialised to JSON with a versioned `schema` field, checked against `docs/schemas/`) and as
//! a self-contained printable HTML page rendered from templates ([`html`]).
//!
//! * [`termination`]: one leaver or contract-expiry event: every system, every action with its
//!   requested and done times, verification, the SLA result, incidents, who approved exceptions.
//! * [`period`]: a period for auditors, as a list of sections each assembled by one function
//!   ([`period::SECTIONS`]): events by kind, SLA attainment per kind, incidents and their
//!   resolution times, drift findings.
//! * [`contractor`]: a contractor's provisioning history; kept as it was when the contract-expiry
//!   plan completes ([`contractor::archive`], called by the outbox runner) and served from
//!   that copy afterwards.
//!
//! Reads go through [`Store::read_tx`]: a reader connection, never the writer.

pub mod campaign;
pub mod chart;
pub mod contractor;
#[cfg(test)]
mod fixtures;
pub mod html;
pub mod period;
pub mod termination;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::HubError;
use crate::store::{audit_chain, engine_state, find_user_row, DbConnection, Store};

/// Errors of building or rendering a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such user or event (or the user has no event the report is about).
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad input: a date that is not one, a period that ends before it starts, an event of
    /// another user or kind.
    #[error("{0}")]
    Invalid(String),
    /// A template failed to render (a bug, not the caller's fault).
    #[error("cannot render the report: {0}")]
    Render(String),
    /// A stored report that no longer parses.
    #[error("stored report {0} is not valid JSON")]
    Archive(i64),
    #[error(transparent)]
    Store(#[from] HubError),
}

pub type ReportResult<T> = Result<T, ReportError>;

/// The two forms of every report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Json,
    Html,
}

/// The audit chain's head when a report was made: the entry the report's facts are consistent
/// with (read in the same snapshot). Check it later with `scimhub audit verify --anchor SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

impl AuditHead {
    fn read(c: &mut DbConnection) -> ReportResult<AuditHead> {
        let h = audit_chain::head(c)?;
        Ok(AuditHead {
            seq: h.seq,
            hash: h.hash,
        })
    }
}

/// Whom a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRef {
    pub id: String,
    /// The userName (from the directory, else as the engine last knew it).
    pub user_name: Option<String>,
}

/// The user `user` names: a SCIM id or userName of a current User, else the id of a user the
/// engine knows (a deleted user's reports stay readable by id).
fn resolve_user(c: &mut DbConnection, user: &str) -> ReportResult<UserRef> {
    if let Some(row) = find_user_row(c, user)? {
        let doc: Value = serde_json::from_str(&row.doc).unwrap_or(Value::Null);
        return Ok(UserRef {
            user_name: doc
                .get("userName")
                .and_then(Value::as_str)
                .map(str::to_string),
            id: row.id,
        });
    }
    match engine_state::get_user(c, user)? {
        Some(u) => Ok(UserRef {
            id: user.to_string(),
            user_name: u
                .facts
                .get("userName")
                .and_then(Value::as_str)
                .map(str::to_string),
        }),
        None => Err(ReportError::NotFound(format!("user {user}"))),
    }
}

/// Runs `f` in one read snapshot of `store`.
fn snapshot<T>(
    store: &Store,
    f: impl FnOnce(&mut DbConnection) -> ReportResult<T>,
) -> ReportResult<T> {
    // The store's transaction speaks HubError; carry the report's own error through it.
    let mut out = None;
    store.read_tx(|c| {
        out = Some(f(c));
        Ok(())
    })?;
    out.unwrap_or_else(|| Err(ReportError::Render("no result".into())))
}

/// The latest time the store can hold (RFC 3339 text with a four-digit year).
fn last_stored_time() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A period bound: `YYYY-MM-DD` (a UTC day: `from` its start, `to` the end of it, so both days
/// are in the period) or an RFC 3339 time (taken as given; `to` exclusive). Years 0001 to 9999
/// only (400 otherwise): the store compares times as text, where `+10000-01-01` sorts before
/// `2026-…`, so a period ending in year 10000 counted nothing. The end of the day `9999-12-31`
/// is therefore the last time the store can hold.
pub fn parse_bound(s: &str, end: bool, name: &str) -> ReportResult<DateTime<Utc>> {
    let out_of_range = || {
        ReportError::Invalid(format!(
            "{name}: {s:?} is out of range (years 0001 to 9999)"
        ))
    };
    let t = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                ReportError::Invalid(format!(
                    "{name}: {s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"
                ))
            })?;
            if !(1..=9999).contains(&d.year()) {
                return Err(out_of_range());
            }
            let d = match d.succ_opt() {
                Some(next) if end && next.year() <= 9999 => next,
                _ if end => return Ok(last_stored_time()),
                _ => d,
            };
            d.and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or_default()
        }
    };
    if !(1..=9999).contains(&t.year()) {
        return Err(out_of_range());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_cover_whole_days_and_times_are_taken_as_given() {
        let from = parse_bound("2026-11-01", false, "from").unwrap();
        let to = parse_bound("2026-11-30", true, "to").unwrap();
        assert_eq!(from, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        assert_eq!(to, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        let t = parse_bound("2026-11-30T12:00:00+01:00", true, "to").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap());
        assert!(matches!(
            parse_bound("30/11/2026", false, "from"),
            Err(ReportError::Invalid(_))
        ));
    }

    /// Bounds outside years 0001 to 9999 are refused: as text, `+10000-01-01` sorted before
    /// every stored time and a period up to it counted nothing. The end of 9999-12-31 is the
    /// last time the store can hold.
    #[test]
    fn years_outside_0001_to_9999_are_refused() {
        let last = parse_bound("9999-12-31", true, "to").unwrap();
        assert!(
            last.to_rfc3339().starts_with("9999-12-31T23:59:59"),
            "{last}"
        );
        assert!(last > Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        for (s, end) in [
            ("0000-01-01", false),
            ("0000-12-31", true),
            ("10000-01-01", false),
            ("0000-06-01T00:00:00Z", false),
            ("9999-12-31T23:00:00-05:00", true),
        ] {
            assert!(
                matches!(parse_bound(s, end, "b"), Err(ReportError::Invalid(_))),
                "{s}"
            );
        }
        assert_eq!(
            parse_bound("0001-01-01", false, "from").unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap()
        );
    }
}
