//! Server configuration: defaults, then a TOML file, then `SCIMHUB_*` environment variables,
//! then command-line flags (each later source overrides the earlier ones).
//!
//! Nested settings come from the environment with a double underscore:
//! `SCIMHUB_JWT__ISSUER=https://idp.example.com`.
//!
//! A key the file sets or a `SCIMHUB_*` variable that no field of [`Config`] reads is an error
//! (see [`keys`]), and so is an undocumented key (a test compares the fields with
//! `docs/operating.md`). Adding a setting: a field on `Config` or on a section struct (with
//! `Serialize`/`Deserialize`, and `#[serde(default)]` or a default), and a row in the
//! configuration table of `docs/operating.md`; nothing else lists keys.

pub mod keys;
pub mod show;

use std::path::Path;

use connectors::secret::{Secret, SecretRef};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The shortest bootstrap token or HS256 secret accepted: 32 bytes (256 bits if random; RFC 7518
/// §3.2 asks for a key at least as long as the HS256 hash output).
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret in the configuration: `{ env = "NAME" }` or `{ file = "/run/secrets/x" }` (preferred:
/// the value stays out of the file), or the value itself (what `SCIMHUB_BOOTSTRAP_TOKEN` gives).
/// `Debug` never prints a value; a reference is printed (it names a variable or file, not the
/// secret).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretSetting {
    Ref(SecretRef),
    Value(String),
}

impl SecretSetting {
    /// The secret, read from its variable or file now. The error names the variable or file.
    pub fn load(&self) -> Result<Secret, connectors::secret::SecretError> {
        match self {
            SecretSetting::Ref(r) => r.load(),
            SecretSetting::Value(v) => Ok(Secret::new(v.clone())),
        }
    }
}

impl From<&str> for SecretSetting {
    fn from(v: &str) -> Self {
        SecretSetting::Value(v.to_string())
    }
}

/// Serialized (by `scimhub config show`) as the reference, or `"[redacted]"` for a value.
impl Serialize for SecretSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SecretSetting::Ref(r) => r.serialize(s),
            SecretSetting::Value(_) => s.serialize_str("[redacted]"),
        }
    }
}

/// The database URL. `Debug` hides a password in it (`postgres://hub:[redacted]@db/hub`); read
/// the URL itself with [`DatabaseUrl::as_str`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as configured, password included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with the password (in the authority or a `password=` parameter) replaced.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl From<String> for DatabaseUrl {
    fn from(v: String) -> Self {
        DatabaseUrl(v)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(v: &str) -> Self {
        DatabaseUrl(v.to_string())
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:PASSWORD@host/db?password=PASSWORD` with both passwords replaced by
/// `[redacted]`.
pub fn redact_url(url: &str) -> String {
    const R: &str = "[redacted]";
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    // A scheme has no `=` or blank: `host=h sslrootcert=file://…` is a key/value string.
    let url_parts = head
        .split_once("://")
        .filter(|(scheme, _)| !scheme.contains(['=', ' ', '\t']));
    let mut out = match url_parts {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:{R}@{host}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        // Not a URL (a libpq `key=value` string, refused later): its words cannot be told
        // apart safely, so none is printed when any could be a password.
        None if url.to_ascii_lowercase().contains("password") => return R.to_string(),
        None => head.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                // `password`, and libpq's `sslpassword` (the client key's passphrase); libpq
                // decodes percent-escapes in keywords too (`pass%77ord`).
                Some((k, _))
                    if percent_encoding::percent_decode_str(k)
                        .decode_utf8_lossy()
                        .to_ascii_lowercase()
                        .contains("password") =>
                {
                    format!("{k}={R}")
                }
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSetting::Ref(r) => write!(f, "{r:?}"),
            SecretSetting::Value(_) => f.write_str("[redacted]"),
        }
    }
}

/// Limits per source address (the TCP peer, or the address a trusted proxy forwards: see
/// `[http] trusted_proxies`), answered
/// `429` with `Retry-After`. Each limit is a token bucket refilled evenly over a minute; 0 turns it
/// off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Failed authentications (401) per minute from one address; once spent, every request that
    /// needs authentication from that address is refused, a valid token too, until the bucket
    /// refills (so a guessed token cannot be confirmed while blocked).
    pub failed_auth_per_minute: u32,
    /// Requests to the unauthenticated one-click link routes (`/admin/v1/links/…`) per minute.
    pub links_per_minute: u32,
    /// Addresses tracked per limit; past it the least recently seen address is forgotten.
    pub max_tracked_addresses: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            failed_auth_per_minute: 20,
            links_per_minute: 60,
            max_tracked_addresses: 10_000,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint `GET /metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Whether `/metrics` is served at all.
    pub enabled: bool,
    /// A separate `HOST:PORT` serving only `/metrics`, without authentication (bind it to
    /// loopback or a monitoring network). Absent: `/metrics` is on the main listener and needs
    /// a token with the `metrics:read` scope (`admin` implies it).
    pub bind: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            bind: None,
        }
    }
}

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
    pub database_url: DatabaseUrl,
    pub log_format: LogFormat,
    /// Bearer token that is valid with every scope (for automation and tests), at least 32
    /// bytes. Never logged.
    pub bootstrap_token: Option<SecretSetting>,
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
    /// `[database]`: timeouts and retries of database work (see `docs/postgresql.md`).
    pub database: DatabaseConfig,
    /// SQLite files: each HTTP worker thread answers bounded reads itself with a reader
    /// connection of its own (`false`: every read through the pool, as before; for comparison).
    pub db_worker_readers: bool,
    /// SQLite files: how long, in milliseconds, a worker's reader may keep one read snapshot
    /// across reads while this process writes nothing (what another process writes to the file
    /// is seen that much later at most); 0: every read takes a fresh one, as before.
    pub db_reader_snapshot_ms: u64,
    /// SCIM writes that arrive together share one transaction and commit (SQLite files and
    /// PostgreSQL); `false`: each in its own, as before (for comparison).
    pub db_group_commit: bool,
    /// actix worker threads (default: number of CPUs).
    pub workers: Option<usize>,
    /// Linux: the HTTP workers and the group-commit writers run under `SCHED_BATCH`, so a
    /// thread woken by another (a worker by a finished write, the writer by a new one) waits for
    /// the running one to block instead of preempting it (see `scheduling`); `false`: the
    /// default policy, as before.
    pub sched_batch: bool,
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
    pub smtp: Option<SmtpConfig>,
    /// Custom extension schemas (RFC 7643 §7 JSON files) added to a resource type, e.g. a
    /// contractor extension with `contractEndDate` and `sponsor`. Config file only:
    /// `[[schema_extensions]] file = "contractor.schema.json"`.
    pub schema_extensions: Vec<SchemaExtensionConfig>,
    /// `[rate_limit]`: failed authentications and unauthenticated routes, per source address.
    pub rate_limit: RateLimitConfig,
    /// `[metrics]`: where `/metrics` is served.
    pub metrics: MetricsConfig,
    /// `[tls]`: built-in HTTPS (`--tls-cert`/`--tls-key`); see `docs/deployment.md`.
    pub tls: TlsConfig,
    /// Serve plain HTTP on an address that is not loopback (behind a TLS-terminating proxy).
    /// Without it, `serve` refuses to start with plain HTTP on such an address.
    pub allow_plain_http: bool,
    /// `[http]`: the reverse proxies whose forwarded headers are believed.
    pub http: HttpConfig,
    /// `[audit]`: anchoring and retention of the audit chain.
    pub audit: AuditConfig,
}

/// `[database]`: how long database work may wait or run, and how often a conflicting write is
/// tried. The timeouts other than `pool_timeout_ms` apply to PostgreSQL only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// Longest a request waits for a database connection (or a slot of `db_pool_size`) before
    /// it is answered `503` with `Retry-After`, milliseconds.
    pub pool_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of every connection, milliseconds (0: none).
    pub statement_timeout_ms: u64,
    /// PostgreSQL `idle_in_transaction_session_timeout`, milliseconds (0: none).
    pub idle_in_transaction_timeout_ms: u64,
    /// libpq `connect_timeout`, seconds, unless the URL names one (0: libpq's default, forever).
    pub connect_timeout_secs: u64,
    /// Tries in all of a SCIM write that PostgreSQL aborted for a serialization failure or
    /// deadlock, or whose connection was lost before COMMIT.
    pub write_attempts: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            pool_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            idle_in_transaction_timeout_ms: 60_000,
            connect_timeout_secs: 5,
            write_attempts: 4,
        }
    }
}

impl DatabaseConfig {
    /// How long a request waits for a connection.
    pub fn pool_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.pool_timeout_ms.max(1))
    }
}

/// `[tls]`: the server certificate (PEM files), reloaded on SIGHUP and when either file changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert: Option<std::path::PathBuf>,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<std::path::PathBuf>,
    /// Seconds between checks of the files' modification times.
    pub reload_check_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            reload_check_secs: 5,
        }
    }
}

/// `[http]`: settings of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Peers (addresses or CIDR ranges, `"10.0.0.0/8"`, `"::1"`) whose `X-Forwarded-For`,
    /// `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` headers are used; every other
    /// peer's are ignored. Empty: no proxy is trusted.
    pub trusted_proxies: Vec<String>,
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
            database: DatabaseConfig::default(),
            db_worker_readers: true,
            db_reader_snapshot_ms: 5,
            db_group_commit: true,
            workers: None,
            sched_batch: true,
            strict: false,
            shutdown_timeout_secs: 30,
            jwt: None,
            dialect: DialectSetting::Auto,
            clients: Default::default(),
            smtp: None,
            schema_extensions: Vec::new(),
            rate_limit: RateLimitConfig::default(),
            metrics: MetricsConfig::default(),
            tls: TlsConfig::default(),
            allow_plain_http: false,
            http: HttpConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// `[audit]`: where the audit chain's head is anchored and how long entries are kept (see
/// `docs/operating.md`, "Audit trail").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// An `https://` URL the chain head (`{"seq", "hash", "at"}`) is POSTed to at every anchor,
    /// outside the database (absent: anchors are only logged).
    pub anchor_webhook: Option<String>,
    /// How often the head is anchored (and retention runs), e.g. `"1h"`; an unchanged head is
    /// not anchored again.
    pub anchor_interval: String,
    /// Entries older than this (e.g. `"400d"`) are pruned, leaving a signed checkpoint. Absent:
    /// kept forever. Needs `checkpoint_key`.
    pub retain: Option<String>,
    /// The HMAC key of retention checkpoints: `{ env = "NAME" }` or `{ file = "…" }`.
    pub checkpoint_key: Option<SecretSetting>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            anchor_webhook: None,
            anchor_interval: "1h".into(),
            retain: None,
            checkpoint_key: None,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Static verification keys (tried beside the JWKS keys).
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// The IdP's JSON Web Key Set (`https://…/jwks`), fetched and cached (see `auth::jwks`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Shortest time a fetched key set is kept, seconds (a smaller `Cache-Control: max-age` is
    /// raised to it).
    #[serde(default = "default_jwks_min_cache")]
    pub jwks_min_cache_secs: u64,
    /// Longest time a fetched key set is kept, seconds (also the lifetime when the response
    /// has no `max-age`).
    #[serde(default = "default_jwks_max_cache")]
    pub jwks_max_cache_secs: u64,
    /// Fewest seconds between two fetches caused by a token whose `kid` is unknown.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_interval_secs: u64,
    /// Longest a request waits for a key-set fetch, milliseconds; past it the request is
    /// answered with the keys at hand (401 when none matches).
    #[serde(default = "default_jwks_timeout")]
    pub jwks_timeout_ms: u64,
}

fn default_jwks_min_cache() -> u64 {
    60
}
fn default_jwks_max_cache() -> u64 {
    86_400
}
fn default_jwks_refresh() -> u64 {
    30
}
fn default_jwks_timeout() -> u64 {
    2_000
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
    /// HS256 shared secret, at least 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSetting>,
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
    #[serde(skip_serializing_if = "TlsOverrides::is_empty")]
    pub tls: TlsOverrides,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_plain_http: Option<bool>,
}

/// `--tls-cert`/`--tls-key`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<std::path::PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<std::path::PathBuf>,
}

impl TlsOverrides {
    fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none()
    }
}

/// Upper bound of `db_reader_snapshot_ms`.
pub const MAX_READER_SNAPSHOT_MS: u64 = 1_000;

impl Config {
    /// Loads the configuration: defaults, `file` (TOML, when given), `SCIMHUB_*` variables, flags.
    /// Secrets given by reference must be readable, and the bootstrap token and HS256 secrets at
    /// least [`MIN_SECRET_BYTES`] long; errors name the key, never the value.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
        Self::check_keys(file)?;
        let config: Config = Self::figment(file, overrides).extract().map_err(Box::new)?;
        config
            .check_secrets()
            .and_then(|()| config.check_ranges())
            .map_err(|e| Box::new(figment::Error::from(e)))?;
        Ok(config)
    }

    /// The bootstrap token, read from its reference; `None` when not configured.
    pub fn bootstrap_secret(&self) -> Result<Option<Secret>, String> {
        self.bootstrap_token
            .as_ref()
            .map(|s| load_secret("bootstrap_token", s))
            .transpose()
    }

    fn check_secrets(&self) -> Result<(), String> {
        if let Some(token) = self.bootstrap_secret()? {
            check_length("bootstrap_token", &token)?;
        }
        for (i, key) in self.jwt.iter().flat_map(|j| j.keys.iter()).enumerate() {
            let name = format!("jwt.keys[{i}].secret");
            if let Some(secret) = &key.secret {
                let secret = load_secret(&name, secret)?;
                if key.algorithm.eq_ignore_ascii_case("HS256") {
                    check_length(&name, &secret)?;
                }
            }
        }
        if let Some(password) = self.smtp.as_ref().and_then(|s| s.password.as_ref()) {
            password.load().map_err(|e| format!("smtp.password: {e}"))?;
        }
        Ok(())
    }

    /// Refuses values the types allow but the server cannot honour safely.
    fn check_ranges(&self) -> Result<(), String> {
        // An idle worker's snapshot is ended only once it is this old; longer would let idle
        // workers pin the WAL (it could not restart and would grow) and hide other processes'
        // writes (a revoked token, an import) for that long.
        if self.db_reader_snapshot_ms > MAX_READER_SNAPSHOT_MS {
            return Err(format!(
                "db_reader_snapshot_ms is {}; at most {MAX_READER_SNAPSHOT_MS} is allowed \
                 (0 turns kept snapshots off)",
                self.db_reader_snapshot_ms
            ));
        }
        Ok(())
    }

    /// Refuses keys of `file` and `SCIMHUB_*` variables that are no setting, naming each (with
    /// its line) and the closest known key.
    fn check_keys(file: Option<&Path>) -> Result<(), Box<figment::Error>> {
        let mut problems = Vec::new();
        if let Some(path) = file {
            // An unreadable file or a TOML syntax error is reported by the loader itself.
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(found) = keys::file_keys(&text) {
                    problems.extend(keys::check_file(&path.display().to_string(), &found));
                }
            }
        }
        let vars: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("SCIMHUB_"))
            .collect();
        problems.extend(keys::check_env(vars.iter().map(String::as_str)));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Box::new(figment::Error::from(problems.join("\n"))))
        }
    }

    fn figment(file: Option<&Path>, overrides: &Overrides) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(Env::prefixed("SCIMHUB_").split("__").filter(|k| {
            !keys::is_other_variable(&format!("SCIMHUB_{}", k.as_str().to_ascii_uppercase()))
        }))
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

/// Reads a secret setting; the error names the key and the variable or file, not the value.
pub fn load_secret(key: &str, setting: &SecretSetting) -> Result<Secret, String> {
    setting.load().map_err(|e| format!("{key}: {e}"))
}

fn check_length(key: &str, secret: &Secret) -> Result<(), String> {
    let len = secret.expose().len();
    if len < MIN_SECRET_BYTES {
        return Err(format!(
            "{key} is {len} bytes long; at least {MIN_SECRET_BYTES} are required \
             (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(())
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
                secret = "s3cret-s3cret-s3cret-s3cret-s3cret"
                [clients.entra]
                dialect = "entra"
                "#,
            )?;
            jail.set_env("SCIMHUB_MAX_RESULTS", "75");
            jail.set_env("SCIMHUB_BOOTSTRAP_TOKEN", BOOT);
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
            assert_eq!(
                cfg.bootstrap_secret().map_err(figment::Error::from)?,
                Some(Secret::new(BOOT))
            );
            let jwt = cfg
                .jwt
                .clone()
                .ok_or_else(|| figment::Error::from("jwt".to_string()))?;
            assert_eq!(jwt.scope_claim, "scp");
            assert_eq!(
                jwt.keys[0].secret,
                Some(SecretSetting::from("s3cret-s3cret-s3cret-s3cret-s3cret"))
            );
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
            jail.set_env("SMTP_PASSWORD", "mail-password");
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
            // A password written inline is refused without repeating it.
            jail.create_file(
                "inline.toml",
                "[smtp]\nhost = \"m\"\nfrom = \"a@b.c\"\npassword = \"smtppass-inline-1\"\n",
            )?;
            let e = Config::load(Some(Path::new("inline.toml")), &Overrides::default())
                .expect_err("an inline password")
                .to_string();
            assert!(e.contains("may not be written inline"), "{e}");
            assert!(!e.contains("smtppass-inline-1"), "{e}");
            // A numeric one too (figment reads it as a number).
            jail.create_file(
                "pin.toml",
                "[smtp]\nhost = \"m\"\nfrom = \"a@b.c\"\npassword = 98765432\n",
            )?;
            let e = Config::load(Some(Path::new("pin.toml")), &Overrides::default())
                .expect_err("a numeric password")
                .to_string();
            assert!(!e.contains("98765432"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn reader_snapshot_longer_than_a_second_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SCIMHUB_DB_READER_SNAPSHOT_MS", "1000");
            let cfg = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(cfg.db_reader_snapshot_ms, 1000);
            jail.set_env("SCIMHUB_DB_READER_SNAPSHOT_MS", "60000");
            let err = Config::load(None, &Overrides::default()).expect_err("60 s is refused");
            assert!(
                err.to_string()
                    .contains("db_reader_snapshot_ms is 60000; at most 1000"),
                "{err}"
            );
            Ok(())
        });
    }

    const BOOT: &str = "boot-boot-boot-boot-boot-boot-boot-boot";

    #[test]
    fn secrets_come_from_references_and_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hs256.secret",
                "hs256-secret-from-a-file-of-enough-length\n",
            )?;
            jail.create_file(
                "hub.toml",
                r#"
                bootstrap_token = { env = "HUB_BOOT" }
                [jwt]
                issuer = "https://idp"
                audience = ["scimhub"]
                [[jwt.keys]]
                algorithm = "HS256"
                secret = { file = "hs256.secret" }
                "#,
            )?;
            jail.set_env("HUB_BOOT", BOOT);
            let cfg =
                Config::load(Some(Path::new("hub.toml")), &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(
                cfg.bootstrap_secret().map_err(figment::Error::from)?,
                Some(Secret::new(BOOT))
            );
            let jwt = cfg.jwt.clone().expect("jwt");
            let hs = jwt.keys[0].secret.as_ref().expect("secret");
            assert_eq!(
                load_secret("k", hs).map_err(figment::Error::from)?.expose(),
                "hs256-secret-from-a-file-of-enough-length"
            );
            // Debug shows where secrets come from, never what they are.
            let mut inline = cfg.clone();
            inline.bootstrap_token = Some(SecretSetting::from(BOOT));
            for c in [&cfg, &inline] {
                let printed = format!("{c:?} {:?}", c.jwt);
                assert!(!printed.contains(BOOT), "{printed}");
                assert!(!printed.contains("hs256-secret-from"), "{printed}");
            }
            assert!(format!("{inline:?}").contains("[redacted]"));
            assert!(format!("{cfg:?}").contains("HUB_BOOT"));
            Ok(())
        });
    }

    #[test]
    fn short_or_missing_secrets_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            let err = |jail: &mut figment::Jail, toml: &str| -> String {
                jail.create_file("hub.toml", toml).expect("file");
                match Config::load(Some(Path::new("hub.toml")), &Overrides::default()) {
                    Ok(_) => panic!("accepted: {toml}"),
                    Err(e) => e.to_string(),
                }
            };
            let e = err(jail, "bootstrap_token = { file = \"/nonexistent/boot\" }");
            assert!(
                e.contains("bootstrap_token") && e.contains("/nonexistent/boot"),
                "{e}"
            );
            jail.set_env("SCIMHUB_BOOTSTRAP_TOKEN", "short-token");
            let e = err(jail, "");
            assert!(e.contains("bootstrap_token is 11 bytes"), "{e}");
            assert!(!e.contains("short-token"), "{e}");
            jail.set_env("SCIMHUB_BOOTSTRAP_TOKEN", BOOT);
            let hs = |secret: &str| {
                format!(
                    "[jwt]\nissuer = \"i\"\naudience = [\"a\"]\n[[jwt.keys]]\n\
                     algorithm = \"HS256\"\nsecret = {secret}\n"
                )
            };
            let e = err(jail, &hs("\"too-short-secret\""));
            assert!(e.contains("jwt.keys[0].secret is 16 bytes"), "{e}");
            assert!(!e.contains("too-short-secret"), "{e}");
            let e = err(jail, &hs("{ env = \"NOT_SET_ANYWHERE\" }"));
            assert!(
                e.contains("jwt.keys[0].secret") && e.contains("NOT_SET_ANYWHERE"),
                "{e}"
            );
            let e = err(
                jail,
                "[smtp]\nhost = \"mail\"\npassword = { env = \"NO_SMTP_PASSWORD\" }\n",
            );
            assert!(
                e.contains("smtp.password") && e.contains("NO_SMTP_PASSWORD"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn rate_limits_have_defaults_and_settings() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(None, &Overrides::default())
                    .map_err(|e| *e)?
                    .rate_limit,
                RateLimitConfig::default()
            );
            jail.create_file("hub.toml", "[rate_limit]\nfailed_auth_per_minute = 3\n")?;
            let cfg =
                Config::load(Some(Path::new("hub.toml")), &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(cfg.rate_limit.failed_auth_per_minute, 3);
            assert_eq!(cfg.rate_limit.links_per_minute, 60);
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
