//! The access policy: a version-controlled TOML file, parsed and checked into a [`Policy`].
//!
//! ```toml
//! [settings]
//! extensions = ["urn:example:scim:schemas:extension:acme:2.0:User"]
//! start_date_attribute = "urn:example:…:acme:2.0:User:startDate"
//! end_date_attribute = "urn:example:…:acme:2.0:User:contractEndDate"
//! status_attribute = "urn:example:…:acme:2.0:User:employmentStatus"
//! terminated_values = ["terminated"]
//!
//! [[connector]]
//! name = "github"
//! type = "github"
//! settings = { org = "acme" }
//! credentials = { token = { env = "GITHUB_TOKEN" } }
//!
//! [[profile]]
//! name = "engineering"
//! match = 'department eq "Engineering"'
//! include = ["employee"]
//! overlap = "24h"
//! grants = [{ connector = "github", kind = "team", id = "eng", role = "member" },
//!           { connector = "aws", kind = "group", id = "prod-admin", approval = "security" }]
//!
//! [approvals]
//! security = ["alice"]            # userNames of security approvers
//! security_groups = ["Security"]  # and the members of these groups (displayName)
//!
//! [[source]]
//! client = "workday"              # the token (or JWT client) name
//! owns = ["active", "title", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"]
//! on_conflict = "ignore"          # or "reject"
//! ```
//!
//! Who may decide an approval request is part of the policy: the subject's manager (`manager`
//! level), the `owners` of the connector or grant (`owner`), the security approvers of
//! `[approvals]` (`security`, and any lower level); see `crate::admin::authority`.
//!
//! Everything is checked at load ([`Policy::parse`]): unknown connectors and attributes, filters
//! (with the position of the error inside the expression), durations, duplicate names and include
//! cycles, each reported as `FILE:LINE:COL: message`. [`reload::PolicyHandle`] keeps the last good
//! policy in force when a reload fails.

pub mod connector_config;
pub mod docs;
pub mod reload;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use chrono::Duration;
use connectors::secret::SecretRef;
use connectors::Entitlement;
use scim_schema::filter::{fold, parse_filter, AttrPath, CompValue, CompareOp, Filter, FilterFold};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The connector types this binary knows (the engine can only build those it has code for; see
/// [`crate::engine::connector_set`]).
pub const CONNECTOR_TYPES: &[&str] = &[
    "memory", "scim", "webhook", "okta", "slack", "aws_iam", "ldap", "ad", "github",
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
    pub blast_radius: Option<BlastRadius>,
    /// SCIM client (token name) -> the attributes it is authoritative for.
    pub sources: BTreeMap<String, SourceRule>,
    /// Who the security approvers are.
    pub approvals: ApproverSettings,
    pub notify: NotifySettings,
}

/// The `[approvals]` section: the security approvers, who may decide every request (any level).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApproverSettings {
    /// userNames of security approvers.
    pub security: Vec<String>,
    /// displayNames of groups whose members (direct or through nested groups) are security
    /// approvers.
    pub security_groups: Vec<String>,
}

impl ApproverSettings {
    /// Whether anybody is declared a security approver.
    pub fn has_security(&self) -> bool {
        !self.security.is_empty() || !self.security_groups.is_empty()
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
}

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
    /// Largest share of users (0..1) that may be deprovisioned within `window` without a hold.
    pub max_share: f64,
    pub window: Duration,
    /// Below this many users the guard does not apply (tiny tenants, tests).
    pub min_population: u64,
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
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem, at a position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a policy was rejected: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.source, d.line, d.column, d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

struct Diags<'a> {
    text: &'a str,
    out: Vec<(usize, Diagnostic)>,
}

impl Diags<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.out.push((
            span.start,
            Diagnostic {
                line,
                column,
                message: message.into(),
            },
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

/// Parses `90s`, `15m`, `24h`, `30d`, `2w` and sums like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::zero());
    }
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: a number must come before {c:?}"))?;
        num.clear();
        let d = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {c:?} (use s, m, h, d, w)"
                ))
            }
        }
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
        total += d;
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: a unit must follow {num} (s, m, h, d, w)"
        ));
    }
    Ok(total)
}

/// Formats a duration the way policies write it (`30d`, `24h`, `1h30m`).
pub fn fmt_duration(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Raw file form
// ---------------------------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default, rename = "connector")]
    connectors: Vec<RawConnector>,
    #[serde(default, rename = "profile")]
    profiles: Vec<RawProfile>,
    contractor: Option<RawContractor>,
    #[serde(default)]
    sod: Vec<RawSod>,
    #[serde(default)]
    sla: BTreeMap<String, S<String>>,
    blast_radius: Option<RawBlast>,
    #[serde(default, rename = "source")]
    sources: Vec<RawSource>,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    notify: RawNotify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    #[serde(default)]
    security: Vec<S<String>>,
    #[serde(default)]
    security_groups: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    extensions: Vec<S<String>>,
    start_date_attribute: Option<S<String>>,
    end_date_attribute: Option<S<String>>,
    status_attribute: Option<S<String>>,
    #[serde(default)]
    terminated_values: Vec<String>,
    sponsor_attribute: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: S<String>,
    #[serde(rename = "type")]
    kind: S<String>,
    settings: Option<S<toml::Table>>,
    credentials: Option<S<BTreeMap<String, SecretRef>>>,
    account_key: Option<S<String>>,
    attributes: Option<Vec<S<String>>>,
    #[serde(default)]
    on_leave: OnLeave,
    #[serde(default = "yes")]
    transfer_ownership: bool,
    description: Option<String>,
    #[serde(default)]
    owners: Vec<S<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    connector: S<String>,
    kind: Option<String>,
    id: Option<String>,
    role: Option<String>,
    #[serde(default)]
    approval: Approval,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    owners: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: S<String>,
    description: Option<String>,
    #[serde(rename = "match")]
    match_expr: Option<S<String>>,
    #[serde(default)]
    include: Vec<S<String>>,
    #[serde(default)]
    grants: Vec<S<RawGrant>>,
    overlap: Option<S<String>>,
    #[serde(default)]
    contractors: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContractor {
    #[serde(rename = "match")]
    match_expr: S<String>,
    profile: S<String>,
    #[serde(default)]
    exclude_connectors: Vec<S<String>>,
    reminders: Option<Vec<S<String>>>,
    max_extension: Option<S<String>>,
    #[serde(default)]
    owners: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntRef {
    connector: S<String>,
    kind: String,
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSod {
    name: S<String>,
    a: RawEntRef,
    b: RawEntRef,
    action: SodAction,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlast {
    max_share: S<f64>,
    window: S<String>,
    #[serde(default = "default_min_population")]
    min_population: u64,
}

fn default_min_population() -> u64 {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    client: S<String>,
    owns: Vec<S<String>>,
    #[serde(default)]
    on_conflict: OnConflict,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    smtp_url: Option<String>,
    from: Option<String>,
    #[serde(default)]
    security: Vec<String>,
    #[serde(default)]
    helpdesk: Vec<String>,
    #[serde(default)]
    approvers: BTreeMap<String, Vec<String>>,
    link_base_url: Option<String>,
    link_secret: Option<SecretRef>,
    link_ttl: Option<S<String>>,
}

// ---------------------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------------------

const EVENT_TYPES: &[&str] = &[
    "joiner",
    "mover",
    "leaver",
    "rehire",
    "contractor-expiry",
    "update",
];

/// Checks attribute paths against the User schemas and the declared extensions.
struct AttrChecker {
    schema: scim_schema::schema::ResourceSchema,
    enterprise: Option<scim_schema::schema::Schema>,
    extensions: Vec<String>,
}

impl AttrChecker {
    fn new(extensions: &[String]) -> Self {
        let registry = scim_schema::schema::SchemaRegistry::core();
        let schema = registry
            .resource_schema("User")
            .expect("the core registry defines User");
        let enterprise = registry
            .schema(scim_schema::schema::core::ENTERPRISE_USER)
            .cloned();
        AttrChecker {
            schema,
            enterprise,
            extensions: extensions.to_vec(),
        }
    }

    /// `None` when `path` names a User attribute (or one under a declared extension).
    fn check(&self, path: &AttrPath) -> Option<String> {
        let urn = path.urn.as_ref().map(|u| u.as_str());
        if let Some(urn) = urn {
            if self.extensions.iter().any(|e| e.eq_ignore_ascii_case(urn)) {
                return None;
            }
        }
        let ent = self.enterprise.as_ref();
        let is_ent = |u: &str| ent.is_some_and(|e| e.id.eq_str(u));
        let def = match urn {
            Some(u) if is_ent(u) => ent.and_then(|e| e.attribute(path.name.as_str())),
            Some(u) if self.schema.schema(u).is_none() => {
                return Some(format!(
                    "unknown schema {u:?}: declare custom extensions in [settings] extensions"
                ))
            }
            _ => self
                .schema
                .top_level(urn, path.name.as_str())
                .map(|(_, d)| d)
                .or_else(|| {
                    urn.is_none()
                        .then(|| ent.and_then(|e| e.attribute(path.name.as_str())))
                        .flatten()
                }),
        };
        match def {
            None => Some(format!("unknown user attribute {:?}", path.name.as_str())),
            Some(def) => match &path.sub_attr {
                Some(sub)
                    if !def.sub_attributes.is_empty()
                        && !def
                            .sub_attributes
                            .iter()
                            .any(|s| s.name.eq_str(sub.as_str())) =>
                {
                    Some(format!(
                        "unknown sub-attribute {:?} of {:?}",
                        sub.as_str(),
                        path.name.as_str()
                    ))
                }
                _ => None,
            },
        }
    }

    /// Checks a path written as text (`department`, `urn:…:costCenter`).
    fn check_text(&self, text: &str) -> Option<String> {
        match scim_schema::filter::parse_attr_path(text) {
            Ok(p) => self.check(&p),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Checks an attribute a `[[source]]` owns and resolves it to where it lives in a stored
    /// document: core attributes without a URN, extension attributes under their URN (an
    /// enterprise attribute written without its URN gets it, as filters resolve it). Refuses what
    /// no client can own: read-only attributes (`id`, `meta`, `groups`), `externalId` (each client
    /// keeps its own) and a sub-attribute of a multi-valued attribute (ownership is per value
    /// there, which the policy cannot name: own the whole attribute).
    fn resolve_owned(&self, text: &str) -> Result<AttrPath, String> {
        if let Some(msg) = self.check_text(text) {
            return Err(msg);
        }
        let mut path = scim_schema::filter::parse_attr_path(text).map_err(|e| e.to_string())?;
        let name = path.name.as_str().to_string();
        let core = scim_schema::schema::core::USER;
        let enterprise = self.enterprise.as_ref();
        let def = match path.urn.as_ref().map(|u| u.as_str().to_string()) {
            Some(u) if u.eq_ignore_ascii_case(core) => {
                path.urn = None;
                self.schema.main_attribute(&name)
            }
            Some(u) if enterprise.is_some_and(|e| e.id.eq_str(&u)) => {
                enterprise.and_then(|e| e.attribute(&name))
            }
            // A declared custom extension: its attributes are not known here.
            Some(_) => None,
            None => match self.schema.main_attribute(&name) {
                Some(def) => Some(def),
                None => {
                    let e = enterprise.ok_or_else(|| format!("unknown user attribute {name:?}"))?;
                    path.urn = Some(scim_schema::name::CiString::new(e.id.as_str()));
                    e.attribute(&name)
                }
            },
        };
        if name.eq_ignore_ascii_case("externalId") && path.urn.is_none() {
            return Err("externalId cannot be owned: each client keeps its own".into());
        }
        if let Some(def) = def {
            if def.mutability == scim_schema::schema::Mutability::ReadOnly {
                return Err(format!(
                    "{name} is read-only (the server sets it), so no client can own it"
                ));
            }
            if def.multi_valued && path.sub_attr.is_some() {
                return Err(format!(
                    "{name} is multi-valued: own the whole attribute ({name}), not one of its \
                     sub-attributes"
                ));
            }
        }
        Ok(path)
    }
}

/// Whether one owned path covers the other (the same attribute, or an attribute and one of its
/// sub-attributes): two sources may not own overlapping paths.
fn owned_paths_overlap(a: &AttrPath, b: &AttrPath) -> bool {
    let same_urn = match (&a.urn, &b.urn) {
        (None, None) => true,
        (Some(x), Some(y)) => x.eq_str(y.as_str()),
        _ => false,
    };
    same_urn
        && a.name.eq_str(b.name.as_str())
        && match (&a.sub_attr, &b.sub_attr) {
            (Some(x), Some(y)) => x.eq_str(y.as_str()),
            _ => true,
        }
}

/// Checks a list of userNames (owners, approvers): none blank, none twice.
fn check_user_names(d: &mut Diags<'_>, names: &[S<String>], what: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let name = n.get_ref().trim();
        if name.is_empty() {
            d.at(n.span(), format!("{what}: a userName cannot be empty"));
        } else if out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            d.at(n.span(), format!("{what}: {name:?} is listed twice"));
        } else {
            out.push(name.to_string());
        }
    }
    out
}

/// Collects attribute paths of a filter.
struct Paths(Vec<AttrPath>);

impl FilterFold for Paths {
    type Output = ();
    fn compare(&mut self, scope: Option<&AttrPath>, path: &AttrPath, _: CompareOp, _: &CompValue) {
        if scope.is_none() {
            self.0.push(path.clone());
        }
    }
    fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) {
        if scope.is_none() {
            self.0.push(path.clone());
        }
    }
    fn and(&mut self, _: (), _: ()) {}
    fn or(&mut self, _: (), _: ()) {}
    fn not(&mut self, _: ()) {}
    fn value_path(&mut self, path: &AttrPath, _: ()) {
        self.0.push(path.clone());
    }
}

/// The span of a TOML string's content (after the opening quote(s)).
fn content_start(text: &str, span: &Range<usize>) -> usize {
    let s = &text[span.start.min(text.len())..span.end.min(text.len())];
    let quote = if s.starts_with("'''") || s.starts_with("\"\"\"") {
        3
    } else if s.starts_with('\'') || s.starts_with('"') {
        1
    } else {
        0
    };
    span.start + quote
}

fn check_filter(
    d: &mut Diags<'_>,
    attrs: &AttrChecker,
    expr: &S<String>,
    what: &str,
) -> Option<Filter> {
    let text = d.text;
    match parse_filter(expr.get_ref()) {
        Ok(f) => {
            let mut paths = Paths(Vec::new());
            fold(&mut paths, &f);
            let mut ok = true;
            for p in &paths.0 {
                if let Some(msg) = attrs.check(p) {
                    d.at(expr.span(), format!("{what}: {msg}"));
                    ok = false;
                }
            }
            ok.then_some(f)
        }
        Err(e) => {
            let msg = e.to_string();
            // Point at the byte inside the expression where the parser stopped.
            let byte = msg
                .rsplit_once("at byte ")
                .and_then(|(_, r)| {
                    r.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<usize>().ok())
                })
                .unwrap_or(0);
            let start = content_start(text, &expr.span()) + byte;
            d.at(start..start, format!("{what}: {msg}"));
            None
        }
    }
}

fn duration_at(d: &mut Diags<'_>, s: &S<String>) -> Option<Duration> {
    match parse_duration(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            d.at(s.span(), e);
            None
        }
    }
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

const DEFAULT_ACCOUNT_ATTRIBUTES: &[&str] = &[
    "userName",
    "name",
    "displayName",
    "emails",
    "title",
    "externalId",
];

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source: source.clone(),
            diagnostics: vec![Diagnostic {
                line: 1,
                column: 1,
                message: format!("cannot read the policy: {e}"),
            }],
        })?;
        Policy::parse(&text, &source)
    }

    /// Parses and checks policy text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Policy, PolicyError> {
        let fail = |diagnostics: Vec<Diagnostic>| PolicyError {
            source: source.to_string(),
            diagnostics,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            fail(vec![Diagnostic {
                line,
                column,
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut d = Diags {
            text,
            out: Vec::new(),
        };
        let policy = check(raw, &mut d, source);
        if d.out.is_empty() {
            Ok(policy)
        } else {
            d.out.sort_by_key(|(at, _)| *at);
            Err(fail(d.out.into_iter().map(|(_, x)| x).collect()))
        }
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
            blast_radius: None,
            sources: BTreeMap::new(),
            approvals: ApproverSettings::default(),
            notify: NotifySettings {
                from: "scimhub@localhost".into(),
                link_ttl: Duration::days(7),
                ..Default::default()
            },
        }
    }
}

fn check(raw: RawPolicy, d: &mut Diags<'_>, source: &str) -> Policy {
    // Settings and the attribute checker first: profiles use them.
    let extensions: Vec<String> = raw
        .settings
        .extensions
        .iter()
        .map(|e| e.get_ref().clone())
        .collect();
    for e in &raw.settings.extensions {
        if !e.get_ref().starts_with("urn:") {
            d.at(
                e.span(),
                format!("extension {:?} is not a URN", e.get_ref()),
            );
        }
    }
    let attrs = AttrChecker::new(&extensions);
    let mut attr_setting = |s: &Option<S<String>>, what: &str| -> Option<String> {
        let s = s.as_ref()?;
        if let Some(msg) = attrs.check_text(s.get_ref()) {
            d.at(s.span(), format!("{what}: {msg}"));
        }
        Some(s.get_ref().clone())
    };
    let settings = Settings {
        start_date_attribute: attr_setting(
            &raw.settings.start_date_attribute,
            "start_date_attribute",
        ),
        end_date_attribute: attr_setting(&raw.settings.end_date_attribute, "end_date_attribute"),
        status_attribute: attr_setting(&raw.settings.status_attribute, "status_attribute"),
        sponsor_attribute: attr_setting(&raw.settings.sponsor_attribute, "sponsor_attribute"),
        terminated_values: if raw.settings.terminated_values.is_empty() {
            vec!["terminated".into()]
        } else {
            raw.settings.terminated_values.clone()
        },
        extensions,
    };

    // Security approvers (grants and SoD rules that need them are checked against this).
    let approvals = ApproverSettings {
        security: check_user_names(d, &raw.approvals.security, "[approvals] security"),
        security_groups: {
            let mut groups: Vec<String> = Vec::new();
            for g in &raw.approvals.security_groups {
                let name = g.get_ref().trim();
                if name.is_empty() {
                    d.at(
                        g.span(),
                        "[approvals] security_groups: a group name cannot be empty",
                    );
                } else if groups.iter().any(|x| x.eq_ignore_ascii_case(name)) {
                    d.at(
                        g.span(),
                        format!("[approvals] security_groups: {name:?} is listed twice"),
                    );
                } else {
                    groups.push(name.to_string());
                }
            }
            groups
        },
    };
    let no_security = |what: &str| {
        format!(
            "{what} needs security approvers: declare them in [approvals] security (userNames) or \
             security_groups"
        )
    };

    // Connectors.
    let mut connectors = BTreeMap::new();
    // Entitlement kinds each connector accepts (`None`: any).
    let mut entitlement_kinds: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    for c in raw.connectors {
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
        if connectors.contains_key(&name) {
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
        let kind = c.kind.get_ref().as_str();
        if CONNECTOR_TYPES.contains(&kind) {
            match connector_config::ConnectorConfig::parse(kind, &settings_json) {
                Ok(cfg) => {
                    entitlement_kinds.insert(name.clone(), cfg.entitlement_kinds());
                }
                Err(e) => {
                    let at = match &c.settings {
                        Some(s) => {
                            let span = s.span();
                            let slice =
                                &d.text[span.start.min(d.text.len())..span.end.min(d.text.len())];
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
                }
            }
            let at = c
                .credentials
                .as_ref()
                .map(|s| s.span())
                .unwrap_or_else(|| c.name.span());
            for msg in connector_config::ConnectorConfig::check_credentials(kind, &credentials) {
                d.at(at.clone(), format!("connector {name:?}: {msg}"));
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
        connectors.insert(
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
            },
        );
    }
    let known_connector = |d: &mut Diags<'_>, s: &S<String>| -> bool {
        if connectors.contains_key(s.get_ref()) {
            true
        } else {
            d.at(s.span(), format!("unknown connector {:?}", s.get_ref()));
            false
        }
    };

    // Profiles.
    let mut profiles: Vec<Profile> = Vec::new();
    let mut spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut includes: Vec<(String, Vec<S<String>>)> = Vec::new();
    for p in raw.profiles {
        let name = p.name.get_ref().clone();
        if spans.contains_key(&name) {
            d.at(p.name.span(), format!("duplicate profile {name:?}"));
            continue;
        }
        spans.insert(name.clone(), p.name.span());
        let filter = p
            .match_expr
            .as_ref()
            .and_then(|m| check_filter(d, &attrs, m, "match"));
        let mut grants = Vec::new();
        for g in &p.grants {
            let span = g.span();
            let g = g.get_ref();
            known_connector(d, &g.connector);
            let entitlement = match (&g.kind, &g.id) {
                (Some(k), Some(i)) => {
                    if let Some(Some(kinds)) = entitlement_kinds.get(g.connector.get_ref()) {
                        if !kinds.iter().any(|x| x == k) {
                            d.at(
                                span.clone(),
                                format!(
                                    "connector {:?} has no entitlement kind {k:?} (it knows {})",
                                    g.connector.get_ref(),
                                    if kinds.is_empty() {
                                        "none".to_string()
                                    } else {
                                        kinds.join(", ")
                                    }
                                ),
                            );
                        }
                    }
                    let e = Entitlement::new(k.clone(), i.clone());
                    Some(match &g.role {
                        Some(r) => e.with_role(r.clone()),
                        None => e,
                    })
                }
                (None, None) if g.role.is_none() => None,
                _ => {
                    d.at(
                        span.clone(),
                        "a grant needs both kind and id (or neither, for the account alone)",
                    );
                    None
                }
            };
            let owners = check_user_names(d, &g.owners, "grant owners");
            match g.approval {
                Approval::Owner
                    if owners.is_empty()
                        && connectors
                            .get(g.connector.get_ref())
                            .is_some_and(|c: &ConnectorDef| c.owners.is_empty()) =>
                {
                    d.at(
                        span.clone(),
                        format!(
                            "approval = \"owner\" needs an owner: declare owners = [userNames] on \
                             this grant or on connector {:?}",
                            g.connector.get_ref()
                        ),
                    );
                }
                Approval::Security if !approvals.has_security() => {
                    d.at(span.clone(), no_security("approval = \"security\""));
                }
                _ => {}
            }
            grants.push(Grant {
                connector: g.connector.get_ref().clone(),
                entitlement,
                approval: g.approval,
                privileged: g.privileged,
                owners,
            });
        }
        let overlap = p
            .overlap
            .as_ref()
            .and_then(|o| duration_at(d, o))
            .unwrap_or_else(Duration::zero);
        includes.push((name.clone(), p.include.clone()));
        profiles.push(Profile {
            name,
            description: p.description,
            match_expr: p.match_expr.map(|m| m.into_inner()),
            filter,
            include: p.include.iter().map(|i| i.get_ref().clone()).collect(),
            grants,
            overlap,
            contractors: p.contractors,
        });
    }
    for (_, inc) in &includes {
        for i in inc {
            if !spans.contains_key(i.get_ref()) {
                d.at(
                    i.span(),
                    format!("unknown profile {:?} in include", i.get_ref()),
                );
            }
        }
    }
    // Include cycles (depth-first, reporting each cycle once at the profile that closes it).
    {
        let graph: BTreeMap<&str, Vec<&str>> = profiles
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.include.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let mut reported = BTreeSet::new();
        for p in &profiles {
            let mut path = vec![p.name.as_str()];
            if let Some(cycle) = find_cycle(&graph, &mut path) {
                let key: BTreeSet<&str> = cycle.iter().copied().collect();
                if reported.insert(key) {
                    let span = spans.get(p.name.as_str()).cloned().unwrap_or(0..0);
                    d.at(span, format!("include cycle: {}", cycle.join(" -> ")));
                }
            }
        }
    }

    // Contractors.
    let contractor = raw.contractor.and_then(|c| {
        let filter = check_filter(d, &attrs, &c.match_expr, "contractor match");
        if !spans.contains_key(c.profile.get_ref()) {
            d.at(
                c.profile.span(),
                format!("unknown profile {:?}", c.profile.get_ref()),
            );
        }
        for x in &c.exclude_connectors {
            known_connector(d, x);
        }
        let reminders = match &c.reminders {
            Some(list) => list.iter().filter_map(|r| duration_at(d, r)).collect(),
            None => vec![Duration::days(30), Duration::days(7), Duration::hours(24)],
        };
        let max_extension = c
            .max_extension
            .as_ref()
            .and_then(|m| duration_at(d, m))
            .unwrap_or_else(|| Duration::days(90));
        let owners = check_user_names(d, &c.owners, "[contractor] owners");
        if owners.is_empty()
            && raw.settings.sponsor_attribute.is_none()
            && !approvals.has_security()
        {
            d.at(
                c.match_expr.span(),
                "[contractor]: nobody could decide contract extensions: set [settings] \
                 sponsor_attribute, [contractor] owners or [approvals] security",
            );
        }
        Some(ContractorRules {
            match_expr: c.match_expr.get_ref().clone(),
            filter: filter?,
            profile: c.profile.get_ref().clone(),
            exclude_connectors: c
                .exclude_connectors
                .iter()
                .map(|x| x.get_ref().clone())
                .collect(),
            reminders,
            max_extension,
            owners,
        })
    });

    // Separation of duties.
    let mut sod = Vec::new();
    let mut sod_names = BTreeSet::new();
    for r in raw.sod {
        if !sod_names.insert(r.name.get_ref().clone()) {
            d.at(
                r.name.span(),
                format!("duplicate sod rule {:?}", r.name.get_ref()),
            );
        }
        known_connector(d, &r.a.connector);
        known_connector(d, &r.b.connector);
        if r.action == SodAction::Approval && !approvals.has_security() {
            d.at(
                r.name.span(),
                no_security("a SoD rule with action = \"approval\""),
            );
        }
        let ent = |e: RawEntRef| EntRef {
            connector: e.connector.into_inner(),
            kind: e.kind,
            id: e.id,
        };
        sod.push(SodRule {
            name: r.name.into_inner(),
            a: ent(r.a),
            b: ent(r.b),
            action: r.action,
        });
    }

    // SLAs.
    let mut sla = BTreeMap::new();
    for (event, v) in &raw.sla {
        if !EVENT_TYPES.contains(&event.as_str()) {
            d.at(
                v.span(),
                format!(
                    "unknown event type {event:?} (one of {})",
                    EVENT_TYPES.join(", ")
                ),
            );
        }
        if let Some(dur) = duration_at(d, v) {
            sla.insert(event.clone(), dur);
        }
    }

    let blast_radius = raw.blast_radius.and_then(|b| {
        let share = *b.max_share.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            d.at(b.max_share.span(), "max_share must be in (0, 1]");
        }
        let window = duration_at(d, &b.window)?;
        Some(BlastRadius {
            max_share: share,
            window,
            min_population: b.min_population,
        })
    });

    let mut sources: BTreeMap<String, SourceRule> = BTreeMap::new();
    for s in raw.sources {
        if sources.contains_key(s.client.get_ref()) {
            d.at(
                s.client.span(),
                format!("duplicate source {:?}", s.client.get_ref()),
            );
            continue;
        }
        let mut owns: Vec<OwnedAttribute> = Vec::new();
        for o in &s.owns {
            let path = match attrs.resolve_owned(o.get_ref()) {
                Ok(p) => p,
                Err(msg) => {
                    d.at(o.span(), format!("owns: {msg}"));
                    continue;
                }
            };
            // One owner per attribute: two sources of truth for one value would fight.
            let earlier = sources
                .values()
                .flat_map(|r| r.owns.iter().map(move |a| (r.client.as_str(), a)))
                .chain(owns.iter().map(|a| (s.client.get_ref().as_str(), a)))
                .find(|(_, a)| owned_paths_overlap(&a.path, &path));
            if let Some((client, a)) = earlier {
                d.at(
                    o.span(),
                    format!(
                        "owns: {:?} is already owned by source {client:?} (as {:?})",
                        o.get_ref(),
                        a.written
                    ),
                );
                continue;
            }
            owns.push(OwnedAttribute {
                written: o.get_ref().clone(),
                path,
            });
        }
        sources.insert(
            s.client.get_ref().clone(),
            SourceRule {
                client: s.client.into_inner(),
                owns,
                on_conflict: s.on_conflict,
            },
        );
    }

    for level in raw.notify.approvers.keys() {
        if !["manager", "owner", "security"].contains(&level.as_str()) {
            d.at(0..0, format!("[notify.approvers]: unknown level {level:?}"));
        }
    }
    let link_ttl = raw
        .notify
        .link_ttl
        .as_ref()
        .and_then(|t| duration_at(d, t))
        .unwrap_or_else(|| Duration::days(7));
    let notify = NotifySettings {
        smtp_url: raw.notify.smtp_url,
        from: raw
            .notify
            .from
            .unwrap_or_else(|| "scimhub@localhost".into()),
        security: raw.notify.security,
        helpdesk: raw.notify.helpdesk,
        approvers: raw.notify.approvers,
        link_base_url: raw.notify.link_base_url,
        link_secret: raw.notify.link_secret,
        link_ttl,
    };

    Policy {
        source: source.to_string(),
        settings,
        connectors,
        profiles,
        contractor,
        sod,
        sla,
        blast_radius,
        sources,
        approvals,
        notify,
    }
}

fn find_cycle<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let last = *path.last()?;
    for next in graph.get(last).into_iter().flatten() {
        if let Some(pos) = path.iter().position(|p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return Some(cycle);
        }
        if path.len() > graph.len() {
            return None;
        }
        path.push(next);
        if let Some(c) = find_cycle(graph, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

#[cfg(test)]
mod tests;
