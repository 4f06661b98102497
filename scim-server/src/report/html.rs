//! The HTML form of every report: MiniJinja templates compiled into the binary
//! (`templates/`), HTML autoescaping on for every `.html` template (every value may come from a
//! SCIM client: it is text, never markup; no template marks anything `safe`), inline CSS with
//! print rules, charts as inline SVG drawn from [`super::chart`] geometry, no JavaScript and no
//! external resource: one file that opens, prints and archives on its own.

use std::sync::OnceLock;

use chrono::DateTime;
use minijinja::value::Serde;
use minijinja::Environment;
use serde_json::{json, Value};

use super::chart::{self, Chart, Datum};
use super::period::PeriodReport;
use super::termination::TerminationReport;
use super::{ReportError, ReportResult};

/// Every template: (name, source). A period section `ID` is drawn by `section_ID.html` when
/// listed here.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("chart.html", include_str!("templates/chart.html")),
    (
        "termination.html",
        include_str!("templates/termination.html"),
    ),
    ("period.html", include_str!("templates/period.html")),
    ("contractor.html", include_str!("templates/contractor.html")),
    ("campaign.html", include_str!("templates/campaign.html")),
    (
        "section_events.html",
        include_str!("templates/section_events.html"),
    ),
    (
        "section_sla.html",
        include_str!("templates/section_sla.html"),
    ),
    (
        "section_incidents.html",
        include_str!("templates/section_incidents.html"),
    ),
    (
        "section_drift.html",
        include_str!("templates/section_drift.html"),
    ),
    (
        "section_grants.html",
        include_str!("templates/section_grants.html"),
    ),
    (
        "section_campaigns.html",
        include_str!("templates/section_campaigns.html"),
    ),
];

fn env() -> ReportResult<&'static Environment<'static>> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // The default: HTML escaping for `.html` templates, which all of these are.
        env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, src) in TEMPLATES {
            env.add_template(name, src).map_err(|e| e.to_string())?;
        }
        env.add_filter("ts", ts);
        env.add_filter("dur", dur);
        Ok(env)
    })
    .as_ref()
    .map_err(|e| ReportError::Render(e.clone()))
}

/// An RFC 3339 time as `2026-12-04 21:30:05 UTC` (a value that is not one as it is; none as a
/// dash).
fn ts(v: minijinja::Value) -> String {
    match v.as_str() {
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            Err(_) => s.to_string(),
        },
        None if v.is_none() || v.is_undefined() => "—".into(),
        None => v.to_string(),
    }
}

/// Seconds as a short duration (none as a dash).
fn dur(v: minijinja::Value) -> String {
    match i64::try_from(v.clone()) {
        Ok(s) => chart::duration(s),
        Err(_) => "—".into(),
    }
}

fn render(name: &str, ctx: Value) -> ReportResult<String> {
    env()?
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(Serde(&ctx))))
        .map_err(|e| ReportError::Render(format!("{name}: {e:#}")))
}

fn json_of(v: &impl serde::Serialize) -> ReportResult<Value> {
    serde_json::to_value(v).map_err(|e| ReportError::Render(e.to_string()))
}

/// A certification campaign's completion report as a page.
pub fn campaign(r: &super::campaign::CampaignReport) -> ReportResult<String> {
    let count = |k: &str| r.data["counts"][k].as_f64().unwrap_or(0.0);
    let datum = |label: &str, key: &str, tone: &'static str| {
        let n = count(key);
        Datum::new(label, n, format!("{n:.0}")).tone(tone)
    };
    let charts = vec![chart::bars(
        "Decisions",
        &[
            datum("certified", "certify", "good"),
            datum("revoked", "revoke", "bad"),
            datum("expired undecided", "expired", "warn"),
            datum("still open", "undecided", "neutral"),
        ],
        None,
    )];
    render(
        "campaign.html",
        json!({ "r": json_of(r)?, "charts": json_of(&charts)? }),
    )
}

/// The termination (or contract-expiry) report as a page.
pub fn termination(r: &TerminationReport) -> ReportResult<String> {
    let data: Vec<Datum> = r
        .systems
        .iter()
        .map(|s| match s.done {
            Some(done) => {
                let secs = (done - s.requested).num_seconds();
                Datum::new(s.connector.clone(), secs as f64, chart::duration(secs)).tone("good")
            }
            None => Datum::new(
                s.connector.clone(),
                0.0,
                format!("not done ({})", s.outcome),
            )
            .tone("bad"),
        })
        .collect();
    let charts = vec![chart::bars(
        "Time from request to done, per system",
        &data,
        None,
    )];
    render(
        "termination.html",
        json!({
            "r": json_of(r)?,
            "charts": json_of(&charts)?,
            "what": if r.event.kind == "contractor-expiry" { "Contract expiry" } else { "Termination" },
        }),
    )
}

/// The period report as a page.
pub fn period(r: &PeriodReport) -> ReportResult<String> {
    let env = env()?;
    let sections: Vec<Value> = r
        .sections
        .iter()
        .map(|s| {
            let template = format!("section_{}.html", s.id);
            let drawn = env.get_template(&template).is_ok();
            Ok(json!({
                "id": s.id,
                "title": s.title,
                "data": s.data,
                "charts": json_of(&s.charts)?,
                "template": drawn.then_some(template),
                "fallback": (!drawn).then(|| serde_json::to_string_pretty(&s.data).unwrap_or_default()),
            }))
        })
        .collect::<ReportResult<_>>()?;
    render(
        "period.html",
        json!({"r": json_of(r)?, "sections": sections}),
    )
}

/// The contractor history as a page, from its JSON (live or the copy kept at expiry).
pub fn contractor(v: &Value) -> ReportResult<String> {
    let mut per_system: Vec<(String, usize)> = Vec::new();
    for s in v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["systems"].as_array().into_iter().flatten())
    {
        let name = s["connector"].as_str().unwrap_or_default().to_string();
        let n = s["operations"].as_array().map_or(0, Vec::len);
        match per_system.iter_mut().find(|(c, _)| *c == name) {
            Some((_, k)) => *k += n,
            None => per_system.push((name, n)),
        }
    }
    let charts: Vec<Chart> = vec![chart::bars(
        "Operations per system, all events",
        &per_system
            .iter()
            .map(|(c, n)| Datum::new(c.clone(), *n as f64, n.to_string()))
            .collect::<Vec<_>>(),
        None,
    )];
    render(
        "contractor.html",
        json!({"r": v, "charts": json_of(&charts)?}),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_template_compiles_and_filters_format() {
        let env = env().unwrap();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
        assert_eq!(
            ts(minijinja::Value::from("2026-12-04T21:30:05.123456Z")),
            "2026-12-04 21:30:05 UTC"
        );
        assert_eq!(ts(minijinja::Value::from(())), "—");
        assert_eq!(dur(minijinja::Value::from(7500)), "2 h 05 min");
    }

    #[test]
    fn client_values_are_text_not_markup() {
        let v = json!({
            "schema": "scimhub/report/contractor/v1",
            "generated_at": "2026-12-04T21:30:05Z",
            "audit_head": {"seq": 1, "hash": "ab"},
            "user": {"id": "u1", "user_name": "<script>alert(1)</script>"},
            "contract": {"contractor": true, "sponsor": "\"><img src=x onerror=alert(1)>"},
            "summary": {"events": 1, "systems": ["<b>app</b>"], "operations": 1},
            "events": [{"id": 1, "kind": "joiner", "at": "2026-12-04T21:30:05Z",
                "systems": [{"connector": "<b>app</b>", "requested": "2026-12-04T21:30:05Z",
                    "outcome": "done", "operations": [{"operation": "<i>x</i>", "status": "done"}],
                    "verifications": []}],
                "sla": {}, "incidents": []}],
            "approvals": [],
        });
        let html = contractor(&v).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>app</b>"), "{html}");
        assert!(!html.contains("<i>x</i>"), "{html}");
        assert!(!html.to_lowercase().contains("<script"));
    }

    /// Every page with fixed contents and times, as a snapshot; also written to
    /// `$SCIMHUB_MAIL_ARTIFACTS/report-*-fixture.html` when set (tests/artifacts/README.md).
    #[test]
    fn pages_with_fixed_contents() {
        use super::super::fixtures;
        let pages = [
            (
                "termination",
                termination(&fixtures::termination()).unwrap(),
            ),
            ("period", period(&fixtures::period()).unwrap()),
            ("contractor", contractor(&fixtures::contractor()).unwrap()),
        ];
        for (name, html) in &pages {
            assert!(!html.contains("<script"), "{name}");
            if let Some(dir) = std::env::var_os("SCIMHUB_MAIL_ARTIFACTS") {
                let path = std::path::Path::new(&dir).join(format!("report-{name}-fixture.html"));
                std::fs::write(path, html).unwrap();
            }
            insta::assert_snapshot!(format!("report_{name}_html"), html);
        }
        // The section without a template is printed as its data.
        assert!(pages[1].1.contains("&quot;grants&quot;"));
    }
}
