//! The policies every user was re-planned under (`engine_policy_applied`, the last row in
//! force): see [`crate::engine::replan::policy_change`].

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, RunQueryDsl};

use super::sql::Sql;
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// Serialises the nodes deciding on a policy until the caller's transaction ends
/// (PostgreSQL; SQLite's one writer serialises anyway).
pub fn lock(c: &mut DbConnection) -> HubResult<()> {
    if matches!(c, DbConnection::Postgresql(_)) {
        Sql::<()>::new("LOCK TABLE engine_policy_applied IN SHARE ROW EXCLUSIVE MODE")
            .execute(c)?;
    }
    Ok(())
}

/// The policy applied last: its SHA-256, its guard and its security addresses as recorded
/// ([`record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub sha256: String,
    /// The policy's blast-radius guard in the engine's text form; `None` when a release that
    /// did not record guards applied it.
    pub guard: Option<String>,
    /// The policy's `[notify] security` addresses; empty when a release that did not record
    /// them applied it (or the column was edited into something else than a list of strings).
    pub security: Vec<String>,
}

/// The policy applied last; `None` before any was recorded.
pub fn current(c: &mut DbConnection) -> HubResult<Option<Applied>> {
    let mut q = Sql::<(Text, Nullable<Text>, Nullable<Text>)>::new(
        "SELECT sha256, guard, security FROM engine_policy_applied ORDER BY id DESC",
    );
    q.limit(1);
    Ok(q.get_result::<(String, Option<String>, Option<String>)>(c)
        .optional()?
        .map(|(sha256, guard, security)| Applied {
            sha256,
            guard,
            security: security
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
        }))
}

/// Whether `sha256` was ever applied.
pub fn applied_before(c: &mut DbConnection, sha256: &str) -> HubResult<bool> {
    let mut q = Sql::<BigInt>::new("SELECT COUNT(*) FROM engine_policy_applied WHERE sha256 = ");
    q.text(sha256);
    Ok(q.get_result::<i64>(c)? > 0)
}

/// Records `sha256`, whose blast-radius guard is `guard` (the engine's text form) and whose
/// `[notify] security` addresses are `security`, as applied now by `node`.
pub fn record(
    c: &mut DbConnection,
    sha256: &str,
    guard: &str,
    security: &[String],
    node: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_policy_applied (sha256, guard, security, applied_at, node) VALUES (",
    );
    q.text(sha256)
        .push(", ")
        .text(guard)
        .push(", ")
        // A list of strings always serialises.
        .text(serde_json::to_string(security).unwrap_or_else(|_| "[]".into()))
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(node)
        .push(")");
    q.execute(c)?;
    Ok(())
}
