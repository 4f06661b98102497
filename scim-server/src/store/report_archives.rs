//! Reports kept as they were made (`report_archives`): a contractor's provisioning history,
//! written in the transaction that completes the contract-expiry plan (`report::archive`) and
//! never updated. One copy per (kind, event).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::Sql;
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// A kept report.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Archive {
    pub id: i64,
    pub kind: String,
    pub user_id: String,
    pub event_id: i64,
    /// RFC 3339, as stored.
    pub created: String,
    /// The report's JSON, as generated.
    pub body: String,
}

/// Keeps `body` as the `kind` report of `user_id` made when event `event_id` completed; false
/// (and nothing written) when that event already has one.
pub fn insert(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
    event_id: i64,
    body: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "INSERT INTO report_archives (kind, user_id, event_id, created, body) VALUES (",
    );
    q.text(kind)
        .push(", ")
        .text(user_id)
        .push(", ")
        .int(event_id)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(body)
        .push(") ON CONFLICT (kind, event_id) DO NOTHING");
    Ok(q.execute(c)? > 0)
}

/// The latest `kind` report kept for `user_id`.
pub fn latest(c: &mut DbConnection, kind: &str, user_id: &str) -> HubResult<Option<Archive>> {
    let mut q = Sql::<(BigInt, Text, Text, BigInt, Text, Text)>::new(
        "SELECT id, kind, user_id, event_id, created, body FROM report_archives WHERE kind = ",
    );
    q.text(kind)
        .push(" AND user_id = ")
        .text(user_id)
        .push(" ORDER BY id DESC")
        .limit(1);
    Ok(q.load::<Archive>(c)?.into_iter().next())
}
