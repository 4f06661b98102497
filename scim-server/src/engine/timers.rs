//! The engine's durable timers: which kinds exist, what each carries, and what each does when
//! it fires.
//!
//! The planner decides which timers to set ([`TimerChange`]); the runner (`jobs`) only claims due
//! rows and calls [`fire`]. Rows keep the kind as text (`start`, `overlap_end`, `contract_end`,
//! `reminder`, `sla_deadline`) and the payload as JSON, as the store has always held them; [`TimerKind`] is
//! their typed reading.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::{links, notices, plan::EventKind, Cause, Engine};
use crate::error::HubResult;
use crate::store::engine_state;
use crate::store::{notifications, timers, DbConnection};

/// What a timer is for, with what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKind {
    /// A start date arrived: the user becomes active.
    Start,
    /// A mover's overlap window ended: the legacy access it kept goes.
    OverlapEnd,
    /// A contractor's end date arrived: all access goes.
    ContractEnd,
    /// A reminder `offset` before the contract ends at `end`.
    Reminder {
        end: DateTime<Utc>,
        offset: Duration,
    },
    /// Read back what plan `plan_id` (a `event`) did on `connector` ([`super::verify`]). Run by
    /// `jobs::verify`, not [`fire`]: it calls the connector. `attempt` counts failed reads;
    /// `round` counts re-plans after a mismatch.
    Verify(VerifyTimer),
    /// The SLA of the event that planned `plan_id` ends: an incident if the plan is not
    /// complete ([`super::sla`]).
    SlaDeadline { plan_id: String },
    /// Emergency grant `grant_id` reaches its end: it is marked expired and the user re-planned,
    /// so the outbox takes the entitlement away ([`super::grants`]).
    GrantExpiry { grant_id: String },
    /// A step of certification campaign `campaign` ([`super::certification`]): `remind`
    /// reviewers with undecided items, or `due` (escalate them, or complete the campaign);
    /// `round` counts escalations.
    Certification {
        campaign: String,
        step: String,
        round: i64,
    },
    /// The start of a certification period (`2027-Q1`, `2027-03`): the scheduled campaigns of
    /// the policy's `[certification] scopes` are created ([`super::certification`]).
    CertificationSchedule { period: String },
}

/// What a verification timer carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyTimer {
    pub plan_id: String,
    pub connector: String,
    pub event: String,
    #[serde(default)]
    pub attempt: i64,
    #[serde(default)]
    pub round: i64,
}

impl TimerKind {
    /// The kind as stored in `engine_timers.kind`.
    pub fn name(&self) -> &'static str {
        match self {
            TimerKind::Start => "start",
            TimerKind::OverlapEnd => "overlap_end",
            TimerKind::ContractEnd => "contract_end",
            TimerKind::Reminder { .. } => "reminder",
            TimerKind::Verify(_) => "verify",
            TimerKind::SlaDeadline { .. } => "sla_deadline",
            TimerKind::GrantExpiry { .. } => "grant_expiry",
            TimerKind::Certification { .. } => "certification",
            TimerKind::CertificationSchedule { .. } => "certification_schedule",
        }
    }

    /// The payload as stored in `engine_timers.payload`.
    pub fn payload(&self) -> Value {
        match self {
            TimerKind::Reminder { end, offset } => {
                json!({"end": end, "offset": crate::policy::fmt_duration(*offset)})
            }
            TimerKind::Verify(v) => serde_json::to_value(v).unwrap_or_default(),
            TimerKind::SlaDeadline { plan_id } => json!({"plan_id": plan_id}),
            TimerKind::GrantExpiry { grant_id } => json!({"grant_id": grant_id}),
            TimerKind::Certification {
                campaign,
                step,
                round,
            } => json!({"campaign": campaign, "step": step, "round": round}),
            TimerKind::CertificationSchedule { period } => json!({"period": period}),
            _ => json!({}),
        }
    }

    /// Reads a stored kind and payload; `None` for a kind this version does not know or a
    /// reminder whose payload is unreadable.
    pub fn from_row(kind: &str, payload: &Value) -> Option<TimerKind> {
        Some(match kind {
            "start" => TimerKind::Start,
            "overlap_end" => TimerKind::OverlapEnd,
            "contract_end" => TimerKind::ContractEnd,
            "reminder" => TimerKind::Reminder {
                end: serde_json::from_value(payload.get("end")?.clone()).ok()?,
                offset: crate::policy::parse_duration(payload.get("offset")?.as_str()?).ok()?,
            },
            "verify" => TimerKind::Verify(serde_json::from_value(payload.clone()).ok()?),
            "sla_deadline" => TimerKind::SlaDeadline {
                plan_id: payload.get("plan_id")?.as_str()?.to_string(),
            },
            "grant_expiry" => TimerKind::GrantExpiry {
                grant_id: payload.get("grant_id")?.as_str()?.to_string(),
            },
            "certification" => TimerKind::Certification {
                campaign: payload.get("campaign")?.as_str()?.to_string(),
                step: payload.get("step")?.as_str()?.to_string(),
                round: payload.get("round")?.as_i64()?,
            },
            "certification_schedule" => TimerKind::CertificationSchedule {
                period: payload.get("period")?.as_str()?.to_string(),
            },
            _ => return None,
        })
    }
}

/// A timer to set for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub user_id: String,
    pub kind: TimerKind,
    pub due: DateTime<Utc>,
}

impl Timer {
    /// The unique key: scheduling the same timer twice is harmless.
    pub fn key(&self) -> String {
        let user = &self.user_id;
        match &self.kind {
            TimerKind::Reminder { end, offset } => format!(
                "reminder:{user}:{}:{}",
                end.timestamp(),
                offset.num_seconds()
            ),
            TimerKind::Verify(v) => {
                format!("verify:{user}:{}:{}:{}", v.plan_id, v.connector, v.round)
            }
            // One deadline per plan.
            TimerKind::SlaDeadline { plan_id } => sla_deadline_key(plan_id),
            // One expiry per grant.
            TimerKind::GrantExpiry { grant_id } => grant_expiry_key(grant_id),
            TimerKind::Certification {
                campaign,
                step,
                round,
            } => format!(
                "certification:{campaign}:{step}:{round}:{}",
                self.due.timestamp()
            ),
            TimerKind::CertificationSchedule { period } => {
                format!("certification_schedule:{period}")
            }
            kind => format!("{}:{user}:{}", kind.name(), self.due.timestamp()),
        }
    }
}

/// The key of plan `plan_id`'s SLA deadline timer.
pub fn sla_deadline_key(plan_id: &str) -> String {
    format!("sla_deadline:{plan_id}")
}

/// The key of emergency grant `grant_id`'s expiry timer.
pub fn grant_expiry_key(grant_id: &str) -> String {
    format!("grant_expiry:{grant_id}")
}

/// A change to a user's timers that planning decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    Schedule(Timer),
    /// The contract end date moved: its pending end and reminders go (new ones are scheduled).
    CancelContract,
    /// The user left: their overrides ended, and with them the overlap timers.
    CancelOverlap,
}

/// Writes a timer unless one with the same key exists.
pub fn schedule(c: &mut DbConnection, timer: &Timer, now: DateTime<Utc>) -> HubResult<bool> {
    timers::schedule(
        c,
        &timer.key(),
        &timer.user_id,
        timer.kind.name(),
        timer.due,
        &timer.kind.payload(),
        now,
    )
}

/// Writes one decided change.
pub fn apply(
    c: &mut DbConnection,
    user_id: &str,
    change: &TimerChange,
    now: DateTime<Utc>,
) -> HubResult<()> {
    match change {
        TimerChange::Schedule(t) => {
            schedule(c, t, now)?;
        }
        TimerChange::CancelContract => {
            timers::cancel(c, user_id, TimerKind::ContractEnd.name())?;
            timers::cancel(c, user_id, "reminder")?;
        }
        TimerChange::CancelOverlap => {
            timers::cancel(c, user_id, TimerKind::OverlapEnd.name())?;
        }
    }
    Ok(())
}

/// Fires one claimed timer inside the claiming transaction: a reminder queues its mail; an SLA
/// deadline raises an incident when its plan is not complete; every other kind means the desired state changed with time, so the user is planned again (and a
/// contract that ended tells the helpdesk and the sponsor).
pub fn fire(
    c: &mut DbConnection,
    engine: &Engine,
    row: &timers::Timer,
    now: DateTime<Utc>,
) -> HubResult<()> {
    match TimerKind::from_row(&row.kind, &row.payload) {
        Some(TimerKind::Reminder { end, offset }) => remind(c, engine, row, end, offset, now),
        // Claimed by the verification runner only (store::timers::RUNNER_KINDS).
        Some(TimerKind::Verify(_)) => Ok(()),
        Some(TimerKind::SlaDeadline { plan_id }) => super::sla::deadline(c, &plan_id, now),
        Some(TimerKind::GrantExpiry { grant_id }) => {
            super::grants::expire(c, engine, &grant_id, now)
        }
        Some(TimerKind::Certification {
            campaign,
            step,
            round,
        }) => super::certification::fire(c, engine, &campaign, &step, round, now),
        Some(TimerKind::CertificationSchedule { period }) => {
            super::certification::fire_schedule(c, engine, &period, now)
        }
        _ => {
            let out = engine.replan(c, &row.user_id, Cause::Timer)?;
            tracing::info!(user = %row.user_id, timer = %row.kind, event = out.event.as_str(), ops = out.plan.ops.len(), "timer fired");
            if out.event == EventKind::ContractorExpiry {
                let policy = engine.policy.current();
                let mut to = policy.notify.helpdesk.clone();
                if let Some(s) = engine_state::get_user(c, &row.user_id)?.and_then(|u| {
                    u.facts
                        .get("sponsor")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }) {
                    to.push(s);
                }
                if !to.is_empty() {
                    let n = notices::contract_expired(&person_of(c, &row.user_id)?);
                    notifications::enqueue(
                        c,
                        n.kind,
                        Some(&row.user_id),
                        &to,
                        &n.subject,
                        &n.body,
                        now,
                    )?;
                }
            }
            Ok(())
        }
    }
}

/// The user as a notice names them ([`notices::person_label`]): displayName and userName from
/// the directory, else the engine's last record of the userName, else the id.
fn person_of(c: &mut DbConnection, user_id: &str) -> HubResult<String> {
    let doc = super::load_user_doc(c, user_id)?;
    let attr = |a: &str| {
        doc.as_ref()
            .and_then(|d| super::desired::attr_str(d, a))
            .map(str::to_string)
    };
    let name = match attr("userName") {
        Some(n) => Some(n),
        None => engine_state::get_user(c, user_id)?.and_then(|u| {
            u.facts
                .get("userName")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
    };
    Ok(notices::person_label(
        user_id,
        name.as_deref(),
        attr("displayName").as_deref(),
    ))
}

/// A contract reminder to the contractor, the sponsor and the helpdesk (if still a contractor).
fn remind(
    c: &mut DbConnection,
    engine: &Engine,
    row: &timers::Timer,
    end: DateTime<Utc>,
    offset: Duration,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let user = engine_state::get_user(c, &row.user_id)?;
    let facts = user.map(|u| u.facts).unwrap_or_default();
    if facts.get("contractor").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let policy = engine.policy.current();
    let mut to: Vec<String> = Vec::new();
    for k in ["email", "sponsor"] {
        if let Some(e) = facts.get(k).and_then(Value::as_str) {
            to.push(e.to_string());
        }
    }
    to.extend(policy.notify.helpdesk.iter().cloned());
    if to.is_empty() {
        return Ok(());
    }
    let person = person_of(c, &row.user_id)?;
    // The end as the payload spells it (the JSON form of the timestamp).
    let end = json!(end);
    let end = end.as_str().unwrap_or("");
    let offset = crate::policy::fmt_duration(offset);
    // The sponsor's own copy carries their link to ask for an extension, when links are
    // configured, the policy trusts the sponsor attribute and it names a directory user.
    let sponsor = facts.get("sponsor").and_then(Value::as_str);
    let sponsor_row = match (
        sponsor,
        policy.sponsor_trusted(),
        links::person_key(&policy),
    ) {
        (Some(s), true, Some(key)) => {
            let row = match crate::store::load_row(c, crate::store::ResourceKind::User, s)? {
                Some(r) => Some(r),
                None => crate::store::find_user_row_by_name(c, s)?,
            };
            row.map(|r| (s.to_string(), r, key))
        }
        _ => None,
    };
    if let Some((named, r, key)) = sponsor_row {
        if let Some(url) = links::extension_ask_link(&policy, &key, &row.user_id, end, &r.id, now) {
            let label = serde_json::from_str::<serde_json::Map<String, Value>>(&r.doc)
                .ok()
                .and_then(|d| super::desired::attr_str(&d, "userName").map(str::to_string))
                .unwrap_or_else(|| named.clone());
            let n = notices::contract_reminder(
                &person,
                end,
                &offset,
                Some(notices::AskLink {
                    addressee: &label,
                    expires: now + policy.notify.link_ttl,
                    url: &url,
                }),
            );
            notifications::enqueue(
                c,
                n.kind,
                Some(&row.user_id),
                std::slice::from_ref(&r.id),
                &n.subject,
                &n.body,
                now,
            )?;
            to.retain(|t| t != &named);
        }
    }
    if to.is_empty() {
        return Ok(());
    }
    let n = notices::contract_reminder(&person, end, &offset, None);
    notifications::enqueue(c, n.kind, Some(&row.user_id), &to, &n.subject, &n.body, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn kinds_round_trip_through_their_stored_form() {
        let end = Utc.with_ymd_and_hms(2025, 4, 30, 0, 0, 0).unwrap();
        for kind in [
            TimerKind::Start,
            TimerKind::OverlapEnd,
            TimerKind::ContractEnd,
            TimerKind::Reminder {
                end,
                offset: Duration::days(30),
            },
            TimerKind::Verify(VerifyTimer {
                plan_id: "p1".into(),
                connector: "app".into(),
                event: "leaver".into(),
                attempt: 2,
                round: 1,
            }),
            TimerKind::SlaDeadline {
                plan_id: "p1".into(),
            },
            TimerKind::GrantExpiry {
                grant_id: "g1".into(),
            },
            TimerKind::Certification {
                campaign: "c1".into(),
                step: "due".into(),
                round: 1,
            },
            TimerKind::CertificationSchedule {
                period: "2027-Q1".into(),
            },
        ] {
            assert_eq!(
                TimerKind::from_row(kind.name(), &kind.payload()),
                Some(kind.clone())
            );
        }
        assert_eq!(TimerKind::from_row("unknown", &json!({})), None);
        assert_eq!(TimerKind::from_row("sla_deadline", &json!({})), None);
        assert_eq!(TimerKind::from_row("grant_expiry", &json!({})), None);
    }

    #[test]
    fn keys_are_what_the_store_has_always_held() {
        let end = Utc.with_ymd_and_hms(2025, 4, 30, 0, 0, 0).unwrap();
        let t = |kind, due| Timer {
            user_id: "u1".into(),
            kind,
            due,
        };
        let ts = end.timestamp();
        assert_eq!(t(TimerKind::Start, end).key(), format!("start:u1:{ts}"));
        assert_eq!(
            t(TimerKind::OverlapEnd, end).key(),
            format!("overlap_end:u1:{ts}")
        );
        assert_eq!(
            t(TimerKind::ContractEnd, end).key(),
            format!("contract_end:u1:{ts}")
        );
        let r = TimerKind::Reminder {
            end,
            offset: Duration::days(7),
        };
        assert_eq!(
            t(r, end - Duration::days(7)).key(),
            format!("reminder:u1:{ts}:604800")
        );
        let sla = TimerKind::SlaDeadline {
            plan_id: "p1".into(),
        };
        assert_eq!(t(sla, end).key(), "sla_deadline:p1");
        let g = TimerKind::GrantExpiry {
            grant_id: "g1".into(),
        };
        assert_eq!(t(g, end).key(), "grant_expiry:g1");
    }
}
