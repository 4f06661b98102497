//! Outbound connectors: how scimhub applies a person's desired access to a downstream system.
//!
//! The engine (in `scim-server`) decides *what* each person should have; a [`Connector`] knows *how*
//! one system expresses it. Every operation is idempotent: creating an account that exists adopts
//! it, removing what is already gone succeeds, so the engine may run an operation twice after a
//! crash. Errors say whether a retry can help ([`ConnectorError::is_retryable`]) and carry the
//! server's Retry-After. Credentials are [`secret::Secret`]s that never print.
//!
//! This crate depends only on `scim-schema`; it knows nothing of the database or the HTTP server.

pub mod dn;
pub mod memory;
pub mod operation;
pub mod ownership;
pub mod secret;

pub mod http;
pub mod okta;
pub mod scim;
pub mod slack;
pub mod webhook;

pub mod aws_iam;
pub mod github;
pub mod ldap;

mod connector;
mod error;
mod model;

pub use connector::{Capabilities, Capability, Connector};
pub use error::{ConnectorError, ErrorKind};
pub use model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
