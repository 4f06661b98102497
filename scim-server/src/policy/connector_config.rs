//! Typed connector settings: what each connector `type` accepts in a policy's `settings` table
//! and which `credentials` it needs.
//!
//! Each connector module owns its settings type (fields, defaults, `deny_unknown_fields`); this
//! module only says which type a `type` name means, checks what serde cannot (URL schemes,
//! options that exclude each other) and finds the line of an offending key. The policy keeps `settings` as JSON on [`super::ConnectorDef`] (so the policy format is
//! unchanged); [`ConnectorConfig::parse`] types it per connector type, both when the policy is
//! checked (errors carry the line of the offending key) and when the engine builds the connector
//! ([`crate::engine::connector_set`]). Credentials are always [`SecretRef`]s (`{ env = "VAR" }` or
//! `{ file = "/path" }`): a secret written inline does not parse.

use std::collections::BTreeMap;
use std::path::PathBuf;

use connectors::aws_iam::AwsIamSettings;
use connectors::github::GitHubSettings;
use connectors::ldap::{
    check_ownership, AdSettings, LdapConfig, LdapDisable, LdapSettings, LdapTls,
};
use connectors::memory::MemorySettings;
use connectors::okta::OktaSettings;
use connectors::scim::parse_managed_filter;
use connectors::scim::ScimSettings;
use connectors::secret::Secret;
use connectors::secret::SecretRef;
use connectors::slack::SlackSettings;
use connectors::webhook::WebhookSettings;
use serde::de::DeserializeOwned;
use serde::Deserialize;

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
    Github(GitHubSettings),
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
    tls: LdapTls,
    ca_file: &Option<PathBuf>,
    timeout_ms: u64,
) -> Result<(), SettingsError> {
    let lower = url.to_ascii_lowercase();
    match tls {
        LdapTls::Ldaps if !lower.starts_with("ldaps://") => {
            return Err(bad("url", "tls = \"ldaps\" needs an ldaps:// url"))
        }
        LdapTls::StartTls | LdapTls::PlainInsecure if !lower.starts_with("ldap://") => {
            return Err(bad(
                "url",
                "tls = \"starttls\"/\"plain_insecure\" need an ldap:// url",
            ))
        }
        LdapTls::Ldaps | LdapTls::StartTls if ca_file.is_none() => {
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

fn scim_ownership(s: &ScimSettings) -> Result<(), SettingsError> {
    if let Some(f) = &s.managed_filter {
        parse_managed_filter(f).map_err(|m| bad("managed_filter", m))?;
    }
    Ok(())
}

fn owner_id(id: &str) -> Result<(), SettingsError> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad(
            "owner_id",
            format!("owner_id {id:?} must be letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

fn ldap_ownership_error(message: &str) -> SettingsError {
    let key = if message.starts_with("owner_attribute") {
        "owner_attribute"
    } else {
        "managed_ous"
    };
    bad(key, message)
}

impl ConnectorConfig {
    /// Types `settings` for connector type `kind`.
    pub fn parse(kind: &str, settings: &serde_json::Value) -> Result<Self, SettingsError> {
        let c = match kind {
            "memory" => ConnectorConfig::Memory(typed(settings)?),
            "scim" => {
                let s: ScimSettings = typed(settings)?;
                http_url("base_url", &s.base_url)?;
                scim_ownership(&s)?;
                ConnectorConfig::Scim(s)
            }
            "slack" => {
                let s: SlackSettings = typed(settings)?;
                http_url("scim", &s.scim.base_url)?;
                scim_ownership(&s.scim)?;
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
                if let Some(m) = &s.managed_path {
                    if !(m.starts_with('/') && m.ends_with('/')) {
                        return Err(bad(
                            "managed_path",
                            "managed_path must start and end with /",
                        ));
                    }
                    if !s.path.starts_with(m.as_str()) {
                        return Err(bad(
                            "managed_path",
                            "path must lie under managed_path (the hub must manage what it creates)",
                        ));
                    }
                }
                owner_id(&s.owner_id)?;
                ConnectorConfig::AwsIam(s)
            }
            "github" => {
                let s: GitHubSettings = typed(settings)?;
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
                owner_id(&s.owner_id)?;
                check_ownership(&LdapConfig::generic("", s.clone(), Secret::new("")))
                    .map_err(|m| ldap_ownership_error(&m))?;
                ConnectorConfig::Ldap(s)
            }
            "ad" => {
                let s: AdSettings = typed(settings)?;
                ldap_common(&s.url, s.tls, &s.ca_file, s.timeout_ms)?;
                if s.tls == LdapTls::PlainInsecure {
                    return Err(bad(
                        "tls",
                        "Active Directory needs ldaps or starttls (passwords and account control)",
                    ));
                }
                owner_id(&s.owner_id)?;
                check_ownership(&LdapConfig::active_directory(
                    "",
                    s.clone(),
                    Secret::new(""),
                ))
                .map_err(|m| ldap_ownership_error(&m))?;
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
    /// connectors declare in `capabilities()`; `connector_set` tests keep the two in step.
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
        "github" => locate_in_text::<GitHubSettings>(slice),
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
