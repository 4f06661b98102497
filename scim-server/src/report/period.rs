//! The period report for auditors: a list of sections, each assembled by one function of
//! [`SECTIONS`] from the same read snapshot. A section is an id, a title, its data (any JSON
//! the function builds from its own typed rows) and charts for the HTML page; the page draws a
//! section with the template `section_<id>.html` when there is one and prints its data
//! otherwise. Adding a section is adding a function to [`SECTIONS`] (and, for a drawn page, a
//! template to `html::TEMPLATES`); the JSON Schema accepts any section beside the known ones.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::chart::{self, Chart, Datum};
use super::{snapshot, AuditHead, ReportError, ReportResult};
use crate::error::HubResult;
use crate::store::{drift, events, incidents, parse_ts, DbConnection, Store};

/// `schema` of the JSON (docs/schemas/report-period.schema.json).
pub const SCHEMA: &str = "scimhub/report/period/v1";

/// The most incidents and drift findings a section lists one by one (counts cover all).
pub const MAX_ROWS: i64 = 2000;

/// The period: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodReport {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub audit_head: AuditHead,
    pub period: Period,
    pub sections: Vec<Section>,
}

/// One section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Stable identifier (`events`, `sla`, `incidents`, `drift`, ...).
    pub id: &'static str,
    pub title: String,
    pub data: Value,
    /// Drawn on the HTML page only.
    #[serde(skip)]
    pub charts: Vec<Chart>,
}

/// A function that assembles one section.
pub type SectionFn = fn(&mut DbConnection, &Period) -> HubResult<Section>;

/// The sections, in the order the report shows them.
pub const SECTIONS: &[SectionFn] = &[
    events_by_kind,
    sla_attainment,
    incidents_section,
    drift_section,
    grants_section,
    campaigns_section,
];

/// The report for `from`..`to`.
pub fn build(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ReportResult<PeriodReport> {
    if from >= to {
        return Err(ReportError::Invalid(format!(
            "the period must end after it starts ({} to {})",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    let period = Period { from, to };
    snapshot(store, |c| {
        let audit_head = AuditHead::read(c)?;
        let sections = SECTIONS
            .iter()
            .map(|f| f(c, &period))
            .collect::<HubResult<Vec<_>>>()?;
        Ok(PeriodReport {
            schema: SCHEMA,
            generated_at: now,
            audit_head,
            period,
            sections,
        })
    })
}

fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[derive(Debug, Serialize)]
struct KindCount {
    kind: String,
    count: i64,
}

/// Events by kind.
pub fn events_by_kind(c: &mut DbConnection, p: &Period) -> HubResult<Section> {
    let stats = events::kind_stats(c, p.from, p.to)?;
    let kinds: Vec<KindCount> = stats
        .iter()
        .map(|s| KindCount {
            kind: s.event.clone(),
            count: s.total,
        })
        .collect();
    let total: i64 = kinds.iter().map(|k| k.count).sum();
    let chart = chart::bars(
        "Events by kind",
        &kinds
            .iter()
            .map(|k| Datum::new(k.kind.clone(), k.count as f64, k.count.to_string()))
            .collect::<Vec<_>>(),
        None,
    );
    Ok(Section {
        id: "events",
        title: "Lifecycle events".into(),
        data: serde_json::json!({"total": total, "kinds": to_value(&kinds)}),
        charts: vec![chart],
    })
}

#[derive(Debug, Serialize)]
struct SlaRow {
    kind: String,
    events: i64,
    completed: i64,
    /// Events the policy set an SLA for.
    with_sla: i64,
    met: i64,
    breached: i64,
    /// With an SLA and neither met nor breached yet (running within it).
    running: i64,
    /// met / (met + breached) in percent, one decimal; absent when none was decided.
    attainment: Option<f64>,
    max_seconds: Option<i64>,
}

fn attainment(met: i64, breached: i64) -> Option<f64> {
    (met + breached > 0).then(|| ((met as f64 * 1000.0) / (met + breached) as f64).round() / 10.0)
}

/// SLA attainment per event kind.
pub fn sla_attainment(c: &mut DbConnection, p: &Period) -> HubResult<Section> {
    let rows: Vec<SlaRow> = events::kind_stats(c, p.from, p.to)?
        .into_iter()
        .map(|s| SlaRow {
            attainment: attainment(s.met, s.breached),
            running: (s.with_sla - s.met - s.breached).max(0),
            kind: s.event,
            events: s.total,
            completed: s.completed,
            with_sla: s.with_sla,
            met: s.met,
            breached: s.breached,
            max_seconds: s.max_seconds,
        })
        .collect();
    let met: i64 = rows.iter().map(|r| r.met).sum();
    let breached: i64 = rows.iter().map(|r| r.breached).sum();
    let data: Vec<Datum> = rows
        .iter()
        .filter_map(|r| {
            r.attainment.map(|a| {
                Datum::new(
                    r.kind.clone(),
                    a,
                    format!("{a:.1} % ({}/{})", r.met, r.met + r.breached),
                )
                .tone(if r.breached == 0 { "good" } else { "bad" })
            })
        })
        .collect();
    Ok(Section {
        id: "sla",
        title: "SLA attainment".into(),
        data: serde_json::json!({
            "met": met,
            "breached": breached,
            "attainment": attainment(met, breached),
            "kinds": to_value(&rows),
        }),
        charts: vec![chart::percent("SLA met, per event kind", &data)],
    })
}

#[derive(Debug, Serialize)]
struct IncidentItem {
    id: i64,
    kind: String,
    connector: Option<String>,
    user_id: Option<String>,
    created: String,
    status: String,
    acknowledged_by: Option<String>,
    resolved_at: Option<String>,
    resolved_by: Option<String>,
    resolution_seconds: Option<i64>,
    reason: String,
}

/// Incidents raised in the period and how long each took to resolve.
pub fn incidents_section(c: &mut DbConnection, p: &Period) -> HubResult<Section> {
    let rows = incidents::created_between(c, p.from, p.to, MAX_ROWS + 1)?;
    let truncated = rows.len() as i64 > MAX_ROWS;
    let items: Vec<IncidentItem> = rows
        .into_iter()
        .take(MAX_ROWS as usize)
        .map(|i| IncidentItem {
            resolution_seconds: match (
                parse_ts(&i.created),
                i.resolved_at.as_deref().and_then(parse_ts),
            ) {
                (Some(a), Some(b)) => Some((b - a).num_seconds()),
                _ => None,
            },
            id: i.id,
            kind: i.kind,
            connector: i.connector,
            user_id: i.user_id,
            created: i.created,
            status: i.status,
            acknowledged_by: i.acknowledged_by,
            resolved_at: i.resolved_at,
            resolved_by: i.resolved_by,
            reason: i.reason,
        })
        .collect();
    let mut by_kind: Vec<KindCount> = Vec::new();
    for i in &items {
        match by_kind.iter_mut().find(|k| k.kind == i.kind) {
            Some(k) => k.count += 1,
            None => by_kind.push(KindCount {
                kind: i.kind.clone(),
                count: 1,
            }),
        }
    }
    let mut times: Vec<i64> = items.iter().filter_map(|i| i.resolution_seconds).collect();
    times.sort_unstable();
    let median = (!times.is_empty()).then(|| times[times.len() / 2]);
    let open = items.iter().filter(|i| i.status == "open").count();
    let resolved: Vec<Datum> = items
        .iter()
        .filter_map(|i| {
            i.resolution_seconds.map(|s| {
                Datum::new(
                    format!("#{} {}", i.id, i.kind),
                    s as f64,
                    chart::duration(s),
                )
                .tone("warn")
            })
        })
        .take(40)
        .collect();
    Ok(Section {
        id: "incidents",
        title: "Incidents".into(),
        data: serde_json::json!({
            "total": items.len(),
            "open": open,
            "resolved": items.len() - open,
            "truncated": truncated,
            "median_resolution_seconds": median,
            "max_resolution_seconds": times.last(),
            "by_kind": to_value(&by_kind),
            "items": to_value(&items),
        }),
        charts: vec![chart::bars(
            "Time to resolve, per incident",
            &resolved,
            None,
        )],
    })
}

#[derive(Debug, Serialize)]
struct FindingItem {
    id: i64,
    connector: String,
    kind: String,
    account: String,
    entitlement: String,
    user_id: Option<String>,
    action: String,
    status: String,
    first_seen: String,
    closed_at: Option<String>,
}

/// Drift findings first seen in the period.
pub fn drift_section(c: &mut DbConnection, p: &Period) -> HubResult<Section> {
    let rows = drift::first_seen_between(c, p.from, p.to, MAX_ROWS + 1)?;
    let truncated = rows.len() as i64 > MAX_ROWS;
    let items: Vec<FindingItem> = rows
        .into_iter()
        .take(MAX_ROWS as usize)
        .map(|f| FindingItem {
            id: f.id,
            connector: f.connector,
            kind: f.kind,
            account: f.account,
            entitlement: f.entitlement,
            user_id: f.user_id,
            action: f.action,
            status: f.status,
            first_seen: f.first_seen,
            closed_at: f.closed_at,
        })
        .collect();
    let mut by_kind: Vec<KindCount> = Vec::new();
    for f in &items {
        let key = format!("{} {}", f.connector, f.kind);
        match by_kind.iter_mut().find(|k| k.kind == key) {
            Some(k) => k.count += 1,
            None => by_kind.push(KindCount {
                kind: key,
                count: 1,
            }),
        }
    }
    let open = items.iter().filter(|f| f.status == "open").count();
    let chart = chart::bars(
        "Drift findings, per system and kind",
        &by_kind
            .iter()
            .map(|k| Datum::new(k.kind.clone(), k.count as f64, k.count.to_string()).tone("warn"))
            .collect::<Vec<_>>(),
        None,
    );
    Ok(Section {
        id: "drift",
        title: "Drift findings".into(),
        data: serde_json::json!({
            "total": items.len(),
            "open": open,
            "closed": items.len() - open,
            "truncated": truncated,
            "by_kind": to_value(&by_kind),
            "items": to_value(&items),
        }),
        charts: vec![chart],
    })
}

/// One emergency grant as the period report lists it.
#[derive(Debug, Clone, Serialize)]
struct GrantItem {
    id: String,
    user_id: String,
    connector: String,
    entitlement: String,
    state: String,
    reason: String,
    requested_by: String,
    decided_by: Option<String>,
    created: DateTime<Utc>,
    activated: Option<DateTime<Utc>>,
    expires: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
    /// How long it gave access within its life (activation to end or expiry), in seconds.
    held_secs: Option<i64>,
}

/// Emergency grants in force or created in the period, with who approved them.
pub fn grants_section(c: &mut DbConnection, p: &Period) -> HubResult<Section> {
    let rows = crate::store::grants::in_period(c, p.from, p.to)?;
    let truncated = rows.len() as i64 > MAX_ROWS;
    let items: Vec<GrantItem> = rows
        .into_iter()
        .take(MAX_ROWS as usize)
        .map(|g| {
            let end = g.ended.map_or(g.expires, |e| e.min(g.expires));
            GrantItem {
                held_secs: g.activated.map(|a| (end - a).num_seconds().max(0)),
                entitlement: crate::engine::notices::entitlement_label(&g.entitlement),
                id: g.id,
                user_id: g.user_id,
                connector: g.connector,
                state: g.state.as_str().to_string(),
                reason: g.reason,
                requested_by: g.requested_by,
                decided_by: g.decided_by,
                created: g.created,
                activated: g.activated,
                expires: g.expires,
                ended: g.ended,
            }
        })
        .collect();
    let mut by_connector: Vec<KindCount> = Vec::new();
    for g in &items {
        match by_connector.iter_mut().find(|k| k.kind == g.connector) {
            Some(k) => k.count += 1,
            None => by_connector.push(KindCount {
                kind: g.connector.clone(),
                count: 1,
            }),
        }
    }
    let chart = chart::bars(
        "Emergency grants, per system",
        &by_connector
            .iter()
            .map(|k| Datum::new(k.kind.clone(), k.count as f64, k.count.to_string()).tone("warn"))
            .collect::<Vec<_>>(),
        None,
    );
    let active = items.iter().filter(|g| g.state == "active").count();
    Ok(Section {
        id: "grants",
        title: "Emergency grants".into(),
        data: serde_json::json!({
            "total": items.len(),
            "active": active,
            "truncated": truncated,
            "by_connector": to_value(&by_connector),
            "items": to_value(&items),
        }),
        charts: vec![chart],
    })
}

/// Certification campaigns open during the period (created before its end, not completed or
/// cancelled before its start): completion and decisions of each.
pub fn campaigns_section(c: &mut DbConnection, p: &Period) -> HubResult<Section> {
    use crate::store::certification as cert;
    let mut items = Vec::new();
    let mut chart_data = Vec::new();
    for camp in cert::list(c, None, MAX_ROWS)? {
        let created = parse_ts(&camp.created);
        let ended = camp.completed_at.as_deref().and_then(parse_ts);
        let overlaps = created.is_some_and(|t| t < p.to) && ended.is_none_or(|e| e >= p.from);
        if !overlaps {
            continue;
        }
        let rows = cert::items(c, &camp.id)?;
        let count = |d: Option<&str>| rows.iter().filter(|i| i.decision.as_deref() == d).count();
        let decided = rows.len() - count(None);
        let completion = if rows.is_empty() {
            100.0
        } else {
            (decided as f64 * 1000.0 / rows.len() as f64).round() / 10.0
        };
        chart_data.push(
            Datum::new(camp.name.clone(), completion, format!("{completion:.1} %"))
                .tone(if completion >= 100.0 { "good" } else { "warn" }),
        );
        items.push(serde_json::json!({
            "id": camp.id,
            "name": camp.name,
            "kind": camp.kind,
            "state": camp.state,
            "created": camp.created,
            "due": camp.due,
            "completed_at": camp.completed_at,
            "items": rows.len(),
            "decided": decided,
            "certify": count(Some("certify")),
            "revoke": count(Some("revoke")),
            "expired": count(Some("expired")),
            "undecided": count(None),
            "completion_pct": completion,
        }));
    }
    let completed = items.iter().filter(|i| i["state"] == "completed").count();
    let chart = chart::bars("Campaign completion", &chart_data, Some(100.0));
    Ok(Section {
        id: "campaigns",
        title: "Access certification campaigns".into(),
        data: serde_json::json!({
            "total": items.len(),
            "completed": completed,
            "items": items,
        }),
        charts: vec![chart],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn attainment_is_met_over_decided() {
        assert_eq!(attainment(0, 0), None);
        assert_eq!(attainment(3, 1), Some(75.0));
        assert_eq!(attainment(2, 1), Some(66.7));
    }
}
