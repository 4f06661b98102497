//! Incidents (`engine_incidents`): what needs a human (an operation parked as failed, a
//! connector that cannot be built, a plan past its SLA, a required step a connector cannot do).
//! Raised `open`; those of an operation are resolved when it is retried.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// Opens an incident.
pub fn raise(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    connector: Option<&str>,
    outbox_id: Option<i64>,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_incidents (created, kind, user_id, connector, outbox_id, reason, status) VALUES (",
    );
    q.text(fmt_ts(now)).push(", ").text(kind).push(", ");
    q.bind(Bind::OptText(user_id.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(connector.map(str::to_string)))
        .push(", ");
    match outbox_id {
        Some(id) => q.int(id),
        None => q.push("NULL"),
    };
    q.push(", ").text(reason).push(", 'open')");
    q.execute(c)?;
    Ok(())
}

/// An incident raised at most once per `dedupe_key` (an SLA breach per plan, an unsupported
/// step per plan, connector and step).
#[derive(Debug, Clone, Copy)]
pub struct NewIncident<'a> {
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub connector: Option<&'a str>,
    pub reason: &'a str,
    pub dedupe_key: &'a str,
}

/// Opens `i` unless an incident with its key was ever raised; true when it opened one.
pub fn raise_once(
    c: &mut DbConnection,
    i: &NewIncident<'_>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_incidents (created, kind, user_id, connector, outbox_id, reason, status, \
         dedupe_key) VALUES (",
    );
    q.text(fmt_ts(now)).push(", ").text(i.kind).push(", ");
    q.bind(Bind::OptText(i.user_id.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(i.connector.map(str::to_string)))
        .push(", NULL, ")
        .text(i.reason)
        .push(", 'open', ")
        .text(i.dedupe_key)
        .push(") ON CONFLICT (dedupe_key) DO NOTHING");
    Ok(q.execute(c)? > 0)
}

/// Resolves the open incidents an outbox operation raised (it is being retried).
pub(crate) fn resolve_for_op(c: &mut DbConnection, outbox_id: i64) -> HubResult<()> {
    let mut r = Sql::<()>::new(
        "UPDATE engine_incidents SET status = 'resolved' WHERE status = 'open' AND outbox_id = ",
    );
    r.int(outbox_id);
    r.execute(c)?;
    Ok(())
}

/// An open incident.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Incident {
    pub id: i64,
    /// RFC 3339, as stored.
    pub created: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub connector: Option<String>,
    pub reason: String,
}

/// Open incidents, oldest first.
pub fn list_open(c: &mut DbConnection) -> HubResult<Vec<Incident>> {
    let q = Sql::<(BigInt, Text, Text, Nullable<Text>, Nullable<Text>, Text)>::new(
        "SELECT id, created, kind, user_id, connector, reason FROM engine_incidents \
         WHERE status = 'open' ORDER BY id",
    );
    Ok(q.load::<Incident>(c)?)
}

/// Opens an incident unless one of the same kind is open for the same user and connector (a
/// check that keeps failing is one thing to review, not one per attempt). Returns whether it
/// opened one.
pub fn raise_unless_open(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
    connector: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<BigInt>::new(
        "SELECT COUNT(*) FROM engine_incidents WHERE status = 'open' AND kind = ",
    );
    q.text(kind)
        .push(" AND user_id = ")
        .text(user_id)
        .push(" AND connector = ")
        .text(connector);
    if q.get_result::<i64>(c)? > 0 {
        return Ok(false);
    }
    raise(c, kind, Some(user_id), Some(connector), None, reason, now)?;
    Ok(true)
}
