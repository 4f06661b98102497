//! `[[connector]]`: names, types, typed settings and credentials, the account key and attributes,
//! owners. Also what the later sections ask about connectors: whether one is declared, and which
//! entitlement kinds it accepts.

use std::collections::BTreeMap;

use connectors::secret::SecretRef;

use crate::policy::attrs::AttrChecker;
use crate::policy::connector_config;
use crate::policy::diagnostics::Diags;
use crate::policy::model::{ConnectorDef, CONNECTOR_TYPES};
use crate::policy::raw::{RawConnector, S};

use super::check_user_names;

/// User attributes sent to an account when the connector does not list them.
const DEFAULT_ACCOUNT_ATTRIBUTES: &[&str] = &[
    "userName",
    "name",
    "displayName",
    "emails",
    "title",
    "externalId",
];

/// The checked connectors.
#[derive(Default)]
pub(super) struct CheckedConnectors {
    pub(super) defs: BTreeMap<String, ConnectorDef>,
    /// Entitlement kinds each connector accepts (`None`: any).
    pub(super) entitlement_kinds: BTreeMap<String, Option<Vec<String>>>,
}

impl CheckedConnectors {
    /// Whether `name` is a declared connector; reported where it is written when not.
    pub(super) fn known(&self, d: &mut Diags<'_>, name: &S<String>) -> bool {
        if self.defs.contains_key(name.get_ref()) {
            true
        } else {
            d.at(
                name.span(),
                format!("unknown connector {:?}", name.get_ref()),
            );
            false
        }
    }
}

pub(super) fn check(
    raw: Vec<RawConnector>,
    attrs: &AttrChecker,
    d: &mut Diags<'_>,
) -> CheckedConnectors {
    let mut out = CheckedConnectors::default();
    for c in raw {
        let name = c.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
        {
            d.at(
                c.name.span(),
                format!("connector name {name:?} must be letters, digits, - or _"),
            );
        }
        if out.defs.contains_key(&name) {
            d.at(c.name.span(), format!("duplicate connector {name:?}"));
            continue;
        }
        if !CONNECTOR_TYPES.contains(&c.kind.get_ref().as_str()) {
            d.at(
                c.kind.span(),
                format!(
                    "unknown connector type {:?} (one of {})",
                    c.kind.get_ref(),
                    CONNECTOR_TYPES.join(", ")
                ),
            );
        }
        let settings_json = toml_to_json(&toml::Value::Table(
            c.settings
                .as_ref()
                .map(|s| s.get_ref().clone())
                .unwrap_or_default(),
        ));
        let credentials = c
            .credentials
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default();
        if CONNECTOR_TYPES.contains(&c.kind.get_ref().as_str()) {
            if let Some(kinds) = check_typed(&c, &settings_json, &credentials, d) {
                out.entitlement_kinds.insert(name.clone(), kinds);
            }
        }
        let account_key = match &c.account_key {
            Some(k) => {
                if let Some(msg) = attrs.check_text(k.get_ref()) {
                    d.at(k.span(), format!("account_key: {msg}"));
                }
                k.get_ref().clone()
            }
            None => "userName".into(),
        };
        let attributes = match &c.attributes {
            Some(list) => list
                .iter()
                .map(|a| {
                    if let Some(msg) = attrs.check_text(a.get_ref()) {
                        d.at(a.span(), format!("attributes: {msg}"));
                    }
                    a.get_ref().clone()
                })
                .collect(),
            None => DEFAULT_ACCOUNT_ATTRIBUTES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let owners = check_user_names(d, &c.owners, &format!("connector {name:?} owners"));
        out.defs.insert(
            name.clone(),
            ConnectorDef {
                name,
                kind: c.kind.get_ref().clone(),
                settings: settings_json,
                credentials,
                account_key,
                attributes,
                on_leave: c.on_leave,
                transfer_ownership: c.transfer_ownership,
                description: c.description,
                owners,
                verify_delay: c
                    .verify_delay
                    .as_ref()
                    .and_then(|v| super::verification::positive(d, v)),
                max_attempts: c.max_attempts.as_ref().and_then(|m| {
                    let n = *m.get_ref();
                    if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) {
                        Some(n)
                    } else {
                        d.at(
                            m.span(),
                            format!("max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
                        );
                        None
                    }
                }),
                circuit_failures: c.circuit_failures.as_ref().and_then(|m| {
                    let n = *m.get_ref();
                    if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) {
                        Some(n)
                    } else {
                        d.at(
                            m.span(),
                            format!("circuit_failures must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
                        );
                        None
                    }
                }),
                circuit_probe: c.circuit_probe.as_ref().and_then(|v| {
                    let dur = super::duration_at(d, v)?;
                    if dur < chrono::Duration::seconds(1) || dur > chrono::Duration::days(1) {
                        d.at(v.span(), "circuit_probe must be between 1 second and 1 day");
                        return None;
                    }
                    Some(dur)
                }),
                reconcile: c
                    .reconcile
                    .as_ref()
                    .and_then(|v| super::drift::interval(d, v)),
                drift: c
                    .drift
                    .as_ref()
                    .map(|t| super::drift::actions(d, t))
                    .unwrap_or_default(),
            },
        );
    }
    out
}

/// The largest per-connector retry budget: with the backoff capped at ten minutes, 100 attempts
/// already keep an operation retrying for most of a day, longer than anyone should wait to hear
/// that it cannot run.
const MAX_ATTEMPTS_LIMIT: i64 = 100;

/// Checks a connector of a known type against that type's settings and credentials, pointing
/// at the offending key where it can. Returns the entitlement kinds it accepts when its settings
/// are valid (`Some(None)`: any kind).
fn check_typed(
    c: &RawConnector,
    settings_json: &serde_json::Value,
    credentials: &BTreeMap<String, SecretRef>,
    d: &mut Diags<'_>,
) -> Option<Option<Vec<String>>> {
    let name = c.name.get_ref();
    let kind = c.kind.get_ref().as_str();
    let kinds = match connector_config::ConnectorConfig::parse(kind, settings_json) {
        Ok(cfg) => Some(cfg.entitlement_kinds()),
        Err(e) => {
            let at = match &c.settings {
                Some(s) => {
                    let span = s.span();
                    let slice = &d.text[span.start.min(d.text.len())..span.end.min(d.text.len())];
                    let inner = e
                        .key
                        .as_deref()
                        .and_then(|k| connector_config::find_key(slice, k))
                        .or_else(|| connector_config::locate(kind, slice))
                        .unwrap_or(0);
                    span.start + inner
                }
                None => c.kind.span().start,
            };
            d.at(
                at..at,
                format!("connector {name:?} ({kind}) settings: {}", e.message),
            );
            None
        }
    };
    let at = c
        .credentials
        .as_ref()
        .map(|s| s.span())
        .unwrap_or_else(|| c.name.span());
    for msg in connector_config::ConnectorConfig::check_credentials(kind, credentials) {
        d.at(at.clone(), format!("connector {name:?}: {msg}"));
    }
    kinds
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(dt) => serde_json::Value::String(dt.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
