//! Typed connector settings: what each connector `type` accepts in a policy's `settings` table
//! and which `credentials` it needs.
//!
//! The policy keeps `settings` as JSON on [`super::ConnectorDef`] (so the policy format is
//! unchanged); [`ConnectorConfig::parse`] types it per connector type, both when the policy is
//! checked (errors carry the line of the offending key) and when the engine builds the connector
//! ([`crate::engine::registry`]). Credentials are always [`SecretRef`]s (`{ env = "VAR" }` or
//! `{ file = "/path" }`): a secret written inline does not parse.

use std::collections::BTreeMap;
use std::path::PathBuf;

use connectors::okta::OktaSettings;
use connectors::scim::ScimSettings;
use connectors::secret::SecretRef;
use connectors::slack::SlackSettings;
use connectors::webhook::WebhookSettings;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// `type = "memory"`: an in-process downstream (tests, demos, benchmarks).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySettings {
    /// A JSON file the state is mirrored to (and read back from at start).
    pub file: Option<PathBuf>,
    /// Delay added to every call, in milliseconds (simulates a slow downstream).
    #[serde(default)]
    pub delay_ms: u64,
}

/// What leaving does in IAM once credentials and access are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IamLeaveMode {
    #[default]
    Delete,
    TagSuspended,
}

fn iam_endpoint() -> String {
    "https://iam.amazonaws.com/".into()
}
fn us_east_1() -> String {
    "us-east-1".into()
}
fn root_path() -> String {
    "/".into()
}
fn ms_20s() -> u64 {
    20_000
}
fn ms_10s() -> u64 {
    10_000
}
fn page_100() -> u32 {
    100
}
fn page_500() -> i32 {
    500
}
fn github_api() -> String {
    "https://api.github.com".into()
}

/// `type = "aws_iam"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIamSettings {
    #[serde(default = "iam_endpoint")]
    pub endpoint: String,
    #[serde(default = "us_east_1")]
    pub region: String,
    /// Path of created users and prefix for listing, e.g. `/scimhub/`.
    #[serde(default = "root_path")]
    pub path: String,
    /// Static tags on every user.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// What `delete` does after stripping credentials and access: `delete` or `tag_suspended`.
    #[serde(default)]
    pub leave_mode: IamLeaveMode,
    #[serde(default = "ms_20s")]
    pub timeout_ms: u64,
    #[serde(default = "page_100")]
    pub page_size: u32,
}

/// `type = "github"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    pub org: String,
    #[serde(default = "github_api")]
    pub api_base: String,
    /// Team slugs the policy manages (read back checks each).
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default = "ms_20s")]
    pub timeout_ms: u64,
    #[serde(default = "page_100")]
    pub page_size: u32,
}

/// How an LDAP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    Ldaps,
    Starttls,
    /// Plain `ldap://`, only when written explicitly.
    PlainInsecure,
}

/// How a generic LDAP account is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapDisable {
    /// Move the entry under `disabled_ou`.
    MoveToOu,
    /// ppolicy `pwdAccountLockedTime`.
    PpolicyLock,
}

/// `type = "ldap"` (inetOrgPerson / groupOfNames).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    pub url: String,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub search_base: String,
    pub users_dn: String,
    pub groups_dn: String,
    pub disable: LdapDisable,
    /// Required with `disable = "move_to_ou"`.
    pub disabled_ou: Option<String>,
    #[serde(default)]
    pub disable_removes_groups: bool,
    /// The `member` that keeps an emptied groupOfNames valid (default: `bind_dn`).
    pub placeholder_member: Option<String>,
    #[serde(default = "ms_10s")]
    pub timeout_ms: u64,
    #[serde(default = "page_500")]
    pub page_size: i32,
}

/// What leaving does in AD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdLeaveMode {
    Delete,
    #[default]
    DisableAndMove,
}

/// `type = "ad"` (Active Directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdSettings {
    pub url: String,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub search_base: String,
    pub users_dn: String,
    pub groups_dn: String,
    pub upn_suffix: String,
    pub leavers_ou: String,
    #[serde(default)]
    pub leave: AdLeaveMode,
    #[serde(default = "ms_10s")]
    pub timeout_ms: u64,
    #[serde(default = "page_500")]
    pub page_size: i32,
}

/// A connector's settings, typed by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorConfig {
    Memory(MemorySettings),
    Scim(ScimSettings),
    Slack(SlackSettings),
    Okta(OktaSettings),
    Webhook(WebhookSettings),
    AwsIam(AwsIamSettings),
    Ldap(LdapSettings),
    Ad(AdSettings),
    Github(GithubSettings),
}

/// A settings problem; `key` names the offending setting when known (for the line number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn typed<T: DeserializeOwned>(settings: &serde_json::Value) -> Result<T, SettingsError> {
    let v = if settings.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        settings.clone()
    };
    serde_json::from_value(v).map_err(|e| {
        let message = e.to_string();
        let key = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("unknown field"))
            .map(str::to_string);
        SettingsError { key, message }
    })
}

fn bad(key: &str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        key: Some(key.into()),
        message: message.into(),
    }
}

fn http_url(key: &str, url: &str) -> Result<(), SettingsError> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < 10 {
        return Err(bad(key, format!("{key} {url:?} is not an http(s) URL")));
    }
    Ok(())
}

fn ldap_common(
    url: &str,
    tls: TlsMode,
    ca_file: &Option<PathBuf>,
    timeout_ms: u64,
) -> Result<(), SettingsError> {
    let lower = url.to_ascii_lowercase();
    match tls {
        TlsMode::Ldaps if !lower.starts_with("ldaps://") => {
            return Err(bad("url", "tls = \"ldaps\" needs an ldaps:// url"))
        }
        TlsMode::Starttls | TlsMode::PlainInsecure if !lower.starts_with("ldap://") => {
            return Err(bad(
                "url",
                "tls = \"starttls\"/\"plain_insecure\" need an ldap:// url",
            ))
        }
        TlsMode::Ldaps | TlsMode::Starttls if ca_file.is_none() => {
            return Err(bad(
                "tls",
                "TLS needs ca_file (the CA that signs the directory's certificate)",
            ))
        }
        _ => {}
    }
    if timeout_ms == 0 {
        return Err(bad("timeout_ms", "timeout_ms must be positive"));
    }
    Ok(())
}

impl ConnectorConfig {
    /// Types `settings` for connector type `kind`.
    pub fn parse(kind: &str, settings: &serde_json::Value) -> Result<Self, SettingsError> {
        let c = match kind {
            "memory" => ConnectorConfig::Memory(typed(settings)?),
            "scim" => {
                let s: ScimSettings = typed(settings)?;
                http_url("base_url", &s.base_url)?;
                ConnectorConfig::Scim(s)
            }
            "slack" => {
                let s: SlackSettings = typed(settings)?;
                http_url("scim", &s.scim.base_url)?;
                http_url("api_base_url", &s.api_base_url)?;
                if s.mobile_only && s.web_only {
                    return Err(bad(
                        "web_only",
                        "mobile_only and web_only exclude each other",
                    ));
                }
                ConnectorConfig::Slack(s)
            }
            "okta" => {
                let s: OktaSettings = typed(settings)?;
                http_url("base_url", &s.base_url)?;
                ConnectorConfig::Okta(s)
            }
            "webhook" => {
                let s: WebhookSettings = typed(settings)?;
                http_url("url", &s.url)?;
                ConnectorConfig::Webhook(s)
            }
            "aws_iam" => {
                let s: AwsIamSettings = typed(settings)?;
                http_url("endpoint", &s.endpoint)?;
                if !(s.path.starts_with('/') && s.path.ends_with('/')) {
                    return Err(bad("path", "path must start and end with /"));
                }
                ConnectorConfig::AwsIam(s)
            }
            "github" => {
                let s: GithubSettings = typed(settings)?;
                http_url("api_base", &s.api_base)?;
                if s.org.trim().is_empty() {
                    return Err(bad("org", "org must not be empty"));
                }
                ConnectorConfig::Github(s)
            }
            "ldap" => {
                let s: LdapSettings = typed(settings)?;
                ldap_common(&s.url, s.tls, &s.ca_file, s.timeout_ms)?;
                if s.disable == LdapDisable::MoveToOu && s.disabled_ou.is_none() {
                    return Err(bad("disable", "disable = \"move_to_ou\" needs disabled_ou"));
                }
                ConnectorConfig::Ldap(s)
            }
            "ad" => {
                let s: AdSettings = typed(settings)?;
                ldap_common(&s.url, s.tls, &s.ca_file, s.timeout_ms)?;
                if s.tls == TlsMode::PlainInsecure {
                    return Err(bad(
                        "tls",
                        "Active Directory needs ldaps or starttls (passwords and account control)",
                    ));
                }
                ConnectorConfig::Ad(s)
            }
            other => {
                return Err(SettingsError {
                    key: None,
                    message: format!("unknown connector type {other:?}"),
                })
            }
        };
        Ok(c)
    }

    /// `(required, optional)` credential names of the type.
    pub fn credential_names(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
        match kind {
            "memory" => (&[], &[]),
            "scim" | "okta" | "github" => (&["token"], &[]),
            "slack" => (&["scim_token", "admin_token"], &[]),
            "webhook" => (&["signing_secret"], &[]),
            "aws_iam" => (&["access_key_id", "secret_access_key"], &["session_token"]),
            "ldap" | "ad" => (&["bind_password"], &[]),
            _ => (&[], &[]),
        }
    }

    /// Checks the credential names against the type: every required one present, none unknown.
    pub fn check_credentials(kind: &str, credentials: &BTreeMap<String, SecretRef>) -> Vec<String> {
        let (required, optional) = Self::credential_names(kind);
        let mut out = Vec::new();
        for r in required {
            if !credentials.contains_key(*r) {
                out.push(format!(
                    "{kind} connector needs credentials.{r} ({{ env = \"VAR\" }} or {{ file = \"/path\" }})"
                ));
            }
        }
        for k in credentials.keys() {
            if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
                let all: Vec<&str> = required.iter().chain(optional).copied().collect();
                out.push(if all.is_empty() {
                    format!("{kind} connector takes no credentials (got {k:?})")
                } else {
                    format!(
                        "unknown credential {k:?} for a {kind} connector (expected {})",
                        all.join(", ")
                    )
                });
            }
        }
        out
    }

    /// The entitlement kinds the connector will accept (`None`: any kind). The same lists the
    /// connectors declare in `capabilities()`; `registry` tests keep the two in step.
    pub fn entitlement_kinds(&self) -> Option<Vec<String>> {
        let v = |k: &[&str]| Some(k.iter().map(|s| s.to_string()).collect());
        match self {
            ConnectorConfig::Memory(_) => None,
            ConnectorConfig::Scim(_)
            | ConnectorConfig::Slack(_)
            | ConnectorConfig::Okta(_)
            | ConnectorConfig::Ldap(_)
            | ConnectorConfig::Ad(_) => v(&["group"]),
            ConnectorConfig::AwsIam(_) => v(&["group", "policy"]),
            ConnectorConfig::Github(_) => v(&["org", "team"]),
            ConnectorConfig::Webhook(w) => Some(w.entitlement_kinds.clone()),
        }
    }
}

/// Finds the error position inside the settings table written in `slice` (either an inline
/// table `{ … }` or a `[connector.settings]` section): deserializing the text itself gives
/// toml's own span. Returns a byte offset into `slice`.
pub fn locate_in_text<T: DeserializeOwned>(slice: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Wrap<T> {
        v: T,
    }
    if slice.trim_start().starts_with('{') {
        let prefix = "v = ";
        let text = format!("{prefix}{slice}");
        match toml::from_str::<Wrap<T>>(&text) {
            Ok(w) => {
                drop(w.v);
                None
            }
            Err(e) => e.span().map(|s| s.start.saturating_sub(prefix.len())),
        }
    } else {
        let body_at = slice.find('\n').map(|i| i + 1)?;
        match toml::from_str::<T>(&slice[body_at..]) {
            Ok(_) => None,
            Err(e) => e.span().map(|s| body_at + s.start),
        }
    }
}

/// [`locate_in_text`] for connector type `kind`.
pub fn locate(kind: &str, slice: &str) -> Option<usize> {
    match kind {
        "memory" => locate_in_text::<MemorySettings>(slice),
        "scim" => locate_in_text::<ScimSettings>(slice),
        "slack" => locate_in_text::<SlackSettings>(slice),
        "okta" => locate_in_text::<OktaSettings>(slice),
        "webhook" => locate_in_text::<WebhookSettings>(slice),
        "aws_iam" => locate_in_text::<AwsIamSettings>(slice),
        "github" => locate_in_text::<GithubSettings>(slice),
        "ldap" => locate_in_text::<LdapSettings>(slice),
        "ad" => locate_in_text::<AdSettings>(slice),
        _ => None,
    }
}

/// Byte offset of `key = ` inside `slice` (for errors found after deserializing).
pub fn find_key(slice: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = slice[from..].find(key) {
        let at = from + i;
        let before_ok = at == 0
            || !slice[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let after = slice[at + key.len()..].trim_start();
        if before_ok && (after.starts_with('=') || after.starts_with('.')) {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}
