//! The write seam: every write the store commits records a [`Change`], and the optional
//! [`WriteHook`] (the lifecycle engine) sees each one inside the same transaction, before commit
//! (see the module docs of [`super`]).

use super::{DbConnection, Doc, MemberRemoval, ResourceKind};
use crate::error::HubResult;

/// What kind of write a [`Change`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Replace,
    Update,
    Delete,
    Members,
}

/// One committed-to-be change, handed to the [`WriteHook`] inside the write transaction.
/// Documents are the stored form (no `id`, `meta`, `members` or `groups`).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub op: ChangeOp,
    pub kind: ResourceKind,
    pub id: String,
    pub before: Option<Doc>,
    pub after: Option<Doc>,
    pub members_added: Vec<String>,
    pub members_removed: MemberRemoval,
    /// The SCIM client whose write this is (token name or JWT client), so what the write causes
    /// is recorded against it; `None` for the hub's own writes (an approved extension's end
    /// date) and writes without a client.
    pub client: Option<String>,
}

/// Called for every [`Change`] inside the write transaction, before commit (see the module docs).
pub trait WriteHook: Send + Sync + std::fmt::Debug {
    fn on_write(&self, conn: &mut DbConnection, change: &Change) -> HubResult<()>;

    /// Called after a transaction that recorded at least one [`Change`] has committed (never
    /// after a rollback), outside it: e.g. to wake workers waiting for what it planned.
    fn after_commit(&self) {}
}
