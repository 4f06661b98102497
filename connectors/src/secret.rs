//! Credentials by reference: policies name an environment variable or a file, never the secret.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Where a credential comes from, as written in the policy file:
/// `{ env = "GITHUB_TOKEN" }` or `{ file = "/run/secrets/github" }`.
/// Serialized as written (`scimhub config show` prints it): a variable's or file's name is not
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// Why a secret could not be loaded. Names the variable or file, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or not valid UTF-8")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Loads the secret now (connectors load at construction so a bad reference fails the policy
    /// check, not the first leaver).
    pub fn load(&self) -> Result<Secret, SecretError> {
        let (value, source) = match self {
            SecretRef::Env(name) => (
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?,
                name.clone(),
            ),
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?;
                (
                    text.trim_end_matches(['\n', '\r']).to_owned(),
                    path.display().to_string(),
                )
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(source));
        }
        Ok(Secret(value))
    }
}

/// A credential. `Debug` and `Display` print `***` so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for building an authenticated request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn loads_from_file_and_reports_missing_env() {
        let dir = std::env::temp_dir().join(format!("scimhub-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("token");
        std::fs::write(&path, "abc\n").expect("write");
        assert_eq!(
            SecretRef::File(path.clone()).load().expect("load").expose(),
            "abc"
        );
        std::fs::write(&path, "").expect("write");
        assert!(matches!(
            SecretRef::File(path).load(),
            Err(SecretError::Empty(_))
        ));
        let missing = SecretRef::Env("SCIMHUB_TEST_SURELY_UNSET_VARIABLE".into()).load();
        assert_eq!(
            missing,
            Err(SecretError::MissingEnv(
                "SCIMHUB_TEST_SURELY_UNSET_VARIABLE".into()
            ))
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
