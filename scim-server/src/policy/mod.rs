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
//! ```
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
/// [`crate::engine::registry`]).
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
    pub notify: NotifySettings,
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

#[derive(Debug, Clone)]
pub struct SourceRule {
    pub client: String,
    pub owns: Vec<String>,
    pub on_conflict: OnConflict,
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
    notify: RawNotify,
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
                        span,
                        "a grant needs both kind and id (or neither, for the account alone)",
                    );
                    None
                }
            };
            grants.push(Grant {
                connector: g.connector.get_ref().clone(),
                entitlement,
                approval: g.approval,
                privileged: g.privileged,
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

    let mut sources = BTreeMap::new();
    for s in raw.sources {
        if sources.contains_key(s.client.get_ref()) {
            d.at(
                s.client.span(),
                format!("duplicate source {:?}", s.client.get_ref()),
            );
        }
        for o in &s.owns {
            if let Some(msg) = attrs.check_text(o.get_ref()) {
                d.at(o.span(), format!("owns: {msg}"));
            }
        }
        sources.insert(
            s.client.get_ref().clone(),
            SourceRule {
                client: s.client.into_inner(),
                owns: s.owns.into_iter().map(|o| o.into_inner()).collect(),
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
