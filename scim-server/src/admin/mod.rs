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

pub mod audit;
pub mod authority;
pub mod certification;
pub mod cluster;
pub mod drift;
pub mod events;
pub mod explain;
pub mod extensions;
pub mod grants;
pub mod holds;
pub mod legacy_access;
pub mod notice_links;
pub mod operations;
pub mod policy;
pub mod requests;
pub mod simulate;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::error::{HubError, HubResult};
use crate::store::{Change, DbConnection, Store};
use authority::Refusal;

pub use legacy_access::{
    LinkOutcome, LinkPreview, VerifiedLink, MAX_LEGACY_ACCESS_DAYS, MAX_LEGACY_EXTENSION_DAYS,
};

/// Runs `f` in a write transaction on the store's writer (admin actions and tests).
pub fn in_tx<T>(store: &Store, f: impl FnOnce(&mut DbConnection) -> HubResult<T>) -> HubResult<T> {
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
    Store(#[from] HubError),
}

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
    ///
    /// A decision re-plans users (a revoke, an approval, a hold's discard locks several), so on
    /// PostgreSQL it can be chosen as a deadlock victim against a SCIM write of the same users:
    /// it then runs again from the start (`f` reads and checks everything again), instead of
    /// failing a decision nothing was wrong with.
    fn decision_tx<T>(&self, mut f: impl FnMut(&mut DbConnection) -> HubResult<T>) -> HubResult<T> {
        let out = self.store.write_tx_appending_last(|c, _| f(c))?;
        self.engine.wake_workers();
        Ok(out)
    }

    /// [`Admin::decision_tx`] for decisions that also write a resource: the write's
    /// [`Change`]s go to the store's write hook (the engine) before the transaction commits.
    fn decision_tx_with_changes<T>(
        &self,
        f: impl FnMut(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
    ) -> HubResult<T> {
        let out = self.store.write_tx_appending_last(f)?;
        self.engine.wake_workers();
        Ok(out)
    }
}
