//! Access certification (docs/certification.md): campaigns that ask reviewers to certify,
//! revoke or delegate each person's access, in the caller's transaction.
//!
//! * [`create`] opens a campaign over a [`CertScope`]: one item per entitlement an active user
//!   holds as last read back (the engine's `engine_accounts.actual`, set from each operation's
//!   outcome and from a verification read that found a mismatch, and the open
//!   `entitlement_outside` drift findings a reconcile run listed), marked `outside-profile` when
//!   no profile the user matches grants it; each item goes to a reviewer on the ladder
//!   (the manager, else an owner of the entitlement, else a security approver), who gets one
//!   mail with certify / revoke / delegate links per item.
//! * [`decide`] records a decision (the caller checked who decides); a revoke becomes an
//!   `engine_revocations` row that planning honours ([`super::desired::apply_revocations`]) and
//!   the user is re-planned, so the outbox removes it under the blast-radius guard.
//! * [`fire`] runs a campaign's timers: reminders, and at the due the escalation of undecided
//!   items to the next level (or their expiry at the last), then completion.
//! * [`ensure_schedule`] / [`fire_schedule`]: the policy's scheduled campaigns, created once per
//!   period by a durable timer.
//! * [`open_micro`]: a one-item campaign for a drift finding under `review`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use connectors::Entitlement;
use serde_json::{json, Value};

use super::desired::attr_str;
use super::notices::{self, CertLine, CertMail};
use super::outcome::{QueuedNotice, Recipients};
use super::plan::AccountRecord;
use super::timers::{Timer, TimerKind};
use super::{links, load_user_doc, manager_id, Cause, Engine};
use crate::error::HubResult;
use crate::policy::{CertSchedule, CertScope, Policy};
use crate::store::certification::{self as store, Campaign, Item};
use crate::store::{approvals, audit, drift as store_drift, engine_state, DbConnection, Doc};

/// Access a profile the user matches grants.
pub const SOURCE_PROFILE: &str = "profile";
/// Access no matched profile grants (a mover's kept access, something added on the system).
pub const SOURCE_OUTSIDE: &str = "outside-profile";
/// Access held by an emergency grant in force (`engine_grants`).
pub const SOURCE_GRANT: &str = "grant";
/// Access a profile grants that an earlier campaign revoked: the next campaign in scope reviews
/// the revocation again (certify lifts it, revoke keeps it).
pub const SOURCE_REVOKED: &str = "revoked";

/// The reviewer levels, in escalation order.
pub const LADDER: [&str; 3] = ["manager", "owner", "security"];

/// Where a level sits on the ladder (a delegate decides at the manager's level).
fn level_index(level: &str) -> usize {
    match level {
        "manager" | "delegate" => 0,
        "owner" => 1,
        "security" => 2,
        _ => LADDER.len(),
    }
}

/// The stored document of `user_id` when the user is active (a User without `active` is).
pub fn active_doc(c: &mut DbConnection, user_id: &str) -> HubResult<Option<Doc>> {
    Ok(load_user_doc(c, user_id)?.filter(|d: &Doc| {
        scim_schema::json::get_ci(d, "active")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }))
}

/// The id of the active user `user_name` names.
pub fn active_user_by_name(c: &mut DbConnection, user_name: &str) -> HubResult<Option<String>> {
    let Some(row) = crate::store::find_user_row_by_name(c, user_name)? else {
        return Ok(None);
    };
    Ok(active_doc(c, &row.id)?.map(|_| row.id))
}

/// The reviewer of `subject`'s access `entitlement` on `connector` from ladder level `from`
/// on: the manager (when the policy trusts the manager attribute), an owner of the entitlement,
/// a security approver; never the subject. `("", "unassigned")` when nobody is left: only a
/// security approver can decide such an item, through the admin API.
pub fn reviewer_from(
    c: &mut DbConnection,
    policy: &Policy,
    subject: &str,
    doc: Option<&Doc>,
    connector: &str,
    entitlement: Option<&Entitlement>,
    from: usize,
) -> HubResult<(String, String)> {
    for (i, level) in LADDER.iter().enumerate().skip(from) {
        let names: Vec<String> = match i {
            0 => {
                if let Some(m) = doc
                    .filter(|_| policy.manager_trusted())
                    .and_then(manager_id)
                {
                    if m != subject && active_doc(c, &m)?.is_some() {
                        return Ok((m, (*level).into()));
                    }
                }
                continue;
            }
            1 => entitlement
                .map(|e| policy.entitlement_owners(connector, e))
                .unwrap_or_default(),
            _ => policy.approvals.security.clone(),
        };
        for n in names {
            if let Some(id) = active_user_by_name(c, &n)? {
                if id != subject {
                    return Ok((id, (*level).into()));
                }
            }
        }
    }
    Ok((String::new(), "unassigned".into()))
}

/// Where the review of access no profile explains (`outside-profile` items, drift reviews)
/// starts on the [`LADDER`]: at the level the policy asks before granting that entitlement
/// where a profile grants it behind `owner` or `security` approval, so that keeping it is never
/// decided below the approval granting it would need. Access no profile grants at all, or
/// grants with at most the manager's approval, starts with the manager.
pub fn outside_ladder_start(policy: &Policy, connector: &str, entitlement: &Entitlement) -> usize {
    match policy.entitlement_approval(connector, entitlement) {
        Some(crate::policy::Approval::Owner) => 1,
        Some(crate::policy::Approval::Security) => 2,
        _ => 0,
    }
}

/// What [`create`] made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Created {
    pub id: String,
    pub items: usize,
    pub reviewers: usize,
}

/// One item before it is stored.
struct Candidate {
    user: String,
    connector: String,
    entitlement: Entitlement,
    source: &'static str,
    privileged: bool,
    profiles: String,
    observed_from: &'static str,
    observed_at: Option<DateTime<Utc>>,
    observed: Option<String>,
    finding_id: Option<i64>,
    /// The revocation a `revoked` item reviews again.
    revocation: Option<String>,
}

fn privileged(policy: &Policy, connector: &str, e: &Entitlement) -> bool {
    policy
        .profiles
        .iter()
        .flat_map(|p| &p.grants)
        .any(|g| g.privileged && g.connector == connector && g.entitlement.as_ref() == Some(e))
}

fn granted_by(policy: &Policy, profiles: &[String], connector: &str, e: &Entitlement) -> bool {
    profiles.iter().any(|p| {
        policy.profile(p).is_some_and(|p| {
            p.grants
                .iter()
                .any(|g| g.connector == connector && g.entitlement.as_ref() == Some(e))
        })
    })
}

fn sorted_json(profiles: &[String]) -> String {
    let mut p = profiles.to_vec();
    p.sort();
    serde_json::to_string(&p).unwrap_or_else(|_| "[]".into())
}

/// The subject facts a scope looks at, per user, read once.
struct Subject {
    doc: Option<Doc>,
    profiles: Vec<String>,
    in_scope: bool,
}

fn subject<'a>(
    c: &mut DbConnection,
    cache: &'a mut HashMap<String, Subject>,
    scope: &CertScope,
    user: &str,
) -> HubResult<&'a Subject> {
    if !cache.contains_key(user) {
        let eu = engine_state::get_user(c, user)?;
        let active = eu.as_ref().is_some_and(|u| u.state == "active");
        let profiles = eu.map(|u| u.profiles).unwrap_or_default();
        let doc = if active {
            load_user_doc(c, user)?
        } else {
            None
        };
        let dept_ok = scope.departments.is_empty()
            || doc
                .as_ref()
                .and_then(|d| attr_str(d, "department"))
                .is_some_and(|d| scope.departments.iter().any(|s| s.eq_ignore_ascii_case(d)));
        let profile_ok =
            scope.profiles.is_empty() || scope.profiles.iter().any(|p| profiles.contains(p));
        cache.insert(
            user.to_string(),
            Subject {
                in_scope: active && doc.is_some() && dept_ok && profile_ok,
                doc,
                profiles,
            },
        );
    }
    cache
        .get(user)
        .ok_or_else(|| crate::error::HubError::Backend("subject cache".into()))
}

/// The items of a campaign over `scope`: every entitlement an active user in scope holds on a
/// connector in scope, as last read back, and the open `entitlement_outside` drift findings.
fn candidates(
    c: &mut DbConnection,
    policy: &Policy,
    scope: &CertScope,
    cache: &mut HashMap<String, Subject>,
    now: DateTime<Utc>,
) -> HubResult<Vec<Candidate>> {
    let mut out: Vec<Candidate> = Vec::new();
    // What emergency grants hold now: their items are marked as grants, not as profile access.
    let granted: std::collections::HashSet<(String, String, Entitlement)> =
        crate::store::grants::all_in_force(c, now)?
            .into_iter()
            .filter_map(|g| {
                let e = serde_json::from_str::<Entitlement>(&g.entitlement).ok()?;
                Some((g.user_id, g.connector, e))
            })
            .collect();
    let conn_ok = |n: &str| scope.connectors.is_empty() || scope.connectors.iter().any(|s| s == n);
    for (user, connector, text, updated) in store::accounts(c)? {
        if !conn_ok(&connector) {
            continue;
        }
        let Ok(rec) = serde_json::from_str::<AccountRecord>(&text) else {
            continue;
        };
        if !rec.exists || rec.entitlements.is_empty() {
            continue;
        }
        let s = subject(c, cache, scope, &user)?;
        if !s.in_scope {
            continue;
        }
        let profiles = s.profiles.clone();
        let (observed_from, observed_at) = match store::last_read_back(c, &user, &connector)? {
            Some(t) => ("verification", crate::store::parse_ts(&t)),
            None => ("applied", crate::store::parse_ts(&updated)),
        };
        for e in &rec.entitlements {
            let p = privileged(policy, &connector, e);
            if scope.privileged && !p {
                continue;
            }
            let source = if granted.contains(&(user.clone(), connector.clone(), e.clone())) {
                SOURCE_GRANT
            } else if granted_by(policy, &profiles, &connector, e) {
                SOURCE_PROFILE
            } else {
                SOURCE_OUTSIDE
            };
            out.push(Candidate {
                user: user.clone(),
                connector: connector.clone(),
                entitlement: e.clone(),
                source,
                privileged: p,
                profiles: sorted_json(&profiles),
                observed_from,
                observed_at,
                observed: Some(json!({"account": rec.key, "enabled": rec.enabled}).to_string()),
                finding_id: None,
                revocation: None,
            });
        }
    }
    let open = store_drift::list(
        c,
        &store_drift::Filter {
            connector: None,
            kind: Some("entitlement_outside"),
            status: Some("open"),
        },
        100_000,
    )?;
    for f in open {
        let Some(user) = f.user_id.clone() else {
            continue;
        };
        if !conn_ok(&f.connector) {
            continue;
        }
        let detail: Value = serde_json::from_str(&f.detail).unwrap_or(Value::Null);
        let Some(e) = detail
            .get("entitlement")
            .and_then(|e| serde_json::from_value::<Entitlement>(e.clone()).ok())
        else {
            continue;
        };
        let p = privileged(policy, &f.connector, &e);
        if scope.privileged && !p {
            continue;
        }
        if out
            .iter()
            .any(|o| o.user == user && o.connector == f.connector && o.entitlement == e)
        {
            continue;
        }
        let s = subject(c, cache, scope, &user)?;
        if !s.in_scope {
            continue;
        }
        out.push(Candidate {
            user,
            connector: f.connector.clone(),
            entitlement: e,
            source: SOURCE_OUTSIDE,
            privileged: p,
            profiles: sorted_json(&s.profiles),
            observed_from: "drift",
            observed_at: crate::store::parse_ts(&f.last_seen),
            observed: Some(f.detail.clone()),
            finding_id: Some(f.id),
            revocation: None,
        });
    }
    // Revocations in force of access a profile still grants: reviewed again by the next
    // campaign in scope (until then, or a role change, they stand).
    for r in store::all_revocations(c, 1_000_000)? {
        if r.lifted_at.is_some() || !conn_ok(&r.connector) {
            continue;
        }
        let Ok(e) = serde_json::from_str::<Entitlement>(&r.entitlement) else {
            continue;
        };
        let p = privileged(policy, &r.connector, &e);
        if scope.privileged && !p {
            continue;
        }
        let s = subject(c, cache, scope, &r.user_id)?;
        if !s.in_scope || sorted_json(&s.profiles) != r.profiles {
            continue;
        }
        let profiles = s.profiles.clone();
        if !granted_by(policy, &profiles, &r.connector, &e) {
            continue;
        }
        // Still held while its removal is in flight: reviewed as the revocation it is.
        out.retain(|o| !(o.user == r.user_id && o.connector == r.connector && o.entitlement == e));
        out.push(Candidate {
            user: r.user_id.clone(),
            connector: r.connector.clone(),
            entitlement: e,
            source: SOURCE_REVOKED,
            privileged: p,
            profiles: r.profiles.clone(),
            observed_from: "revocation",
            observed_at: crate::store::parse_ts(&r.created),
            observed: None,
            finding_id: None,
            revocation: Some(r.id.clone()),
        });
    }
    Ok(out)
}

/// Opens a campaign over `scope` due at `due`, its items addressed and mailed, its reminder and
/// due timers set. `None` when `schedule_key` names a campaign created already.
#[allow(clippy::too_many_arguments)]
pub fn create(
    engine: &Engine,
    c: &mut DbConnection,
    name: &str,
    scope: &CertScope,
    created_by: &str,
    due: DateTime<Utc>,
    schedule_key: Option<&str>,
) -> HubResult<Option<Created>> {
    let policy = engine.policy.current();
    let now = engine.now();
    let id = uuid::Uuid::now_v7().to_string();
    let scope_json = serde_json::to_value(scope).unwrap_or(Value::Null);
    if !store::create(
        c,
        &store::NewCampaign {
            id: &id,
            name,
            kind: "campaign",
            scope: &scope_json,
            created_by,
            due,
            schedule_key,
        },
        now,
    )? {
        return Ok(None);
    }
    let mut cache = HashMap::new();
    let found = candidates(c, &policy, scope, &mut cache, now)?;
    let mut reviewers = std::collections::BTreeSet::new();
    for cand in &found {
        let doc = cache.get(&cand.user).and_then(|s| s.doc.as_ref());
        let from = match cand.source {
            SOURCE_OUTSIDE => outside_ladder_start(&policy, &cand.connector, &cand.entitlement),
            _ => 0,
        };
        let (reviewer, level) = reviewer_from(
            c,
            &policy,
            &cand.user,
            doc,
            &cand.connector,
            Some(&cand.entitlement),
            from,
        )?;
        reviewers.insert(reviewer.clone());
        let ent = serde_json::to_string(&cand.entitlement).unwrap_or_default();
        let item_id = uuid::Uuid::now_v7().to_string();
        store::add_item(
            c,
            &store::NewItem {
                id: &item_id,
                campaign_id: &id,
                user_id: &cand.user,
                connector: &cand.connector,
                entitlement: &ent,
                source: cand.source,
                privileged: cand.privileged,
                profiles: &cand.profiles,
                observed_from: cand.observed_from,
                observed_at: cand.observed_at,
                observed: cand.observed.as_deref(),
                reviewer: &reviewer,
                reviewer_level: &level,
                finding_id: cand.finding_id,
            },
        )?;
        if let Some(rid) = &cand.revocation {
            store::set_revocation(c, &item_id, rid, None)?;
        }
    }
    schedule_steps(c, &id, now, due, &policy, 0)?;
    let Some(campaign) = store::get(c, &id)? else {
        return Ok(None);
    };
    let items = store::items(c, &id)?;
    mail(engine, c, &campaign, &items, CertMail::Opened)?;
    audit::append(
        c,
        &audit::AuditEntry {
            at: now,
            actor: created_by,
            user_id: "",
            connector: None,
            action: "certification_campaign",
            outcome: "created",
            detail: json!({"campaign": id, "name": name, "scope": scope_json,
                           "due": due, "items": items.len()}),
        },
    )?;
    if items.is_empty() {
        complete(c, &campaign, "nothing in scope", now)?;
    }
    Ok(Some(Created {
        id,
        items: items.len(),
        reviewers: reviewers.iter().filter(|r| !r.is_empty()).count(),
    }))
}

/// The reminder timers (`[certification] remind` before the due, those still ahead) and the due
/// timer of escalation round `round`.
fn schedule_steps(
    c: &mut DbConnection,
    id: &str,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
    policy: &Policy,
    round: i64,
) -> HubResult<()> {
    let timer = |step: &str, at| Timer {
        user_id: String::new(),
        kind: TimerKind::Certification {
            campaign: id.to_string(),
            step: step.to_string(),
            round,
        },
        due: at,
    };
    if round == 0 {
        for before in &policy.certification.remind {
            let at = due - *before;
            if at > now {
                super::timers::schedule(c, &timer("remind", at), now)?;
            }
        }
    }
    super::timers::schedule(c, &timer("due", due), now)?;
    Ok(())
}

/// A person as a mail names them.
fn person(c: &mut DbConnection, user_id: &str) -> HubResult<String> {
    let doc = load_user_doc(c, user_id)?;
    let name = doc.as_ref().and_then(|d| attr_str(d, "userName"));
    let display = doc.as_ref().and_then(|d| attr_str(d, "displayName"));
    Ok(notices::person_label(user_id, name, display))
}

/// Mails each reviewer of `items` (the undecided ones addressed to somebody) their items.
fn mail(
    engine: &Engine,
    c: &mut DbConnection,
    campaign: &Campaign,
    items: &[Item],
    why: CertMail,
) -> HubResult<()> {
    let policy = engine.policy.current();
    let now = engine.now();
    let due = crate::store::parse_ts(&campaign.due).unwrap_or(now);
    let key = links::person_key(&policy);
    let exp = due.max(now) + Duration::days(1);
    let mut by_reviewer: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for i in items
        .iter()
        .filter(|i| i.decision.is_none() && !i.reviewer.is_empty())
    {
        by_reviewer.entry(&i.reviewer).or_default().push(i);
    }
    for (reviewer, its) in by_reviewer {
        let mut texts = Vec::new();
        for i in &its {
            let who = person(c, &i.user_id)?;
            let seen = format!(
                "{} {}",
                i.observed_from,
                i.observed_at
                    .as_deref()
                    .and_then(crate::store::parse_ts)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| "(time unknown)".into())
            );
            let urls = key.as_ref().and_then(|k| {
                links::certification_links(
                    &policy,
                    k,
                    &i.user_id,
                    &i.id,
                    reviewer,
                    &i.reviewer_level,
                    exp,
                )
            });
            texts.push((who, notices::entitlement_label(&i.entitlement), seen, urls));
        }
        let lines: Vec<CertLine<'_>> = its
            .iter()
            .zip(&texts)
            .map(|(i, (who, ent, seen, urls))| CertLine {
                person: who,
                connector: &i.connector,
                entitlement: ent,
                source: &i.source,
                privileged: i.privileged != 0,
                seen,
                links: urls.as_ref(),
                item: &i.id,
            })
            .collect();
        let n = notices::certification_review(&campaign.name, &campaign.id, due, why, &lines);
        super::commit::queue(
            c,
            &QueuedNotice {
                user_id: None,
                to: Recipients::to(vec![reviewer.to_string()]),
                notice: n,
            },
            now,
        )?;
    }
    Ok(())
}

fn completion_counts(items: &[Item]) -> Value {
    let count = |d: Option<&str>| items.iter().filter(|i| i.decision.as_deref() == d).count();
    json!({
        "items": items.len(),
        "certify": count(Some("certify")),
        "revoke": count(Some("revoke")),
        "expired": count(Some("expired")),
        "undecided": count(None),
    })
}

/// Completes an open campaign (audited); false when it was not open.
fn complete(
    c: &mut DbConnection,
    campaign: &Campaign,
    why: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    if !store::finish(c, &campaign.id, "completed", now)? {
        return Ok(false);
    }
    let items = store::items(c, &campaign.id)?;
    audit::append(
        c,
        &audit::AuditEntry {
            at: now,
            actor: "scimhub",
            user_id: "",
            connector: None,
            action: "certification_campaign",
            outcome: "completed",
            detail: json!({"campaign": campaign.id, "why": why,
                           "counts": completion_counts(&items)}),
        },
    )?;
    Ok(true)
}

/// Completes the campaign when no item is left undecided.
fn complete_if_done(
    c: &mut DbConnection,
    campaign_id: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let items = store::items(c, campaign_id)?;
    if items.iter().any(|i| i.decision.is_none()) {
        return Ok(false);
    }
    match store::get(c, campaign_id)? {
        Some(camp) if camp.state == "open" => complete(c, &camp, "every item decided", now),
        _ => Ok(false),
    }
}

/// A reviewer's decision on an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Certify,
    Revoke,
    /// To this user id.
    Delegate(String),
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Certify => "certify",
            Decision::Revoke => "revoke",
            Decision::Delegate(_) => "delegate",
        }
    }
}

/// What [`decide`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decided {
    pub item: String,
    pub decision: String,
    /// The revocation a revoke recorded.
    pub revocation: Option<String>,
    /// The plan that carries the revoke out (its operations are in the outbox).
    pub plan_id: Option<String>,
    /// The blast-radius hold the removal waits behind, if the guard tripped.
    pub hold_id: Option<String>,
    /// Whether this decision completed the campaign.
    pub completed: bool,
}

/// Why [`decide`] changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDecided {
    /// The item was decided or re-addressed meanwhile.
    ItemTaken,
    /// The campaign was completed or cancelled meanwhile.
    CampaignClosed,
}

/// Records `decision` on `item` (undecided, addressed to `item.reviewer` as read in this
/// transaction) as `decided_by`, with `reason`; the caller checked that `decided_by` may decide
/// it. Nothing changes when the item was decided or re-addressed, or its campaign closed,
/// after the caller read them.
pub fn decide(
    engine: &Engine,
    c: &mut DbConnection,
    item: &Item,
    decision: &Decision,
    reason: &str,
    decided_by: &str,
) -> HubResult<Result<Decided, NotDecided>> {
    let now = engine.now();
    let policy = engine.policy.current();
    // The caller's check of the campaign's state was a plain read: a cancel or the due timer
    // may have closed it since. Checked again under the campaign's lock.
    if !store::lock_open(c, &item.campaign_id)? {
        return Ok(Err(NotDecided::CampaignClosed));
    }
    let entitlement: Option<Entitlement> = serde_json::from_str(&item.entitlement).ok();
    let mut out = Decided {
        item: item.id.clone(),
        decision: decision.as_str().into(),
        revocation: None,
        plan_id: None,
        hold_id: None,
        completed: false,
    };
    match decision {
        Decision::Delegate(to) => {
            if !store::readdress(c, &item.id, &item.reviewer, to, "delegate", true)? {
                return Ok(Err(NotDecided::ItemTaken));
            }
        }
        Decision::Certify | Decision::Revoke => {
            if !store::decide(
                c,
                &item.id,
                &item.reviewer,
                decision.as_str(),
                reason,
                decided_by,
                now,
            )? {
                return Ok(Err(NotDecided::ItemTaken));
            }
        }
    }
    // A micro-review's drift links act no more once the item is decided here.
    if let (Some(fid), Decision::Certify | Decision::Revoke) = (item.finding_id, decision) {
        approvals::use_link(c, &format!("drift:{fid}"), &item.user_id, decided_by, now)?;
    }
    match decision {
        Decision::Certify if item.source == SOURCE_REVOKED => {
            // Certified again: the revocation is lifted and the profile's grant applies.
            if let Some(rid) = &item.revocation_id {
                store::lift(c, rid, "certified by a later campaign", now)?;
            }
            let planned = engine.replan(c, &item.user_id, Cause::Admin)?;
            out.hold_id = planned.hold_id;
        }
        Decision::Revoke if item.source == SOURCE_REVOKED => {
            // Revoked again: the revocation stands, nothing to remove.
            out.revocation = item.revocation_id.clone();
        }
        Decision::Certify => {
            if let Some(f) = item
                .finding_id
                .and_then(|f| store_drift::get(c, f).ok().flatten())
            {
                if f.status == "open" {
                    store_drift::keep(
                        c,
                        &f.connector,
                        &f.kind,
                        &f.account,
                        &f.entitlement,
                        decided_by,
                        now,
                        now + policy.drift.review_expiry,
                    )?;
                    store_drift::close(c, f.id, now)?;
                }
            }
        }
        Decision::Revoke => {
            let rid = uuid::Uuid::now_v7().to_string();
            store::add_revocation(
                c,
                &rid,
                &item.user_id,
                &item.connector,
                &item.entitlement,
                &item.profiles,
                &item.id,
                now,
            )?;
            let before = store::latest_op(c, &item.user_id, &item.connector)?.map(|o| o.0);
            let finding = item
                .finding_id
                .and_then(|f| store_drift::get(c, f).ok().flatten())
                .filter(|f| f.status == "open");
            if let Some(f) = finding {
                // Access the system holds that the engine did not grant: set the record to what
                // the system holds and re-plan, so the diff removes it (drift's `fix`).
                let detail: Value = serde_json::from_str(&f.detail).unwrap_or(Value::Null);
                let on_leave = policy
                    .connectors
                    .get(&f.connector)
                    .map(|d| d.on_leave)
                    .unwrap_or_default();
                if let Some(found) = super::drift::Finding::from_stored(
                    &f.kind,
                    &f.account,
                    f.user_id.as_deref(),
                    &detail,
                ) {
                    let (_, hold) =
                        super::reconcile::fix(engine, c, &f.connector, on_leave, &[found])?;
                    out.hold_id = hold;
                }
            } else {
                let planned = engine.replan(c, &item.user_id, Cause::Admin)?;
                out.hold_id = planned.hold_id;
            }
            let after = store::latest_op(c, &item.user_id, &item.connector)?;
            out.plan_id = after.filter(|a| Some(a.0) != before).map(|a| a.1);
            store::set_revocation(c, &item.id, &rid, out.plan_id.as_deref())?;
            out.revocation = Some(rid);
        }
        Decision::Delegate(_) => {}
    }
    audit::append(
        c,
        &audit::AuditEntry {
            at: now,
            actor: decided_by,
            user_id: &item.user_id,
            connector: Some(&item.connector),
            action: "certification_decision",
            outcome: decision.as_str(),
            detail: json!({
                "campaign": item.campaign_id,
                "item": item.id,
                "entitlement": entitlement,
                "source": item.source,
                "reviewer_level": item.reviewer_level,
                "reason": reason,
                "delegated_to": match decision { Decision::Delegate(to) => Some(to), _ => None },
                "revocation": out.revocation,
                "plan_id": out.plan_id,
            }),
        },
    )?;
    if let Decision::Delegate(_) = decision {
        if let (Some(camp), Some(fresh)) =
            (store::get(c, &item.campaign_id)?, store::item(c, &item.id)?)
        {
            mail(engine, c, &camp, &[fresh], CertMail::Delegated)?;
        }
    } else {
        out.completed = complete_if_done(c, &item.campaign_id, now)?;
    }
    Ok(Ok(out))
}

/// Records a manager's answer through a drift review link (`keep`: certify, else revoke) on
/// the micro-review item of finding `finding_id`, when there is one still undecided.
pub fn record_drift_answer(
    engine: &Engine,
    c: &mut DbConnection,
    finding_id: i64,
    keep: bool,
    actor: &str,
) -> HubResult<()> {
    let now = engine.now();
    let Some(item) = store::item_for_finding(c, finding_id)? else {
        return Ok(());
    };
    if item.decision.is_some() {
        return Ok(());
    }
    if !store::lock_open(c, &item.campaign_id)? {
        // Closed meanwhile: the item stays as the campaign left it.
        return Ok(());
    }
    let decision = if keep { "certify" } else { "revoke" };
    if store::decide(
        c,
        &item.id,
        &item.reviewer,
        decision,
        "answered through the drift review link",
        actor,
        now,
    )? {
        if !keep {
            // The drift link planned the removal (drift's `fix`) just before: record it as this
            // item's revocation, with the plan that carries it out, for the report.
            let rid = uuid::Uuid::now_v7().to_string();
            store::add_revocation(
                c,
                &rid,
                &item.user_id,
                &item.connector,
                &item.entitlement,
                &item.profiles,
                &item.id,
                now,
            )?;
            let plan = store::latest_op(c, &item.user_id, &item.connector)?.map(|o| o.1);
            store::set_revocation(c, &item.id, &rid, plan.as_deref())?;
        }
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor,
                user_id: &item.user_id,
                connector: Some(&item.connector),
                action: "certification_decision",
                outcome: decision,
                detail: json!({"campaign": item.campaign_id, "item": item.id,
                               "finding": finding_id, "via": "drift review link"}),
            },
        )?;
        complete_if_done(c, &item.campaign_id, now)?;
    }
    Ok(())
}

/// Fires a campaign timer: `remind` mails reviewers with undecided items; `due` escalates
/// each undecided item to the next reviewer level (the campaign's due moves by
/// `[certification] escalation`), marks `expired` those with nobody left above, and completes
/// the campaign when nothing is left undecided.
pub fn fire(
    c: &mut DbConnection,
    engine: &Engine,
    campaign_id: &str,
    step: &str,
    round: i64,
    now: DateTime<Utc>,
) -> HubResult<()> {
    // Under the campaign's lock, as decisions are: a cancel or a last decision committed after
    // a plain read of the state would otherwise meet escalations and expiries of a closed
    // campaign's items.
    if !store::lock_open(c, campaign_id)? {
        return Ok(());
    }
    let Some(camp) = store::get(c, campaign_id)?.filter(|c| c.state == "open") else {
        return Ok(());
    };
    let items = store::items(c, campaign_id)?;
    let open: Vec<Item> = items.into_iter().filter(|i| i.decision.is_none()).collect();
    if open.is_empty() {
        complete(c, &camp, "every item decided", now)?;
        return Ok(());
    }
    if step == "remind" {
        return mail(engine, c, &camp, &open, CertMail::Reminder);
    }
    let policy = engine.policy.current();
    let mut escalated = Vec::new();
    for i in &open {
        let doc = load_user_doc(c, &i.user_id)?;
        let ent: Option<Entitlement> = serde_json::from_str(&i.entitlement).ok();
        let from = level_index(&i.reviewer_level) + 1;
        let (next, level) = reviewer_from(
            c,
            &policy,
            &i.user_id,
            doc.as_ref(),
            &i.connector,
            ent.as_ref(),
            from,
        )?;
        if !next.is_empty() && next != i.reviewer {
            if store::readdress(c, &i.id, &i.reviewer, &next, &level, false)? {
                audit::append(
                    c,
                    &audit::AuditEntry {
                        at: now,
                        actor: "scimhub",
                        user_id: &i.user_id,
                        connector: Some(&i.connector),
                        action: "certification_escalation",
                        outcome: "escalated",
                        detail: json!({"campaign": campaign_id, "item": i.id, "from": i.reviewer,
                                       "from_level": i.reviewer_level, "to": next,
                                       "to_level": level, "round": round + 1}),
                    },
                )?;
                escalated.push(i.id.clone());
            }
        } else if store::decide(
            c,
            &i.id,
            &i.reviewer,
            "expired",
            "nobody decided by the last due",
            "scimhub",
            now,
        )? {
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: "scimhub",
                    user_id: &i.user_id,
                    connector: Some(&i.connector),
                    action: "certification_decision",
                    outcome: "expired",
                    detail: json!({"campaign": campaign_id, "item": i.id}),
                },
            )?;
        }
    }
    if escalated.is_empty() {
        complete(c, &camp, "due passed", now)?;
        return Ok(());
    }
    let due = now + policy.certification.escalation;
    store::set_due(c, campaign_id, due)?;
    schedule_steps(c, campaign_id, now, due, &policy, round + 1)?;
    let Some(camp) = store::get(c, campaign_id)? else {
        return Ok(());
    };
    let fresh: Vec<Item> = store::items(c, campaign_id)?
        .into_iter()
        .filter(|i| escalated.contains(&i.id))
        .collect();
    mail(engine, c, &camp, &fresh, CertMail::Escalated)
}

/// The certification period that starts next after `now`, and when: `2027-Q1` at 2027-01-01
/// (quarterly), `2027-01` (monthly). `None` when scheduling is off.
pub fn next_period(schedule: CertSchedule, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
    let (y, m) = (now.year(), now.month());
    let (y, m) = match schedule {
        CertSchedule::Off => return None,
        CertSchedule::Monthly => {
            if m == 12 {
                (y + 1, 1)
            } else {
                (y, m + 1)
            }
        }
        CertSchedule::Quarterly => {
            let next = ((m - 1) / 3 + 1) * 3 + 1;
            if next > 12 {
                (y + 1, 1)
            } else {
                (y, next)
            }
        }
    };
    let at = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
    let label = match schedule {
        CertSchedule::Quarterly => format!("{y}-Q{}", (m - 1) / 3 + 1),
        _ => format!("{y}-{m:02}"),
    };
    Some((label, at))
}

/// Keeps the timer of the next scheduled certification period (one per period, by its key:
/// scheduling it again is a no-op, and a fired one is never pending again).
pub fn ensure_schedule(c: &mut DbConnection, engine: &Engine, now: DateTime<Utc>) -> HubResult<()> {
    let policy = engine.policy.current();
    let Some((period, at)) = next_period(policy.certification.schedule, now) else {
        return Ok(());
    };
    super::timers::schedule(
        c,
        &Timer {
            user_id: String::new(),
            kind: TimerKind::CertificationSchedule { period },
            due: at,
        },
        now,
    )?;
    Ok(())
}

/// A certification period began: one campaign per `[certification] scopes` entry (one of
/// everything when none), each created once for the period (`schedule_key`).
pub fn fire_schedule(
    c: &mut DbConnection,
    engine: &Engine,
    period: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let policy = engine.policy.current();
    if policy.certification.schedule == CertSchedule::Off {
        return Ok(());
    }
    let scopes = if policy.certification.scopes.is_empty() {
        vec![(String::new(), CertScope::default())]
    } else {
        policy.certification.scopes.clone()
    };
    for (i, (text, scope)) in scopes.iter().enumerate() {
        let name = if text.is_empty() {
            format!("Access review {period}")
        } else {
            format!("Access review {period} ({text})")
        };
        let key = format!("{period}:{i}");
        let made = create(
            engine,
            c,
            &name,
            scope,
            "schedule",
            now + policy.certification.due,
            Some(&key),
        )?;
        tracing::info!(period, campaign = ?made, "scheduled certification campaign");
    }
    Ok(())
}

/// Opens a one-item campaign (a micro-review) for a new `entitlement_outside` finding
/// (`finding_id`) about a user, addressed on the ladder. The manager's mail is the drift review
/// mail with keep / remove links ([`super::reconcile::ask_review`], which records its answer
/// here too); another reviewer (no manager, or links not configured) gets the campaign mail.
/// Returns the campaign id.
pub fn open_micro(
    engine: &Engine,
    c: &mut DbConnection,
    connector: &str,
    finding_id: i64,
    f: &super::drift::Finding,
) -> HubResult<Option<String>> {
    let (Some(user), Some(e), super::drift::Kind::EntitlementOutside) =
        (&f.user_id, &f.entitlement, f.kind)
    else {
        return Ok(None);
    };
    if store::item_for_finding(c, finding_id)?.is_some() {
        return Ok(None);
    }
    let policy = engine.policy.current();
    let now = engine.now();
    let doc = load_user_doc(c, user)?;
    let who = doc
        .as_ref()
        .and_then(|d| attr_str(d, "userName"))
        .unwrap_or(user)
        .to_string();
    let id = uuid::Uuid::now_v7().to_string();
    let due = now + policy.certification.due;
    let scope = CertScope {
        connectors: vec![connector.to_string()],
        ..Default::default()
    };
    let scope_json = serde_json::to_value(&scope).unwrap_or(Value::Null);
    let name = format!(
        "Drift review: {} on {connector} for {who}",
        super::drift::entitlement_key(e)
    );
    store::create(
        c,
        &store::NewCampaign {
            id: &id,
            name: &name,
            kind: "micro",
            scope: &scope_json,
            created_by: "drift reconciliation",
            due,
            schedule_key: None,
        },
        now,
    )?;
    let profiles = engine_state::get_user(c, user)?
        .map(|u| u.profiles)
        .unwrap_or_default();
    let from = outside_ladder_start(&policy, connector, e);
    let (reviewer, level) =
        reviewer_from(c, &policy, user, doc.as_ref(), connector, Some(e), from)?;
    store::add_item(
        c,
        &store::NewItem {
            id: &uuid::Uuid::now_v7().to_string(),
            campaign_id: &id,
            user_id: user,
            connector,
            entitlement: &serde_json::to_string(e).unwrap_or_default(),
            source: SOURCE_OUTSIDE,
            privileged: privileged(&policy, connector, e),
            profiles: &sorted_json(&profiles),
            observed_from: "drift",
            observed_at: Some(now),
            observed: Some(&f.stored_detail().to_string()),
            reviewer: &reviewer,
            reviewer_level: &level,
            finding_id: Some(finding_id),
        },
    )?;
    schedule_steps(c, &id, now, due, &policy, 0)?;
    let drift_mail = level == "manager"
        && links::person_key(&policy).is_some()
        && policy.notify.link_base_url.is_some();
    if !drift_mail {
        if let Some(camp) = store::get(c, &id)? {
            let items = store::items(c, &id)?;
            mail(engine, c, &camp, &items, CertMail::Opened)?;
        }
    }
    audit::append(
        c,
        &audit::AuditEntry {
            at: now,
            actor: "drift reconciliation",
            user_id: user,
            connector: Some(connector),
            action: "certification_campaign",
            outcome: "created",
            detail: json!({"campaign": id, "name": name, "kind": "micro", "finding": finding_id,
                           "reviewer_level": level}),
        },
    )?;
    Ok(Some(id))
}

/// The completion summary of a campaign (`GET /admin/v1/campaigns/{id}/report`, `scimhub
/// campaign report`): counts by decision, by source, by reviewer, and each revocation with
/// whether the outbox carried it out and what verification read back. The data of the HTML
/// report (`report/`), which renders it.
pub fn report(c: &mut DbConnection, id: &str) -> HubResult<Option<Value>> {
    let Some(camp) = store::get(c, id)? else {
        return Ok(None);
    };
    let items = store::items(c, id)?;
    let mut by_reviewer: BTreeMap<String, Value> = BTreeMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for i in &items {
        let who = match &i.decided_by {
            Some(d) if i.decision.as_deref() != Some("expired") => d.clone(),
            _ => i.reviewer.clone(),
        };
        if !names.contains_key(&i.reviewer) {
            let n = if i.reviewer.is_empty() {
                "(unassigned)".to_string()
            } else {
                load_user_doc(c, &i.reviewer)?
                    .as_ref()
                    .and_then(|d| attr_str(d, "userName").map(str::to_string))
                    .unwrap_or_else(|| i.reviewer.clone())
            };
            names.insert(i.reviewer.clone(), n);
        }
        let key = names.get(&i.reviewer).cloned().unwrap_or(who);
        let e = by_reviewer.entry(key).or_insert_with(|| {
            json!({"level": i.reviewer_level, "certify": 0, "revoke": 0, "expired": 0,
                   "undecided": 0, "delegated_to_them": 0})
        });
        let slot = i.decision.clone().unwrap_or_else(|| "undecided".into());
        if let Some(n) = e.get_mut(&slot).and_then(|v| v.as_i64()) {
            e[&slot] = json!(n + 1);
        }
        if i.delegated_to.is_some() {
            let n = e["delegated_to_them"].as_i64().unwrap_or(0);
            e["delegated_to_them"] = json!(n + 1);
        }
    }
    let mut by_source: BTreeMap<&str, i64> = BTreeMap::new();
    for i in &items {
        *by_source.entry(i.source.as_str()).or_default() += 1;
    }
    let mut revocations = Vec::new();
    for i in items
        .iter()
        .filter(|i| i.decision.as_deref() == Some("revoke") && i.source != SOURCE_REVOKED)
    {
        let (carried_out, verified) = match &i.plan_id {
            Some(p) => {
                let st = store::plan_op_statuses(c, p)?;
                let v = store::plan_verifications(c, p, &i.connector)?;
                (
                    !st.is_empty() && st.iter().all(|s| s == "done"),
                    v.last().cloned(),
                )
            }
            None => (false, None),
        };
        revocations.push(json!({
            "item": i.id,
            "user_id": i.user_id,
            "connector": i.connector,
            "entitlement": serde_json::from_str::<Value>(&i.entitlement).unwrap_or(Value::Null),
            "revocation": i.revocation_id,
            "plan_id": i.plan_id,
            "carried_out": carried_out,
            "verification": verified,
        }));
    }
    let carried = revocations
        .iter()
        .filter(|r| r["carried_out"] == json!(true))
        .count();
    let verified = revocations
        .iter()
        .filter(|r| r["verification"] == json!("verified"))
        .count();
    let delegated = items.iter().filter(|i| i.delegated_to.is_some()).count();
    let mut counts = completion_counts(&items);
    counts["delegated"] = json!(delegated);
    counts["outside_profile"] = json!(items.iter().filter(|i| i.source == SOURCE_OUTSIDE).count());
    counts["grants"] = json!(items.iter().filter(|i| i.source == SOURCE_GRANT).count());
    counts["privileged"] = json!(items.iter().filter(|i| i.privileged != 0).count());
    counts["revocations_carried_out"] = json!(carried);
    counts["revocations_verified"] = json!(verified);
    Ok(Some(json!({
        "campaign": campaign_json(&camp),
        "counts": counts,
        "by_source": by_source,
        "by_reviewer": by_reviewer,
        "revocations": revocations,
    })))
}

/// A campaign as the admin API shows it.
pub fn campaign_json(c: &Campaign) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "scope": serde_json::from_str::<Value>(&c.scope).unwrap_or(Value::Null),
        "created_by": c.created_by,
        "created": c.created,
        "due": c.due,
        "state": c.state,
        "completed_at": c.completed_at,
        "schedule_key": c.schedule_key,
    })
}

/// An item as the admin API shows it.
pub fn item_json(i: &Item) -> Value {
    json!({
        "id": i.id,
        "campaign_id": i.campaign_id,
        "user_id": i.user_id,
        "connector": i.connector,
        "entitlement": serde_json::from_str::<Value>(&i.entitlement).unwrap_or(Value::Null),
        "source": i.source,
        "privileged": i.privileged != 0,
        "profiles": serde_json::from_str::<Value>(&i.profiles).unwrap_or(Value::Null),
        "observed_from": i.observed_from,
        "observed_at": i.observed_at,
        "observed": i.observed.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
        "reviewer": i.reviewer,
        "reviewer_level": i.reviewer_level,
        "decision": i.decision,
        "reason": i.reason,
        "decided_by": i.decided_by,
        "decided_at": i.decided_at,
        "delegated_to": i.delegated_to,
        "finding_id": i.finding_id,
        "revocation_id": i.revocation_id,
        "plan_id": i.plan_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_the_next_quarter_or_month() {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 21, 0, 0).unwrap();
        assert_eq!(
            next_period(CertSchedule::Quarterly, t),
            Some((
                "2027-Q1".into(),
                Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
            ))
        );
        let t = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            next_period(CertSchedule::Quarterly, t),
            Some((
                "2027-Q2".into(),
                Utc.with_ymd_and_hms(2027, 4, 1, 0, 0, 0).unwrap()
            ))
        );
        let t = Utc.with_ymd_and_hms(2027, 5, 31, 23, 0, 0).unwrap();
        assert_eq!(
            next_period(CertSchedule::Monthly, t),
            Some((
                "2027-06".into(),
                Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap()
            ))
        );
        assert_eq!(next_period(CertSchedule::Off, t), None);
    }

    #[test]
    fn the_ladder_orders_levels() {
        assert!(level_index("manager") < level_index("owner"));
        assert!(level_index("owner") < level_index("security"));
        assert_eq!(level_index("delegate"), level_index("manager"));
        assert_eq!(level_index("unassigned"), LADDER.len());
    }
}
