//! A contractor's provisioning history: every lifecycle event of the user with its whole record
//! (systems, operations with requested and done times, verification, SLA, incidents), the
//! contract (dates, sponsor) and every approval request. When the contract-expiry plan
//! completes, the outbox runner calls [`archive`] in the transaction that records the
//! completion: the report is generated then and kept in `report_archives`, with an audit entry
//! holding its SHA-256, so later changes (a rehire, pruned audit entries) leave it as it was.
//! [`serve`] answers with the latest kept copy when there is one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{resolve_user, snapshot, AuditHead, ReportError, ReportResult, UserRef};
use crate::admin::events::{event_detail, EventDetail};
use crate::error::HubResult;
use crate::store::approvals::{self, ApprovalRow};
use crate::store::events::{self, EventSla, RecordFilter};
use crate::store::{audit, engine_state, report_archives, DbConnection, Store};

/// `schema` of the JSON (docs/schemas/report-contractor.schema.json).
pub const SCHEMA: &str = "scimhub/report/contractor/v1";

/// `report_archives.kind` of these reports.
pub const ARCHIVE_KIND: &str = "contractor";

/// The most events one history lists (the newest; older ones are counted).
pub const MAX_EVENTS: i64 = 500;

#[derive(Debug, Clone, Serialize)]
pub struct ContractorHistory {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub audit_head: AuditHead,
    pub user: UserRef,
    /// The engine's lifecycle state: `active`, `not_started`, `left`, `expired`.
    pub state: Option<String>,
    pub contract: Contract,
    /// Set on the copy kept at contract expiry: which event's completion kept it, and when.
    pub archived: Option<Archived>,
    pub summary: HistorySummary,
    /// Oldest first.
    pub events: Vec<EventDetail>,
    /// Every approval request of the user (entitlements, SoD exceptions, extensions), oldest
    /// first.
    pub approvals: Vec<ApprovalRow>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Contract {
    pub contractor: bool,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub sponsor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Archived {
    pub event_id: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HistorySummary {
    pub events: usize,
    /// Whether older events than the ones listed exist (at most [`MAX_EVENTS`] are listed).
    pub older_events_not_listed: bool,
    /// Distinct systems any event touched.
    pub systems: Vec<String>,
    pub operations: usize,
}

/// The history of `user` as it is now (live).
pub fn build(store: &Store, user: &str, now: DateTime<Utc>) -> ReportResult<ContractorHistory> {
    snapshot(store, |c| {
        let who = resolve_user(c, user)?;
        history(c, who, now, None)
    })
}

/// What the contractor report answers: the latest kept copy of the user's history (as a JSON
/// value), else the live history.
pub fn serve(store: &Store, user: &str, now: DateTime<Utc>) -> ReportResult<Value> {
    snapshot(store, |c| {
        let who = resolve_user(c, user)?;
        if let Some(a) = report_archives::latest(c, ARCHIVE_KIND, &who.id)? {
            return serde_json::from_str(&a.body).map_err(|_| ReportError::Archive(a.id));
        }
        let h = history(c, who, now, None)?;
        serde_json::to_value(&h).map_err(|e| ReportError::Render(e.to_string()))
    })
}

fn history(
    c: &mut DbConnection,
    who: UserRef,
    now: DateTime<Utc>,
    archived: Option<Archived>,
) -> ReportResult<ContractorHistory> {
    let audit_head = AuditHead::read(c)?;
    let engine_user = engine_state::get_user(c, &who.id)?;
    let fact = |k: &str| {
        engine_user
            .as_ref()
            .and_then(|u| u.facts.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let contract = Contract {
        contractor: engine_user
            .as_ref()
            .and_then(|u| u.facts.get("contractor"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        start_date: fact("start_date"),
        end_date: fact("end_date"),
        sponsor: fact("sponsor"),
    };
    let f = RecordFilter {
        user_id: Some(who.id.clone()),
        ..Default::default()
    };
    let records = events::records(c, &f, MAX_EVENTS + 1)?;
    let not_listed = records.len() as i64 > MAX_EVENTS;
    let mut list = Vec::new();
    for r in records.iter().take(MAX_EVENTS as usize).rev() {
        if let Some(d) = event_detail(c, r.id)? {
            list.push(d);
        }
    }
    let mut systems: Vec<String> = Vec::new();
    for s in list.iter().flat_map(|e| &e.systems) {
        if !systems.contains(&s.connector) {
            systems.push(s.connector.clone());
        }
    }
    let summary = HistorySummary {
        events: list.len(),
        older_events_not_listed: not_listed,
        systems,
        operations: list
            .iter()
            .flat_map(|e| &e.systems)
            .map(|s| s.operations.len())
            .sum(),
    };
    Ok(ContractorHistory {
        schema: SCHEMA,
        generated_at: now,
        audit_head,
        state: engine_user.as_ref().map(|u| u.state.clone()),
        user: UserRef {
            user_name: who.user_name.or_else(|| fact("userName")),
            id: who.id,
        },
        contract,
        archived,
        summary,
        events: list,
        approvals: approvals::for_user(c, &f.user_id.clone().unwrap_or_default())?,
    })
}

/// Keeps the history of the user of `event` when it is a completed contract-expiry event (the
/// runner calls this in the transaction that completed the plan). Once per event.
pub fn archive(c: &mut DbConnection, event: &EventSla, now: DateTime<Utc>) -> HubResult<()> {
    if event.event != "contractor-expiry" {
        return Ok(());
    }
    let Some(id) = events::record_id_by_plan(c, &event.plan_id)? else {
        return Ok(());
    };
    let user_name = engine_state::get_user(c, &event.user_id)?.and_then(|u| {
        u.facts
            .get("userName")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let who = UserRef {
        id: event.user_id.clone(),
        user_name,
    };
    let archived = Some(Archived {
        event_id: id,
        at: now,
    });
    let h = match history(c, who, now, archived) {
        Ok(h) => h,
        Err(ReportError::Store(e)) => return Err(e),
        Err(e) => {
            // Nothing else can fail here; keep the completion rather than lose it over a report.
            tracing::error!(error = %e, plan = %event.plan_id, "contractor history not archived");
            return Ok(());
        }
    };
    let body = match serde_json::to_string(&h) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, plan = %event.plan_id, "contractor history not archived");
            return Ok(());
        }
    };
    if report_archives::insert(c, ARCHIVE_KIND, &event.user_id, id, &body, now)? {
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor: "worker",
                user_id: &event.user_id,
                connector: None,
                action: "report_archived",
                outcome: "done",
                detail: json!({
                    "report": ARCHIVE_KIND,
                    "event_id": id,
                    "sha256": hex::encode(Sha256::digest(body.as_bytes())),
                }),
            },
        )?;
    }
    Ok(())
}
