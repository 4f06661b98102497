//! Admin operations on the engine: approvals, holds, contract extensions, one-click links,
//! simulation — as plain functions over the store ([`Admin`]), for the CLI, tests and the admin
//! HTTP API (`http::admin`, mounted under `/admin/v1`; this module knows nothing of HTTP).
//!
//! Every decision is taken at most once: deciding something already decided is
//! [`AdminError::Conflict`], an unknown id [`AdminError::NotFound`]. Approval and extension
//! requests are decided by people with the authority the policy gives them ([`authority`]);
//! anyone else gets [`AdminError::Refused`]. The HTTP layer maps these in `http::error` and
//! nowhere else.
//!
//! A decision that queues work (an approval re-plans, a hold releases operations, a retry puts
//! one back) wakes the outbox workers when its transaction commits, as SCIM writes do through
//! the store's write hook, so it runs at once rather than at the workers' next poll.

pub mod authority;
pub mod explain;
pub mod extensions;
pub mod holds;
pub mod legacy_access;
pub mod operations;
pub mod requests;
pub mod simulate;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::store::{approvals, DbConnection, Store, StoreError, StoreResult};
use authority::Refusal;

pub use legacy_access::{LinkOutcome, LinkPreview, MAX_LEGACY_EXTENSION_DAYS};

/// Runs `f` in a write transaction on the store's writer (admin actions and tests).
pub fn in_tx<T>(
    store: &Store,
    f: impl FnOnce(&mut DbConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    store.write_tx(|c, _| f(c))
}

/// Errors of admin actions.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such request, hold, user or operation.
    #[error("not found: {0}")]
    NotFound(String),
    /// Already decided (approved, rejected, confirmed, discarded, link used), or nothing left to
    /// decide.
    #[error("{0}")]
    Conflict(String),
    /// Bad input (a date that is not one, an extension too long, a missing reason).
    #[error("{0}")]
    Invalid(String),
    /// A one-click link that is malformed, tampered with or not configured.
    #[error("{0}")]
    Forbidden(String),
    /// A one-click link past its expiry.
    #[error("{0}")]
    Expired(String),
    /// The caller may not take this decision (who they are, or the authority the policy gives
    /// them); nothing was decided.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The URL of an admin API path (`/approvals/ID/approve`) under the policy's
/// `[notify] link_base_url`, for notification bodies; `None` when no base URL is configured.
pub fn api_url(policy: &crate::policy::Policy, path: &str) -> Option<String> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    Some(format!("{base}{API_PREFIX}{path}"))
}

/// The body of an approval-request notification, with the admin API URLs to decide it.
pub fn notice_approval(policy: &crate::policy::Policy, row: &approvals::ApprovalRow) -> String {
    let mut body = format!(
        "User {} needs {} {} on {}. Approve or reject request {} in the admin API.",
        row.user_id,
        row.kind,
        row.entitlement.as_deref().unwrap_or(""),
        row.connector.as_deref().unwrap_or(""),
        row.id
    );
    if let (Some(a), Some(r)) = (
        api_url(policy, &format!("/approvals/{}/approve", row.id)),
        api_url(policy, &format!("/approvals/{}/reject", row.id)),
    ) {
        body.push_str(&format!(
            "\n\nApprove: POST {a}\nReject: POST {r} (with a reason)\n"
        ));
    }
    body
}

/// The body of a blast-radius hold notification, with the admin API URLs to decide it.
pub fn notice_hold(policy: &crate::policy::Policy, reason: &str, id: &str) -> String {
    let mut body = format!("{reason}.\nConfirm or discard hold {id} in the admin API.");
    if let (Some(c), Some(d)) = (
        api_url(policy, &format!("/holds/{id}/confirm")),
        api_url(policy, &format!("/holds/{id}/discard")),
    ) {
        body.push_str(&format!("\n\nConfirm: POST {c}\nDiscard: POST {d}\n"));
    }
    body
}

/// Where the admin API is mounted.
pub const API_PREFIX: &str = "/admin/v1";

pub type AdminResult<T> = Result<T, AdminError>;

/// The admin operations. Their methods live beside their job: approval requests
/// ([`requests`]), contract extensions ([`extensions`]), blast-radius holds ([`holds`]), legacy
/// access and one-click links ([`legacy_access`]), parked operations and incidents
/// ([`operations`]), explain and simulate ([`explain`]).
#[derive(Debug, Clone)]
pub struct Admin {
    pub store: Store,
    pub engine: Arc<Engine>,
}

impl Admin {
    pub fn new(store: Store, engine: Arc<Engine>) -> Self {
        Admin { store, engine }
    }

    fn now(&self) -> DateTime<Utc> {
        self.engine.now()
    }

    /// Runs `f` in a write transaction and, once it has committed, wakes the outbox workers:
    /// what the decision queued runs now, not at the workers' next poll.
    fn decision_tx<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let out = in_tx(&self.store, f)?;
        self.engine.wake_workers();
        Ok(out)
    }
}
