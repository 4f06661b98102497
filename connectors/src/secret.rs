//! Credentials by reference: policies name an environment variable or a file, never the secret.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Where a credential comes from, as written in the policy file:
/// `{ env = "GITHUB_TOKEN" }` or `{ file = "/run/secrets/github" }`.
/// Serialized as written (`scimhub config show` prints it): a variable's or file's name is not
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// Read by hand rather than derived: serde's message for a string where the table belongs
/// ("unknown variant `…`") quotes the string, and a string there is the secret itself, written
/// inline. The message may reach a log or a terminal; it says what to write instead.
impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, EnumAccess, VariantAccess, Visitor};

        const WHAT: &str = r#"a reference: { env = "NAME" } or { file = "/path" }"#;
        fn inline<E: de::Error>() -> E {
            E::custom(format!(
                "expected {WHAT}; a secret may not be written inline"
            ))
        }
        // Any scalar where a reference belongs may be the secret (a numeric PIN, say): serde's
        // default messages would quote it.
        macro_rules! refuse_scalars {
            ($($method:ident: $t:ty),*) => {
                $(fn $method<E: de::Error>(self, _: $t) -> Result<Self::Value, E> {
                    Err(inline())
                })*
            };
        }
        enum Kind {
            Env,
            File,
        }
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`env` or `file`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
                match v {
                    "env" => Ok(Kind::Env),
                    "file" => Ok(Kind::File),
                    // Never repeated: it may be the secret itself.
                    _ => Err(inline()),
                }
            }
            refuse_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
                visit_u128: u128, visit_f64: f64, visit_char: char, visit_bytes: &[u8]);
        }
        impl<'de> Deserialize<'de> for Kind {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_identifier(KindVisitor)
            }
        }
        struct Reference;
        impl<'de> Visitor<'de> for Reference {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(WHAT)
            }
            fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<SecretRef, A::Error> {
                match a.variant()? {
                    (Kind::Env, v) => v.newtype_variant().map(SecretRef::Env),
                    (Kind::File, v) => v.newtype_variant().map(SecretRef::File),
                }
            }
            refuse_scalars!(visit_str: &str, visit_bool: bool, visit_i64: i64, visit_u64: u64,
                visit_i128: i128, visit_u128: u128, visit_f64: f64, visit_char: char,
                visit_bytes: &[u8]);
        }
        d.deserialize_enum("SecretRef", &["env", "file"], Reference)
    }
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
    fn references_read_as_written_and_an_inline_secret_is_not_repeated() {
        let read = |t: &str| serde_json::from_str::<SecretRef>(t).map_err(|e| e.to_string());
        assert_eq!(
            read(r#"{"env": "TOKEN"}"#),
            Ok(SecretRef::Env("TOKEN".into()))
        );
        assert_eq!(
            read(r#"{"file": "/run/s"}"#),
            Ok(SecretRef::File("/run/s".into()))
        );
        let inline = read(r#""hunter2-inline""#).expect_err("an inline secret");
        assert!(inline.contains("may not be written inline"), "{inline}");
        assert!(!inline.contains("hunter2"), "{inline}");
        assert!(read(r#"{"env": "A", "file": "/b"}"#).is_err());
        assert!(read(r#"{}"#).is_err());
        let typo = read(r#"{"envv": "x"}"#).expect_err("an unknown key");
        let pin = read("987654321").expect_err("a number");
        assert!(!pin.contains("987654321"), "{pin}");
        assert!(typo.contains("expected a reference"), "{typo}");
        // Written back as read.
        let r = SecretRef::Env("TOKEN".into());
        assert_eq!(read(&serde_json::to_string(&r).expect("json")), Ok(r));
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
