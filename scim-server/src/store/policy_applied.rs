//! The policy every user was last re-planned under (`engine_policy_applied`, one row): see
//! [`crate::engine::replan::policy_change`].

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel::{OptionalExtension, RunQueryDsl};

use super::sql::Sql;
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// The SHA-256 of the policy applied, locked until the caller's transaction ends (PostgreSQL;
/// SQLite's one writer serialises anyway); `None` before any was recorded.
pub fn current_for_update(c: &mut DbConnection) -> HubResult<Option<String>> {
    let mut q = Sql::<Text>::new("SELECT sha256 FROM engine_policy_applied WHERE id = 1");
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE");
    }
    Ok(q.get_result::<String>(c).optional()?)
}

/// Records `sha256` as applied by `node`.
pub fn record(c: &mut DbConnection, sha256: &str, node: &str, now: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_policy_applied (id, sha256, applied_at, node) VALUES (1, ",
    );
    q.text(sha256)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(node)
        .push(
            ") ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, \
             applied_at = excluded.applied_at, node = excluded.node",
        );
    q.execute(c)?;
    Ok(())
}
