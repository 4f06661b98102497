//! The `Connector` trait.

use async_trait::async_trait;

use crate::error::ConnectorError;
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};

/// One operation a connector may support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    CreateAccount,
    UpdateAccount,
    EnableDisable,
    DeleteAccount,
    Grant,
    Revoke,
    RevokeSessions,
    RevokeCredentials,
    TransferOwnership,
    ReadAccount,
    ListAccounts,
}

/// What a connector can do and which entitlement kinds it knows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub operations: Vec<Capability>,
    /// e.g. `["group"]` for SCIM, `["org", "team"]` for GitHub, `["group", "policy"]` for IAM.
    pub entitlement_kinds: Vec<String>,
}

impl Capabilities {
    pub fn supports(&self, op: Capability) -> bool {
        self.operations.contains(&op)
    }

    pub fn knows_kind(&self, kind: &str) -> bool {
        self.entitlement_kinds.iter().any(|k| k == kind)
    }
}

/// A downstream system. Every method is idempotent and bounded by the connector's timeout.
///
/// Methods a connector does not support keep their default, which answers
/// [`ConnectorError::unsupported`]; the connector says so in [`Connector::capabilities`] so the
/// engine never plans them.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The instance name from the policy (e.g. `github-acme`), used in errors and audit entries.
    fn name(&self) -> &str;

    fn capabilities(&self) -> Capabilities;

    /// Creates the account, or adopts an existing one that matches `spec.account` (by key or by
    /// id), bringing its attributes to `spec`. Returns the account with its system id.
    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        let _ = spec;
        Err(ConnectorError::unsupported(self.name(), "create"))
    }

    /// Brings the account's attributes to `spec`.
    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        let _ = spec;
        Err(ConnectorError::unsupported(self.name(), "update"))
    }

    /// Enables or disables (suspends) the account without deleting it.
    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        let _ = (account, enabled);
        Err(ConnectorError::unsupported(self.name(), "enable/disable"))
    }

    /// Deletes the account; an account that is already gone is success.
    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        let _ = account;
        Err(ConnectorError::unsupported(self.name(), "delete"))
    }

    async fn grant(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        let _ = (account, entitlement);
        Err(ConnectorError::unsupported(self.name(), "grant"))
    }

    /// Revokes an entitlement; one that is not held is success.
    async fn revoke(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        let _ = (account, entitlement);
        Err(ConnectorError::unsupported(self.name(), "revoke"))
    }

    /// Ends the account's sessions (IdP sessions, web sessions) so access stops now.
    async fn revoke_sessions(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        let _ = account;
        Err(ConnectorError::unsupported(self.name(), "revoke sessions"))
    }

    /// Deactivates and removes credentials: API tokens, access keys, SSH keys, passwords.
    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        let _ = account;
        Err(ConnectorError::unsupported(
            self.name(),
            "revoke credentials",
        ))
    }

    /// Moves what the account owns (repositories, documents, records) to `to`.
    async fn transfer_ownership(
        &self,
        account: &AccountRef,
        to: &AccountRef,
    ) -> Result<(), ConnectorError> {
        let _ = (account, to);
        Err(ConnectorError::unsupported(
            self.name(),
            "transfer ownership",
        ))
    }

    /// Reads back what the system holds for the account; `None` when it does not exist.
    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        let _ = account;
        Err(ConnectorError::unsupported(self.name(), "read"))
    }

    /// Why the hub must leave a listed account alone (protected, outside the managed scope), or
    /// `None` when it may judge it. Drift reconciliation neither reports nor fixes excluded
    /// accounts. The default: nothing is excluded (connectors without adoption rules).
    fn excluded(&self, account: &AccountState) -> Option<String> {
        let _ = account;
        None
    }

    /// Whether [`Connector::list_accounts`] reports each account's entitlements; when not
    /// (AWS IAM lists users only), reconciliation reads the accounts it compares entitlements
    /// of with [`Connector::read`].
    fn lists_entitlements(&self) -> bool {
        true
    }

    /// Lists accounts, a page at a time, for reconciliation and orphan detection.
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let _ = page;
        Err(ConnectorError::unsupported(self.name(), "list"))
    }
}
