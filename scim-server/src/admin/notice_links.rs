//! One-click links of hold and incident mails: a security address confirms or discards a
//! blast-radius hold; a security or helpdesk address acknowledges or resolves an incident.
//!
//! Such a link is addressed to the mail address it was sent to, in the role it was sent for
//! (`security`, `helpdesk`); following it checks that the address is still on that list of the
//! current policy (403 otherwise), then acts through the very functions the admin API routes
//! call ([`Admin::confirm_hold`], [`Admin::discard_hold`], [`Admin::acknowledge_incident`],
//! [`Admin::resolve_incident`]): the same state checks, the same audit entries, with the link's
//! addressee as the actor. Each acts once: a decided hold, an acknowledged or resolved incident
//! answers 409.

use super::legacy_access::{LinkOutcome, LinkPreview, VerifiedLink};
use super::{in_tx, Admin, AdminError, AdminResult};
use crate::engine::links::{self, LinkAction};
use crate::engine::{load_user_doc, notices};
use crate::store::incidents;

impl Admin {
    /// Whether the link's addressee still holds the role it was sent to them in: a security
    /// address for a hold; a security or helpdesk address for an incident.
    fn notice_link_entitled(&self, link: &VerifiedLink) -> AdminResult<()> {
        let policy = self.engine.policy.current();
        let c = &link.claims;
        let listed = |list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(&c.to));
        let ok = match (c.r.as_str(), link.action.is_hold()) {
            (links::ROLE_SECURITY, _) => listed(&policy.notify.security),
            (links::ROLE_HELPDESK, false) => listed(&policy.notify.helpdesk),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(AdminError::Forbidden(format!(
                "This link was sent to {} as a {} recipient, which they no longer are.",
                c.to, c.r
            )))
        }
    }

    /// The actor a link acts as, in the audit and on the decided row.
    fn notice_link_actor(link: &VerifiedLink) -> String {
        format!("one-click link to {} ({})", link.claims.to, link.claims.r)
    }

    /// The incident a link names: 404 unknown, 409 when it no longer acts (resolved; already
    /// acknowledged, for an acknowledge link).
    fn incident_for_link(&self, link: &VerifiedLink) -> AdminResult<incidents::IncidentDetail> {
        let id: i64 = link
            .claims
            .id
            .parse()
            .map_err(|_| AdminError::Forbidden("This link names no incident.".into()))?;
        let row = in_tx(&self.store, |c| incidents::get(c, id))?
            .ok_or_else(|| AdminError::NotFound(format!("incident {id}")))?;
        if row.status != "open" {
            return Err(AdminError::Conflict(format!(
                "Incident {id} is already resolved; the link no longer acts."
            )));
        }
        if link.action == LinkAction::IncidentAck && row.acknowledged_at.is_some() {
            return Err(AdminError::Conflict(format!(
                "Incident {id} was already acknowledged by {}; the link no longer acts.",
                row.acknowledged_by.as_deref().unwrap_or("someone")
            )));
        }
        Ok(row)
    }

    /// What a hold or incident link would do (`GET` of the link), after every check following
    /// it makes.
    pub(super) fn preview_notice_link(&self, link: &VerifiedLink) -> AdminResult<LinkPreview> {
        self.notice_link_entitled(link)?;
        let c = &link.claims;
        let (message, user_name) = if link.action.is_hold() {
            let hold = self.pending_hold(&c.id).map_err(|e| match e {
                AdminError::Conflict(m) => {
                    AdminError::Conflict(format!("{m}; the link no longer acts."))
                }
                other => other,
            })?;
            let what = format!(
                "{} operations for {} people ({})",
                hold.operations, hold.users, hold.reason
            );
            let m = match link.action {
                LinkAction::HoldConfirm => format!("Confirm hold {}: run the held {what}.", c.id),
                _ => format!("Discard hold {}: the held {what} never run.", c.id),
            };
            (m, None)
        } else {
            let row = self.incident_for_link(link)?;
            let person = match row.user_id.as_deref() {
                Some(u) => {
                    let doc = in_tx(&self.store, |cx| load_user_doc(cx, u))?;
                    let attr = |a: &str| {
                        doc.as_ref()
                            .and_then(|d| crate::engine::desired::attr_str(d, a))
                            .map(str::to_string)
                    };
                    Some((
                        notices::person_label(
                            u,
                            attr("userName").as_deref(),
                            attr("displayName").as_deref(),
                        ),
                        attr("userName"),
                    ))
                }
                None => None,
            };
            let about = match (&person, row.connector.as_deref()) {
                (Some((p, _)), Some(conn)) => format!(" about {p} on {conn}"),
                (Some((p, _)), None) => format!(" about {p}"),
                (None, Some(conn)) => format!(" on {conn}"),
                (None, None) => String::new(),
            };
            let what = row.kind.replace('_', " ");
            let m = match link.action {
                LinkAction::IncidentAck => format!(
                    "Acknowledge incident {} ({what}{about}): its reminders stop; it stays open.",
                    row.id
                ),
                _ => format!("Resolve incident {} ({what}{about}).", row.id),
            };
            (m, person.and_then(|(_, n)| n))
        };
        Ok(LinkPreview {
            action: c.a.clone(),
            user_id: c.u.clone(),
            user_name,
            addressee: c.to.clone(),
            addressee_name: None,
            role: c.r.clone(),
            message,
        })
    }

    /// Follows a hold or incident link (`POST`): the addressee's role is checked again, then the
    /// admin API's own function acts, with the addressee as actor.
    pub(super) fn follow_notice_link(&self, link: &VerifiedLink) -> AdminResult<LinkOutcome> {
        self.notice_link_entitled(link)?;
        let actor = Self::notice_link_actor(link);
        let c = &link.claims;
        let already = |e: AdminError| match e {
            AdminError::Conflict(m) => {
                AdminError::Conflict(format!("{m}; the link no longer acts."))
            }
            other => other,
        };
        let message = match link.action {
            LinkAction::HoldConfirm => {
                let n = self.confirm_hold(&c.id, &actor).map_err(already)?;
                format!("Hold confirmed: {n} held operations released.")
            }
            LinkAction::HoldDiscard => {
                let n = self.discard_hold(&c.id, &actor).map_err(already)?;
                format!("Hold discarded: nothing held is removed ({n} people planned afresh).")
            }
            LinkAction::IncidentAck | LinkAction::IncidentResolve => {
                let id: i64 = c
                    .id
                    .parse()
                    .map_err(|_| AdminError::Forbidden("This link names no incident.".into()))?;
                if link.action == LinkAction::IncidentAck {
                    self.acknowledge_incident(id, &actor, None)
                        .map_err(already)?;
                    format!("Incident {id} acknowledged: its reminders stop.")
                } else {
                    self.resolve_incident(id, &actor, None).map_err(already)?;
                    format!("Incident {id} resolved.")
                }
            }
            _ => return Err(AdminError::Forbidden("unknown action".into())),
        };
        Ok(LinkOutcome {
            action: c.a.clone(),
            user_id: c.u.clone(),
            message,
        })
    }
}

/// What an extension-ask link checks before it is shown or followed: the contractor, as people
/// read them, the addressee's userName, and the contract end the link names.
struct AskCheck {
    person: String,
    addressee: String,
    end: String,
}

impl Admin {
    /// Checks an extension-ask link against the current state: the policy still trusts the
    /// sponsor attribute and it still names the addressee, an active user (403), the user is still a contractor
    /// whose contract ends when the link says (409: an extension moved it), and no link of that
    /// contract end was used (409).
    fn check_extension_ask(&self, link: &VerifiedLink) -> AdminResult<AskCheck> {
        let policy = self.engine.policy.current();
        let c = &link.claims;
        let (doc, facts, addressee, used) = in_tx(&self.store, |cx| {
            Ok((
                load_user_doc(cx, &c.u)?,
                crate::store::engine_state::get_user(cx, &c.u)?.map(|u| u.facts),
                // A sponsor deactivated since decides nothing (as every link's addressee).
                crate::engine::certification::active_doc(cx, &c.to)?,
                crate::store::approvals::link_used(cx, &c.ev)?,
            ))
        })?;
        let attr = |d: &Option<crate::store::Doc>, a: &str| {
            d.as_ref()
                .and_then(|d| crate::engine::desired::attr_str(d, a))
                .map(str::to_string)
        };
        let fact = |k: &str| {
            facts
                .as_ref()
                .and_then(|f| f.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let sponsor = match policy.settings.sponsor_attribute.as_deref() {
            Some(a) => attr(&doc, a).or_else(|| fact("sponsor")),
            None => fact("sponsor"),
        };
        let named = match (&addressee, sponsor.as_deref(), policy.sponsor_trusted()) {
            (Some(d), Some(s), true) => {
                super::authority::Approver::from_doc(&c.to, d, "").is_named_by(s)
            }
            _ => false,
        };
        if !named {
            return Err(AdminError::Forbidden(format!(
                "This link was sent to {} as the contractor's sponsor, which they no longer are.",
                attr(&addressee, "userName").unwrap_or_else(|| c.to.clone())
            )));
        }
        let contractor = facts
            .as_ref()
            .and_then(|f| f.get("contractor"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        let end = fact("end_date").unwrap_or_default();
        if !contractor || links::contract_event(&c.u, &end) != c.ev {
            return Err(AdminError::Conflict(
                "The contract this link is about has changed (extended, ended or no longer a \
                 contract); the link no longer acts."
                    .into(),
            ));
        }
        if used {
            return Err(AdminError::Conflict(
                "This link has already been used.".into(),
            ));
        }
        Ok(AskCheck {
            person: notices::person_label(
                &c.u,
                attr(&doc, "userName").as_deref(),
                attr(&doc, "displayName").as_deref(),
            ),
            addressee: attr(&addressee, "userName").unwrap_or_else(|| c.to.clone()),
            end,
        })
    }

    /// What an extension-ask link would do (`GET`): the page asks for the date and the reason.
    pub(super) fn preview_extension_ask(&self, link: &VerifiedLink) -> AdminResult<LinkPreview> {
        let check = self.check_extension_ask(link)?;
        let c = &link.claims;
        Ok(LinkPreview {
            action: c.a.clone(),
            user_id: c.u.clone(),
            user_name: None,
            addressee: c.to.clone(),
            addressee_name: Some(check.addressee),
            role: c.r.clone(),
            message: format!(
                "Ask for an extension of the contract of {}, which ends at {}.",
                check.person, check.end
            ),
        })
    }

    /// Follows an extension-ask link (`POST` of its page, with the new end date and the
    /// reason): after the checks of [`Admin::preview_extension_ask`], the request is made
    /// through the extension API's own function, as the sponsor (recorded as the requester, so
    /// they cannot also decide it), once per contract end.
    pub(super) fn follow_extension_ask(
        &self,
        link: &VerifiedLink,
        end: Option<&str>,
        reason: Option<&str>,
    ) -> AdminResult<LinkOutcome> {
        let check = self.check_extension_ask(link)?;
        let c = &link.claims;
        let end = end
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| AdminError::Invalid("Give the new end date (YYYY-MM-DD).".into()))?;
        let reason = reason.map(str::trim).unwrap_or_default();
        let actor = Self::notice_link_actor(link);
        let id = self.request_extension_once(
            &c.u,
            end,
            reason,
            &check.addressee,
            Some(&crate::auth::UserRef::Id(c.to.clone())),
            Some((&c.ev, &actor)),
        )?;
        Ok(LinkOutcome {
            action: c.a.clone(),
            user_id: c.u.clone(),
            message: format!(
                "Extension to {end} requested (request {id}); the decision comes by mail."
            ),
        })
    }
}
