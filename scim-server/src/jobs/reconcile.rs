//! Drift reconciliation runs: pages through a connector's `list_accounts` outside any
//! transaction, judges each page with the pure comparison ([`crate::engine::drift`]) against
//! the engine's records of that connector, stores the findings a page at a time
//! (`engine_drift_findings`), closes the ones a complete run no longer sees, and acts per the
//! policy: `report` (a finding, an incident for the kinds `[drift] incidents` lists), `fix`
//! (the user's record is set to what the system holds and the user re-planned, so the ordinary
//! diff queues the correction under the blast-radius guard; an orphan is disabled or deleted
//! per the connector's `on_leave`, held when the guard trips), `review` (the user's manager is
//! asked to keep or remove it).
//!
//! Memory: the engine's records of the connector (compact: key, id, entitlements) are held for
//! the run; accounts only a page at a time; user documents only for the page's users.
//!
//! Runs come from the connector's `reconcile` schedule (a durable `reconcile` timer per
//! connector, leased like verification timers), `scimhub reconcile` and the admin API.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use connectors::{AccountState, Capability, Connector, ErrorKind};
use serde::Serialize;

use super::{blocking, Workers};
use crate::engine::desired::account_attributes;
use crate::engine::drift::{
    assess, assess_unlisted, intended, Assessment, Finding, Index, Recorded,
};
use crate::engine::plan::AccountRecord;
use crate::engine::{load_user_doc, Engine};
use crate::error::{HubError, HubResult};
use crate::policy::DriftAction;
use crate::store::drift as store_drift;
use crate::store::{incidents, timers, Store};

/// Findings a run's report lists (the counts cover all of them).
const REPORT_LIMIT: usize = 1000;
/// How long a claimed scheduled run is held before another node may take it.
const LEASE_MINUTES: i64 = 30;

/// What a run found and did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub connector: String,
    pub run_id: String,
    pub dry_run: bool,
    /// Accounts the listing returned.
    pub listed: usize,
    /// Protected or out-of-scope accounts, left alone.
    pub excluded: usize,
    /// Accounts of users with operations still to run, checked next time.
    pub in_flight: usize,
    /// Findings per kind.
    pub counts: BTreeMap<String, usize>,
    /// The findings (the first [`REPORT_LIMIT`]), each with its action.
    pub findings: Vec<ReportedFinding>,
    /// Findings opened by this run (0 in a dry run).
    pub opened: usize,
    /// Findings closed because this run no longer saw them (0 in a dry run).
    pub closed: usize,
    /// The corrections planned (or, in a dry run, that would be).
    pub fixes: Vec<String>,
    /// Users re-planned to fix drift.
    pub replanned: usize,
    /// The hold orphan fixes wait behind when the blast-radius guard tripped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Managers asked to review new findings (`review` in the policy).
    pub reviews: usize,
}

/// A finding with what the policy says to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub action: DriftAction,
}

/// The connectors a run without `--connector` covers: those built that can list accounts.
pub fn listable(engine: &Engine) -> Vec<String> {
    engine
        .policy
        .current()
        .connectors
        .keys()
        .filter(|n| {
            engine
                .connectors
                .get(n)
                .is_some_and(|c| c.capabilities().supports(Capability::ListAccounts))
        })
        .cloned()
        .collect()
}

/// How long a run holds its connector's run lease without renewing it (renewed every page).
const RUN_LEASE_SECS: i64 = 600;

/// One reconcile run of `connector`; `dry_run` lists and compares but writes nothing. Runs of
/// one connector never overlap (schedule, CLI and API alike, across nodes): a second one is
/// refused while the first holds the connector's run lease, since it would close the findings
/// the first had just seen.
pub async fn run(
    store: &Store,
    engine: &Engine,
    connector: &str,
    dry_run: bool,
) -> HubResult<RunReport> {
    let run_id = uuid::Uuid::now_v7().to_string();
    if dry_run {
        return run_leased(store, engine, connector, true, run_id).await;
    }
    let now = engine.now();
    let taken = {
        let (store, name, rid) = (store.clone(), connector.to_string(), run_id.clone());
        let until = now + Duration::seconds(RUN_LEASE_SECS);
        blocking(move || {
            store.write_tx(|c, _| store_drift::take_run_lease(c, &name, &rid, now, until))
        })
        .await?
    };
    if !taken {
        return Err(HubError::Unavailable(format!(
            "a reconcile run of {connector:?} is already in progress; try again when it finishes"
        )));
    }
    let out = run_leased(store, engine, connector, false, run_id.clone()).await;
    let (store, name) = (store.clone(), connector.to_string());
    let released =
        blocking(move || store.write_tx(|c, _| store_drift::release_run_lease(c, &name, &run_id)))
            .await;
    let report = out?;
    released?;
    Ok(report)
}

async fn run_leased(
    store: &Store,
    engine: &Engine,
    connector: &str,
    dry_run: bool,
    run_id: String,
) -> HubResult<RunReport> {
    let policy = engine.policy.current();
    let def = policy
        .connectors
        .get(connector)
        .cloned()
        .ok_or(HubError::NotFound)?;
    let conn = engine.connectors.get(connector).ok_or_else(|| {
        HubError::Unavailable(format!("connector {connector:?} could not be built"))
    })?;
    if !conn.capabilities().supports(Capability::ListAccounts) {
        return Err(HubError::Unavailable(format!(
            "connector {connector:?} cannot list accounts"
        )));
    }
    let now = engine.now();
    let (mut index, exceptions) = {
        let (store, name) = (store.clone(), connector.to_string());
        blocking(move || {
            store.write_tx(|c, _| {
                let flight: BTreeSet<String> = store_drift::users_in_flight(c, &name)?
                    .into_iter()
                    .collect();
                let records = store_drift::connector_accounts(c, &name)?
                    .into_iter()
                    .filter_map(|(user_id, planned, state)| {
                        let record: AccountRecord = serde_json::from_str(&planned).ok()?;
                        Some(Recorded {
                            in_flight: flight.contains(&user_id),
                            user_id,
                            record,
                            user_state: state,
                        })
                    })
                    .collect();
                let exceptions: BTreeSet<(String, String, String)> =
                    store_drift::exceptions(c, &name, now)?
                        .into_iter()
                        .map(|e| (e.kind, e.account, e.entitlement))
                        .collect();
                Ok((Index::new(records), exceptions))
            })
        })
        .await?
    };
    let mut report = RunReport {
        connector: connector.to_string(),
        run_id: run_id.clone(),
        dry_run,
        listed: 0,
        excluded: 0,
        in_flight: 0,
        counts: BTreeMap::new(),
        findings: Vec::new(),
        opened: 0,
        closed: 0,
        fixes: Vec::new(),
        replanned: 0,
        held: None,
        reviews: 0,
    };
    // Findings to act on after the listing: fixes by user (orphans apart), reviews.
    let mut to_fix: Vec<Finding> = Vec::new();
    let mut page: Option<String> = None;
    loop {
        if !dry_run {
            // Renewed every page so a long listing keeps the lease; lost means another run
            // took over after this one stalled past the lease: stop rather than compete.
            let (store, name, rid) = (store.clone(), connector.to_string(), run_id.clone());
            let until = engine.now() + Duration::seconds(RUN_LEASE_SECS);
            let held = blocking(move || {
                store.write_tx(|c, _| store_drift::extend_run_lease(c, &name, &rid, until))
            })
            .await?;
            if !held {
                return Err(HubError::Unavailable(format!(
                    "reconcile run of {connector:?} lost its lease to another run"
                )));
            }
        }
        let listed = conn
            .list_accounts(page.as_deref())
            .await
            .map_err(|e| HubError::Unavailable(format!("listing {connector}: {e}")))?;
        report.listed += listed.accounts.len();
        // The page's accounts with their records; user documents for those the connector's
        // attributes are compared on.
        let mut judged: Vec<(AccountState, Option<String>, Option<Recorded>)> =
            Vec::with_capacity(listed.accounts.len());
        for acc in listed.accounts {
            let excluded = conn.excluded(&acc);
            // Marked listed either way: an excluded account of the engine's is not missing.
            let rec = index.take(&acc.account).cloned();
            let rec = if excluded.is_none() { rec } else { None };
            judged.push((acc, excluded, rec));
        }
        if !conn.lists_entitlements() {
            read_entitlements(&*conn, &mut judged).await;
        }
        let users: Vec<String> = judged
            .iter()
            .filter_map(|(_, _, r)| r.as_ref())
            .filter(|r| r.record.exists && r.record.enabled && !r.in_flight)
            .map(|r| r.user_id.clone())
            .collect();
        let docs = {
            let (store, attrs) = (store.clone(), def.attributes.clone());
            blocking(move || {
                store.write_tx(|c, _| {
                    let mut out = BTreeMap::new();
                    for u in users {
                        if let Some(doc) = load_user_doc(c, &u)? {
                            out.insert(u, account_attributes(&doc, &attrs));
                        }
                    }
                    Ok(out)
                })
            })
            .await?
        };
        let mut found = Vec::new();
        for (acc, excluded, rec) in &judged {
            let want = rec.as_ref().and_then(|r| docs.get(&r.user_id));
            match assess(acc, excluded.clone(), rec.as_ref(), want, &exceptions) {
                Assessment::Excluded(_) => report.excluded += 1,
                Assessment::InFlight => report.in_flight += 1,
                Assessment::Findings(f) => found.extend(f),
            }
        }
        drop(judged);
        record_page(store, engine, &mut report, found, &mut to_fix).await?;
        match listed.next {
            Some(n) => page = Some(n),
            None => break,
        }
    }
    let missing: Vec<Finding> = index
        .unlisted()
        .filter_map(|r| assess_unlisted(r, &exceptions))
        .collect();
    drop(index);
    record_page(store, engine, &mut report, missing, &mut to_fix).await?;
    for f in to_fix.iter() {
        report.fixes.push(intended(f, def.on_leave));
    }
    if dry_run {
        return Ok(report);
    }
    if report.reviews > 0 {
        // The mails wait in the notification queue.
        engine.wake_workers();
    }
    let (store2, name, rid) = (store.clone(), connector.to_string(), run_id.clone());
    report.closed =
        blocking(move || store2.write_tx(|c, _| store_drift::close_unseen(c, &name, &rid, now)))
            .await?;
    if !to_fix.is_empty() {
        let (store2, engine2, name) = (store.clone(), engine.clone(), connector.to_string());
        let (r, h) = blocking(move || {
            store2.write_tx(|c, _| {
                crate::engine::reconcile::fix(&engine2, c, &name, def.on_leave, &to_fix)
            })
        })
        .await?;
        report.replanned = r;
        report.held = h;
    }
    if report.replanned > 0 || report.held.is_none() && !report.fixes.is_empty() {
        engine.wake_workers();
    }
    tracing::info!(
        connector,
        listed = report.listed,
        excluded = report.excluded,
        opened = report.opened,
        closed = report.closed,
        fixes = report.fixes.len(),
        "drift reconciliation finished"
    );
    Ok(report)
}

/// Reads the accounts of the page whose entitlements are compared (those with a record of an
/// enabled account) when the listing does not carry entitlements. An account that cannot be
/// read keeps the listing's view: it is compared without entitlements.
async fn read_entitlements(
    conn: &dyn Connector,
    judged: &mut [(AccountState, Option<String>, Option<Recorded>)],
) {
    for (acc, excluded, rec) in judged.iter_mut() {
        let Some(r) = rec else { continue };
        if excluded.is_some() || r.in_flight || !(r.record.exists && r.record.enabled) {
            continue;
        }
        match conn.read(&acc.account).await {
            Ok(Some(s)) => acc.entitlements = s.entitlements,
            Ok(None) => {}
            Err(e) if e.kind == ErrorKind::Unsupported => return,
            Err(e) => {
                tracing::warn!(account = %acc.account.key, error = %e, "reconcile: read failed");
                // Without the account's entitlements, claiming they are missing would be wrong.
                acc.entitlements = r.record.entitlements.iter().cloned().collect();
            }
        }
    }
}

/// Counts a page's findings into the report, stores them (not in a dry run; one transaction),
/// raises an incident for each new one of a kind `[drift] incidents` lists, and sets aside
/// those to fix or review.
async fn record_page(
    store: &Store,
    engine: &Engine,
    report: &mut RunReport,
    found: Vec<Finding>,
    to_fix: &mut Vec<Finding>,
) -> HubResult<()> {
    if found.is_empty() {
        return Ok(());
    }
    let policy = engine.policy.current();
    let connector = report.connector.clone();
    let actions: Vec<DriftAction> = found
        .iter()
        .map(|f| policy.drift_action(&connector, f.kind.as_str()))
        .collect();
    for (f, a) in found.iter().zip(&actions) {
        *report
            .counts
            .entry(f.kind.as_str().to_string())
            .or_insert(0) += 1;
        if report.findings.len() < REPORT_LIMIT {
            report.findings.push(ReportedFinding {
                finding: f.clone(),
                action: *a,
            });
        }
    }
    if !report.dry_run {
        let (store, run_id, now) = (store.clone(), report.run_id.clone(), engine.now());
        let incident_kinds = policy.drift.incidents.clone();
        let found2 = found.clone();
        let actions2 = actions.clone();
        let engine2 = engine.clone();
        let (opened, reviews) = blocking(move || {
            store.write_tx(|c, _| {
                let (mut opened, mut reviews) = (0, 0);
                for (f, a) in found2.iter().zip(&actions2) {
                    let ent = f.entitlement_key();
                    let detail = f.stored_detail();
                    let new = store_drift::seen(
                        c,
                        &store_drift::Seen {
                            connector: &connector,
                            kind: f.kind.as_str(),
                            account: &f.account,
                            entitlement: &ent,
                            user_id: f.user_id.as_deref(),
                            action: a.as_str(),
                            detail: &detail,
                        },
                        &run_id,
                        now,
                    )?;
                    if !new {
                        continue;
                    }
                    opened += 1;
                    if *a == DriftAction::Review {
                        // A new finding: its user's manager is asked once.
                        if let Some(id) =
                            store_drift::open_id(c, &connector, f.kind.as_str(), &f.account, &ent)?
                        {
                            if crate::engine::reconcile::ask_review(&engine2, c, &connector, id, f)?
                            {
                                reviews += 1;
                            }
                        }
                    }
                    if incident_kinds.iter().any(|k| k == f.kind.as_str()) {
                        let what = if ent.is_empty() {
                            f.account.clone()
                        } else {
                            format!("{} {ent}", f.account)
                        };
                        incidents::raise_once(
                            c,
                            &incidents::NewIncident {
                                kind: "drift",
                                user_id: f.user_id.as_deref(),
                                connector: Some(&connector),
                                reason: &format!(
                                    "drift on {connector}: {} {what} (action: {})",
                                    f.kind.as_str(),
                                    a.as_str()
                                ),
                                dedupe_key: &format!(
                                    "drift:{connector}:{}:{}:{ent}:{run_id}",
                                    f.kind.as_str(),
                                    f.account
                                ),
                            },
                            now,
                        )?;
                    }
                }
                Ok((opened, reviews))
            })
        })
        .await?;
        report.opened += opened;
        report.reviews += reviews;
    }
    for (f, a) in found.into_iter().zip(actions) {
        if a == DriftAction::Fix {
            to_fix.push(f);
        }
    }
    Ok(())
}

impl Workers {
    /// Keeps one `reconcile` timer per connector with a schedule, and runs the due ones;
    /// returns how many ran.
    pub async fn run_reconciles(&self) -> HubResult<usize> {
        let policy = self.engine.policy.current();
        let now = self.engine.now();
        let schedules: Vec<(String, Duration)> = policy
            .connectors
            .values()
            .filter_map(|c| c.reconcile.map(|i| (c.name.clone(), i)))
            .collect();
        let store = self.store.clone();
        let lease = now + Duration::minutes(LEASE_MINUTES);
        let due = blocking(move || {
            store.write_tx(|c, _| {
                for (name, every) in &schedules {
                    store_drift::ensure_timer(c, name, now + *every, now)?;
                }
                timers::lease_due(c, "reconcile", now, lease, 10)
            })
        })
        .await?;
        let n = due.len();
        for row in due {
            let name = row
                .payload
                .get("connector")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let every = policy.connectors.get(&name).and_then(|c| c.reconcile);
            if every.is_some() {
                crate::metrics::global().reconcile_run(&name, "schedule");
                if let Err(e) = run(&self.store, &self.engine, &name, false).await {
                    tracing::warn!(connector = %name, error = %e, "scheduled reconciliation failed");
                }
            }
            let (store, now) = (self.store.clone(), self.engine.now());
            blocking(move || {
                store.write_tx(|c, _| match every {
                    Some(i) => timers::reschedule(c, row.id, now + i, &row.payload),
                    // The schedule was removed from the policy.
                    None => timers::fired(c, row.id, now),
                })
            })
            .await?;
        }
        Ok(n)
    }
}
