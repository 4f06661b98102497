//! `desired(user, groups, policy, now, approvals, overrides, grants)`: what a person should
//! have, per connector. Pure: no database, no clock, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use connectors::Entitlement;
use scim_schema::filter::matches;
use scim_schema::json::get_ci;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::policy::{Approval, OnLeave, Policy, SodAction};

pub type Doc = Map<String, Value>;

/// Where the person is in their lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Lifecycle {
    Active,
    /// Start date in the future: nothing yet.
    NotStarted {
        start: DateTime<Utc>,
    },
    /// `active = false`, a terminated status, or deleted.
    Left {
        reason: String,
    },
    /// A contractor past their end date.
    Expired {
        end: DateTime<Utc>,
    },
}

impl Lifecycle {
    /// The value stored in `engine_users.state`.
    pub fn state_name(&self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::NotStarted { .. } => "not_started",
            Lifecycle::Left { .. } => "left",
            Lifecycle::Expired { .. } => "expired",
        }
    }
}

/// What one connector should hold for the person. `enabled = false` means "no usable account":
/// an existing one is disabled (or deleted when `exists = false`) and stripped of entitlements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredAccount {
    pub exists: bool,
    pub enabled: bool,
    /// The account key (login) derived from the connector's `account_key` attribute.
    pub key: Option<String>,
    pub attributes: Doc,
    pub entitlements: BTreeSet<Entitlement>,
}

/// An entitlement the profiles grant but that waits for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeedsApproval {
    pub connector: String,
    pub entitlement: Entitlement,
    pub level: Approval,
    pub profile: String,
}

/// A separation-of-duties rule the person would break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SodFinding {
    pub rule: String,
    pub action: SodAction,
    /// The entitlement withheld (the rule's `b` side).
    pub connector: String,
    pub withheld: Entitlement,
}

/// A profile that applies, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matched {
    pub profile: String,
    /// `match` expression that matched, or the profile that included this one, or "contractor".
    pub because: String,
}

/// Approvals that are decided: approved entitlements (with the level each request was asked
/// at) and approved SoD exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    pub approved: BTreeSet<(String, Entitlement, Approval)>,
    pub sod_approved: BTreeSet<String>,
}

impl Approvals {
    /// Whether an approved request lets `connector`'s `e` be granted where the policy asks for
    /// `level`: one asked at that level or a stricter one (`manager` < `owner` < `security`, the
    /// order [`desired`] picks the strictest by). A manager's approval never stands in for the
    /// security approvers': two profiles may grant one entitlement at different levels, and a
    /// mover may come under the stricter one later.
    pub fn covers(&self, connector: &str, e: &Entitlement, level: Approval) -> bool {
        self.approved
            .iter()
            .any(|(c, x, l)| c == connector && x == e && *l >= level)
    }
}

/// Legacy access kept for a while (mover overlap windows, manager extensions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub connector: String,
    pub entitlement: Entitlement,
    pub until: DateTime<Utc>,
}

/// A time-bound emergency grant in force (`engine_grants`, state active): its entitlement is
/// wanted until `expires`, whatever the profiles say, while the person is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmergencyGrant {
    pub id: String,
    pub connector: String,
    pub entitlement: Entitlement,
    pub expires: DateTime<Utc>,
}

/// An entitlement a certification revoked (`engine_revocations`): left out of the desired
/// state while the user's matched profiles are `profiles` (those it was revoked under); a role
/// change ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    pub connector: String,
    pub entitlement: Entitlement,
    /// The matched profile names when it was revoked, sorted.
    pub profiles: Vec<String>,
}

/// Leaves the revoked entitlements out of `d` (and out of what overrides kept), unless the
/// user's role changed since (their matched profiles differ from those of the revocation).
/// Returns the revocations applied.
pub fn apply_revocations(d: &mut Desired, revocations: &[Revocation]) -> Vec<Revocation> {
    let mut now: Vec<String> = d.profile_names();
    now.sort();
    let mut applied = Vec::new();
    for r in revocations {
        if r.profiles != now {
            continue;
        }
        if let Some(acc) = d.accounts.get_mut(&r.connector) {
            if acc.entitlements.remove(&r.entitlement) {
                applied.push(r.clone());
            }
        }
        d.kept
            .retain(|o| !(o.connector == r.connector && o.entitlement == r.entitlement));
    }
    if !applied.is_empty() {
        d.notes.push(format!(
            "{} entitlement(s) revoked by a certification",
            applied.len()
        ));
    }
    applied
}

/// The result of [`desired`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    pub lifecycle: Lifecycle,
    pub contractor: bool,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub matched: Vec<Matched>,
    pub accounts: BTreeMap<String, DesiredAccount>,
    pub needs_approval: Vec<NeedsApproval>,
    pub sod: Vec<SodFinding>,
    /// Legacy entitlements kept by an override.
    pub kept: Vec<Override>,
    /// Emergency grants whose entitlement is wanted (in force, not withheld by a SoD rule, on a
    /// connector the person may have).
    pub granted: Vec<EmergencyGrant>,
    /// Why some grant could not apply (no account key, excluded for contractors…).
    pub notes: Vec<String>,
    /// Every entitlement the matched profiles grant, with the approval it needs: `none` when
    /// one of them grants it without, else the strictest level they ask. An approval on record
    /// that this no longer asks for has ended its use (the planner ends it).
    #[serde(skip)]
    pub grant_levels: BTreeMap<(String, Entitlement), Approval>,
    /// The SoD rules both of whose sides the person would hold, before any rule withholds
    /// anything (an emergency grant's side included).
    #[serde(skip)]
    pub sod_rules_met: BTreeSet<String>,
}

impl Desired {
    pub fn profile_names(&self) -> Vec<String> {
        self.matched.iter().map(|m| m.profile.clone()).collect()
    }
}

/// The value at an attribute path written as in policies (`title`, `name.givenName`,
/// `urn:…:enterprise:2.0:User:manager.value`, `urn:…:acme:2.0:User:costCenter`).
pub fn attr_value<'a>(doc: &'a Doc, path: &str) -> Option<&'a Value> {
    let p = scim_schema::filter::parse_attr_path(path).ok()?;
    let container: &Doc = match &p.urn {
        Some(urn)
            if !urn
                .as_str()
                .eq_ignore_ascii_case(scim_schema::schema::core::USER) =>
        {
            get_ci(doc, urn.as_str())?.as_object()?
        }
        _ => doc,
    };
    let top = get_ci(container, p.name.as_str()).or_else(|| {
        if p.urn.is_some() {
            return None;
        }
        // Unqualified extension attributes, as filters resolve them.
        doc.iter()
            .filter(|(k, _)| k.starts_with("urn:"))
            .find_map(|(_, v)| v.as_object().and_then(|o| get_ci(o, p.name.as_str())))
    })?;
    match &p.sub_attr {
        Some(sub) => get_ci(top.as_object()?, sub.as_str()),
        None => Some(top),
    }
}

/// The string at a path.
pub fn attr_str<'a>(doc: &'a Doc, path: &str) -> Option<&'a str> {
    attr_value(doc, path).and_then(Value::as_str)
}

/// Parses a date (`2025-03-01`) or date-time (RFC 3339); a date means midnight UTC.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The user document with `groups` as `[{value, display}]`, so `match` can use
/// `groups.display eq "Finance"`.
pub fn with_groups(doc: &Doc, groups: &[(String, Option<String>)]) -> Doc {
    let mut d = doc.clone();
    if !groups.is_empty() {
        let arr = groups
            .iter()
            .map(|(id, display)| {
                let mut g = Map::new();
                g.insert("value".into(), Value::String(id.clone()));
                if let Some(n) = display {
                    g.insert("display".into(), Value::String(n.clone()));
                }
                Value::Object(g)
            })
            .collect();
        d.insert("groups".into(), Value::Array(arr));
    }
    d
}

/// The lifecycle facts of a user document.
pub fn lifecycle(
    user: Option<&Doc>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> (
    Lifecycle,
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
) {
    let Some(doc) = user else {
        return (
            Lifecycle::Left {
                reason: "deleted".into(),
            },
            false,
            None,
            None,
        );
    };
    let contractor = policy
        .contractor
        .as_ref()
        .is_some_and(|c| matches(&c.filter, doc, None));
    let date = |attr: &Option<String>| {
        attr.as_deref()
            .and_then(|a| attr_str(doc, a))
            .and_then(parse_date)
    };
    let start = date(&policy.settings.start_date_attribute);
    let end = date(&policy.settings.end_date_attribute);
    let active = get_ci(doc, "active")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let terminated = policy
        .settings
        .status_attribute
        .as_deref()
        .and_then(|a| attr_str(doc, a))
        .is_some_and(|s| {
            policy
                .settings
                .terminated_values
                .iter()
                .any(|t| t.eq_ignore_ascii_case(s))
        });
    let state = if !active {
        Lifecycle::Left {
            reason: "inactive".into(),
        }
    } else if terminated {
        Lifecycle::Left {
            reason: "terminated".into(),
        }
    } else if let Some(end) = end.filter(|e| contractor && *e <= now) {
        Lifecycle::Expired { end }
    } else if let Some(start) = start.filter(|s| *s > now) {
        Lifecycle::NotStarted { start }
    } else {
        Lifecycle::Active
    };
    (state, contractor, start, end)
}

/// Adds the emergency grants in force to `want`, after the profiles' separation-of-duties
/// check: a grant never withholds a profile's entitlement. A grant whose entitlement would
/// break a SoD rule with what the person has (profiles, overrides or another grant) is itself
/// withheld, as a profile's `b` side is, unless the rule asks for approval and the exception
/// is approved; the finding makes planning ask for that exception (or record the block).
fn emergency_grants(
    out: &mut Desired,
    want: &mut BTreeMap<String, BTreeSet<Entitlement>>,
    policy: &Policy,
    now: DateTime<Utc>,
    approvals: &Approvals,
    grants: &[EmergencyGrant],
    excluded: &[&String],
) {
    let live: Vec<&EmergencyGrant> = grants
        .iter()
        .filter(|g| g.expires > now && policy.connectors.contains_key(&g.connector))
        .collect();
    for g in &live {
        if excluded.contains(&&g.connector) {
            out.notes.push(format!(
                "emergency grant {}: {} is excluded for contractors",
                g.id, g.connector
            ));
            continue;
        }
        // What the person would hold with every other grant in force.
        let holds = |r: &crate::policy::EntRef| {
            want.get(&r.connector)
                .is_some_and(|s| s.iter().any(|e| r.matches(&r.connector, e)))
                || live.iter().any(|o| {
                    o.id != g.id
                        && !excluded.contains(&&o.connector)
                        && r.matches(&o.connector, &o.entitlement)
                })
        };
        fn other_side<'r>(
            rule: &'r crate::policy::SodRule,
            g: &EmergencyGrant,
        ) -> Option<&'r crate::policy::EntRef> {
            if rule.a.matches(&g.connector, &g.entitlement) {
                Some(&rule.b)
            } else if rule.b.matches(&g.connector, &g.entitlement) {
                Some(&rule.a)
            } else {
                None
            }
        }
        // Met whether or not its exception is approved: an approved exception stays in use.
        for rule in &policy.sod {
            if other_side(rule, g).is_some_and(&holds) {
                out.sod_rules_met.insert(rule.name.clone());
            }
        }
        let broken = policy.sod.iter().find(|rule| {
            other_side(rule, g).is_some_and(&holds)
                && !(rule.action == SodAction::Approval
                    && approvals.sod_approved.contains(&rule.name))
        });
        if let Some(rule) = broken {
            out.sod.push(SodFinding {
                rule: rule.name.clone(),
                action: rule.action,
                connector: g.connector.clone(),
                withheld: g.entitlement.clone(),
            });
            continue;
        }
        want.entry(g.connector.clone())
            .or_default()
            .insert(g.entitlement.clone());
        out.granted.push((*g).clone());
    }
}

/// Which profiles apply to `doc` (with groups), with the reason, includes expanded.
pub fn matched_profiles(doc: &Doc, policy: &Policy, contractor: bool) -> Vec<Matched> {
    let mut out: Vec<Matched> = Vec::new();
    let push = |name: &str, because: String, out: &mut Vec<Matched>| {
        for (i, p) in policy.expand(name).into_iter().enumerate() {
            if out.iter().any(|m| m.profile == p.name) {
                continue;
            }
            out.push(Matched {
                profile: p.name.clone(),
                because: if i == 0 {
                    because.clone()
                } else {
                    format!("included by {name}")
                },
            });
        }
    };
    if contractor {
        if let Some(c) = &policy.contractor {
            push(
                &c.profile,
                format!("contractor: {}", c.match_expr),
                &mut out,
            );
        }
    }
    for p in &policy.profiles {
        let Some(f) = &p.filter else { continue };
        if contractor && !p.contractors {
            continue;
        }
        if matches(f, doc, None) {
            let expr = p.match_expr.clone().unwrap_or_default();
            push(&p.name, format!("match: {expr}"), &mut out);
        }
    }
    out
}

/// The attributes `attrs` (the connector's `attributes`) of a user document, as sent to an account.
pub fn account_attributes(doc: &Doc, attrs: &[String]) -> Doc {
    let mut out = Map::new();
    for a in attrs {
        if let Some(v) = attr_value(doc, a) {
            out.insert(a.clone(), v.clone());
        }
    }
    out
}

/// The desired state of one person. `user` is `None` when the resource was deleted; `groups`
/// are `(id, displayName)` of the groups the user belongs to (directly or not).
pub fn desired(
    user: Option<&Doc>,
    groups: &[(String, Option<String>)],
    policy: &Policy,
    now: DateTime<Utc>,
    approvals: &Approvals,
    overrides: &[Override],
    grants: &[EmergencyGrant],
) -> Desired {
    let (lifecycle, contractor, start_date, end_date) = lifecycle(user, policy, now);
    let doc = user.map(|u| with_groups(u, groups)).unwrap_or_default();
    let matched = if user.is_some() {
        matched_profiles(&doc, policy, contractor)
    } else {
        Vec::new()
    };
    let mut out = Desired {
        lifecycle: lifecycle.clone(),
        contractor,
        start_date,
        end_date,
        matched,
        accounts: BTreeMap::new(),
        needs_approval: Vec::new(),
        sod: Vec::new(),
        kept: Vec::new(),
        granted: Vec::new(),
        notes: Vec::new(),
        grant_levels: BTreeMap::new(),
        sod_rules_met: BTreeSet::new(),
    };
    // Every connector appears: wanted ones enabled, the others "no usable account".
    for (name, c) in &policy.connectors {
        out.accounts.insert(
            name.clone(),
            DesiredAccount {
                exists: c.on_leave == OnLeave::Disable,
                enabled: false,
                key: attr_str(&doc, &c.account_key).map(str::to_string),
                attributes: Map::new(),
                entitlements: BTreeSet::new(),
            },
        );
    }
    if lifecycle != Lifecycle::Active {
        return out;
    }
    let excluded: Vec<&String> = if contractor {
        policy
            .contractor
            .as_ref()
            .map(|c| c.exclude_connectors.iter().collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut want: BTreeMap<String, BTreeSet<Entitlement>> = BTreeMap::new();
    let mut gated: BTreeMap<(String, Entitlement), (Approval, String)> = BTreeMap::new();
    for m in &out.matched {
        let Some(p) = policy.profile(&m.profile) else {
            continue;
        };
        for g in &p.grants {
            if excluded.contains(&&g.connector) {
                out.notes.push(format!(
                    "{}: {} is excluded for contractors",
                    p.name, g.connector
                ));
                continue;
            }
            let set = want.entry(g.connector.clone()).or_default();
            let Some(e) = &g.entitlement else { continue };
            out.grant_levels
                .entry((g.connector.clone(), e.clone()))
                .and_modify(|l| {
                    *l = match (*l, g.approval) {
                        (Approval::None, _) | (_, Approval::None) => Approval::None,
                        (a, b) => a.max(b),
                    }
                })
                .or_insert(g.approval);
            if g.approval == Approval::None {
                set.insert(e.clone());
                continue;
            }
            // Profiles that grant the same entitlement at different levels: the strictest
            // decides (the first profile asking it names the request).
            let slot = gated
                .entry((g.connector.clone(), e.clone()))
                .or_insert_with(|| (g.approval, p.name.clone()));
            if g.approval > slot.0 {
                *slot = (g.approval, p.name.clone());
            }
        }
    }
    for ((connector, e), (level, profile)) in gated {
        let set = want.entry(connector.clone()).or_default();
        // A profile that grants it without approval has granted it already.
        if set.contains(&e) {
            continue;
        }
        if approvals.covers(&connector, &e, level) {
            set.insert(e);
            continue;
        }
        out.needs_approval.push(NeedsApproval {
            connector,
            entitlement: e,
            level,
            profile,
        });
    }
    for o in overrides {
        if o.until > now && !excluded.contains(&&o.connector) {
            let set = want.entry(o.connector.clone()).or_default();
            if set.insert(o.entitlement.clone()) {
                out.kept.push(o.clone());
            }
        }
    }
    // The rules the person meets, judged on what they would hold before any rule withholds
    // anything: a rule whose `b` side another rule withholds still applies to them.
    let held = |want: &BTreeMap<String, BTreeSet<Entitlement>>, r: &crate::policy::EntRef| {
        want.get(&r.connector)
            .is_some_and(|s| s.iter().any(|e| r.matches(&r.connector, e)))
    };
    for rule in &policy.sod {
        if held(&want, &rule.a) && held(&want, &rule.b) {
            out.sod_rules_met.insert(rule.name.clone());
        }
    }
    // Separation of duties: the `b` side is withheld unless an exception is approved.
    for rule in &policy.sod {
        let has = |r: &crate::policy::EntRef| {
            want.get(&r.connector)
                .is_some_and(|s| s.iter().any(|e| r.matches(&r.connector, e)))
        };
        if has(&rule.a) && has(&rule.b) {
            if rule.action == SodAction::Approval && approvals.sod_approved.contains(&rule.name) {
                continue;
            }
            if let Some(set) = want.get_mut(&rule.b.connector) {
                let withheld: Vec<Entitlement> = set
                    .iter()
                    .filter(|e| rule.b.matches(&rule.b.connector, e))
                    .cloned()
                    .collect();
                for e in withheld {
                    set.remove(&e);
                    out.sod.push(SodFinding {
                        rule: rule.name.clone(),
                        action: rule.action,
                        connector: rule.b.connector.clone(),
                        withheld: e,
                    });
                }
            }
        }
    }
    emergency_grants(
        &mut out, &mut want, policy, now, approvals, grants, &excluded,
    );
    for (connector, ents) in want {
        let Some(c) = policy.connectors.get(&connector) else {
            continue;
        };
        let key = attr_str(&doc, &c.account_key).map(str::to_string);
        if key.is_none() {
            out.notes.push(format!(
                "{connector}: the user has no {} for the account key",
                c.account_key
            ));
            continue;
        }
        out.accounts.insert(
            connector,
            DesiredAccount {
                exists: true,
                enabled: true,
                key,
                attributes: account_attributes(&doc, &c.attributes),
                entitlements: ents,
            },
        );
    }
    if out.matched.is_empty() {
        out.notes
            .push("no profile matches: the user gets no access".into());
    }
    out
}
