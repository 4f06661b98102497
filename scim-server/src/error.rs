//! [`HubError`]: what an operation on the hub's directory can fail with — a protocol error, a
//! missing resource, a version or uniqueness conflict, a source-of-truth refusal, or the
//! database — whichever layer (store, service, engine, jobs, notify, admin) raised it; and the one
//! place where diesel and r2d2 errors are mapped to it. The HTTP layer maps it to SCIM errors in
//! one place (`http::error`).

use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What an operation on the hub's data can fail with. The HTTP layer maps each variant to one SCIM error:
/// `NotFound` 404, `PreconditionFailed` 412, `Uniqueness` 409 (scimType `uniqueness`),
/// `UnknownMembers` 400 (`invalidValue`), `Scim` by its scimType, `NotOwner` 400 (`mutability`),
/// `NotDeleter` 403, `BulkCycle` 409 (no scimType), `Unavailable`, `TxConflict`, `StatementTimeout` and `OutcomeUnknown` 503
/// (with `Retry-After`),
/// `Config`/`Backend` 500 (log the message, never send it to the client).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("resource not found")]
    NotFound,
    /// `If-Match` did not match; `current_version` is the stored `meta.version` number
    /// (its ETag is [`crate::store::etag`]`(current_version)`).
    #[error("precondition failed: the resource is at version {current_version}")]
    PreconditionFailed { current_version: i64 },
    /// A unique attribute clashed; the message names the attribute and is safe to show.
    #[error("{0}")]
    Uniqueness(String),
    /// Group members that do not exist (nothing was written).
    #[error("unknown member ids: {}", .0.join(", "))]
    UnknownMembers(Vec<String>),
    #[error(transparent)]
    Scim(#[from] scim_schema::Error),
    /// A client changed an attribute another client is the source of truth for, under a policy
    /// that refuses such writes (`[[source]] on_conflict = "reject"`, see
    /// `crate::service::ownership`). Raised inside the write transaction; nothing was written.
    #[error("{attribute} is owned by the source {owner}")]
    NotOwner { attribute: String, owner: String },
    /// A client deleted a User while another client is the source of truth for `active` (whose
    /// deletion is the person's departure), without the `scim:delete` scope (see
    /// `crate::service::ownership`). Nothing was written.
    #[error("only the source {owner} (owner of active) may delete users")]
    NotDeleter { owner: String },
    /// A /Bulk operation on a circular `bulkId` reference (RFC 7644 §3.7.1), which the hub does
    /// not resolve; `bulk_ids` are the cycle's, shared by all its operations (a cycle may be a
    /// whole request's). Nothing was written.
    #[error("circular bulkId references among {}", name_some(.bulk_ids))]
    BulkCycle { bulk_ids: Arc<[String]> },
    /// No connection within the pool timeout, or the database is down: retry later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL aborted the transaction because of a concurrent one (SQLSTATE 40001
    /// serialization failure, 40P01 deadlock). Nothing was written; `Store` re-runs the write
    /// transactions it can, so this reaches a client only when the retries ran out.
    #[error("transaction conflict: {0}")]
    TxConflict(String),
    /// A statement ran longer than `[database] statement_timeout` and was cancelled; the
    /// transaction was rolled back.
    #[error("statement timeout: {0}")]
    StatementTimeout(String),
    /// The connection was lost while COMMIT was in flight and the outcome could not be learnt
    /// afterwards: the write may or may not have been committed. Never acknowledged as a
    /// success; the client retries (see `docs/postgresql.md`, "Faults").
    #[error("commit outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The database URL or settings are wrong.
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Backend(String),
    /// A read running on an HTTP worker (`Store::read_here`) found its work not bounded after
    /// all (a deep page whose type's id ranks were dropped meanwhile): `AppState::read` runs it
    /// again on the blocking pool, so this never reaches a client.
    #[error("a read for the blocking pool, not the worker")]
    NotHere,
}

pub type HubResult<T> = Result<T, HubError>;

/// At most this many of a list's names in a message: a cycle may hold every operation of a
/// request, and each of its operations' errors names it.
const NAMED: usize = 10;

/// `ids` joined by commas, the first [`NAMED`] of them and then how many more there are.
pub(crate) fn name_some(ids: &[String]) -> String {
    let mut s = ids[..ids.len().min(NAMED)].join(", ");
    if ids.len() > NAMED {
        s.push_str(&format!(" and {} more", ids.len() - NAMED));
    }
    s
}

impl From<DieselError> for HubError {
    fn from(e: DieselError) -> Self {
        map_diesel(e)
    }
}

impl From<r2d2::Error> for HubError {
    fn from(e: r2d2::Error) -> Self {
        HubError::Unavailable(e.to_string())
    }
}

/// The one mapping of diesel errors. Unique violations name the SCIM attribute that clashed,
/// recognised by index name (PostgreSQL) or column list (SQLite).
pub(crate) fn map_diesel(e: DieselError) -> HubError {
    match e {
        DieselError::NotFound => HubError::NotFound,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            let hint = format!(
                "{} {}",
                info.constraint_name().unwrap_or(""),
                info.message()
            );
            HubError::Uniqueness(uniqueness_message(&hint).to_string())
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            HubError::Unavailable(info.message().to_string())
        }
        // libpq could not send the statement: the connection is gone.
        DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info) => {
            HubError::Unavailable(info.message().to_string())
        }
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
            HubError::TxConflict(info.message().to_string())
        }
        DieselError::DatabaseError(_, info) if is_deadlock(info.message()) => {
            HubError::TxConflict(info.message().to_string())
        }
        DieselError::DatabaseError(_, info) if is_statement_timeout(info.message()) => {
            HubError::StatementTimeout(info.message().to_string())
        }
        DieselError::DatabaseError(_, info) if is_busy(info.message()) => {
            HubError::Unavailable(info.message().to_string())
        }
        DieselError::DatabaseError(_, info) if is_unstorable_text(info.message()) => {
            unstorable_text(info.message())
        }
        other => HubError::Backend(other.to_string()),
    }
}

/// SQLSTATE 40P01. diesel reports only some SQLSTATEs as kinds (40001 is
/// `SerializationFailure`, 40P01 is not), so a deadlock is recognised by PostgreSQL's message,
/// which is English unless the server's `lc_messages` says otherwise (see
/// `docs/postgresql.md`).
fn is_deadlock(message: &str) -> bool {
    message.starts_with("deadlock detected")
}

/// SQLSTATE 57014 raised by `statement_timeout` (recognised like [`is_deadlock`]).
fn is_statement_timeout(message: &str) -> bool {
    message.contains("statement timeout")
}

/// PostgreSQL refusing a client's text: U+0000 in `text` (SQLSTATE 22021, "invalid byte
/// sequence") or as `\u0000` in `jsonb` (22P05, "unsupported Unicode escape sequence"), or a
/// character the database's encoding lacks (22P05, "has no equivalent"). SQLite stores them.
/// Recognised like [`is_deadlock`].
fn is_unstorable_text(message: &str) -> bool {
    message.starts_with("invalid byte sequence for encoding")
        || message.starts_with("unsupported Unicode escape sequence")
        || message.contains("has no equivalent in encoding")
}

/// The client's error (400 `invalidValue`) for text the database cannot store.
pub(crate) fn unstorable_text(message: &str) -> HubError {
    HubError::Scim(scim_schema::Error::InvalidValue(format!(
        "a value holds a character the database cannot store (such as U+0000): {message}"
    )))
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

fn uniqueness_message(hint: &str) -> &'static str {
    if hint.contains("user_name") {
        "userName is already in use"
    } else if hint.contains("display_name") {
        "a group with this displayName already exists"
    } else if hint.contains("external_id") {
        "externalId is already in use for this client"
    } else if hint.contains("token_prefix") || hint.contains("api_tokens") {
        "a token with this prefix already exists"
    } else if hint.contains("resources.id") || hint.contains("resources_pkey") {
        "id is already in use"
    } else {
        "a unique attribute is already in use"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_named_in_part() {
        let ids: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
        assert_eq!(name_some(&ids[..2]), "b0, b1");
        assert_eq!(
            name_some(&ids),
            "b0, b1, b2, b3, b4, b5, b6, b7, b8, b9 and 2 more"
        );
        assert_eq!(name_some(&[]), "");
    }

    #[test]
    fn store_uniqueness_messages_name_the_attribute() {
        assert_eq!(
            uniqueness_message(
                "UNIQUE constraint failed: resources.resource_type, resources.user_name_folded"
            ),
            "userName is already in use"
        );
        assert_eq!(
            uniqueness_message("resources_group_display_name_uq dup"),
            "a group with this displayName already exists"
        );
        assert_eq!(
            uniqueness_message("resources_external_id_client_uq"),
            "externalId is already in use for this client"
        );
    }
}
