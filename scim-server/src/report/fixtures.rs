//! Reports with fixed contents and times for the HTML snapshots (`html::tests`): every part of
//! each page filled, a userName and an operation error carrying markup.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::chart::{self, Datum};
use super::period::{Period, PeriodReport, Section};
use super::termination::{EventInfo, ExceptionRow, IncidentRow, Summary, TerminationReport};
use super::{AuditHead, UserRef};
use crate::admin::events::{EventSlaResult, OperationRecord, SystemRecord, VerificationRecord};

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0)
        .single()
        .unwrap_or_default()
}

fn head() -> AuditHead {
    AuditHead {
        seq: 4812,
        hash: "9f2c4e1a0b7d3c5e8f6a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e".into(),
    }
}

fn op(
    id: i64,
    what: &str,
    requested: DateTime<Utc>,
    done: Option<DateTime<Utc>>,
    attempts: i64,
    err: Option<&str>,
) -> OperationRecord {
    OperationRecord {
        id,
        operation: what.into(),
        status: if done.is_some() { "done" } else { "failed" }.into(),
        attempts,
        requested,
        done,
        last_error: err.map(str::to_string),
    }
}

pub fn termination() -> TerminationReport {
    let at = t(9, 5);
    let systems = vec![
        SystemRecord {
            connector: "github".into(),
            requested: at,
            done: Some(t(9, 6)),
            outcome: "done".into(),
            operations: vec![
                op(101, "set_enabled jdoe false", at, Some(t(9, 6)), 1, None),
                op(102, "revoke_sessions jdoe", at, Some(t(9, 6)), 1, None),
                op(103, "revoke team:eng from jdoe", at, Some(t(9, 6)), 1, None),
            ],
            verifications: vec![VerificationRecord {
                outcome: "verified".into(),
                checked_at: "2026-11-30T09:21:00.000000Z".into(),
                attempts: 1,
                detail: json!({}),
            }],
            verification: Some("verified".into()),
        },
        SystemRecord {
            connector: "slack".into(),
            requested: at,
            done: Some(t(11, 5)),
            outcome: "done".into(),
            operations: vec![op(
                104,
                "set_enabled jdoe false",
                at,
                Some(t(11, 5)),
                2,
                None,
            )],
            verifications: vec![VerificationRecord {
                outcome: "verified".into(),
                checked_at: "2026-11-30T11:21:00.000000Z".into(),
                attempts: 1,
                detail: json!({}),
            }],
            verification: Some("verified".into()),
        },
        SystemRecord {
            connector: "erp".into(),
            requested: at,
            done: None,
            outcome: "failed".into(),
            operations: vec![op(
                105,
                "delete jdoe",
                at,
                None,
                5,
                Some("403 <b>forbidden</b>"),
            )],
            verifications: vec![],
            verification: None,
        },
    ];
    TerminationReport {
        schema: super::termination::SCHEMA,
        generated_at: t(12, 0),
        audit_head: head(),
        user: UserRef {
            id: "2819c223-7f76-453a-919d-413861904646".into(),
            user_name: Some("jdoe<script>alert(1)</script>".into()),
        },
        event: EventInfo {
            id: 4711,
            kind: "leaver".into(),
            at,
            plan_id: "0193f1c2-plan".into(),
        },
        sla: EventSlaResult {
            due: Some(t(10, 5)),
            completed: None,
            result: Some("breached".into()),
            seconds: None,
        },
        summary: Summary {
            systems: 3,
            systems_done: 2,
            systems_verified: 2,
            operations: 5,
            operations_done: 4,
            incidents: 2,
            incidents_open: 1,
        },
        systems,
        unsupported: vec!["not supported by erp: revoke_credentials".into()],
        incidents: vec![
            IncidentRow {
                id: 31,
                kind: "sla_breach".into(),
                connector: Some("slack".into()),
                created: "2026-11-30T10:05:00.000000Z".into(),
                status: "resolved".into(),
                acknowledged_at: Some("2026-11-30T10:20:00.000000Z".into()),
                acknowledged_by: Some("oncall".into()),
                resolved_at: Some("2026-11-30T11:10:00.000000Z".into()),
                resolved_by: Some("oncall".into()),
                resolution_seconds: Some(3900),
                reason: "leaver of jdoe not complete at its SLA deadline".into(),
            },
            IncidentRow {
                id: 32,
                kind: "operation_parked".into(),
                connector: Some("erp".into()),
                created: "2026-11-30T09:40:00.000000Z".into(),
                status: "open".into(),
                acknowledged_at: None,
                acknowledged_by: None,
                resolved_at: None,
                resolved_by: None,
                resolution_seconds: None,
                reason: "retry budget exhausted after 5 attempts: 403 forbidden".into(),
            },
        ],
        exceptions: vec![ExceptionRow {
            kind: "hold".into(),
            id: "hold-7".into(),
            subject: "12 users would lose access within 10 minutes".into(),
            status: "confirmed".into(),
            requested: None,
            decided: Some("2026-11-30T09:04:00.000000Z".into()),
            decided_by: Some("security-lead".into()),
            decided_as: None,
            reason: None,
        }],
    }
}

pub fn period() -> PeriodReport {
    let from = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let to = Utc
        .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let kinds = [
        ("joiner", 42),
        ("leaver", 17),
        ("mover", 9),
        ("contractor-expiry", 3),
    ];
    let events = Section {
        id: "events",
        title: "Lifecycle events".into(),
        data: json!({"total": 71, "kinds": kinds.iter().map(|(k, n)| json!({"kind": k, "count": n})).collect::<Vec<_>>()}),
        charts: vec![chart::bars(
            "Events by kind",
            &kinds
                .iter()
                .map(|(k, n)| Datum::new(*k, *n as f64, n.to_string()))
                .collect::<Vec<_>>(),
            None,
        )],
    };
    let sla = Section {
        id: "sla",
        title: "SLA attainment".into(),
        data: json!({"met": 18, "breached": 2, "attainment": 90.0, "kinds": [
            {"kind": "contractor-expiry", "events": 3, "completed": 3, "with_sla": 3, "met": 3, "breached": 0, "running": 0, "attainment": 100.0, "max_seconds": 540},
            {"kind": "leaver", "events": 17, "completed": 17, "with_sla": 17, "met": 15, "breached": 2, "running": 0, "attainment": 88.2, "max_seconds": 7200},
            {"kind": "joiner", "events": 42, "completed": 41, "with_sla": 0, "met": 0, "breached": 0, "running": 0, "attainment": null, "max_seconds": null},
        ]}),
        charts: vec![chart::percent(
            "SLA met, per event kind",
            &[
                Datum::new("contractor-expiry", 100.0, "100.0 % (3/3)").tone("good"),
                Datum::new("leaver", 88.2, "88.2 % (15/17)").tone("bad"),
            ],
        )],
    };
    let incidents = Section {
        id: "incidents",
        title: "Incidents".into(),
        data: json!({"total": 2, "open": 1, "resolved": 1, "truncated": false,
        "median_resolution_seconds": 3900, "max_resolution_seconds": 3900,
        "by_kind": [{"kind": "sla_breach", "count": 1}, {"kind": "operation_parked", "count": 1}],
        "items": [
            {"id": 31, "kind": "sla_breach", "connector": "slack", "user_id": "u1", "created": "2026-11-30T10:05:00.000000Z", "status": "resolved", "acknowledged_by": "oncall", "resolved_at": "2026-11-30T11:10:00.000000Z", "resolved_by": "oncall", "resolution_seconds": 3900, "reason": "late"},
            {"id": 32, "kind": "operation_parked", "connector": "erp", "user_id": "u1", "created": "2026-11-30T09:40:00.000000Z", "status": "open", "acknowledged_by": null, "resolved_at": null, "resolved_by": null, "resolution_seconds": null, "reason": "403"},
        ]}),
        charts: vec![chart::bars(
            "Time to resolve, per incident",
            &[Datum::new("#31 sla_breach", 3900.0, chart::duration(3900)).tone("warn")],
            None,
        )],
    };
    let drift = Section {
        id: "drift",
        title: "Drift findings".into(),
        data: json!({"total": 1, "open": 1, "closed": 0, "truncated": false,
            "by_kind": [{"kind": "github orphan", "count": 1}],
            "items": [{"id": 7, "connector": "github", "kind": "orphan", "account": "old-bot", "entitlement": "", "user_id": null, "action": "review", "status": "open", "first_seen": "2026-11-12T03:00:00.000000Z", "closed_at": null}]}),
        charts: vec![chart::bars(
            "Drift findings, per system and kind",
            &[Datum::new("github orphan", 1.0, "1").tone("warn")],
            None,
        )],
    };
    // A section without a template of its own (as one added later would be).
    let extra = Section {
        id: "emergency_grants",
        title: "Emergency grants".into(),
        data: json!({"total": 0, "grants": []}),
        charts: vec![],
    };
    PeriodReport {
        schema: super::period::SCHEMA,
        generated_at: t(12, 0),
        audit_head: head(),
        period: Period { from, to },
        sections: vec![events, sla, incidents, drift, extra],
    }
}

pub fn contractor() -> serde_json::Value {
    let r = termination();
    json!({
        "schema": super::contractor::SCHEMA,
        "generated_at": "2026-11-30T12:00:00Z",
        "audit_head": head(),
        "user": {"id": "c-42", "user_name": "cora"},
        "state": "expired",
        "contract": {"contractor": true, "start_date": "2026-01-05", "end_date": "2026-11-30", "sponsor": "sponsor@example.com"},
        "archived": {"event_id": 4711, "at": "2026-11-30T11:05:00Z"},
        "summary": {"events": 2, "older_events_not_listed": false, "systems": ["github", "slack", "erp"], "operations": 6},
        "events": [
            {"id": 4001, "kind": "joiner", "at": "2026-01-05T08:00:00Z", "user_id": "c-42", "user_name": "cora", "plan_id": "p1", "hold_id": null,
             "sla": {"due": null, "completed": "2026-01-05T08:00:02Z", "result": null, "seconds": 2}, "unsupported": [],
             "systems": [{"connector": "slack", "requested": "2026-01-05T08:00:00Z", "done": "2026-01-05T08:00:02Z", "outcome": "done",
                "operations": [{"id": 1, "operation": "create cora", "status": "done", "attempts": 1, "requested": "2026-01-05T08:00:00Z", "done": "2026-01-05T08:00:02Z", "last_error": null}],
                "verifications": [], "verification": "verified"}],
             "incidents": []},
            {"id": 4711, "kind": "contractor-expiry", "at": r.event.at, "user_id": "c-42", "user_name": "cora", "plan_id": "p2", "hold_id": null,
             "sla": r.sla, "unsupported": [], "systems": r.systems, "incidents": []},
        ],
        "approvals": [{"id": "a1", "user_id": "c-42", "kind": "extension", "connector": null, "entitlement": null, "level": "manager",
            "detail": {"new_end": "2026-11-30"}, "status": "approved", "requested": "2026-10-01T10:00:00.000000Z", "decided": "2026-10-02T09:00:00.000000Z",
            "decided_by": "sam", "reason": null, "decided_by_user_id": "s-1", "decided_by_credential": "sam-token", "decided_as": "sponsor"}],
    })
}
