//! The audit trail (`engine_audit`): append-only, one entry per decision, operation result,
//! admin action and SCIM write, each chained to the one before (see [`super::audit_chain`]), read
//! back by user.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::Sql;
use super::DbConnection;
use crate::error::HubResult;

/// One audit entry to append.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub user_id: &'a str,
    pub connector: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub detail: serde_json::Value,
}

/// Appends `e` to the tamper-evident chain (see [`super::audit_chain`]) in the caller's
/// transaction.
pub fn append(c: &mut DbConnection, e: &AuditEntry<'_>) -> HubResult<()> {
    super::audit_chain::append(
        c,
        &super::audit_chain::NewEntry {
            at: e.at,
            actor: e.actor,
            user_id: e.user_id,
            connector: e.connector,
            action: e.action,
            outcome: e.outcome,
            detail: &e.detail,
        },
    )?;
    Ok(())
}

/// An audit entry as stored.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339, as stored.
    pub at: String,
    pub actor: String,
    pub user_id: String,
    pub connector: Option<String>,
    pub action: String,
    pub outcome: String,
    /// JSON text.
    pub detail: String,
}

/// Audit entries, oldest first, optionally of one user.
pub fn list(c: &mut DbConnection, user_id: Option<&str>) -> HubResult<Vec<AuditRecord>> {
    let mut q = Sql::<(BigInt, Text, Text, Text, Nullable<Text>, Text, Text, Text)>::new(
        "SELECT id, at, actor, user_id, connector, action, outcome, detail FROM engine_audit WHERE 1 = 1",
    );
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id");
    Ok(q.load::<AuditRecord>(c)?)
}
