//! What connectors exchange with the engine.

use serde::{Deserialize, Serialize};

/// How the engine names an account in a downstream system.
///
/// `key` is the stable, human-meaningful identifier the policy derives (a login, a userName, an
/// IAM user name, a sAMAccountName); `id` is the system's own identifier once known (SCIM id, IAM
/// ARN, LDAP DN, GitHub user id). Connectors accept either and fill in `id` when they learn it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountRef {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl AccountRef {
    pub fn new(key: impl Into<String>) -> Self {
        AccountRef {
            key: key.into(),
            id: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// The desired attributes of an account, as a SCIM User document (core attributes plus any
/// extension under its URN). Connectors map what their system knows and ignore the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountSpec {
    pub account: AccountRef,
    /// SCIM User attributes (`userName`, `name`, `displayName`, `emails`, `active`, …).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// One grantable thing in a downstream system: a group, a team, an org role, an IAM policy…
///
/// `kind` is one of the kinds the connector declares in [`crate::Capabilities::entitlement_kinds`];
/// `role` qualifies it where the system has roles within the entitlement (GitHub org `admin` vs
/// `member`, team `maintainer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entitlement {
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Entitlement {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Entitlement {
            kind: kind.into(),
            id: id.into(),
            role: None,
        }
    }

    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }
}

/// What a downstream system really holds for one account, as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    pub account: AccountRef,
    pub enabled: bool,
    /// The attributes the system reports, in SCIM User form where they map.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub entitlements: Vec<Entitlement>,
}

/// One page of [`crate::Connector::list_accounts`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountPage {
    pub accounts: Vec<AccountState>,
    /// Opaque token for the next page; `None` on the last page.
    pub next: Option<String>,
}
