//! Typed errors of the protocol model.
//!
//! Each variant is one RFC 7644 §3.12 `scimType` (plus the few errors that have no scimType).
//! This crate does not know HTTP: the server maps [`Error::scim_type`] and [`Error::status`]
//! to a response in one place.

use serde::{Deserialize, Serialize};

/// The `scimType` keywords of RFC 7644 §3.12, Table 9, and `invalidCursor` of RFC 9865 §2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
    /// RFC 9865 §2.2: a cursor the server does not recognise or that has expired.
    InvalidCursor,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
            ScimType::InvalidCursor => "invalidCursor",
        }
    }

    /// The HTTP status RFC 7644 §3.12 Table 9 pairs with this scimType.
    pub fn status(self) -> u16 {
        match self {
            ScimType::Uniqueness => 409,
            _ => 400,
        }
    }
}

/// An error of the protocol model. The message is safe to show to the client: it never carries
/// attribute values marked sensitive (passwords), only names and positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    Uniqueness(String),
    #[error("{0}")]
    Mutability(String),
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidVers(String),
    #[error("{0}")]
    Sensitive(String),
    #[error("{0}")]
    InvalidCursor(String),
}

impl Error {
    pub fn scim_type(&self) -> ScimType {
        match self {
            Error::InvalidFilter(_) => ScimType::InvalidFilter,
            Error::TooMany(_) => ScimType::TooMany,
            Error::Uniqueness(_) => ScimType::Uniqueness,
            Error::Mutability(_) => ScimType::Mutability,
            Error::InvalidSyntax(_) => ScimType::InvalidSyntax,
            Error::InvalidPath(_) => ScimType::InvalidPath,
            Error::NoTarget(_) => ScimType::NoTarget,
            Error::InvalidValue(_) => ScimType::InvalidValue,
            Error::InvalidVers(_) => ScimType::InvalidVers,
            Error::Sensitive(_) => ScimType::Sensitive,
            Error::InvalidCursor(_) => ScimType::InvalidCursor,
        }
    }

    pub fn status(&self) -> u16 {
        self.scim_type().status()
    }

    pub fn detail(&self) -> &str {
        match self {
            Error::InvalidFilter(d)
            | Error::TooMany(d)
            | Error::Uniqueness(d)
            | Error::Mutability(d)
            | Error::InvalidSyntax(d)
            | Error::InvalidPath(d)
            | Error::NoTarget(d)
            | Error::InvalidValue(d)
            | Error::InvalidVers(d)
            | Error::Sensitive(d)
            | Error::InvalidCursor(d) => d,
        }
    }
}

impl Error {
    /// The same error (same scimType) with its detail rewritten by `f`, e.g. to name the PATCH
    /// operation that failed.
    pub fn map_detail(self, f: impl FnOnce(&str) -> String) -> Error {
        let d = f(self.detail());
        match self {
            Error::InvalidFilter(_) => Error::InvalidFilter(d),
            Error::TooMany(_) => Error::TooMany(d),
            Error::Uniqueness(_) => Error::Uniqueness(d),
            Error::Mutability(_) => Error::Mutability(d),
            Error::InvalidSyntax(_) => Error::InvalidSyntax(d),
            Error::InvalidPath(_) => Error::InvalidPath(d),
            Error::NoTarget(_) => Error::NoTarget(d),
            Error::InvalidValue(_) => Error::InvalidValue(d),
            Error::InvalidVers(_) => Error::InvalidVers(d),
            Error::Sensitive(_) => Error::Sensitive(d),
            Error::InvalidCursor(_) => Error::InvalidCursor(d),
        }
    }

    /// The error of PATCH operation `index`: its detail starts with `Operations[index]: `.
    pub fn in_operation(self, index: usize) -> Error {
        self.map_detail(|d| format!("Operations[{index}]: {d}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7644_3_12_table_9_statuses() {
        assert_eq!(Error::Uniqueness("x".into()).status(), 409);
        assert_eq!(Error::InvalidFilter("x".into()).status(), 400);
        assert_eq!(Error::NoTarget("x".into()).scim_type().as_str(), "noTarget");
        assert_eq!(
            serde_json::to_string(&ScimType::InvalidVers).unwrap_or_default(),
            "\"invalidVers\""
        );
    }
}
