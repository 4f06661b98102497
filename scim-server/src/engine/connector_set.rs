//! The connectors the engine calls: a factory that builds each connector of the policy from its
//! typed settings and loaded secrets ([`build`], [`default_builder`]), and the live set of built
//! instances ([`ConnectorSet`]), rebuilt when the policy changes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use connectors::aws_iam::{AwsIamConfig, AwsIamConnector};
use connectors::github::{GitHubConfig, GitHubConnector};
use connectors::ldap::{LdapConfig, LdapConnector};
use connectors::memory::MemoryConnector;
use connectors::okta::OktaConnector;
use connectors::scim::ScimConnector;
use connectors::secret::Secret;
use connectors::slack::SlackConnector;
use connectors::webhook::WebhookConnector;
use connectors::{Capabilities, Connector};

use crate::policy::connector_config::ConnectorConfig;
use crate::policy::{ConnectorDef, Policy};

/// Builds a connector from its policy definition.
pub type Builder = Arc<dyn Fn(&ConnectorDef) -> Result<Arc<dyn Connector>, String> + Send + Sync>;

/// Builds every connector type of [`crate::policy::CONNECTOR_TYPES`] from its typed settings
/// ([`ConnectorConfig`]) with its credentials loaded from their environment variables or files.
/// See `docs/connectors.md`.
pub fn default_builder() -> Builder {
    Arc::new(|def: &ConnectorDef| {
        let secret = |name: &str| -> Result<Secret, String> {
            def.credentials
                .get(name)
                .ok_or_else(|| format!("credentials.{name} is missing"))?
                .load()
                .map_err(|e| format!("credentials.{name}: {e}"))
        };
        build(def, &secret)
    })
}

/// Builds the connector of `def`, taking its secrets from `secret` (by credential name).
pub fn build(
    def: &ConnectorDef,
    secret: &dyn Fn(&str) -> Result<Secret, String>,
) -> Result<Arc<dyn Connector>, String> {
    let name = def.name.as_str();
    let cfg = ConnectorConfig::parse(&def.kind, &def.settings).map_err(|e| e.message)?;
    let c: Arc<dyn Connector> = match cfg {
        ConnectorConfig::Memory(s) => Arc::new(MemoryConnector::from_settings(name, s)),
        ConnectorConfig::Scim(s) => {
            Arc::new(ScimConnector::new(name, s, secret("token")?).map_err(|e| e.message)?)
        }
        ConnectorConfig::Slack(s) => Arc::new(
            SlackConnector::new(name, s, secret("scim_token")?, secret("admin_token")?)
                .map_err(|e| e.message)?,
        ),
        ConnectorConfig::Okta(s) => {
            Arc::new(OktaConnector::new(name, s, secret("token")?).map_err(|e| e.message)?)
        }
        ConnectorConfig::Webhook(s) => Arc::new(
            WebhookConnector::new(name, s, secret("signing_secret")?).map_err(|e| e.message)?,
        ),
        ConnectorConfig::AwsIam(s) => {
            let session_token = match def.credentials.get("session_token") {
                Some(_) => Some(secret("session_token")?),
                None => None,
            };
            let cfg = AwsIamConfig::from_settings(
                name,
                s,
                secret("access_key_id")?,
                secret("secret_access_key")?,
                session_token,
            );
            Arc::new(AwsIamConnector::new(cfg).map_err(|e| e.message)?)
        }
        ConnectorConfig::Github(s) => {
            let cfg = GitHubConfig::from_settings(name, s, secret("token")?);
            Arc::new(GitHubConnector::new(cfg).map_err(|e| e.message)?)
        }
        ConnectorConfig::Ldap(s) => {
            let cfg = LdapConfig::generic(name, s, secret("bind_password")?);
            Arc::new(LdapConnector::new(cfg).map_err(|e| e.message)?)
        }
        ConnectorConfig::Ad(s) => {
            let cfg = LdapConfig::active_directory(name, s, secret("bind_password")?);
            Arc::new(LdapConnector::new(cfg).map_err(|e| e.message)?)
        }
    };
    Ok(c)
}

/// The policy generation the instances were built for, and the instances.
type Built = (u64, BTreeMap<String, Arc<dyn Connector>>);

/// The live connector instances of the policy in force, by policy name: built by the factory
/// when the policy generation changes, with instances given by the caller taking precedence.
#[derive(Clone)]
pub struct ConnectorSet {
    builder: Builder,
    /// Instances given by the caller (tests, demo); they win over the builder.
    preset: Arc<RwLock<BTreeMap<String, Arc<dyn Connector>>>>,
    built: Arc<RwLock<Built>>,
}

impl std::fmt::Debug for ConnectorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorSet").finish_non_exhaustive()
    }
}

impl ConnectorSet {
    pub fn new(builder: Builder) -> Self {
        ConnectorSet {
            builder,
            preset: Arc::default(),
            built: Arc::new(RwLock::new((0, BTreeMap::new()))),
        }
    }

    /// Uses `connector` for the policy connector `name`.
    pub fn insert(&self, name: &str, connector: Arc<dyn Connector>) {
        self.preset
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), connector);
    }

    /// Rebuilds the instances when `generation` changed.
    pub fn sync(&self, policy: &Policy, generation: u64) {
        if self.built.read().unwrap_or_else(|p| p.into_inner()).0 == generation {
            return;
        }
        let mut map = BTreeMap::new();
        for (name, def) in &policy.connectors {
            match (self.builder)(def) {
                Ok(c) => {
                    map.insert(name.clone(), c);
                }
                Err(e) => tracing::warn!(connector = %name, error = %e, "connector unavailable"),
            }
        }
        *self.built.write().unwrap_or_else(|p| p.into_inner()) = (generation, map);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        if let Some(c) = self
            .preset
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(c.clone());
        }
        self.built
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .get(name)
            .cloned()
    }

    /// Capabilities of the connectors that are available.
    pub fn capabilities(&self, policy: &Policy) -> BTreeMap<String, Capabilities> {
        policy
            .connectors
            .keys()
            .filter_map(|n| self.get(n).map(|c| (n.clone(), c.capabilities())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::Capability;

    const POLICY: &str = r#"
[[connector]]
name = "mem"
type = "memory"

[[connector]]
name = "scim"
type = "scim"
settings = { base_url = "http://127.0.0.1:1/scim/v2" }
credentials = { token = { env = "T" } }

[[connector]]
name = "slack"
type = "slack"
settings = { scim = { base_url = "http://127.0.0.1:1/scim/v2" }, api_base_url = "http://127.0.0.1:1/api" }
credentials = { scim_token = { env = "T" }, admin_token = { env = "T" } }

[[connector]]
name = "okta"
type = "okta"
settings = { base_url = "http://127.0.0.1:1" }
credentials = { token = { env = "T" } }

[[connector]]
name = "hook"
type = "webhook"
settings = { url = "http://127.0.0.1:1/hook", entitlement_kinds = ["role"] }
credentials = { signing_secret = { env = "T" } }

[[connector]]
name = "aws"
type = "aws_iam"
settings = { endpoint = "http://127.0.0.1:1/" }
credentials = { access_key_id = { env = "T" }, secret_access_key = { env = "T" } }

[[connector]]
name = "gh"
type = "github"
settings = { org = "acme", api_base = "http://127.0.0.1:1" }
credentials = { token = { env = "T" } }

[[connector]]
name = "dir"
type = "ldap"
settings = { url = "ldap://127.0.0.1:1", tls = "plain_insecure", bind_dn = "cn=a", search_base = "dc=x", users_dn = "ou=p,dc=x", groups_dn = "ou=g,dc=x", disable = "ppolicy_lock" }
credentials = { bind_password = { env = "T" } }
"#;

    /// Every type builds, and the kinds the policy check enforces are the kinds the built
    /// connector declares.
    #[test]
    fn every_type_builds_and_declares_the_kinds_the_policy_checks() {
        let policy = Policy::parse(POLICY, "p.toml").expect("valid policy");
        let placeholder = |_: &str| Ok(Secret::new("placeholder"));
        for (name, def) in &policy.connectors {
            let c = build(def, &placeholder).unwrap_or_else(|e| panic!("{name}: {e}"));
            let cfg = ConnectorConfig::parse(&def.kind, &def.settings).expect("typed");
            let declared = c.capabilities().entitlement_kinds;
            match cfg.entitlement_kinds() {
                None => assert!(declared.is_empty(), "{name}: {declared:?}"),
                Some(k) => assert_eq!(k, declared, "{name}"),
            }
        }
        let slack = build(&policy.connectors["slack"], &placeholder).expect("slack");
        assert!(slack.capabilities().supports(Capability::RevokeSessions));
    }

    #[test]
    fn missing_secrets_fail_the_build_without_printing_values() {
        let policy = Policy::parse(POLICY, "p.toml").expect("valid policy");
        let def = &policy.connectors["gh"];
        let mut def = def.clone();
        def.credentials.insert(
            "token".into(),
            connectors::secret::SecretRef::Env("SCIMHUB_SURELY_UNSET_GH_TOKEN".into()),
        );
        let err = (default_builder())(&def).expect_err("no token");
        assert!(
            err.contains("credentials.token") && err.contains("SCIMHUB_SURELY_UNSET_GH_TOKEN"),
            "{err}"
        );
    }
}
