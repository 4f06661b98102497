//! The policy file as TOML gives it: one `Raw*` struct per section, every value that a
//! diagnostic may point at kept [`Spanned`], unknown keys refused. The checks in `check/` turn
//! these into the model types.

use std::collections::BTreeMap;

use connectors::secret::SecretRef;
use serde::Deserialize;
use toml::Spanned;

use super::model::{Approval, GrantApproval, OnConflict, OnLeave, SodAction};

/// A value with the byte span it was read from (diagnostics point there).
pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) settings: RawSettings,
    #[serde(default, rename = "connector")]
    pub(super) connectors: Vec<RawConnector>,
    #[serde(default, rename = "profile")]
    pub(super) profiles: Vec<RawProfile>,
    pub(super) contractor: Option<RawContractor>,
    #[serde(default)]
    pub(super) sod: Vec<RawSod>,
    #[serde(default)]
    pub(super) sla: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub(super) leaver: RawLeaver,
    pub(super) blast_radius: Option<RawBlast>,
    #[serde(default, rename = "source")]
    pub(super) sources: Vec<RawSource>,
    #[serde(default)]
    pub(super) approvals: RawApprovals,
    #[serde(default)]
    pub(super) notify: RawNotify,
    #[serde(default)]
    pub(super) verification: RawVerification,
    #[serde(default)]
    pub(super) incidents: RawIncidents,
    #[serde(default)]
    pub(super) drift: RawDrift,
    #[serde(default)]
    pub(super) grants: RawGrants,
    #[serde(default)]
    pub(super) certification: RawCertification,
}

/// `[certification]`: access certification campaigns (docs/certification.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertification {
    pub(super) schedule: Option<S<String>>,
    pub(super) due: Option<S<String>>,
    pub(super) remind: Option<Vec<S<String>>>,
    pub(super) escalation: Option<S<String>>,
    pub(super) scopes: Option<Vec<S<String>>>,
}

/// `[grants]`: time-bound emergency grants.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrants {
    pub(super) max_duration: Option<S<String>>,
    pub(super) approval: Option<S<GrantApproval>>,
}

/// What to do about each drift finding kind (`report`, `fix`, `review`): a connector's `drift`
/// table, and the defaults in `[drift]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDriftActions {
    pub(super) orphan: Option<S<String>>,
    pub(super) departed: Option<S<String>>,
    pub(super) entitlement_outside: Option<S<String>>,
    pub(super) missing_account: Option<S<String>>,
    pub(super) missing_entitlement: Option<S<String>>,
    pub(super) attribute_drift: Option<S<String>>,
}

/// `[drift]`: the default action per finding kind, which kinds raise incidents, and how long a
/// kept (reviewed) finding stays an exception.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrift {
    pub(super) orphan: Option<S<String>>,
    pub(super) departed: Option<S<String>>,
    pub(super) entitlement_outside: Option<S<String>>,
    pub(super) missing_account: Option<S<String>>,
    pub(super) missing_entitlement: Option<S<String>>,
    pub(super) attribute_drift: Option<S<String>>,
    pub(super) incidents: Option<Vec<S<String>>>,
    pub(super) review_expiry: Option<S<String>>,
}

/// `[incidents]`: the re-notification ladder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncidents {
    pub(super) renotify: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub(super) chat: Vec<S<RawChat>>,
}

/// `[[incidents.chat]]`: one chat webhook incidents are posted to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChat {
    pub(super) name: S<String>,
    pub(super) format: S<String>,
    pub(super) url: SecretRef,
    pub(super) secret: Option<SecretRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerification {
    pub(super) delay: Option<S<String>>,
    pub(super) after: Option<Vec<S<String>>>,
}

/// `[leaver]`: the deprovisioning steps that must not be skipped silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeaver {
    #[serde(default)]
    pub(super) required: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    #[serde(default)]
    pub(super) security: Vec<S<String>>,
    /// Refused with a diagnostic (group membership is not a trusted source of authority).
    #[serde(default)]
    pub(super) security_groups: Vec<S<String>>,
    #[serde(default)]
    pub(super) trust_unowned_attributes: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub(super) extensions: Vec<S<String>>,
    pub(super) start_date_attribute: Option<S<String>>,
    pub(super) end_date_attribute: Option<S<String>>,
    pub(super) status_attribute: Option<S<String>>,
    #[serde(default)]
    pub(super) terminated_values: Vec<String>,
    pub(super) sponsor_attribute: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnector {
    pub(super) name: S<String>,
    #[serde(rename = "type")]
    pub(super) kind: S<String>,
    pub(super) settings: Option<S<toml::Table>>,
    pub(super) credentials: Option<S<BTreeMap<String, SecretRef>>>,
    pub(super) account_key: Option<S<String>>,
    pub(super) attributes: Option<Vec<S<String>>>,
    #[serde(default)]
    pub(super) on_leave: OnLeave,
    #[serde(default = "yes")]
    pub(super) transfer_ownership: bool,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) owners: Vec<S<String>>,
    pub(super) verify_delay: Option<S<String>>,
    pub(super) max_attempts: Option<S<i64>>,
    pub(super) circuit_failures: Option<S<i64>>,
    pub(super) circuit_probe: Option<S<String>>,
    pub(super) reconcile: Option<S<String>>,
    pub(super) drift: Option<RawDriftActions>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrant {
    pub(super) connector: S<String>,
    pub(super) kind: Option<String>,
    pub(super) id: Option<String>,
    pub(super) role: Option<String>,
    #[serde(default)]
    pub(super) approval: Approval,
    #[serde(default)]
    pub(super) privileged: bool,
    #[serde(default)]
    pub(super) owners: Vec<S<String>>,
    /// How people read the entitlement (mails, confirmation pages).
    pub(super) description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) name: S<String>,
    pub(super) description: Option<String>,
    #[serde(rename = "match")]
    pub(super) match_expr: Option<S<String>>,
    #[serde(default)]
    pub(super) include: Vec<S<String>>,
    #[serde(default)]
    pub(super) grants: Vec<S<RawGrant>>,
    pub(super) overlap: Option<S<String>>,
    #[serde(default)]
    pub(super) contractors: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContractor {
    #[serde(rename = "match")]
    pub(super) match_expr: S<String>,
    pub(super) profile: S<String>,
    #[serde(default)]
    pub(super) exclude_connectors: Vec<S<String>>,
    pub(super) reminders: Option<Vec<S<String>>>,
    pub(super) max_extension: Option<S<String>>,
    #[serde(default)]
    pub(super) owners: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntRef {
    pub(super) connector: S<String>,
    pub(super) kind: String,
    pub(super) id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSod {
    pub(super) name: S<String>,
    pub(super) a: RawEntRef,
    pub(super) b: RawEntRef,
    pub(super) action: SodAction,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlast {
    pub(super) max_share: S<f64>,
    pub(super) window: S<String>,
    #[serde(default = "default_min_population")]
    pub(super) min_population: u64,
}

fn default_min_population() -> u64 {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) client: S<String>,
    pub(super) owns: Vec<S<String>>,
    #[serde(default)]
    pub(super) on_conflict: OnConflict,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) smtp_url: Option<String>,
    pub(super) from: Option<String>,
    #[serde(default)]
    pub(super) security: Vec<String>,
    #[serde(default)]
    pub(super) helpdesk: Vec<String>,
    #[serde(default)]
    pub(super) approvers: BTreeMap<String, Vec<String>>,
    pub(super) link_base_url: Option<String>,
    pub(super) link_secret: Option<SecretRef>,
    pub(super) link_ttl: Option<S<String>>,
    #[serde(default)]
    pub(super) hr_leads: Vec<String>,
    #[serde(default)]
    pub(super) it_leads: Vec<String>,
    pub(super) onboarding_window: Option<S<String>>,
    pub(super) onboarding_min_joiners: Option<usize>,
}
