//! Connector errors: retryable or permanent, with the server's Retry-After.

use std::time::Duration;

/// Whether and how an operation may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network failure, timeout, 5xx, 429 or a lock: the same call may succeed later.
    Retryable,
    /// Bad credentials, a rejected request, a missing prerequisite: retrying will not help.
    Permanent,
    /// The connector does not support this operation (see [`crate::Capabilities`]).
    Unsupported,
    /// The connector refuses to touch the account: protected, outside the managed scope, owned
    /// by someone else or not adoptable (see [`crate::ownership`]). Never retried; an incident.
    Refused,
}

/// An error from a downstream system. `message` never contains credentials (connectors build it
/// from status codes and the system's error codes, not from request headers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{connector}: {message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub connector: String,
    pub message: String,
    /// How long the system asked us to wait (HTTP Retry-After, rate-limit reset).
    pub retry_after: Option<Duration>,
}

impl ConnectorError {
    pub fn retryable(connector: &str, message: impl Into<String>) -> Self {
        ConnectorError {
            kind: ErrorKind::Retryable,
            connector: connector.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(connector: &str, message: impl Into<String>) -> Self {
        ConnectorError {
            kind: ErrorKind::Permanent,
            connector: connector.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unsupported(connector: &str, operation: &str) -> Self {
        ConnectorError {
            kind: ErrorKind::Unsupported,
            connector: connector.to_owned(),
            message: format!("{operation} is not supported"),
            retry_after: None,
        }
    }

    pub fn refused(connector: &str, reason: impl Into<String>) -> Self {
        ConnectorError {
            kind: ErrorKind::Refused,
            connector: connector.to_owned(),
            message: format!("refused: {}", reason.into()),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}
