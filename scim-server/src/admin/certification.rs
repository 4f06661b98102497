//! Access certification for the admin API, the CLI and the reviewers' one-click links
//! (docs/certification.md): creating a campaign on demand, listing campaigns and their items,
//! a reviewer's decision (certify, revoke, delegate; each with a reason), cancelling, and the
//! completion report. The rules (items, reviewers, revocations, escalation) are
//! `engine::certification`; this module checks who decides.
//!
//! Who may decide an item: the person it is addressed to now (the manager, an owner, a security
//! approver, or whoever it was delegated to), acting through a credential that names them or
//! through the one-click link mailed to them; a security approver (`[approvals] security`) may
//! decide any item through the admin API. Nobody decides an item about their own access.

use chrono::Duration;
use serde_json::{json, Value};

use super::authority::{Approver, Refusal};
use super::legacy_access::{inactive_addressee, LinkOutcome, LinkPreview, VerifiedLink};
use super::{in_tx, Admin, AdminError, AdminResult};
use crate::auth::Principal;
use crate::engine::certification::{self as cert, Decided, Decision};
use crate::engine::notices;
use crate::error::HubResult;
use crate::policy::CertScope;
use crate::store::certification::{self as store, Item};
use crate::store::DbConnection;

/// The longest reason kept.
pub const MAX_REASON: usize = 1000;

/// A decision as the admin API and the link pages take it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DecisionRequest {
    /// `certify`, `revoke`, `delegate`.
    pub decision: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// The delegate's userName (or user id), for `delegate`.
    #[serde(default)]
    pub delegate_to: Option<String>,
}

impl Admin {
    /// Opens a campaign now over `scope` (`connector=…,department=…,profile=…,privileged`),
    /// due `due` from now, as `actor`.
    pub fn create_campaign(
        &self,
        name: &str,
        scope: &str,
        due: Duration,
        actor: &str,
    ) -> AdminResult<Value> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AdminError::Invalid("a campaign needs a name".into()));
        }
        if due <= Duration::zero() {
            return Err(AdminError::Invalid("the due must be in the future".into()));
        }
        let policy = self.engine.policy.current();
        let scope = CertScope::parse(scope, &policy).map_err(AdminError::Invalid)?;
        let due_at = self.now() + due;
        let made =
            self.decision_tx(|c| cert::create(&self.engine, c, name, &scope, actor, due_at, None))?;
        let made = made.ok_or_else(|| AdminError::Conflict("the campaign exists".into()))?;
        self.campaign(&made.id)
    }

    /// Campaigns, newest first (`state`: `open`, `completed`, `cancelled`).
    pub fn campaigns(&self, state: Option<&str>, limit: i64) -> AdminResult<Vec<Value>> {
        if let Some(s) = state {
            if !["open", "completed", "cancelled"].contains(&s) {
                return Err(AdminError::Invalid(format!(
                    "unknown state {s:?} (open, completed, cancelled)"
                )));
            }
        }
        let rows = in_tx(&self.store, |c| {
            store::list(c, state, limit.clamp(1, 10_000))
        })?;
        Ok(rows.iter().map(cert::campaign_json).collect())
    }

    /// One campaign with its items.
    pub fn campaign(&self, id: &str) -> AdminResult<Value> {
        let (camp, items) = in_tx(&self.store, |c| {
            Ok((store::get(c, id)?, store::items(c, id)?))
        })?;
        let camp = camp.ok_or_else(|| AdminError::NotFound(format!("campaign {id}")))?;
        let mut v = cert::campaign_json(&camp);
        v["items"] = Value::Array(items.iter().map(cert::item_json).collect());
        Ok(v)
    }

    /// The completion report of a campaign.
    pub fn campaign_report(&self, id: &str) -> AdminResult<Value> {
        in_tx(&self.store, |c| cert::report(c, id))?
            .ok_or_else(|| AdminError::NotFound(format!("campaign {id}")))
    }

    /// Cancels an open campaign: its undecided items are left undecided and nothing more is
    /// sent or escalated.
    pub fn cancel_campaign(&self, id: &str, actor: &str) -> AdminResult<Value> {
        let now = self.now();
        in_tx(&self.store, |c| {
            let Some(camp) = store::get(c, id)? else {
                return Ok(Err(AdminError::NotFound(format!("campaign {id}"))));
            };
            if !store::finish(c, id, "cancelled", now)? {
                return Ok(Err(AdminError::Conflict(format!(
                    "campaign {id} is {}",
                    camp.state
                ))));
            }
            crate::store::audit::append(
                c,
                &crate::store::audit::AuditEntry {
                    at: now,
                    actor,
                    user_id: "",
                    connector: None,
                    action: "certification_campaign",
                    outcome: "cancelled",
                    detail: json!({"campaign": id}),
                },
            )?;
            Ok(Ok(()))
        })??;
        self.campaign(id)
    }

    /// Certification revocations, newest first (`in_force`: only those not lifted).
    pub fn revocations(&self, in_force: bool, limit: i64) -> AdminResult<Vec<Value>> {
        let rows = in_tx(&self.store, |c| {
            store::all_revocations(c, limit.clamp(1, 10_000))
        })?;
        Ok(rows
            .iter()
            .filter(|r| !in_force || r.lifted_at.is_none())
            .map(|r| {
                json!({
                    "id": r.id,
                    "user_id": r.user_id,
                    "connector": r.connector,
                    "entitlement": serde_json::from_str::<Value>(&r.entitlement)
                        .unwrap_or(Value::Null),
                    "profiles": serde_json::from_str::<Value>(&r.profiles).unwrap_or(Value::Null),
                    "item": r.item_id,
                    "created": r.created,
                    "lifted_at": r.lifted_at,
                    "lifted_why": r.lifted_why,
                })
            })
            .collect())
    }

    /// Lifts a revocation in force as `actor` (an administrator's decision, audited) and
    /// re-plans the user: access a profile grants comes back through the outbox.
    pub fn lift_revocation(&self, id: &str, actor: &str) -> AdminResult<Value> {
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            let Some(r) = store::all_revocations(c, 1_000_000)?
                .into_iter()
                .find(|r| r.id == id)
            else {
                return Ok(Err(AdminError::NotFound(format!("revocation {id}"))));
            };
            if !store::lift(c, id, &format!("lifted by {actor}"), now)? {
                return Ok(Err(AdminError::Conflict(format!(
                    "revocation {id} was lifted already"
                ))));
            }
            let planned = self
                .engine
                .replan(c, &r.user_id, crate::engine::Cause::Admin)?;
            crate::store::audit::append(
                c,
                &crate::store::audit::AuditEntry {
                    at: now,
                    actor,
                    user_id: &r.user_id,
                    connector: Some(&r.connector),
                    action: "certification_revocation",
                    outcome: "lifted",
                    detail: json!({"revocation": id, "item": r.item_id}),
                },
            )?;
            Ok(Ok(json!({"id": id, "user_id": r.user_id, "lifted": true,
                         "ops": planned.plan.ops.len(), "hold_id": planned.hold_id})))
        })?
    }

    /// A reviewer's decision through the admin API, as the person `by` acts as.
    pub fn decide_campaign_item(
        &self,
        campaign_id: &str,
        item_id: &str,
        req: &DecisionRequest,
        by: &Principal,
    ) -> AdminResult<Decided> {
        let policy = self.engine.policy.current();
        self.decision_tx(|c| {
            let item = match self.open_item(c, campaign_id, item_id)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            let approver = match self.approver(c, by) {
                Ok(a) => a,
                Err(AdminError::Store(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            if !approver.active {
                return Ok(Err(Refusal::Inactive {
                    user_name: approver.user_name,
                }
                .into()));
            }
            if approver.user_id == item.user_id {
                return Ok(Err(Refusal::OwnAccess {
                    user_name: approver.user_name,
                }
                .into()));
            }
            let security = approver.is_security(&policy);
            if approver.user_id != item.reviewer && !security {
                return Ok(Err(AdminError::Forbidden(format!(
                    "you ({}) are not the reviewer of this item",
                    approver.user_name
                ))));
            }
            let decided_by = if approver.user_id == item.reviewer {
                format!("{} ({})", approver.user_name, item.reviewer_level)
            } else {
                format!("{} (security)", approver.user_name)
            };
            self.decide_in(c, &item, req, &decided_by)
        })?
    }

    /// Checks and records a decision on `item` (reason, delegate) in the caller's transaction.
    fn decide_in(
        &self,
        c: &mut DbConnection,
        item: &Item,
        req: &DecisionRequest,
        decided_by: &str,
    ) -> HubResult<AdminResult<Decided>> {
        let reason = req
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().take(MAX_REASON).collect::<String>());
        let Some(reason) = reason else {
            return Ok(Err(AdminError::Invalid("a decision needs a reason".into())));
        };
        let decision = match req.decision.as_str() {
            "certify" => Decision::Certify,
            "revoke" => Decision::Revoke,
            "delegate" => {
                let Some(to) = req
                    .delegate_to
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                else {
                    return Ok(Err(AdminError::Invalid(
                        "delegate needs delegate_to (a userName)".into(),
                    )));
                };
                let id = match cert::active_user_by_name(c, to)? {
                    Some(id) => id,
                    None => match cert::active_doc(c, to)? {
                        Some(_) => to.to_string(),
                        None => {
                            return Ok(Err(AdminError::Invalid(format!(
                                "{to:?} is not an active user of the directory"
                            ))))
                        }
                    },
                };
                if id == item.user_id || id == item.reviewer {
                    return Ok(Err(AdminError::Invalid(
                        "an item cannot be delegated to the person it is about, or to its \
                         reviewer"
                            .into(),
                    )));
                }
                Decision::Delegate(id)
            }
            other => {
                return Ok(Err(AdminError::Invalid(format!(
                    "unknown decision {other:?} (certify, revoke, delegate)"
                ))))
            }
        };
        match cert::decide(&self.engine, c, item, &decision, &reason, decided_by)? {
            Ok(d) => Ok(Ok(d)),
            Err(cert::NotDecided::ItemTaken) => Ok(Err(AdminError::Conflict(
                "This item was already decided.".into(),
            ))),
            Err(cert::NotDecided::CampaignClosed) => Ok(Err(AdminError::Conflict(
                "This campaign is no longer open: nothing is left to decide.".into(),
            ))),
        }
    }

    /// The item, undecided, of an open campaign.
    fn open_item(
        &self,
        c: &mut DbConnection,
        campaign_id: &str,
        item_id: &str,
    ) -> HubResult<AdminResult<Item>> {
        let Some(camp) = store::get(c, campaign_id)? else {
            return Ok(Err(AdminError::NotFound(format!("campaign {campaign_id}"))));
        };
        let Some(item) = store::item(c, item_id)?.filter(|i| i.campaign_id == campaign_id) else {
            return Ok(Err(AdminError::NotFound(format!("item {item_id}"))));
        };
        if camp.state != "open" {
            return Ok(Err(AdminError::Conflict(format!(
                "This campaign is {}: nothing is left to decide.",
                camp.state
            ))));
        }
        if item.decision.is_some() {
            return Ok(Err(AdminError::Conflict(
                "This item was already decided.".into(),
            )));
        }
        Ok(Ok(item))
    }

    /// The checks of a certification link against the current state: the item is undecided in
    /// an open campaign, about the link's user, and still addressed to the link's addressee,
    /// who is still an active user (and, for an item at the security level, still in
    /// `[approvals] security`) and not the item's subject.
    fn check_cert_link(
        &self,
        c: &mut DbConnection,
        link: &VerifiedLink,
    ) -> HubResult<AdminResult<Item>> {
        let claims = &link.claims;
        let Some(item) = store::item(c, &claims.id)? else {
            return Ok(Err(AdminError::Forbidden(
                "This link names no item.".into(),
            )));
        };
        if item.user_id != claims.u {
            return Ok(Err(AdminError::Forbidden(
                "This link names no item.".into(),
            )));
        }
        let item = match self.open_item(c, &item.campaign_id, &item.id)? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        if item.reviewer != claims.to {
            return Ok(Err(AdminError::Forbidden(
                "This item was delegated or escalated to another reviewer since this link was \
                 sent."
                    .into(),
            )));
        }
        // The signature proves who the link was mailed to, not that they may still decide: as
        // the admin API, refuse someone deactivated since, and a security reviewer the policy
        // no longer lists.
        if let Some(e) = inactive_addressee(c, claims)? {
            return Ok(Err(e));
        }
        if item.reviewer_level == "security" {
            let policy = self.engine.policy.current();
            let listed = crate::engine::load_user_doc(c, &item.reviewer)?
                .map(|d| Approver::from_doc(&item.reviewer, &d, "").is_security(&policy))
                .unwrap_or(false);
            if !listed {
                return Ok(Err(AdminError::Forbidden(format!(
                    "This link was sent to {} as a security approver, which they no longer are.",
                    claims.to
                ))));
            }
        }
        if item.user_id == item.reviewer {
            return Ok(Err(AdminError::Forbidden(
                "Nobody decides an item about their own access.".into(),
            )));
        }
        Ok(Ok(item))
    }

    fn cert_message(&self, c: &mut DbConnection, item: &Item, action: &str) -> HubResult<String> {
        let doc = crate::engine::load_user_doc(c, &item.user_id)?;
        let name = doc
            .as_ref()
            .and_then(|d| crate::engine::desired::attr_str(d, "userName"));
        let display = doc
            .as_ref()
            .and_then(|d| crate::engine::desired::attr_str(d, "displayName"));
        let who = notices::person_label(&item.user_id, name, display);
        let what = format!(
            "{} on {}",
            notices::entitlement_label(&item.entitlement),
            item.connector
        );
        Ok(match action {
            "certify" => format!("Certify that {who} still needs {what}."),
            "revoke" => format!("Revoke {what} from {who}: it is removed from the system."),
            _ => format!("Delegate the review of {who}'s {what} to someone else."),
        })
    }

    /// What a certification link would do (`GET`).
    pub(super) fn preview_cert_link(&self, link: VerifiedLink) -> AdminResult<LinkPreview> {
        let decision = link.action.certification_decision().unwrap_or("certify");
        let (item, message, name) = in_tx(&self.store, |c| {
            let item = match self.check_cert_link(c, &link)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            let message = self.cert_message(c, &item, decision)?;
            let name = crate::engine::load_user_doc(c, &item.user_id)?
                .and_then(|d| crate::engine::desired::attr_str(&d, "userName").map(str::to_string));
            Ok(Ok((item, message, name)))
        })??;
        Ok(LinkPreview {
            action: link.claims.a,
            user_id: item.user_id,
            user_name: name,
            addressee: link.claims.to,
            addressee_name: None,
            role: link.claims.r,
            message,
        })
    }

    /// Follows a certification link (`POST`): decides the item as its addressee, once.
    pub(super) fn follow_cert_link(
        &self,
        link: VerifiedLink,
        reason: Option<String>,
        delegate_to: Option<String>,
    ) -> AdminResult<LinkOutcome> {
        let decision = link.action.certification_decision().unwrap_or("certify");
        let req = DecisionRequest {
            decision: decision.into(),
            reason,
            delegate_to,
        };
        let actor = format!("one-click link to {} ({})", link.claims.to, link.claims.r);
        let message = self.decision_tx(|c| {
            let item = match self.check_cert_link(c, &link)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            let message = self.cert_message(c, &item, decision)?;
            match self.decide_in(c, &item, &req, &actor)? {
                Ok(_) => Ok(Ok(message)),
                Err(e) => Ok(Err(e)),
            }
        })??;
        Ok(LinkOutcome {
            action: link.claims.a,
            user_id: link.claims.u,
            message: match decision {
                "certify" => format!("Certified. {message}"),
                "revoke" => format!("Revocation planned. {message}"),
                _ => format!("Delegated. {message}"),
            },
        })
    }
}

/// Parses a due given as a duration (`14d`) for `scimhub campaign create --due`.
pub fn parse_due(s: &str) -> AdminResult<Duration> {
    crate::policy::parse_duration(s).map_err(|e| AdminError::Invalid(format!("due: {e}")))
}
