//! Server configuration: defaults, then a TOML file, then `SCIMHUB_*` environment variables,
//! then command-line flags (each later source overrides the earlier ones).
//!
//! Nested settings come from the environment with a double underscore:
//! `SCIMHUB_JWT__ISSUER=https://idp.example.com`.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Which client dialect a token speaks (see `scim_schema::dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DialectSetting {
    /// What the User-Agent announces (Entra ID, Okta), else `standard`.
    #[default]
    Auto,
    /// RFC 7644 plus every unambiguous client quirk, whatever the User-Agent says.
    Standard,
    /// RFC 7644 only: every client quirk is refused.
    #[serde(alias = "rfc")]
    Strict,
    Entra,
    Okta,
    /// Every quirk, including the ones that change meaning for other clients (readOnly
    /// attributes in requests ignored, PATCH bodies without `schemas`).
    Lenient,
}

/// The whole configuration of `scimhub serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `HOST:PORT` to listen on. Port 0 picks a free port; the bound address is printed on stdout.
    pub bind: String,
    /// `sqlite://relative.db`, `sqlite:///absolute/path.db` or `postgres://…`.
    pub database_url: String,
    pub log_format: LogFormat,
    /// Bearer token that is valid with every scope (for automation and tests). Never logged.
    #[serde(skip_serializing)]
    pub bootstrap_token: Option<String>,
    /// Largest request body accepted (bytes) on every endpoint but /Bulk.
    pub max_body_bytes: usize,
    /// Largest /Bulk request body (bytes), advertised as bulk.maxPayloadSize.
    pub bulk_max_payload_bytes: usize,
    /// Most operations in one /Bulk request, advertised as bulk.maxOperations.
    pub bulk_max_operations: usize,
    /// Most resources in one page of a list or search, advertised as filter.maxResults.
    pub max_results: usize,
    /// Largest `startIndex` of a list or search: a page starting deeper answers
    /// `400 invalidValue` (deep paging uses RFC 9865 cursors, which seek instead of skipping).
    pub max_start_index: u64,
    /// Most Group members one response carries (a Group read, or a page of Groups): more
    /// answers `400 tooMany`, pointing at `excludedAttributes=members`.
    pub max_group_members: u64,
    /// Database connections; blocking database work is bounded by this number too.
    pub db_pool_size: u32,
    /// actix worker threads (default: number of CPUs).
    pub workers: Option<usize>,
    /// Reject attributes that no schema defines (strict) instead of ignoring them.
    pub strict: bool,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// JSON Web Token verification; absent means JWTs are not accepted.
    pub jwt: Option<JwtConfig>,
    /// The dialect of clients without a `dialect` of their own.
    pub dialect: DialectSetting,
    /// Per-client settings, keyed by the client (token) name.
    pub clients: std::collections::BTreeMap<String, ClientConfig>,
    /// Outgoing mail for notifications; absent means notifications stay queued (see
    /// `docs/notifications.md`).
    #[serde(skip_serializing)]
    pub smtp: Option<SmtpConfig>,
    /// Custom extension schemas (RFC 7643 §7 JSON files) added to a resource type, e.g. a
    /// contractor extension with `contractEndDate` and `sponsor`. Config file only:
    /// `[[schema_extensions]] file = "contractor.schema.json"`.
    pub schema_extensions: Vec<SchemaExtensionConfig>,
}

/// One `[[schema_extensions]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaExtensionConfig {
    /// A file holding one schema object or an array of them, in the RFC 7643 §7 representation.
    pub file: std::path::PathBuf,
    /// The resource type the schemas extend (`User` or `Group`).
    #[serde(default = "default_extended_type")]
    pub resource_type: String,
    /// Whether every resource of that type must carry the extension.
    #[serde(default)]
    pub required: bool,
}

fn default_extended_type() -> String {
    "User".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://scimhub.db".into(),
            log_format: LogFormat::Text,
            bootstrap_token: None,
            max_body_bytes: 1024 * 1024,
            bulk_max_payload_bytes: 1024 * 1024,
            bulk_max_operations: 1000,
            max_results: 200,
            max_start_index: 1_000_000,
            max_group_members: 10_000,
            db_pool_size: 8,
            workers: None,
            strict: false,
            shutdown_timeout_secs: 30,
            jwt: None,
            dialect: DialectSetting::Auto,
            clients: Default::default(),
            smtp: None,
            schema_extensions: Vec::new(),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or network); default port 25.
    None,
    /// Plain connection upgraded with STARTTLS, which is then required; default port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS); default port 465.
    Tls,
}

/// The `[smtp]` section: where notifications are sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 25, 587 or 465 according to `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// `{ env = "SMTP_PASSWORD" }` or `{ file = "/run/secrets/smtp" }`; never the value itself.
    #[serde(default)]
    pub password: Option<connectors::secret::SecretRef>,
    /// Envelope and header sender; default: the policy's `[notify] from`.
    #[serde(default)]
    pub from: Option<String>,
    /// Seconds to wait for the server on each step of a delivery.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// Delivery attempts before a message is parked as failed.
    #[serde(default = "default_smtp_attempts")]
    pub max_attempts: i64,
}

fn default_smtp_timeout() -> u64 {
    30
}
fn default_smtp_attempts() -> i64 {
    10
}

impl SmtpConfig {
    /// The port in use (explicit, or the default of the TLS mode).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

/// Settings for one client.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// This client's dialect; absent means the global `dialect`.
    pub dialect: Option<DialectSetting>,
}

/// JWT verification: every key listed is tried (or the one whose `kid` matches the token's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values (at least one must match).
    pub audience: Vec<String>,
    /// The claim holding scopes: a space-separated string (`scope`) or an array (`scp`).
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// The claim naming the client in logs (default `sub`).
    #[serde(default = "default_client_claim")]
    pub client_claim: String,
    /// The claim naming the directory user the token acts as, matched against userName
    /// (default `sub`; e.g. `preferred_username`, `upn` or `email` when those equal userName).
    /// Approval decisions are taken as that user.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    pub keys: Vec<JwtKey>,
}

fn default_scope_claim() -> String {
    "scope".into()
}
fn default_client_claim() -> String {
    "sub".into()
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_leeway() -> u64 {
    30
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtKey {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: String,
    #[serde(default)]
    pub kid: Option<String>,
    /// HS256 shared secret.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// RS256/ES256 public key, PEM text.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// RS256/ES256 public key, PEM file.
    #[serde(default)]
    pub public_key_file: Option<String>,
}

/// Flags given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads the configuration: defaults, `file` (TOML, when given), `SCIMHUB_*` variables, flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
        Self::figment(file, overrides).extract().map_err(Box::new)
    }

    fn figment(file: Option<&Path>, overrides: &Overrides) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(
            Env::prefixed("SCIMHUB_")
                .split("__")
                .ignore(&["config", "test_postgres_url"]),
        )
        .merge(Serialized::defaults(overrides))
    }

    /// The configured dialect of client `name`: its own, else the global one.
    pub fn client_dialect(&self, name: &str) -> DialectSetting {
        self.clients
            .get(name)
            .and_then(|c| c.dialect)
            .unwrap_or(self.dialect)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::result_large_err)]
    use super::*;

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                r#"
                bind = "0.0.0.0:9000"
                max_results = 50
                [jwt]
                issuer = "https://idp"
                audience = ["scimhub"]
                scope_claim = "scp"
                [[jwt.keys]]
                algorithm = "HS256"
                secret = "s3cret"
                [clients.entra]
                dialect = "entra"
                "#,
            )?;
            jail.set_env("SCIMHUB_MAX_RESULTS", "75");
            jail.set_env("SCIMHUB_BOOTSTRAP_TOKEN", "boot");
            let cfg = Config::load(
                Some(Path::new("hub.toml")),
                &Overrides {
                    database_url: Some("sqlite://x.db".into()),
                    ..Default::default()
                },
            )
            .map_err(|e| *e)?;
            assert_eq!(cfg.bind, "0.0.0.0:9000");
            assert_eq!(cfg.max_results, 75);
            assert_eq!(cfg.database_url, "sqlite://x.db");
            assert_eq!(cfg.bootstrap_token.as_deref(), Some("boot"));
            let jwt = cfg
                .jwt
                .clone()
                .ok_or_else(|| figment::Error::from("jwt".to_string()))?;
            assert_eq!(jwt.scope_claim, "scp");
            assert_eq!(jwt.keys[0].secret.as_deref(), Some("s3cret"));
            assert_eq!(cfg.client_dialect("entra"), DialectSetting::Entra);
            assert_eq!(cfg.client_dialect("other"), DialectSetting::Auto);
            assert_eq!(cfg.smtp, None);
            Ok(())
        });
    }

    #[test]
    fn global_dialect_applies_to_clients_without_their_own() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                r#"
                dialect = "strict"
                [clients.entra]
                dialect = "entra"
                [clients.legacy]
                dialect = "rfc"
                "#,
            )?;
            let cfg =
                Config::load(Some(Path::new("hub.toml")), &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(cfg.client_dialect("entra"), DialectSetting::Entra);
            assert_eq!(cfg.client_dialect("legacy"), DialectSetting::Strict);
            assert_eq!(cfg.client_dialect("okta"), DialectSetting::Strict);
            assert_eq!(Config::default().client_dialect("x"), DialectSetting::Auto);
            Ok(())
        });
    }

    #[test]
    fn smtp_section_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                r#"
                [smtp]
                host = "mail.example.com"
                tls = "tls"
                username = "scimhub"
                password = { env = "SMTP_PASSWORD" }
                from = "scimhub@example.com"
                "#,
            )?;
            jail.set_env("SCIMHUB_SMTP__TIMEOUT_SECS", "5");
            let cfg =
                Config::load(Some(Path::new("hub.toml")), &Overrides::default()).map_err(|e| *e)?;
            let smtp = cfg
                .smtp
                .ok_or_else(|| figment::Error::from("smtp".to_string()))?;
            assert_eq!(smtp.tls, SmtpTls::Tls);
            assert_eq!(smtp.port(), 465);
            assert_eq!(smtp.timeout_secs, 5);
            assert_eq!(smtp.max_attempts, 10);
            assert_eq!(
                smtp.password,
                Some(connectors::secret::SecretRef::Env("SMTP_PASSWORD".into()))
            );
            Ok(())
        });
    }

    #[test]
    fn defaults_match_the_contract() {
        figment::Jail::expect_with(|_| {
            let cfg = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(cfg.bind, "127.0.0.1:8080");
            assert_eq!(cfg.database_url, "sqlite://scimhub.db");
            assert_eq!(cfg.log_format, LogFormat::Text);
            Ok(())
        });
    }
}
