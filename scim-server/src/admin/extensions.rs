//! Contract extensions: a request to move a contractor's end date (checked against the policy's
//! contractor rules, mailed to those who may decide it) and, once approved, the write of the new
//! end date to the user (so the engine reschedules expiry and reminders).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::auth::UserRef;
use crate::engine::desired::parse_date;
use crate::engine::{links, notices};
use crate::error::HubResult;
use crate::store::approvals::{ApprovalKind, ApprovalLevel};
use crate::store::{approvals, engine_state, load_row, Change, DbConnection, Doc, ResourceKind};

impl Admin {
    pub(super) fn end_date_path(&self) -> AdminResult<scim_schema::filter::AttrPath> {
        let policy = self.engine.policy.current();
        let attr =
            policy.settings.end_date_attribute.clone().ok_or_else(|| {
                AdminError::Invalid("the policy sets no end_date_attribute".into())
            })?;
        scim_schema::filter::parse_attr_path(&attr).map_err(|e| AdminError::Invalid(e.to_string()))
    }

    /// Writes the contract end date `end` to the user, inside the caller's write transaction
    /// (the decision that approved the extension): both commit, or neither.
    pub(super) fn set_end_date_in(
        &self,
        c: &mut DbConnection,
        changes: &mut Vec<Change>,
        path: &scim_schema::filter::AttrPath,
        user_id: &str,
        end: &str,
    ) -> HubResult<()> {
        let end = end.to_string();
        self.store.update_with_in(
            c,
            changes,
            ResourceKind::User,
            user_id,
            move |mut doc: Doc| {
                let target = match &path.urn {
                    Some(urn) => {
                        let entry = doc
                            .entry(urn.as_str().to_string())
                            .or_insert_with(|| Value::Object(Default::default()));
                        match entry.as_object_mut() {
                            Some(o) => o,
                            None => {
                                return Err(scim_schema::Error::InvalidValue(
                                    "extension is not an object".into(),
                                )
                                .into())
                            }
                        }
                    }
                    None => &mut doc,
                };
                target.insert(path.name.as_str().to_string(), Value::String(end));
                Ok(doc)
            },
        )?;
        Ok(())
    }

    /// A request to move a contractor's end date, decided by the contractor's sponsor, a
    /// contractor owner or security ([`super::authority`]). `by` names who asks (free text: the sponsor's
    /// address, say); `requester` is the directory user behind the call, if any, recorded so they
    /// cannot decide their own request.
    pub fn request_extension(
        &self,
        user_id: &str,
        new_end: &str,
        reason: &str,
        by: &str,
        requester: Option<&UserRef>,
    ) -> AdminResult<String> {
        self.request_extension_once(user_id, new_end, reason, by, requester, None)
    }

    /// [`Admin::request_extension`]; with `once` (`(event, actor)`, a one-click link's), the
    /// request is recorded only if the link's event was not used yet, and uses it in the same
    /// transaction (409 otherwise): two clicks record one request.
    pub(super) fn request_extension_once(
        &self,
        user_id: &str,
        new_end: &str,
        reason: &str,
        by: &str,
        requester: Option<&UserRef>,
        once: Option<(&str, &str)>,
    ) -> AdminResult<String> {
        let policy = self.engine.policy.current();
        let rules = policy
            .contractor
            .as_ref()
            .ok_or_else(|| AdminError::Invalid("the policy has no contractor rules".into()))?;
        let end = parse_date(new_end)
            .ok_or_else(|| AdminError::Invalid(format!("{new_end:?} is not a date")))?;
        if reason.trim().is_empty() {
            return Err(AdminError::Invalid("an extension needs a reason".into()));
        }
        if self.store.get(ResourceKind::User, user_id, false).is_err() {
            return Err(AdminError::NotFound(format!("user {user_id}")));
        }
        let now = self.now();
        let current = in_tx(&self.store, |c| engine_state::get_user(c, user_id))?
            .and_then(|u| u.facts.get("end_date").cloned())
            .and_then(|v| serde_json::from_value::<Option<DateTime<Utc>>>(v).ok())
            .flatten()
            .unwrap_or(now);
        if end <= current {
            return Err(AdminError::Invalid("the new end date must be later".into()));
        }
        if end - current > rules.max_extension {
            return Err(AdminError::Invalid(format!(
                "an extension may add at most {}",
                crate::policy::fmt_duration(rules.max_extension)
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let recorded = in_tx(&self.store, |c| {
            if let Some((event, actor)) = once {
                if !approvals::use_link(c, event, user_id, actor, now)? {
                    return Ok(false);
                }
            }
            let requester_id = match requester {
                Some(UserRef::Id(u)) => load_row(c, ResourceKind::User, u)?.map(|r| r.id),
                Some(UserRef::UserName(u)) => {
                    crate::store::find_user_row_by_name(c, u)?.map(|r| r.id)
                }
                None => None,
            };
            let mut detail = json!({"new_end": new_end, "reason": reason, "requested_by": by});
            if let Some(r) = &requester_id {
                detail["requested_by_user_id"] = json!(r);
            }
            approvals::insert(
                c,
                &approvals::NewApproval {
                    id: &id,
                    user_id,
                    kind: ApprovalKind::Extension,
                    connector: None,
                    entitlement: None,
                    level: ApprovalLevel::Owner,
                    detail,
                },
                now,
            )?;
            self.queue_extension_notices(
                c,
                &policy,
                &rules.owners,
                &id,
                user_id,
                (by, requester_id.as_deref()),
                new_end,
                reason,
                now,
            )?;
            crate::store::audit::append(
                c,
                &crate::store::audit::AuditEntry {
                    at: now,
                    actor: by,
                    user_id,
                    connector: None,
                    action: "extension_request",
                    outcome: "requested",
                    detail: json!({"request": id, "new_end": new_end, "reason": reason,
                        "requested_by_user_id": requester_id}),
                },
            )?;
            Ok(true)
        })?;
        if !recorded {
            return Err(AdminError::Conflict(
                "This link has already been used.".into(),
            ));
        }
        Ok(id)
    }

    /// The mails of extension request `id`: with one-click links configured, every person who
    /// may decide it gets a copy whose approve / reject links are bound to them (the sponsor,
    /// when the sponsor attribute names a directory user by id or userName; each contractor
    /// owner), and the owner approvers' addresses and a sponsor named by an address get a copy
    /// without links; without links configured, one copy to all of them. Security when nobody
    /// else. `by`: who asks, and their user id when they are a directory user: they get no
    /// decision links (nobody decides their own request).
    #[allow(clippy::too_many_arguments)]
    fn queue_extension_notices(
        &self,
        c: &mut DbConnection,
        policy: &crate::policy::Policy,
        owners: &[String],
        id: &str,
        user_id: &str,
        (by, requester_id): (&str, Option<&str>),
        new_end: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> HubResult<()> {
        let doc = crate::engine::load_user_doc(c, user_id)?;
        let attr = |a: &str| {
            doc.as_ref()
                .and_then(|d| crate::engine::desired::attr_str(d, a))
                .map(str::to_string)
        };
        let (user_name, display_name) = (attr("userName"), attr("displayName"));
        let request = notices::ExtensionRequest {
            id,
            user_id,
            user_name: user_name.as_deref(),
            display_name: display_name.as_deref(),
            by,
            new_end,
            reason,
        };
        let sponsor = engine_state::get_user(c, user_id)?.and_then(|u| {
            u.facts
                .get("sponsor")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        // People: (recipient the sender resolves, link addressee, role, how the mail names them).
        let mut people: Vec<(String, String, &str, String)> = Vec::new();
        let mut plain: Vec<String> = Vec::new();
        if let Some(s) = &sponsor {
            let row = match load_row(c, ResourceKind::User, s)? {
                Some(r) => Some(r),
                None => crate::store::find_user_row_by_name(c, s)?,
            };
            match row {
                Some(r) if Some(r.id.as_str()) != requester_id => {
                    people.push((r.id.clone(), r.id, links::ROLE_SPONSOR, s.clone()))
                }
                // The sponsor asked: informed, without links to decide it.
                Some(r) => plain.push(r.id),
                None => plain.push(s.clone()),
            }
        }
        for name in owners {
            if let Some(r) = crate::store::find_user_row_by_name(c, name)? {
                if Some(r.id.as_str()) != requester_id {
                    people.push((r.id, name.clone(), links::ROLE_APPROVER, name.clone()));
                }
            }
        }
        plain.extend(
            policy
                .notify
                .approvers
                .get("owner")
                .cloned()
                .unwrap_or_default(),
        );
        let key = links::person_key(policy);
        let expires = now + policy.notify.link_ttl;
        let mut linked: Vec<(String, notices::Notice)> = Vec::new();
        if let Some(key) = &key {
            for (to, addressee, role, label) in &people {
                let Some((approve, reject)) =
                    links::decision_links(policy, key, user_id, id, addressee, role, now)
                else {
                    linked.clear();
                    break;
                };
                linked.push((
                    to.clone(),
                    notices::extension_request(
                        request,
                        Some(notices::AddressedLinks {
                            addressee: label,
                            expires,
                            approve: &approve,
                            reject: &reject,
                        }),
                    ),
                ));
            }
        }
        if linked.is_empty() {
            // No links: everyone who may decide gets the copy without links.
            plain.splice(0..0, people.into_iter().map(|(to, ..)| to));
        }
        if linked.is_empty() && plain.is_empty() {
            plain = policy.notify.security.clone();
        }
        let mut copies: Vec<(Vec<String>, notices::Notice)> =
            linked.into_iter().map(|(to, n)| (vec![to], n)).collect();
        if !plain.is_empty() {
            copies.push((plain, notices::extension_request(request, None)));
        }
        for (to, copy) in copies {
            crate::store::notifications::enqueue(
                c,
                copy.kind,
                Some(user_id),
                &to,
                &copy.subject,
                &copy.body,
                now,
            )?;
        }
        Ok(())
    }
}
