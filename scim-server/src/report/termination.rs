//! The termination report: one leaver or contract-expiry event (the event kind says which)
//! with every system, every action with its requested and done times, the verification per
//! system, the SLA result, the incidents it raised and their resolution, and who approved any
//! exception (a contract extension, a separation-of-duties exception, a blast-radius hold
//! released).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{resolve_user, snapshot, AuditHead, ReportError, ReportResult, UserRef};
use crate::admin::events::{event_detail, EventSlaResult, SystemRecord};
use crate::store::approvals::{self, ApprovalKind};
use crate::store::events::{self, RecordFilter};
use crate::store::{holds, incidents, parse_ts, DbConnection, Store};

/// `schema` of the JSON (docs/schemas/report-termination.schema.json).
pub const SCHEMA: &str = "scimhub/report/termination/v1";

/// The event kinds a termination report is about.
pub const KINDS: [&str; 2] = ["leaver", "contractor-expiry"];

#[derive(Debug, Clone, Serialize)]
pub struct TerminationReport {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub audit_head: AuditHead,
    pub user: UserRef,
    pub event: EventInfo,
    pub sla: EventSlaResult,
    pub summary: Summary,
    /// Per system, in the order the plan first named them.
    pub systems: Vec<SystemRecord>,
    /// "not supported by CONNECTOR: STEP" for each step the policy expected and a connector
    /// cannot do.
    pub unsupported: Vec<String>,
    pub incidents: Vec<IncidentRow>,
    pub exceptions: Vec<ExceptionRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    pub id: i64,
    /// `leaver` or `contractor-expiry`.
    pub kind: String,
    /// When the request that caused it came (the SCIM write, or the contract-end timer).
    pub at: DateTime<Utc>,
    pub plan_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub systems: usize,
    /// Systems whose every operation is done.
    pub systems_done: usize,
    /// Systems whose latest verification found them as planned.
    pub systems_verified: usize,
    pub operations: usize,
    pub operations_done: usize,
    pub incidents: usize,
    pub incidents_open: usize,
}

/// An incident the event raised, with how long it took to resolve.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub kind: String,
    pub connector: Option<String>,
    pub created: String,
    /// `open` or `resolved`.
    pub status: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    /// Seconds from raised to resolved.
    pub resolution_seconds: Option<i64>,
    pub reason: String,
}

impl From<incidents::IncidentDetail> for IncidentRow {
    fn from(i: incidents::IncidentDetail) -> Self {
        let resolution_seconds = match (
            parse_ts(&i.created),
            i.resolved_at.as_deref().and_then(parse_ts),
        ) {
            (Some(a), Some(b)) => Some((b - a).num_seconds()),
            _ => None,
        };
        IncidentRow {
            id: i.id,
            kind: i.kind,
            connector: i.connector,
            created: i.created,
            status: i.status,
            acknowledged_at: i.acknowledged_at,
            acknowledged_by: i.acknowledged_by,
            resolved_at: i.resolved_at,
            resolved_by: i.resolved_by,
            resolution_seconds,
            reason: i.reason,
        }
    }
}

/// An exception to the rules and who decided it.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionRow {
    /// `extension` (a later contract end), `sod` (a separation-of-duties exception) or `hold`
    /// (a blast-radius hold the plan waited behind).
    pub kind: String,
    pub id: String,
    /// What was asked or held.
    pub subject: String,
    /// `approved`, `rejected`, `pending`, `blocked`, `ended`; for a hold `confirmed`,
    /// `discarded` or `pending`.
    pub status: String,
    pub requested: Option<String>,
    pub decided: Option<String>,
    /// The deciding person's userName (or credential for a hold).
    pub decided_by: Option<String>,
    /// The authority the policy gave them: `manager`, `owner`, `sponsor`, `security`.
    pub decided_as: Option<String>,
    pub reason: Option<String>,
}

/// Which event: the user's latest leaver or contract-expiry event, or `event` (which must be
/// one of the user's and of those kinds).
pub fn build(
    store: &Store,
    user: &str,
    event: Option<i64>,
    now: DateTime<Utc>,
) -> ReportResult<TerminationReport> {
    snapshot(store, |c| build_in(c, user, event, now))
}

fn build_in(
    c: &mut DbConnection,
    user: &str,
    event: Option<i64>,
    now: DateTime<Utc>,
) -> ReportResult<TerminationReport> {
    let audit_head = AuditHead::read(c)?;
    let who = resolve_user(c, user)?;
    let id = match event {
        Some(id) => id,
        None => latest_termination(c, &who.id)?.ok_or_else(|| {
            ReportError::NotFound(format!("a leaver or contract-expiry event of {user}"))
        })?,
    };
    let e = event_detail(c, id)?.ok_or_else(|| ReportError::NotFound(format!("event {id}")))?;
    if e.user_id != who.id {
        return Err(ReportError::Invalid(format!(
            "event {id} is not an event of {user}"
        )));
    }
    if !KINDS.contains(&e.kind.as_str()) {
        return Err(ReportError::Invalid(format!(
            "event {id} is a {} event, not a leaver or contract-expiry event",
            e.kind
        )));
    }
    let incidents: Vec<IncidentRow> = incidents::for_plan(c, &e.plan_id)?
        .into_iter()
        .map(IncidentRow::from)
        .collect();
    let mut exceptions = Vec::new();
    if let Some(hold) = &e.hold_id {
        if let Some(h) = holds::decision(c, hold)? {
            exceptions.push(ExceptionRow {
                kind: "hold".into(),
                id: h.id,
                subject: h.reason,
                status: h.status,
                requested: None,
                decided: h.decided,
                decided_by: h.decided_by,
                decided_as: None,
                reason: None,
            });
        }
    }
    for a in approvals::for_user(c, &who.id)? {
        if !matches!(a.kind, ApprovalKind::Extension | ApprovalKind::Sod) {
            continue;
        }
        let subject = match a.kind {
            ApprovalKind::Extension => match a.detail.get("new_end").and_then(|v| v.as_str()) {
                Some(until) => format!("contract extension until {until}"),
                None => "contract extension".into(),
            },
            _ => format!(
                "separation-of-duties exception {}",
                a.entitlement.clone().unwrap_or_default()
            ),
        };
        exceptions.push(ExceptionRow {
            kind: a.kind.as_str().into(),
            id: a.id,
            subject,
            status: a.status.as_str().into(),
            requested: Some(a.requested),
            decided: a.decided,
            decided_by: a.decided_by,
            decided_as: a.decided_as,
            reason: a.reason,
        });
    }
    let summary = Summary {
        systems: e.systems.len(),
        systems_done: e.systems.iter().filter(|s| s.outcome == "done").count(),
        systems_verified: e
            .systems
            .iter()
            .filter(|s| s.verification.as_deref() == Some("verified"))
            .count(),
        operations: e.systems.iter().map(|s| s.operations.len()).sum(),
        operations_done: e
            .systems
            .iter()
            .flat_map(|s| &s.operations)
            .filter(|o| o.status == "done")
            .count(),
        incidents: incidents.len(),
        incidents_open: incidents.iter().filter(|i| i.status == "open").count(),
    };
    Ok(TerminationReport {
        schema: SCHEMA,
        generated_at: now,
        audit_head,
        user: UserRef {
            id: who.id,
            user_name: who.user_name.or(e.user_name),
        },
        event: EventInfo {
            id: e.id,
            kind: e.kind,
            at: e.at,
            plan_id: e.plan_id,
        },
        sla: e.sla,
        summary,
        systems: e.systems,
        unsupported: e.unsupported,
        incidents,
        exceptions,
    })
}

/// The id of the user's latest leaver or contract-expiry event.
fn latest_termination(c: &mut DbConnection, user_id: &str) -> ReportResult<Option<i64>> {
    let mut best = None;
    for kind in KINDS {
        let f = RecordFilter {
            user_id: Some(user_id.to_string()),
            event: Some(kind.to_string()),
            ..Default::default()
        };
        if let Some(e) = events::records(c, &f, 1)?.into_iter().next() {
            best = best.max(Some(e.id));
        }
    }
    Ok(best)
}
