//! The checked policy as the rest of the server reads it: [`Policy`] and the types of its
//! sections (settings, connectors, profiles and grants, contractor rules, separation of duties,
//! blast radius, sources of truth, approvers, notification settings), with the queries the
//! engine and the admin API ask of it.
//!
//! Nothing here parses or checks: the file form is in `raw.rs`, the checks in `check/`. A value
//! of these types always comes from a policy that passed every check.

use std::collections::BTreeMap;
use std::fmt;

use chrono::Duration;
use connectors::secret::SecretRef;
use connectors::Entitlement;
use scim_schema::filter::{AttrPath, Filter};
use serde::{Deserialize, Serialize};

/// The connector types this binary knows (the engine can only build those it has code for: its
/// connector factory builds one of each).
pub const CONNECTOR_TYPES: &[&str] = &[
    "memory", "scim", "webhook", "okta", "slack", "aws_iam", "ldap", "ad", "github",
];

/// The event types an SLA may be set for (`[sla]`), in the order the runbook lists them.
pub const EVENT_TYPES: &[&str] = &[
    "joiner",
    "mover",
    "leaver",
    "rehire",
    "contractor-expiry",
    "update",
];

/// The steps a leaver's (or an expired contractor's) plan takes on each account, as the
/// operations are named: what `[leaver] required` may list.
pub const LEAVER_STEPS: &[&str] = &[
    "set_enabled",
    "revoke_sessions",
    "revoke_credentials",
    "revoke",
    "transfer_ownership",
    "delete",
];

/// The checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from (a path, or `<inline>`).
    pub source: String,
    pub settings: Settings,
    pub connectors: BTreeMap<String, ConnectorDef>,
    /// In file order.
    pub profiles: Vec<Profile>,
    pub contractor: Option<ContractorRules>,
    pub sod: Vec<SodRule>,
    /// Event type (`joiner`, `mover`, `leaver`, `rehire`, `contractor-expiry`, `update`) -> SLA.
    pub sla: BTreeMap<String, Duration>,
    /// The `[leaver]` section.
    pub leaver: LeaverRules,
    pub blast_radius: Option<BlastRadius>,
    /// SCIM client (token name) -> the attributes it is authoritative for.
    pub sources: BTreeMap<String, SourceRule>,
    /// Who the security approvers are.
    pub approvals: ApproverSettings,
    pub notify: NotifySettings,
    pub verification: Verification,
    pub incidents: IncidentSettings,
    pub drift: DriftSettings,
    pub grants: GrantSettings,
    pub certification: CertificationSettings,
}

/// How often scheduled certification campaigns are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertSchedule {
    /// At the start of each calendar quarter (UTC).
    #[default]
    Quarterly,
    /// At the start of each calendar month (UTC).
    Monthly,
    /// Only on demand.
    Off,
}

impl CertSchedule {
    pub const NAMES: [&'static str; 3] = ["quarterly", "monthly", "off"];

    pub fn parse(s: &str) -> Option<CertSchedule> {
        match s {
            "quarterly" => Some(CertSchedule::Quarterly),
            "monthly" => Some(CertSchedule::Monthly),
            "off" => Some(CertSchedule::Off),
            _ => None,
        }
    }
}

/// What a campaign covers: access on these connectors, of people in these departments or
/// matched by these profiles, only privileged entitlements; an empty list does not narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertScope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
}

impl CertScope {
    /// Reads `connector=github,department=Sales,profile=engineer,privileged` (an empty text is
    /// everything) and checks the connectors and profiles against `policy`.
    pub fn parse(text: &str, policy: &Policy) -> Result<CertScope, String> {
        let mut out = CertScope::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None if part == "privileged" => out.privileged = true,
                Some(("connector", v)) if policy.connectors.contains_key(v.trim()) => {
                    out.connectors.push(v.trim().to_string())
                }
                Some(("connector", v)) => return Err(format!("unknown connector {:?}", v.trim())),
                Some(("profile", v)) if policy.profile(v.trim()).is_some() => {
                    out.profiles.push(v.trim().to_string())
                }
                Some(("profile", v)) => return Err(format!("unknown profile {:?}", v.trim())),
                Some(("department", v)) if !v.trim().is_empty() => {
                    out.departments.push(v.trim().to_string())
                }
                _ => {
                    return Err(format!(
                        "{part:?} is not a scope term (connector=NAME, department=NAME, \
                         profile=NAME, privileged)"
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// The `[certification]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificationSettings {
    pub schedule: CertSchedule,
    /// How long reviewers have from a campaign's creation.
    pub due: Duration,
    /// Reminders this long before the due, to reviewers with undecided items.
    pub remind: Vec<Duration>,
    /// The time an escalated item's next reviewer has.
    pub escalation: Duration,
    /// The scheduled campaigns: one per scope (as written, checked); empty is one of everything.
    pub scopes: Vec<(String, CertScope)>,
}

impl Default for CertificationSettings {
    fn default() -> Self {
        CertificationSettings {
            schedule: CertSchedule::Quarterly,
            due: Duration::days(14),
            remind: vec![Duration::days(7), Duration::days(1)],
            escalation: Duration::days(3),
            scopes: Vec::new(),
        }
    }
}

/// The drift finding kinds a reconcile run reports, as stored and as the policy names them.
pub const DRIFT_KINDS: &[&str] = &[
    "orphan",
    "departed",
    "entitlement_outside",
    "missing_account",
    "missing_entitlement",
    "attribute_drift",
];

/// What a reconcile run does about a finding (per connector and kind; default `report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftAction {
    /// Record the finding (and raise an incident when `[drift] incidents` lists its kind).
    #[default]
    Report,
    /// Plan the correcting operation through the outbox, under the blast-radius guard.
    Fix,
    /// Ask the user's manager to keep (an exception until it expires) or remove (a fix).
    Review,
}

impl DriftAction {
    pub const NAMES: [&'static str; 3] = ["report", "fix", "review"];

    pub fn parse(s: &str) -> Option<DriftAction> {
        match s {
            "report" => Some(DriftAction::Report),
            "fix" => Some(DriftAction::Fix),
            "review" => Some(DriftAction::Review),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DriftAction::Report => "report",
            DriftAction::Fix => "fix",
            DriftAction::Review => "review",
        }
    }
}

/// The `[drift]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftSettings {
    /// Kind ([`DRIFT_KINDS`]) -> default action; kinds not listed are `report`.
    pub actions: BTreeMap<String, DriftAction>,
    /// Kinds whose new findings raise an incident (one per finding).
    pub incidents: Vec<String>,
    /// How long a finding a manager kept stays an exception.
    pub review_expiry: Duration,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            actions: BTreeMap::new(),
            incidents: vec![
                "orphan".into(),
                "departed".into(),
                "entitlement_outside".into(),
            ],
            review_expiry: Duration::days(90),
        }
    }
}

impl Policy {
    /// What to do about a finding of `kind` on `connector`: the connector's `drift` table,
    /// else `[drift]`, else `report`.
    pub fn drift_action(&self, connector: &str, kind: &str) -> DriftAction {
        self.connectors
            .get(connector)
            .and_then(|c| c.drift.get(kind).copied())
            .or_else(|| self.drift.actions.get(kind).copied())
            .unwrap_or_default()
    }
}

/// The `[incidents]` section: when an open, unacknowledged incident is notified again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSettings {
    /// Delays after the first notice (sent at once): notice `n + 1` comes `renotify[n]` after
    /// notice `n`; past the end the last delay repeats.
    pub renotify: Vec<Duration>,
    /// Chat webhooks every notice is also posted to.
    pub chat: Vec<ChatChannel>,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        IncidentSettings {
            renotify: vec![Duration::hours(1), Duration::hours(4), Duration::hours(24)],
            chat: Vec::new(),
        }
    }
}

/// The payload a chat webhook takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// Microsoft Teams (Workflows) webhook: an Adaptive Card in a `message`.
    Teams,
    /// Generic JSON, signed with HMAC-SHA256.
    Json,
}

impl ChatFormat {
    pub const NAMES: [&'static str; 3] = ["slack", "teams", "json"];

    pub fn parse(s: &str) -> Option<ChatFormat> {
        match s {
            "slack" => Some(ChatFormat::Slack),
            "teams" => Some(ChatFormat::Teams),
            "json" => Some(ChatFormat::Json),
            _ => None,
        }
    }
}

/// One `[[incidents.chat]]` webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatChannel {
    /// Names the channel in the delivery queue (unique).
    pub name: String,
    pub format: ChatFormat,
    /// The webhook URL: a secret (it is the credential of Slack and Teams webhooks).
    pub url: SecretRef,
    /// The HMAC key of `json` payloads.
    pub secret: Option<SecretRef>,
}

impl IncidentSettings {
    /// The delay after notice number `sent` (1 = the first) before the next.
    pub fn delay_after(&self, sent: i64) -> Duration {
        let i = usize::try_from(sent.max(1) - 1).unwrap_or(0);
        self.renotify
            .get(i)
            .or(self.renotify.last())
            .copied()
            .unwrap_or_else(|| Duration::hours(24))
    }
}

/// The `[verification]` section: when the engine reads every system back after a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// How long after the plan is committed the systems are read back (per connector:
    /// [`ConnectorDef::verify_delay`]).
    pub delay: Duration,
    /// The event types verified (of [`EVENT_TYPES`]); empty turns verification off.
    pub after: Vec<String>,
}

impl Default for Verification {
    fn default() -> Self {
        Verification {
            delay: Duration::minutes(15),
            after: vec!["leaver".into(), "contractor-expiry".into()],
        }
    }
}

impl Verification {
    /// The delay before verifying what a plan did on `connector`.
    pub fn delay_for(&self, connector: Option<&ConnectorDef>) -> Duration {
        connector.and_then(|c| c.verify_delay).unwrap_or(self.delay)
    }
}

/// How emergency grants are approved (`[grants] approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantApproval {
    /// The level the policy gives the entitlement (the strictest `approval` of the profile
    /// grants of it); `security` for an entitlement no profile grants. A grant of an
    /// entitlement whose level is `none` is active at once.
    #[default]
    Entitlement,
    /// Every grant waits for a security approver, whatever the entitlement's level.
    Security,
}

impl GrantApproval {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantApproval::Entitlement => "entitlement",
            GrantApproval::Security => "security",
        }
    }
}

/// The `[grants]` section: time-bound emergency grants (docs/grants.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSettings {
    /// The longest a grant may last.
    pub max_duration: Duration,
    pub approval: GrantApproval,
}

impl Default for GrantSettings {
    fn default() -> Self {
        GrantSettings {
            max_duration: Duration::hours(72),
            approval: GrantApproval::Entitlement,
        }
    }
}

impl Policy {
    /// The approval an emergency grant of `entitlement` on `connector` needs under
    /// `[grants] approval`: `security` for every grant when the policy says so; otherwise the
    /// strictest level of the profile grants of the entitlement, `none` when they need none,
    /// and `security` when no profile grants it (nothing in the policy says who owns its risk).
    pub fn grant_approval(&self, connector: &str, entitlement: &Entitlement) -> Approval {
        if self.grants.approval == GrantApproval::Security {
            return Approval::Security;
        }
        self.entitlement_approval(connector, entitlement)
            .unwrap_or(Approval::Security)
    }

    /// The strictest `approval` of the profile grants of `entitlement` on `connector`; `None`
    /// when no profile grants it.
    pub fn entitlement_approval(
        &self,
        connector: &str,
        entitlement: &Entitlement,
    ) -> Option<Approval> {
        self.profiles
            .iter()
            .flat_map(|p| &p.grants)
            .filter(|g| g.connector == connector && g.entitlement.as_ref() == Some(entitlement))
            .map(|g| g.approval)
            .max()
    }
}

/// The `[leaver]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaverRules {
    /// Steps ([`LEAVER_STEPS`]) that raise an `unsupported_step` incident when a leaver's or an
    /// expired contractor's plan cannot take them on a connector that lacks the capability.
    pub required: Vec<String>,
}

impl LeaverRules {
    /// Whether the policy marks `step` required.
    pub fn requires(&self, step: &str) -> bool {
        self.required.iter().any(|s| s == step)
    }
}

/// The `[approvals]` section: the security approvers, who may decide every request (any level).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApproverSettings {
    /// userNames of security approvers.
    pub security: Vec<String>,
    /// Whether a manager or sponsor attribute that no `[[source]]` owns still gives authority
    /// (default `false`: any `scim:write` client could set it).
    pub trust_unowned_attributes: bool,
    /// The attributes that give authority over a user's requests, resolved: the enterprise
    /// `manager`, and the `sponsor_attribute` when set. A source that owns one is its only
    /// writer, even while it has no value (see `service::ownership`).
    pub manager_path: Option<AttrPath>,
    pub sponsor_path: Option<AttrPath>,
}

impl ApproverSettings {
    /// Whether anybody is declared a security approver.
    pub fn has_security(&self) -> bool {
        !self.security.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Custom extension URNs whose attributes profiles may match.
    pub extensions: Vec<String>,
    pub start_date_attribute: Option<String>,
    pub end_date_attribute: Option<String>,
    pub status_attribute: Option<String>,
    /// Values of `status_attribute` meaning the person has left (case-insensitive).
    pub terminated_values: Vec<String>,
    /// Attribute holding the sponsor's email (contractors).
    pub sponsor_attribute: Option<String>,
}

/// What happens to accounts when someone leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLeave {
    #[default]
    Disable,
    Delete,
}

#[derive(Debug, Clone)]
pub struct ConnectorDef {
    pub name: String,
    pub kind: String,
    pub settings: serde_json::Value,
    pub credentials: BTreeMap<String, SecretRef>,
    /// The user attribute that becomes the account key (default `userName`).
    pub account_key: String,
    /// User attributes sent to the account (default userName, name, displayName, emails, title).
    pub attributes: Vec<String>,
    pub on_leave: OnLeave,
    /// Transfer owned records to the manager's account on leave (where supported).
    pub transfer_ownership: bool,
    pub description: Option<String>,
    /// userNames of the owners of this connector: they decide `approval = "owner"` requests for
    /// any of its entitlements.
    pub owners: Vec<String>,
    /// Overrides `[verification] delay` for this connector (a system slow to apply changes).
    pub verify_delay: Option<Duration>,
    /// Overrides the outbox retry budget (attempts before an operation is parked) for this
    /// connector; `None`: the workers' default (8).
    pub max_attempts: Option<i64>,
    /// Retryable failures in a row that open this connector's circuit (its operations then wait
    /// instead of burning attempts); `None`: 5.
    pub circuit_failures: Option<i64>,
    /// How long an open circuit waits before letting one operation through as a probe; `None`:
    /// 30 seconds.
    pub circuit_probe: Option<Duration>,
    /// How often drift reconciliation runs for this connector (`reconcile = "6h"`); `None`:
    /// only on demand.
    pub reconcile: Option<Duration>,
    /// Per finding kind, what a reconcile run does (overrides `[drift]`).
    pub drift: BTreeMap<String, DriftAction>,
}

/// Retryable failures in a row that open a connector's circuit unless it sets
/// `circuit_failures`.
pub const DEFAULT_CIRCUIT_FAILURES: i64 = 5;
/// Seconds an open circuit waits before a probe unless the connector sets `circuit_probe`.
pub const DEFAULT_CIRCUIT_PROBE_SECS: i64 = 30;

/// Who must approve an entitlement before it is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    #[default]
    None,
    Manager,
    Owner,
    Security,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::None => "none",
            Approval::Manager => "manager",
            Approval::Owner => "owner",
            Approval::Security => "security",
        }
    }
}

/// One grant of a profile: an account on `connector`, plus the entitlement when given.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub connector: String,
    pub entitlement: Option<Entitlement>,
    pub approval: Approval,
    /// Removed on leave (in addition to anything needing approval).
    pub privileged: bool,
    /// userNames of the owners of this entitlement (besides the connector's owners).
    pub owners: Vec<String>,
    /// How people read the entitlement (`"Production AWS admin"`): mails and confirmation
    /// pages name it so, with `kind:id` after it.
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    /// The match expression as written (`None`: only reachable through `include`).
    pub match_expr: Option<String>,
    pub filter: Option<Filter>,
    pub include: Vec<String>,
    pub grants: Vec<Grant>,
    /// How long the old access stays after a move away from this profile.
    pub overlap: Duration,
    /// Whether the profile applies to contractors too (default: only employees).
    pub contractors: bool,
}

#[derive(Debug, Clone)]
pub struct ContractorRules {
    pub match_expr: String,
    pub filter: Filter,
    /// The profile every contractor gets.
    pub profile: String,
    /// Connectors contractors never get an account on (HR, finance…).
    pub exclude_connectors: Vec<String>,
    /// Reminder offsets before the end date (default 30d, 7d, 24h).
    pub reminders: Vec<Duration>,
    /// Longest extension a sponsor may grant in one request.
    pub max_extension: Duration,
    /// userNames who may decide contract extensions besides each contractor's sponsor (e.g.
    /// vendor management).
    pub owners: Vec<String>,
}

/// An entitlement reference in a SoD rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntRef {
    pub connector: String,
    pub kind: String,
    pub id: String,
}

impl EntRef {
    pub fn matches(&self, connector: &str, e: &Entitlement) -> bool {
        self.connector == connector && self.kind == e.kind && self.id == e.id
    }
}

impl fmt::Display for EntRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.connector, self.kind, self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SodAction {
    Block,
    Approval,
}

#[derive(Debug, Clone)]
pub struct SodRule {
    pub name: String,
    pub a: EntRef,
    pub b: EntRef,
    pub action: SodAction,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlastRadius {
    /// Largest share of users (0..1) that may lose access (a disable, delete or any revoke,
    /// whatever the event) within `window` without a hold.
    pub max_share: f64,
    pub window: Duration,
    /// Below this many users the guard does not apply (tiny tenants, tests).
    pub min_population: u64,
}

impl BlastRadius {
    /// The guard that holds at least what either holds: the smaller share, the longer window
    /// and the smaller population floor. A policy change is judged by the stricter of the guard
    /// before it and its own, so an edit cannot loosen the guard and strip access in one step.
    pub fn stricter(&self, other: &BlastRadius) -> BlastRadius {
        BlastRadius {
            max_share: self.max_share.min(other.max_share),
            window: self.window.max(other.window),
            min_population: self.min_population.min(other.min_population),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    #[default]
    Ignore,
    Reject,
}

/// A `[[source]]`: the SCIM client that is the source of truth for some User attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRule {
    /// The client name: the API token's name, or the JWT's client claim.
    pub client: String,
    pub owns: Vec<OwnedAttribute>,
    /// What a write of another client to one of these attributes gets.
    pub on_conflict: OnConflict,
}

/// An attribute a source owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAttribute {
    /// As written in the policy (used in messages).
    pub written: String,
    /// Resolved: no URN for core User attributes, the extension's URN otherwise (an enterprise
    /// attribute written without its URN gets it).
    pub path: AttrPath,
}

#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// `smtp://host:port` (plain SMTP; TLS relays come with the operations issue).
    pub smtp_url: Option<String>,
    pub from: String,
    pub security: Vec<String>,
    pub helpdesk: Vec<String>,
    /// Approver addresses per level (`owner`, `security`; `manager` is the user's manager).
    pub approvers: BTreeMap<String, Vec<String>>,
    /// Base URL of the admin API for one-click links (`https://hub.example.com`).
    pub link_base_url: Option<String>,
    /// HMAC key for one-click links.
    pub link_secret: Option<SecretRef>,
    /// How long a one-click link stays valid.
    pub link_ttl: Duration,
    /// HR and IT leads: the bulk onboarding confirmation goes to both lists
    /// (`engine::onboarding`); none: no confirmation.
    pub hr_leads: Vec<String>,
    pub it_leads: Vec<String>,
    /// One client's joiners at most this far apart are one burst (outside a /Bulk request or an
    /// import run, which are one burst each).
    pub onboarding_window: Duration,
    /// Bursts of fewer joiners get no confirmation.
    pub onboarding_min_joiners: usize,
}

impl NotifySettings {
    /// The sender when the policy names none.
    pub(super) const DEFAULT_FROM: &'static str = "scimhub@localhost";

    /// How long a one-click link stays valid when the policy does not say.
    pub(super) fn default_link_ttl() -> Duration {
        Duration::days(7)
    }

    /// `onboarding_window` when the policy does not say.
    pub(super) fn default_onboarding_window() -> Duration {
        Duration::minutes(10)
    }

    /// `onboarding_min_joiners` when the policy does not say.
    pub(super) const DEFAULT_ONBOARDING_MIN_JOINERS: usize = 5;
}

impl Policy {
    /// The `[[source]]` client that owns the attribute at `path` (or an attribute covering it).
    pub fn owner_of(&self, path: &AttrPath) -> Option<&str> {
        self.sources
            .values()
            .find(|s| {
                s.owns
                    .iter()
                    .any(|a| super::attrs::owned_paths_overlap(&a.path, path))
            })
            .map(|s| s.client.as_str())
    }

    /// Whether `path` (an owned attribute) covers the manager or sponsor attribute, or, with
    /// one-click links configured, `emails`: the address a person's links are mailed to, which
    /// another client filling it while empty could point at itself.
    pub fn is_authority_attribute(&self, path: &AttrPath) -> bool {
        let emails = self
            .notify
            .link_secret
            .as_ref()
            .and_then(|_| scim_schema::filter::parse_attr_path("emails").ok());
        let covers = [&self.approvals.manager_path, &self.approvals.sponsor_path]
            .into_iter()
            .flatten()
            .any(|p| super::attrs::owned_paths_overlap(p, path));
        covers
            || emails
                .as_ref()
                .is_some_and(|p| super::attrs::owned_paths_overlap(p, path))
    }

    /// Whether `path` is one of the attributes that end or hold back a person's access by their
    /// value alone (`[settings]` `status_attribute`, `end_date_attribute`,
    /// `start_date_attribute`): a value filled in by a client that does not own it would make
    /// the person a leaver, an expired contractor or not yet started, a departure that only the
    /// owner of `active` may otherwise cause.
    pub fn is_lifecycle_attribute(&self, path: &AttrPath) -> bool {
        let s = &self.settings;
        [
            &s.status_attribute,
            &s.end_date_attribute,
            &s.start_date_attribute,
        ]
        .into_iter()
        .flatten()
        .filter_map(|a| scim_schema::filter::parse_attr_path(a).ok())
        .any(|p| super::attrs::owned_paths_overlap(&p, path))
    }

    /// Whether an authority attribute (manager, sponsor) may give authority: a `[[source]]`
    /// owns the part of it that names the approver, or the policy trusts unowned ones
    /// (`trust_unowned_attributes`). That part is the attribute's `value`: a source that owns
    /// only `manager.displayName` leaves `manager.value`, the approver's id, to every
    /// `scim:write` client, so it makes nobody trusted.
    fn authority_attribute_trusted(&self, path: Option<&AttrPath>) -> bool {
        self.approvals.trust_unowned_attributes
            || path.is_some_and(|p| {
                let named_by = AttrPath {
                    sub_attr: Some(
                        p.sub_attr
                            .clone()
                            .unwrap_or_else(|| scim_schema::CiString::from("value")),
                    ),
                    ..p.clone()
                };
                self.owner_of(&named_by).is_some()
            })
    }

    /// Whether a user's manager attribute makes that manager an approver (see
    /// [`ApproverSettings::trust_unowned_attributes`]).
    pub fn manager_trusted(&self) -> bool {
        self.authority_attribute_trusted(self.approvals.manager_path.as_ref())
    }

    /// Whether a contractor's sponsor attribute makes that sponsor an approver.
    pub fn sponsor_trusted(&self) -> bool {
        self.settings.sponsor_attribute.is_some()
            && self.authority_attribute_trusted(self.approvals.sponsor_path.as_ref())
    }

    /// Whether a person's own email (their User's primary `emails`) may receive one-click links:
    /// a `[[source]]` owns the address (`emails`), or the policy trusts
    /// unowned attributes. Otherwise any `scim:write` client could set an approver's, manager's,
    /// sponsor's or reviewer's address to its own and act as them with the links mailed there.
    pub fn person_email_trusted(&self) -> bool {
        self.approvals.trust_unowned_attributes
            || scim_schema::filter::parse_attr_path("emails.value")
                .is_ok_and(|p| self.owner_of(&p).is_some())
    }

    /// What a policy that loads may still get wrong, in words for `policy check` and the start
    /// and reload logs: manager (or sponsor) approvals that no manager (or sponsor) can decide,
    /// because the attribute naming them is not owned by a `[[source]]`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let asking: Vec<&str> = self
            .profiles
            .iter()
            .filter(|p| p.grants.iter().any(|g| g.approval == Approval::Manager))
            .map(|p| p.name.as_str())
            .collect();
        if !asking.is_empty() && !self.manager_trusted() {
            let why = match self
                .approvals
                .manager_path
                .as_ref()
                .and_then(|p| self.owner_of(p))
            {
                Some(client) => format!(
                    "[[source]] {client:?} owns only part of the enterprise manager, not \
                     manager.value, the id that names the manager"
                ),
                None => "no [[source]] owns the enterprise manager".to_string(),
            };
            let who = if self.approvals.security.is_empty() {
                "nobody can decide these requests ([approvals] security names no one)"
            } else {
                "these requests wait for the security approvers"
            };
            out.push(format!(
                "profile(s) {} ask the manager's approval, but {why}: managers decide nothing \
                 and {who}. Let the HRIS own \"manager\" (or \"manager.value\"), or set \
                 [approvals] trust_unowned_attributes = true if every scim:write client is the \
                 HRIS",
                asking.join(", ")
            ));
        }
        if !self.manager_trusted() {
            let deleting: Vec<&str> = self
                .connectors
                .iter()
                .filter(|(_, c)| c.transfer_ownership && c.on_leave == OnLeave::Delete)
                .map(|(name, _)| name.as_str())
                .collect();
            if !deleting.is_empty() {
                out.push(format!(
                    "connector(s) {} hand a leaver's records to the manager before deleting the \
                     account, but no [[source]] owns the manager's id: the hub hands them to \
                     nobody and, where the connector can hand records over (a webhook), keeps \
                     such accounts disabled and raises records_kept. Let the HRIS own \
                     \"manager\" (or \"manager.value\")",
                    deleting.join(", ")
                ));
            }
        }
        // Anyone holding one link can test guesses of the key offline against its signature.
        if let Some(Ok(secret)) = self.notify.link_secret.as_ref().map(|s| s.load()) {
            let len = secret.expose().len();
            if len < 32 {
                out.push(format!(
                    "[notify] link_secret is {len} bytes: anyone holding one link can guess a short \
                     key offline and sign any link; use 32 random bytes or more"
                ));
            }
        }
        if self.notify.link_secret.is_some() && !self.person_email_trusted() {
            out.push(
                "one-click links are not mailed to people (approvers, managers, sponsors, \
                 certification reviewers), only to the [notify] addresses: no [[source]] owns \
                 \"emails\", so any scim:write client could redirect a person's links to itself. \
                 Let the HRIS or IdP own \"emails\" to mail them"
                    .to_string(),
            );
        }
        // Whoever owns `active` decides departures; a lifecycle attribute nobody owns lets any
        // scim:write client cause one anyway.
        let active = scim_schema::filter::parse_attr_path("active").ok();
        if let Some(owner) = active.as_ref().and_then(|p| self.owner_of(p)) {
            let s = &self.settings;
            let unowned: Vec<&str> = [
                &s.status_attribute,
                &s.end_date_attribute,
                &s.start_date_attribute,
            ]
            .into_iter()
            .flatten()
            .filter(|a| {
                scim_schema::filter::parse_attr_path(a)
                    .ok()
                    .is_some_and(|p| self.owner_of(&p).is_none())
            })
            .map(String::as_str)
            .collect();
            if !unowned.is_empty() {
                out.push(format!(
                    "[[source]] {owner:?} owns \"active\", but nobody owns {}: any scim:write \
                     client can make a person a leaver, an expired contractor or not yet \
                     started through them. Let the same source own them",
                    unowned.join(", ")
                ));
            }
        }
        if let (Some(attr), Some(_)) = (&self.settings.sponsor_attribute, &self.contractor) {
            if !self.sponsor_trusted() {
                out.push(format!(
                    "contractors' sponsors ({attr}) decide no extension: no [[source]] owns the \
                     part of it that names the sponsor, so extensions wait for [contractor] \
                     owners and the security approvers"
                ));
            }
        }
        out
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profile and every profile it includes, transitively (no cycles: checked at load).
    pub fn expand(&self, name: &str) -> Vec<&Profile> {
        let mut out: Vec<&Profile> = Vec::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if out.iter().any(|p| p.name == n) {
                continue;
            }
            if let Some(p) = self.profile(&n) {
                out.push(p);
                stack.extend(p.include.iter().rev().cloned());
            }
        }
        out
    }

    /// The owners (userNames) of an entitlement on a connector: the connector's owners and the
    /// owners declared on any grant of that entitlement, in policy order, without repeats.
    pub fn entitlement_owners(&self, connector: &str, entitlement: &Entitlement) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |names: &[String]| {
            for n in names {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
                    out.push(n.clone());
                }
            }
        };
        if let Some(c) = self.connectors.get(connector) {
            add(&c.owners);
        }
        for g in self.profiles.iter().flat_map(|p| &p.grants) {
            if g.connector == connector && g.entitlement.as_ref() == Some(entitlement) {
                add(&g.owners);
            }
        }
        out
    }

    /// The description a grant of `entitlement` on `connector` gives it (the first grant that
    /// has one), for mails and confirmation pages.
    pub fn entitlement_description(
        &self,
        connector: &str,
        entitlement: &Entitlement,
    ) -> Option<&str> {
        self.profiles
            .iter()
            .flat_map(|p| &p.grants)
            .find(|g| {
                g.connector == connector
                    && g.entitlement.as_ref() == Some(entitlement)
                    && g.description.is_some()
            })
            .and_then(|g| g.description.as_deref())
    }

    /// An entitlement as people read it: its policy description with `kind:id (role …)` after
    /// it, else `kind:id (role …)` alone. `json` is the entitlement as the engine stores it;
    /// anything unparsable is `(unknown entitlement)`, never raw JSON.
    pub fn entitlement_text(&self, connector: &str, json: &str) -> String {
        let Ok(e) = serde_json::from_str::<Entitlement>(json) else {
            return "(unknown entitlement)".into();
        };
        let label = match &e.role {
            Some(r) => format!("{}:{} (role {r})", e.kind, e.id),
            None => format!("{}:{}", e.kind, e.id),
        };
        match self.entitlement_description(connector, &e) {
            Some(d) => format!("{d} ({label})"),
            None => label,
        }
    }

    /// The SLA for an event type.
    pub fn sla_for(&self, event: &str) -> Option<Duration> {
        self.sla.get(event).copied()
    }

    /// An empty policy: no connectors, nothing granted.
    pub fn empty() -> Policy {
        Policy {
            source: "<empty>".into(),
            settings: Settings::default(),
            connectors: BTreeMap::new(),
            profiles: Vec::new(),
            contractor: None,
            sod: Vec::new(),
            sla: BTreeMap::new(),
            leaver: LeaverRules::default(),
            blast_radius: None,
            sources: BTreeMap::new(),
            approvals: ApproverSettings::default(),
            notify: NotifySettings {
                from: NotifySettings::DEFAULT_FROM.into(),
                link_ttl: NotifySettings::default_link_ttl(),
                onboarding_window: NotifySettings::default_onboarding_window(),
                onboarding_min_joiners: NotifySettings::DEFAULT_ONBOARDING_MIN_JOINERS,
                ..Default::default()
            },
            verification: Verification::default(),
            incidents: IncidentSettings::default(),
            drift: DriftSettings::default(),
            grants: GrantSettings::default(),
            certification: CertificationSettings::default(),
        }
    }
}
