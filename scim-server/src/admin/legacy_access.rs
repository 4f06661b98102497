//! A mover's legacy access (the overlap the policy grants after a move): acknowledged (ended
//! now) or extended by an administrator, or by the manager or security through a signed
//! one-click link from the mover notification. The link's signature and expiry are checked
//! before any transaction; then it is checked against the current state before it is shown or
//! followed. It acts only on its own mover event, and the links of one event share a single use
//! (a row keyed by the event id, written in the transaction that acts).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::auth::{Principal, UserRef};
use crate::engine::desired::attr_str;
use crate::engine::links::LinkAction;
use crate::engine::{links, load_user_doc, notices, Cause, PlanOutcome};
use crate::error::HubResult;
use crate::store::approvals::ApprovalStatus;
use crate::store::{approvals, audit, engine_state, DbConnection};

/// What following a one-click link did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkOutcome {
    /// `ack` or `extend`.
    pub action: String,
    pub user_id: String,
    /// For people: what happened.
    pub message: String,
}

/// What a one-click link would do, shown before anything happens (`GET` of the link).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkPreview {
    /// `ack` or `extend`.
    pub action: String,
    pub user_id: String,
    /// The user's userName, when they still exist.
    pub user_name: Option<String>,
    /// Who the link was sent to (the manager's id, or a security address) and as what
    /// (`manager`, `security`).
    pub addressee: String,
    /// The addressee's userName, when the link is bound to a user id (a manager, a sponsor):
    /// how the confirmation page names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addressee_name: Option<String>,
    pub role: String,
    /// For people: what confirming will do.
    pub message: String,
}

/// A link whose signature and expiry were verified ([`Admin::verify_link`], no database
/// involved); only such a link reaches a transaction.
#[derive(Debug, Clone)]
pub struct VerifiedLink {
    pub(super) claims: links::LinkClaims,
    pub(super) action: LinkAction,
    extend: Option<Duration>,
}

/// The longest a manager may extend a mover's legacy access in one step, in days.
pub const MAX_LEGACY_EXTENSION_DAYS: i64 = 90;

/// The longest legacy access lasts after the move that kept it, however often it is extended,
/// in days: past it the access (and the approval it was granted under) must be asked for again
/// through the new role.
pub const MAX_LEGACY_ACCESS_DAYS: i64 = 120;

/// The refusal (403) of a link whose addressee, a directory user (`claims.to` is their id), is
/// no longer active, or no longer in the directory: the signature only proves who the link was
/// mailed to, and someone deactivated since decides nothing, as the admin API refuses them.
pub(super) fn inactive_addressee(
    c: &mut DbConnection,
    claims: &links::LinkClaims,
) -> HubResult<Option<AdminError>> {
    if crate::engine::certification::active_doc(c, &claims.to)?.is_some() {
        return Ok(None);
    }
    Ok(Some(AdminError::Forbidden(format!(
        "This link was sent to {}, who is no longer an active user; it no longer acts.",
        claims.to
    ))))
}

/// Where an extension by `d` at `now` would end an open override: `d` from now, but at most
/// [`MAX_LEGACY_ACCESS_DAYS`] after the move that kept it.
fn extended_until(o: &approvals::OpenOverride, now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    (now + d).min(o.created + Duration::days(MAX_LEGACY_ACCESS_DAYS))
}

/// Why acknowledging (`extend` = `None`) or extending `user_id`'s legacy access, whose open
/// overrides are `open`, would change nothing now (409), if it would not: none is open, or
/// every open part is at its limit.
fn unchanged_by(
    open: &[approvals::OpenOverride],
    user_id: &str,
    extend: Option<Duration>,
    now: DateTime<Utc>,
) -> Option<AdminError> {
    if open.is_empty() {
        return Some(AdminError::Conflict(format!(
            "user {user_id} has no legacy access left to acknowledge or extend"
        )));
    }
    let d = extend?;
    if open.iter().any(|o| extended_until(o, now, d) > o.until) {
        return None;
    }
    Some(AdminError::Conflict(format!(
        "user {user_id}'s legacy access cannot be extended further: an extension never keeps it \
         past {MAX_LEGACY_ACCESS_DAYS} days after the move; ask for the access through the \
         user's new role"
    )))
}

impl Admin {
    /// Acknowledges (ends now) or extends a mover's legacy access as `actor` (the authenticated
    /// caller), then re-plans, and says until when it lasts now. 404 for an unknown user, 409
    /// when no legacy access is open, or none can be extended (see [`MAX_LEGACY_ACCESS_DAYS`]).
    pub fn legacy_access(
        &self,
        user_id: &str,
        extend: Option<Duration>,
        actor: &str,
    ) -> AdminResult<(PlanOutcome, DateTime<Utc>)> {
        self.decision_tx(|c| self.legacy_access_in(c, user_id, extend, actor))?
    }

    fn legacy_access_in(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        extend: Option<Duration>,
        actor: &str,
    ) -> HubResult<AdminResult<(PlanOutcome, DateTime<Utc>)>> {
        let now = self.now();
        if let Some(d) = extend {
            if d <= Duration::zero() || d > Duration::days(MAX_LEGACY_EXTENSION_DAYS) {
                return Ok(Err(AdminError::Invalid(format!(
                    "legacy access may be extended by 1 to {MAX_LEGACY_EXTENSION_DAYS} days"
                ))));
            }
        }
        if engine_state::get_user(c, user_id)?.is_none() {
            return Ok(Err(AdminError::NotFound(format!("user {user_id}"))));
        }
        // The user's row first: the overlap's end (its timer), an acknowledgement and a
        // re-plan that drops ended overrides all change them under it, so the count below is
        // what this decision changes, not what another one just ended.
        crate::store::lock_users_to_plan(c, [user_id])?;
        let open = approvals::open_overrides(c, user_id, now)?;
        if let Some(refusal) = unchanged_by(&open, user_id, extend, now) {
            return Ok(Err(refusal));
        }
        let until = match extend {
            None => {
                approvals::set_override_until(c, user_id, now, now)?;
                // Every override ends now, so the timers at their old ends (one per extension)
                // have nothing left to end; a plan below that keeps new access schedules its own.
                crate::engine::timers::apply(
                    c,
                    user_id,
                    &crate::engine::timers::TimerChange::CancelOverlap,
                    now,
                )?;
                now
            }
            Some(d) => {
                // Never shortened, and never past MAX_LEGACY_ACCESS_DAYS after the move that
                // kept it; each new end gets its timer, so that the access goes at each.
                let mut ends = std::collections::BTreeSet::new();
                for o in &open {
                    let until = extended_until(o, now, d);
                    if until > o.until {
                        approvals::set_one_override_until(c, &o.id, until, now)?;
                        ends.insert(until);
                    }
                }
                for due in &ends {
                    crate::engine::timers::schedule(
                        c,
                        &crate::engine::timers::Timer {
                            user_id: user_id.into(),
                            kind: crate::engine::timers::TimerKind::OverlapEnd,
                            due: *due,
                        },
                        now,
                    )?;
                }
                open.iter()
                    .map(|o| extended_until(o, now, d).max(o.until))
                    .max()
                    .unwrap_or(now)
            }
        };
        let open = open.len();
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor,
                user_id,
                connector: None,
                action: "legacy_access",
                outcome: if extend.is_some() {
                    "extended"
                } else {
                    "acknowledged"
                },
                detail: json!({"until": until, "overrides": open}),
            },
        )?;
        Ok(Ok((self.engine.replan(c, user_id, Cause::Admin)?, until)))
    }

    /// Verifies a one-click link's signature (403 when tampered or unsigned by this hub) and
    /// expiry (410), and reads its action, touching no database: an unauthenticated request
    /// with a forged link never reaches a transaction.
    pub fn verify_link(&self, token: &str) -> AdminResult<VerifiedLink> {
        let policy = self.engine.policy.current();
        let Some(key) = links::key(&policy) else {
            return Err(AdminError::Forbidden(
                "one-click links are not configured".into(),
            ));
        };
        let claims = match links::verify(&key, token, self.now()) {
            Ok(c) => c,
            Err(links::LinkError::Expired) => {
                return Err(AdminError::Expired("This link has expired.".into()))
            }
            Err(other) => {
                return Err(AdminError::Forbidden(format!(
                    "This link is not valid ({other})."
                )))
            }
        };
        let Some(action) = LinkAction::parse(&claims.a) else {
            return Err(AdminError::Forbidden("unknown action".into()));
        };
        let extend = match action {
            LinkAction::Extend => {
                Some(Duration::days(claims.d.clamp(1, MAX_LEGACY_EXTENSION_DAYS)))
            }
            _ => None,
        };
        if action.names_id() {
            if claims.id.is_empty() {
                return Err(AdminError::Forbidden(
                    "This link names nothing to act on.".into(),
                ));
            }
            return Ok(VerifiedLink {
                claims,
                action,
                extend,
            });
        }
        if claims.ev.is_empty() {
            // Signed before links named their event: it could act on any later move.
            return Err(AdminError::Forbidden(
                "This link is from an older version of scimhub and no longer works; use the \
                 admin API."
                    .into(),
            ));
        }
        Ok(VerifiedLink {
            claims,
            action,
            extend,
        })
    }

    /// The person a decision link decides as: the addressee it was signed for (the manager by
    /// id, an owner or security approver by userName). The admin API's authority check
    /// ([`super::authority`]) then applies to them exactly as to a signed-in caller.
    fn link_principal(claims: &links::LinkClaims) -> Principal {
        let user = match claims.r.as_str() {
            "manager" | links::ROLE_SPONSOR => UserRef::Id(claims.to.clone()),
            _ => UserRef::UserName(claims.to.clone()),
        };
        Principal {
            client: format!("one-click link to {}", claims.to),
            scopes: Vec::new(),
            subject: None,
            user: Some(user),
        }
    }

    /// What a decision link would do, after checking that its request is still pending, that it
    /// is this link's user's, and that the addressee may decide it (403 otherwise, as the admin
    /// API answers).
    fn preview_decision(&self, link: &VerifiedLink) -> AdminResult<LinkPreview> {
        let claims = &link.claims;
        let rows = self.approvals_for_link(claims)?;
        let (row, name, display) = rows;
        let person = notices::person_label(&claims.u, name.as_deref(), display.as_deref());
        if row.kind == approvals::ApprovalKind::Extension {
            let end = row
                .detail
                .get("new_end")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("(no date)");
            let verb = match link.action {
                LinkAction::Approve => "Approve",
                _ => "Reject",
            };
            return Ok(LinkPreview {
                action: claims.a.clone(),
                user_id: claims.u.clone(),
                user_name: name,
                addressee: claims.to.clone(),
                addressee_name: None,
                role: claims.r.clone(),
                message: format!("{verb} the extension of {person}'s contract to {end}."),
            });
        }
        let what = match row.kind.as_str() {
            "sod" => format!(
                "an exception to the separation-of-duties rule {}",
                row.entitlement.as_deref().unwrap_or("(unnamed)")
            ),
            _ => format!(
                "{} on {}",
                self.engine.policy.current().entitlement_text(
                    row.connector.as_deref().unwrap_or(""),
                    row.entitlement.as_deref().unwrap_or("")
                ),
                row.connector.as_deref().unwrap_or("(unknown system)")
            ),
        };
        let message = match link.action {
            LinkAction::Approve => format!("Approve {person}'s request for {what}."),
            _ => format!("Reject {person}'s request for {what}."),
        };
        Ok(LinkPreview {
            action: claims.a.clone(),
            user_id: claims.u.clone(),
            user_name: name,
            addressee: claims.to.clone(),
            addressee_name: None,
            role: claims.r.clone(),
            message,
        })
    }

    /// A decision link's request (404 unknown or not this link's user's, 409 no longer pending,
    /// 403 when its addressee may not decide it), with its user's userName and displayName.
    fn approvals_for_link(
        &self,
        claims: &links::LinkClaims,
    ) -> AdminResult<(approvals::ApprovalRow, Option<String>, Option<String>)> {
        let by = Self::link_principal(claims);
        let mine = self.approvals_for(&by, Some("pending"))?;
        let row = in_tx(&self.store, |c| {
            let row = approvals::get(c, &claims.id)?.filter(|r| r.user_id == claims.u);
            let doc = load_user_doc(c, &claims.u)?;
            Ok((row, doc))
        })?;
        let (row, doc) = row;
        let Some(row) = row else {
            return Err(AdminError::NotFound(
                "The request this link decides no longer exists.".into(),
            ));
        };
        if row.status != ApprovalStatus::Pending {
            return Err(AdminError::Conflict(format!(
                "This request is already {}; the link no longer acts.",
                row.status
            )));
        }
        if !mine.iter().any(|r| r.id == row.id) {
            return Err(AdminError::Forbidden(format!(
                "This link was sent to {}, who may no longer decide this request.",
                claims.to
            )));
        }
        let name = doc
            .as_ref()
            .and_then(|d| attr_str(d, "userName").map(str::to_string));
        let display = doc
            .as_ref()
            .and_then(|d| attr_str(d, "displayName").map(str::to_string));
        Ok((row, name, display))
    }

    /// Checks a verified link against the current state, without acting: that its addressee
    /// still holds the role it was sent to them for (403: a manager who is no longer the user's
    /// manager, or whose manager attribute the policy does not trust, or who is no longer an
    /// active user; an address no longer on the security list), that its event is still the user's latest move (409), that no link
    /// of the event was used (409) and that legacy access is still open (409).
    fn check_link(&self, c: &mut DbConnection, link: &VerifiedLink) -> HubResult<AdminResult<()>> {
        let policy = self.engine.policy.current();
        let claims = &link.claims;
        // The signature proves who the link was sent to; the addressee must still be entitled.
        let entitled = match claims.r.as_str() {
            "manager" => {
                let manager = load_user_doc(c, &claims.u)?
                    .as_ref()
                    .and_then(crate::engine::manager_id);
                policy.manager_trusted() && manager.as_deref() == Some(claims.to.as_str())
            }
            "security" => policy
                .notify
                .security
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&claims.to)),
            _ => false,
        };
        if !entitled {
            return Ok(Err(AdminError::Forbidden(format!(
                "This link was sent to {} as the user's {}, which they no longer are.",
                claims.to, claims.r
            ))));
        }
        // A security link is addressed to a mail address, not a directory user.
        if claims.r == "manager" {
            if let Some(e) = inactive_addressee(c, claims)? {
                return Ok(Err(e));
            }
            // Someone the HRIS named as their own manager was mailed links to their own move
            // (before such a manager stopped being trusted): they decide nothing of their own.
            if claims.to == claims.u {
                return Ok(Err(AdminError::Forbidden(
                    "Nobody decides on their own legacy access.".into(),
                )));
            }
        }
        if approvals::latest_mover_event(c, &claims.u)?.as_deref() != Some(claims.ev.as_str()) {
            return Ok(Err(AdminError::Conflict(
                "This link belongs to an earlier move of this user and no longer acts.".into(),
            )));
        }
        if approvals::link_used(c, &claims.ev)? {
            return Ok(Err(AdminError::Conflict(
                "This link has already been used.".into(),
            )));
        }
        let now = self.now();
        let open = approvals::overrides(c, &claims.u)?
            .into_iter()
            .any(|o| o.until > now);
        if !open {
            return Ok(Err(AdminError::Conflict(format!(
                "user {} has no legacy access left to acknowledge or extend",
                claims.u
            ))));
        }
        Ok(Ok(()))
    }

    /// What a one-click link would do, after every check [`Admin::follow_link`] makes, without
    /// doing it: following a link with `GET` shows this, so a mail scanner that fetches links
    /// changes nothing.
    pub fn preview_link(&self, token: &str) -> AdminResult<LinkPreview> {
        self.preview_verified(self.verify_link(token)?)
    }

    /// [`Admin::preview_link`] of a link already verified. The page names the addressee as
    /// people read them: a manager or sponsor (bound by user id) by their userName.
    pub fn preview_verified(&self, link: VerifiedLink) -> AdminResult<LinkPreview> {
        // A certification reviewer is bound by user id whatever the level.
        let by_id = matches!(link.claims.r.as_str(), "manager" | links::ROLE_SPONSOR)
            || link.action.is_certification();
        let mut p = self.preview_checked(link)?;
        if by_id {
            let doc = in_tx(&self.store, |c| load_user_doc(c, &p.addressee))?;
            p.addressee_name = doc
                .as_ref()
                .and_then(|d| attr_str(d, "userName"))
                .map(str::to_string);
        }
        Ok(p)
    }

    /// What a verified link would do, after every check following it makes.
    fn preview_checked(&self, link: VerifiedLink) -> AdminResult<LinkPreview> {
        if link.action == LinkAction::ExtensionAsk {
            return self.preview_extension_ask(&link);
        }
        if link.action.is_hold() || link.action.is_incident() {
            return self.preview_notice_link(&link);
        }
        if link.action.is_certification() {
            return self.preview_cert_link(link);
        }
        if link.action.is_drift() {
            return self.preview_drift_link(link);
        }
        if link.action.is_decision() {
            return self.preview_decision(&link);
        }
        let name = in_tx(&self.store, |c| {
            if let Err(e) = self.check_link(c, &link)? {
                return Ok(Err(e));
            }
            Ok(Ok(load_user_doc(c, &link.claims.u)?.and_then(|d| {
                attr_str(&d, "userName").map(str::to_string)
            })))
        })??;
        let who = name.clone().unwrap_or_else(|| link.claims.u.clone());
        let message = match link.extend {
            None => format!("Remove {who}'s legacy access now."),
            Some(d) => format!(
                "Extend {who}'s legacy access by {} days (at most {MAX_LEGACY_ACCESS_DAYS} days \
                 after the move).",
                d.num_days()
            ),
        };
        Ok(LinkPreview {
            action: link.claims.a,
            user_id: link.claims.u,
            user_name: name,
            addressee: link.claims.to,
            addressee_name: None,
            role: link.claims.r,
            message,
        })
    }

    /// Runs a one-click link (after the checks of [`Admin::preview_link`]): acknowledges or
    /// extends the user's legacy access. The links of one mover event share one use: once one
    /// ran, all answer 409, so a second click, a replay or another recipient's link cannot act
    /// twice or undo the first decision. The audit records who the link was sent to: the
    /// signature is the proof of identity here, there is no login.
    pub fn follow_link(&self, token: &str) -> AdminResult<LinkOutcome> {
        // Signature and expiry first, outside any transaction: a forged link costs no writer.
        self.follow_verified(self.verify_link(token)?)
    }

    /// [`Admin::follow_link`] of a link already verified.
    pub fn follow_verified(&self, link: VerifiedLink) -> AdminResult<LinkOutcome> {
        self.follow_verified_with(link, None)
    }

    /// [`Admin::follow_link`] with the reason typed on the confirmation page (a rejection's).
    pub fn follow_link_with_reason(
        &self,
        token: &str,
        reason: Option<&str>,
    ) -> AdminResult<LinkOutcome> {
        self.follow_verified_with(self.verify_link(token)?, reason.map(str::to_string))
    }

    /// [`Admin::follow_verified`] with a reason. A decision link decides its request as its
    /// addressee, through the same path as the admin API (authority checked, decision recorded
    /// as theirs); it acts once, since a decided request is no longer pending (409), so a
    /// replay, or another addressee's link for the same request, is refused.
    pub fn follow_verified_with(
        &self,
        link: VerifiedLink,
        reason: Option<String>,
    ) -> AdminResult<LinkOutcome> {
        self.follow_verified_form(link, reason, None, None)
    }

    /// [`Admin::follow_verified_with`] with the whole confirmation form: the reason, the new
    /// end date an extension-ask link's page asks for, and a certification delegation's delegate.
    pub fn follow_verified_form(
        &self,
        link: VerifiedLink,
        reason: Option<String>,
        end: Option<String>,
        delegate_to: Option<String>,
    ) -> AdminResult<LinkOutcome> {
        if link.action == LinkAction::ExtensionAsk {
            return self.follow_extension_ask(&link, end.as_deref(), reason.as_deref());
        }
        if link.action.is_hold() || link.action.is_incident() {
            return self.follow_notice_link(&link);
        }
        if link.action.is_certification() {
            return self.follow_cert_link(link, reason, delegate_to);
        }
        if link.action.is_drift() {
            return self.follow_drift_link(link);
        }
        if link.action.is_decision() {
            let by = Self::link_principal(&link.claims);
            let reason = reason
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty());
            let (status, message) = match link.action {
                LinkAction::Approve => ("approved", "Request approved."),
                _ => ("rejected", "Request rejected."),
            };
            let row =
                match self.decide_request(&link.claims.id, None, status, &by, reason.as_deref()) {
                    Ok(r) => r,
                    Err(AdminError::Conflict(_)) => {
                        return Err(AdminError::Conflict(
                            "This request was already decided; the link no longer acts.".into(),
                        ))
                    }
                    Err(e) => return Err(e),
                };
            return Ok(LinkOutcome {
                action: link.claims.a,
                user_id: row.user_id,
                message: message.into(),
            });
        }
        let until = self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            if let Err(e) = self.check_link(c, &link)? {
                return Ok(Err(e));
            }
            let actor = format!("one-click link to {} ({})", link.claims.to, link.claims.r);
            // A link that would change nothing is not used up by trying (the refusal commits).
            let open = approvals::open_overrides(c, &link.claims.u, now)?;
            if let Some(refusal) = unchanged_by(&open, &link.claims.u, link.extend, now) {
                return Ok(Err(refusal));
            }
            // The event's one use, claimed before acting: a concurrent click waits on the key,
            // then finds it taken and acts not at all.
            if !approvals::use_link(c, &link.claims.ev, &link.claims.u, &actor, now)? {
                return Ok(Err(AdminError::Conflict(
                    "This link has already been used.".into(),
                )));
            }
            let until = match self.legacy_access_in(c, &link.claims.u, link.extend, &actor)? {
                Ok((_, until)) => until,
                Err(e) => return Ok(Err(e)),
            };
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: &actor,
                    user_id: &link.claims.u,
                    connector: None,
                    action: "one_click_link",
                    outcome: &link.claims.a,
                    detail: json!({"event": link.claims.ev, "to": link.claims.to, "as": link.claims.r}),
                },
            )?;
            Ok(Ok(until))
        })??;
        let message = match link.extend {
            None => "Legacy access removed.".to_string(),
            Some(_) => format!(
                "Legacy access extended until {} (UTC).",
                until.format("%Y-%m-%d %H:%M")
            ),
        };
        Ok(LinkOutcome {
            action: link.claims.a,
            user_id: link.claims.u,
            message,
        })
    }
}
