//! Access certification (`engine_campaigns`, `engine_campaign_items`) and the revocations a
//! certification made (`engine_revocations`), which the engine honours when it plans a user.
//!
//! A campaign is `open` until every item is decided (or its last due passed), then
//! `completed`; `cancelled` by an administrator. An item is decided once: [`decide`] is a
//! conditional UPDATE on `decision IS NULL` and the reviewer it was addressed to, so a replayed
//! link, a second reviewer or a stale delegate changes nothing.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// A campaign row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    /// `campaign` or `micro`.
    pub kind: String,
    /// JSON text of the scope.
    #[serde(skip)]
    pub scope: String,
    pub created_by: String,
    pub created: String,
    pub due: String,
    /// `open`, `completed`, `cancelled`.
    pub state: String,
    pub completed_at: Option<String>,
    pub schedule_key: Option<String>,
}

type CampaignSt = (
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
);

const CAMPAIGN_COLS: &str = "SELECT id, name, kind, scope, created_by, created, due, state, \
                             completed_at, schedule_key FROM engine_campaigns ";

/// A campaign to create.
#[derive(Debug, Clone)]
pub struct NewCampaign<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub scope: &'a serde_json::Value,
    pub created_by: &'a str,
    pub due: DateTime<Utc>,
    pub schedule_key: Option<&'a str>,
}

/// Creates a campaign; false when one with its `schedule_key` exists already (a scheduled
/// campaign of a period is created once).
pub fn create(c: &mut DbConnection, n: &NewCampaign<'_>, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_campaigns (id, name, kind, scope, created_by, created, due, state, \
         completed_at, schedule_key) VALUES (",
    );
    q.text(n.id)
        .push(", ")
        .text(n.name)
        .push(", ")
        .text(n.kind)
        .push(", ")
        .text(n.scope.to_string())
        .push(", ")
        .text(n.created_by)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(fmt_ts(n.due))
        .push(", 'open', NULL, ")
        .bind(Bind::OptText(n.schedule_key.map(str::to_string)))
        .push(") ON CONFLICT DO NOTHING");
    Ok(q.execute(c)? == 1)
}

pub fn get(c: &mut DbConnection, id: &str) -> HubResult<Option<Campaign>> {
    let mut q = Sql::<CampaignSt>::new(CAMPAIGN_COLS);
    q.push("WHERE id = ").text(id);
    Ok(q.load::<Campaign>(c)?.into_iter().next())
}

/// Campaigns, newest first (`state`: only those in it).
pub fn list(c: &mut DbConnection, state: Option<&str>, limit: i64) -> HubResult<Vec<Campaign>> {
    let mut q = Sql::<CampaignSt>::new(CAMPAIGN_COLS);
    q.push("WHERE 1 = 1");
    if let Some(s) = state {
        q.push(" AND state = ").text(s);
    }
    q.push(" ORDER BY created DESC, id DESC").limit(limit);
    Ok(q.load::<Campaign>(c)?)
}

/// Sets an open campaign's state (`completed`, `cancelled`); false when it was not open.
pub fn finish(c: &mut DbConnection, id: &str, state: &str, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_campaigns SET state = ");
    q.text(state)
        .push(", completed_at = ")
        .text(fmt_ts(now))
        .push(" WHERE state = 'open' AND id = ")
        .text(id);
    Ok(q.execute(c)? == 1)
}

/// Locks an open campaign's row until the transaction ends (a no-op update): decisions on one
/// campaign take turns, so the one that decides its last item sees every other decision and
/// completes it (PostgreSQL runs them concurrently; SQLite has one writer anyway). False when
/// the campaign is not open (any more): its state is read after the lock is taken, so a
/// campaign completed or cancelled while the caller was checking is seen here.
pub fn lock_open(c: &mut DbConnection, id: &str) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_campaigns SET state = state WHERE id = ");
    q.text(id).push(" AND state = 'open'");
    Ok(q.execute(c)? == 1)
}

/// Moves an open campaign's due (an escalation gives the next reviewer time).
pub fn set_due(c: &mut DbConnection, id: &str, due: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_campaigns SET due = ");
    q.text(fmt_ts(due))
        .push(" WHERE state = 'open' AND id = ")
        .text(id);
    q.execute(c)?;
    Ok(())
}

/// An item row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Item {
    pub id: String,
    pub campaign_id: String,
    pub user_id: String,
    pub connector: String,
    /// JSON text of the entitlement.
    pub entitlement: String,
    pub source: String,
    pub privileged: i64,
    /// JSON list.
    pub profiles: String,
    pub observed_from: String,
    pub observed_at: Option<String>,
    pub observed: Option<String>,
    pub reviewer: String,
    pub reviewer_level: String,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub delegated_to: Option<String>,
    pub finding_id: Option<i64>,
    pub revocation_id: Option<String>,
    pub plan_id: Option<String>,
}

type ItemSt = (
    (
        Text,
        Text,
        Text,
        Text,
        Text,
        Text,
        BigInt,
        Text,
        Text,
        Nullable<Text>,
        Nullable<Text>,
    ),
    (
        Text,
        Text,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<BigInt>,
        Nullable<Text>,
        Nullable<Text>,
    ),
);

#[derive(Queryable)]
struct ItemHead {
    id: String,
    campaign_id: String,
    user_id: String,
    connector: String,
    entitlement: String,
    source: String,
    privileged: i64,
    profiles: String,
    observed_from: String,
    observed_at: Option<String>,
    observed: Option<String>,
}

#[derive(Queryable)]
struct ItemTail {
    reviewer: String,
    reviewer_level: String,
    decision: Option<String>,
    reason: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<String>,
    delegated_to: Option<String>,
    finding_id: Option<i64>,
    revocation_id: Option<String>,
    plan_id: Option<String>,
}

fn item_of((h, t): (ItemHead, ItemTail)) -> Item {
    Item {
        id: h.id,
        campaign_id: h.campaign_id,
        user_id: h.user_id,
        connector: h.connector,
        entitlement: h.entitlement,
        source: h.source,
        privileged: h.privileged,
        profiles: h.profiles,
        observed_from: h.observed_from,
        observed_at: h.observed_at,
        observed: h.observed,
        reviewer: t.reviewer,
        reviewer_level: t.reviewer_level,
        decision: t.decision,
        reason: t.reason,
        decided_by: t.decided_by,
        decided_at: t.decided_at,
        delegated_to: t.delegated_to,
        finding_id: t.finding_id,
        revocation_id: t.revocation_id,
        plan_id: t.plan_id,
    }
}

const ITEM_COLS: &str = "SELECT id, campaign_id, user_id, connector, entitlement, source, \
                         privileged, profiles, observed_from, observed_at, observed, reviewer, \
                         reviewer_level, decision, reason, decided_by, decided_at, delegated_to, \
                         finding_id, revocation_id, plan_id FROM engine_campaign_items ";

/// An item to add to a campaign.
#[derive(Debug, Clone)]
pub struct NewItem<'a> {
    pub id: &'a str,
    pub campaign_id: &'a str,
    pub user_id: &'a str,
    pub connector: &'a str,
    pub entitlement: &'a str,
    pub source: &'a str,
    pub privileged: bool,
    pub profiles: &'a str,
    pub observed_from: &'a str,
    pub observed_at: Option<DateTime<Utc>>,
    pub observed: Option<&'a str>,
    pub reviewer: &'a str,
    pub reviewer_level: &'a str,
    pub finding_id: Option<i64>,
}

pub fn add_item(c: &mut DbConnection, n: &NewItem<'_>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_campaign_items (id, campaign_id, user_id, connector, entitlement, \
         source, privileged, profiles, observed_from, observed_at, observed, reviewer, \
         reviewer_level, finding_id) VALUES (",
    );
    q.text(n.id)
        .push(", ")
        .text(n.campaign_id)
        .push(", ")
        .text(n.user_id)
        .push(", ")
        .text(n.connector)
        .push(", ")
        .text(n.entitlement)
        .push(", ")
        .text(n.source)
        .push(", ")
        .int(i64::from(n.privileged))
        .push(", ")
        .text(n.profiles)
        .push(", ")
        .text(n.observed_from)
        .push(", ")
        .bind(Bind::OptText(n.observed_at.map(fmt_ts)))
        .push(", ")
        .bind(Bind::OptText(n.observed.map(str::to_string)))
        .push(", ")
        .text(n.reviewer)
        .push(", ")
        .text(n.reviewer_level)
        .push(", ");
    match n.finding_id {
        Some(f) => q.int(f),
        None => q.push("NULL"),
    };
    q.push(")");
    q.execute(c)?;
    Ok(())
}

/// The items of a campaign, in the order they were added (user, connector, entitlement).
pub fn items(c: &mut DbConnection, campaign_id: &str) -> HubResult<Vec<Item>> {
    let mut q = Sql::<ItemSt>::new(ITEM_COLS);
    q.push("WHERE campaign_id = ")
        .text(campaign_id)
        .push(" ORDER BY user_id, connector, entitlement, id");
    Ok(q.load::<(ItemHead, ItemTail)>(c)?
        .into_iter()
        .map(item_of)
        .collect())
}

pub fn item(c: &mut DbConnection, id: &str) -> HubResult<Option<Item>> {
    let mut q = Sql::<ItemSt>::new(ITEM_COLS);
    q.push("WHERE id = ").text(id);
    Ok(q.load::<(ItemHead, ItemTail)>(c)?
        .into_iter()
        .next()
        .map(item_of))
}

/// The item a micro-review opened for drift finding `finding_id`, if any.
pub fn item_for_finding(c: &mut DbConnection, finding_id: i64) -> HubResult<Option<Item>> {
    let mut q = Sql::<ItemSt>::new(ITEM_COLS);
    q.push("WHERE finding_id = ").int(finding_id);
    Ok(q.load::<(ItemHead, ItemTail)>(c)?
        .into_iter()
        .next()
        .map(item_of))
}

/// Records a decision (`certify`, `revoke`, `expired`) on an undecided item still addressed to
/// `reviewer`; false when it was decided already or is addressed to someone else now.
pub fn decide(
    c: &mut DbConnection,
    id: &str,
    reviewer: &str,
    decision: &str,
    reason: &str,
    decided_by: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_campaign_items SET decision = ");
    q.text(decision)
        .push(", reason = ")
        .text(reason)
        .push(", decided_by = ")
        .text(decided_by)
        .push(", decided_at = ")
        .text(fmt_ts(now))
        .push(" WHERE decision IS NULL AND id = ")
        .text(id)
        .push(" AND reviewer = ")
        .text(reviewer);
    Ok(q.execute(c)? == 1)
}

/// Hands an undecided item addressed to `reviewer` to `to` (a user id) at `level`; records
/// `delegated_to` when `delegated` (an escalation does not). False when it was decided or
/// re-addressed meanwhile.
pub fn readdress(
    c: &mut DbConnection,
    id: &str,
    reviewer: &str,
    to: &str,
    level: &str,
    delegated: bool,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_campaign_items SET reviewer = ");
    q.text(to).push(", reviewer_level = ").text(level);
    if delegated {
        q.push(", delegated_to = ").text(to);
    }
    q.push(" WHERE decision IS NULL AND id = ")
        .text(id)
        .push(" AND reviewer = ")
        .text(reviewer);
    Ok(q.execute(c)? == 1)
}

/// Records the revocation a revoke made and the plan that carried it out.
pub fn set_revocation(
    c: &mut DbConnection,
    id: &str,
    revocation_id: &str,
    plan_id: Option<&str>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_campaign_items SET revocation_id = ");
    q.text(revocation_id)
        .push(", plan_id = ")
        .bind(Bind::OptText(plan_id.map(str::to_string)))
        .push(" WHERE id = ")
        .text(id);
    q.execute(c)?;
    Ok(())
}

/// A revocation the engine honours.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Revocation {
    pub id: String,
    pub user_id: String,
    pub connector: String,
    /// JSON text of the entitlement.
    pub entitlement: String,
    /// JSON list of the matched profiles it was revoked under.
    pub profiles: String,
    pub item_id: String,
    pub created: String,
    pub lifted_at: Option<String>,
    pub lifted_why: Option<String>,
}

type RevocationSt = (
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
);

const REVOCATION_COLS: &str = "SELECT id, user_id, connector, entitlement, profiles, item_id, \
                               created, lifted_at, lifted_why FROM engine_revocations ";

#[allow(clippy::too_many_arguments)]
pub fn add_revocation(
    c: &mut DbConnection,
    id: &str,
    user_id: &str,
    connector: &str,
    entitlement: &str,
    profiles: &str,
    item_id: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_revocations (id, user_id, connector, entitlement, profiles, item_id, \
         created) VALUES (",
    );
    q.text(id)
        .push(", ")
        .text(user_id)
        .push(", ")
        .text(connector)
        .push(", ")
        .text(entitlement)
        .push(", ")
        .text(profiles)
        .push(", ")
        .text(item_id)
        .push(", ")
        .text(fmt_ts(now))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// The revocations of a user in force (not lifted).
pub fn revocations(c: &mut DbConnection, user_id: &str) -> HubResult<Vec<Revocation>> {
    let mut q = Sql::<RevocationSt>::new(REVOCATION_COLS);
    q.push("WHERE lifted_at IS NULL AND user_id = ")
        .text(user_id)
        .push(" ORDER BY created, id");
    Ok(q.load::<Revocation>(c)?)
}

/// All revocations (lifted or not), newest first.
pub fn all_revocations(c: &mut DbConnection, limit: i64) -> HubResult<Vec<Revocation>> {
    let mut q = Sql::<RevocationSt>::new(REVOCATION_COLS);
    q.push("WHERE 1 = 1 ORDER BY created DESC, id DESC")
        .limit(limit);
    Ok(q.load::<Revocation>(c)?)
}

/// Lifts the user's revocations made under other profiles than `profiles` (a role change);
/// returns how many.
pub fn lift_on_role_change(
    c: &mut DbConnection,
    user_id: &str,
    profiles: &str,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_revocations SET lifted_at = ");
    q.text(fmt_ts(now))
        .push(", lifted_why = 'role change' WHERE lifted_at IS NULL AND user_id = ")
        .text(user_id)
        .push(" AND profiles <> ")
        .text(profiles);
    Ok(q.execute(c)?)
}

/// Lifts one revocation (an administrator, or a later certification that certifies the access
/// again); false when it was not in force.
pub fn lift(c: &mut DbConnection, id: &str, why: &str, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_revocations SET lifted_at = ");
    q.text(fmt_ts(now))
        .push(", lifted_why = ")
        .text(why)
        .push(" WHERE lifted_at IS NULL AND id = ")
        .text(id);
    Ok(q.execute(c)? == 1)
}

/// The status of each operation of plan `plan_id` (`done` when the revocation was carried out).
pub fn plan_op_statuses(c: &mut DbConnection, plan_id: &str) -> HubResult<Vec<String>> {
    let mut q = Sql::<Text>::new("SELECT status FROM engine_outbox WHERE plan_id = ");
    q.text(plan_id);
    Ok(q.load::<String>(c)?)
}

/// The outcomes of the verifications of plan `plan_id` on `connector`, oldest first.
pub fn plan_verifications(
    c: &mut DbConnection,
    plan_id: &str,
    connector: &str,
) -> HubResult<Vec<String>> {
    let mut q = Sql::<Text>::new("SELECT outcome FROM engine_verifications WHERE plan_id = ");
    q.text(plan_id)
        .push(" AND connector = ")
        .text(connector)
        .push(" ORDER BY checked_at, id");
    Ok(q.load::<String>(c)?)
}

/// When `connector` was last read back for `user_id` by a verification that answered
/// (`verified` or `mismatch`).
pub fn last_read_back(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
) -> HubResult<Option<String>> {
    let mut q = Sql::<Text>::new("SELECT checked_at FROM engine_verifications WHERE user_id = ");
    q.text(user_id)
        .push(" AND connector = ")
        .text(connector)
        .push(" AND outcome IN ('verified', 'mismatch') ORDER BY checked_at DESC")
        .limit(1);
    Ok(q.load::<String>(c)?.into_iter().next())
}

/// Every account record of `connector` (or of every connector): (user id, connector, actual
/// JSON text or planned when nothing ran yet, updated).
pub fn accounts(c: &mut DbConnection) -> HubResult<Vec<(String, String, String, String)>> {
    let q = Sql::<(Text, Text, Text, Text)>::new(
        "SELECT user_id, connector, COALESCE(actual, planned), updated FROM engine_accounts \
         ORDER BY user_id, connector",
    );
    Ok(q.load::<(String, String, String, String)>(c)?)
}

/// The newest outbox operation of `user_id` on `connector`: (id, plan id).
pub fn latest_op(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
) -> HubResult<Option<(i64, String)>> {
    let mut q =
        Sql::<(BigInt, Text)>::new("SELECT id, plan_id FROM engine_outbox WHERE user_id = ");
    q.text(user_id)
        .push(" AND connector = ")
        .text(connector)
        .push(" ORDER BY id DESC")
        .limit(1);
    Ok(q.load::<(i64, String)>(c)?.into_iter().next())
}
