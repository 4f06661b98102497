//! The wording of every mail the hub queues: approval requests, blast-radius holds, mover
//! summaries, contract reminders and expiries, extension requests, and the admin API URLs they
//! carry.
//!
//! The engine, the timer rules and the admin actions word their notices here and nowhere else,
//! so the text a person receives is read (and changed) in one file. Every function is pure: it
//! returns the subject and body; who receives it and when it is queued is the caller's decision.

use chrono::{DateTime, Duration, Utc};

use crate::policy::Policy;

/// Where the admin API is mounted.
pub const API_PREFIX: &str = "/admin/v1";

/// A worded notice: its kind (the `engine_notifications.kind` column), subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: &'static str,
    pub subject: String,
    pub body: String,
}

/// The URL of an admin API path (`/approvals/ID/approve`) under the policy's
/// `[notify] link_base_url`, for notification bodies; `None` when no base URL is configured.
pub fn api_url(policy: &Policy, path: &str) -> Option<String> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    Some(format!("{base}{API_PREFIX}{path}"))
}

/// What an approval-request notice names.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalRequest<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    /// The person's userName and displayName, when the directory has them.
    pub user_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
    /// `entitlement`, `sod`.
    pub kind: &'a str,
    /// What is asked for, as people read it ([`entitlement_label`]), or the SoD rule name.
    pub entitlement: Option<&'a str>,
    pub connector: Option<&'a str>,
    /// Who must decide (`manager`, `owner`, `security`).
    pub level: &'a str,
}

/// The one-click links of one recipient's copy of a notice: who they are for, and when they
/// expire.
#[derive(Debug, Clone, Copy)]
pub struct AddressedLinks<'a> {
    /// The addressee, as people read it (a userName, or the manager's name).
    pub addressee: &'a str,
    pub expires: DateTime<Utc>,
    /// `(approve, reject)`.
    pub approve: &'a str,
    pub reject: &'a str,
}

/// An entitlement as people read it: `kind:id`, and its role when it has one. `json` is the
/// entitlement as the engine stores it; anything unparsable is shown as `(unknown)` rather
/// than as raw JSON.
pub fn entitlement_label(json: &str) -> String {
    match serde_json::from_str::<connectors::Entitlement>(json) {
        Ok(e) => match e.role {
            Some(r) => format!("{}:{} (role {r})", e.kind, e.id),
            None => format!("{}:{}", e.kind, e.id),
        },
        Err(_) => "(unknown entitlement)".into(),
    }
}

/// A person as people read them: `Display Name (userName)`, the userName alone, or the id when
/// the directory has neither. Written by a SCIM client: callers quote it ([`user_text`]).
pub fn person_label(user_id: &str, user_name: Option<&str>, display_name: Option<&str>) -> String {
    match (display_name.filter(|d| !d.trim().is_empty()), user_name) {
        (Some(d), Some(n)) => format!("{d} ({n})"),
        (None, Some(n)) => n.to_string(),
        (Some(d), None) => format!("{d} (id {user_id})"),
        (None, None) => format!("user {user_id}"),
    }
}

/// An approval request for one recipient. With `links`, the recipient's own one-click links
/// (bound to them: following one decides as them, with the authority the admin API checks);
/// without, where to decide it. Never a URL that needs a bearer token.
pub fn approval_request(row: ApprovalRequest<'_>, links: Option<AddressedLinks<'_>>) -> Notice {
    let what = match row.kind {
        "sod" => format!(
            "an exception to the separation-of-duties rule {}",
            row.entitlement.unwrap_or("(unnamed)")
        ),
        _ => format!(
            "{} on {}",
            row.entitlement.unwrap_or("an account"),
            row.connector.unwrap_or("(unknown system)")
        ),
    };
    let mut body = format!(
        "An access request needs a decision.\n\n\
         Person (as the directory names them):\n{}\
         Asks for: {what}\n\
         Decided by: the {} level\n\
         Request: {}\n",
        user_text(&person_label(row.user_id, row.user_name, row.display_name)),
        row.level,
        row.id,
    );
    match links {
        Some(l) => body.push_str(&format!(
            "\nApprove: {}\nReject (you can give a reason): {}\n\n\
             These links are for you ({}) only and decide as you; each opens a page to confirm \
             the decision, works once, and expires at {}.\n",
            l.approve,
            l.reject,
            l.addressee,
            l.expires.format("%Y-%m-%d %H:%M UTC"),
        )),
        None => body.push_str(
            "\nThis copy has no decision links. An approver decides it through the hub's \
             approvals API (GET /admin/v1/approvals) with their own credentials.\n",
        ),
    }
    Notice {
        kind: "approval_request",
        subject: format!("scimhub: approval needed: {what}"),
        body,
    }
}

/// Why the blast-radius guard held a deprovisioning (the hold's `reason`).
pub fn hold_reason(max_share: f64, population: i64, window: Duration) -> String {
    format!(
        "more than {:.0}% of {population} users would lose access within {}",
        max_share * 100.0,
        crate::policy::fmt_duration(window)
    )
}

/// A blast-radius hold, with the admin API URLs to decide it.
pub fn hold(policy: &Policy, reason: &str, id: &str) -> Notice {
    let mut body = format!("{reason}.\nConfirm or discard hold {id} in the admin API.");
    if let (Some(c), Some(d)) = (
        api_url(policy, &format!("/holds/{id}/confirm")),
        api_url(policy, &format!("/holds/{id}/discard")),
    ) {
        body.push_str(&format!("\n\nConfirm: POST {c}\nDiscard: POST {d}\n"));
    }
    Notice {
        kind: "blast_radius_hold",
        subject: "scimhub: access removal held for confirmation".into(),
        body,
    }
}

/// One line of a mover summary's legacy access: connector, entitlement kind and id, until.
#[derive(Debug, Clone, Copy)]
pub struct KeptAccess<'a> {
    pub connector: &'a str,
    pub kind: &'a str,
    pub id: &'a str,
    pub until: DateTime<Utc>,
}

/// The part of a mover summary every recipient gets: the new profiles, the changes
/// (`(connector, description)`) and the legacy access kept during the overlap window.
pub fn mover_summary_body(
    user_id: &str,
    profiles: &[String],
    changes: &[(&str, String)],
    kept: &[KeptAccess<'_>],
) -> String {
    let mut body = format!(
        "User {user_id} moved: profiles now {}.\n\nChanges:\n",
        profiles.join(", ")
    );
    for (connector, change) in changes {
        body.push_str(&format!("  {connector}: {change}\n"));
    }
    if !kept.is_empty() {
        body.push_str("\nLegacy access kept during the overlap window:\n");
        for k in kept {
            body.push_str(&format!(
                "  {}: {}:{} until {}\n",
                k.connector, k.kind, k.id, k.until
            ));
        }
    }
    body
}

/// A mover summary for one recipient (`address`): the common body, then that recipient's own
/// one-click links `(acknowledge, extend)` when there are some.
pub fn mover_summary(body: &str, address: &str, links: Option<&(String, String)>) -> Notice {
    let mut text = body.to_string();
    if let Some(l) = links {
        text.push_str(&format!(
            "\nThese links are for you ({address}) only; each opens a page to \
             confirm the action.\nAcknowledge (remove legacy access now): {}\n\
             Extend by 7 days: {}\n",
            l.0, l.1
        ));
    }
    Notice {
        kind: "mover_summary",
        subject: "scimhub: permission change summary".into(),
        body: text,
    }
}

/// A reminder that a contract ends: `name` is the userName (else the id), `end` and `offset` as
/// the timer recorded them. The userName is written by a SCIM client: it is quoted.
pub fn contract_reminder(user_id: &str, name: &str, end: &str, offset: &str) -> Notice {
    Notice {
        kind: "contract_reminder",
        subject: format!("scimhub: contract of {name} ends in {offset}"),
        body: format!(
            "The contract of user {user_id} ends at {end}; access expires then. Their userName:\n\
             {}\n\
             The sponsor can request an extension through the admin API \
             (POST {API_PREFIX}/users/{user_id}/extensions).",
            user_text(name)
        ),
    }
}

/// A contract ended and all access was removed.
pub fn contract_expired(user_id: &str) -> Notice {
    Notice {
        kind: "contract_expired",
        subject: "scimhub: contractor access expired".into(),
        body: format!("The contract of user {user_id} ended; all access was removed."),
    }
}

/// What an extension-request notice names.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionRequest<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    /// Who asks.
    pub by: &'a str,
    pub new_end: &'a str,
    pub reason: &'a str,
}

/// How every line of text a person typed (a reason, a requester's name) starts in a mail body:
/// the text stands on lines of its own, visibly set apart, and the HTML alternative
/// (`notify::mail_html`) escapes these lines and never turns anything in them into a link.
pub const USER_TEXT_PREFIX: &str = "    | ";

/// `text` as user-provided lines of a mail body (see [`USER_TEXT_PREFIX`]): every line
/// prefixed, control characters dropped, and `://` written `[://]` so that no mail client
/// links a URL in it either (plain-text readers link URLs on their own).
pub fn user_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    let defanged = clean.replace("://", "[://]");
    let mut out = String::new();
    for line in defanged.trim().lines() {
        out.push_str(USER_TEXT_PREFIX);
        out.push_str(line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str(USER_TEXT_PREFIX);
        out.push('\n');
    }
    out
}

/// A contract-extension request, with the admin API URLs to decide it. Who asked and why are
/// quoted as user-provided text ([`user_text`]).
pub fn extension_request(policy: &Policy, r: ExtensionRequest<'_>) -> Notice {
    let ExtensionRequest {
        id,
        user_id,
        by,
        new_end,
        reason,
    } = r;
    let mut body = format!(
        "An extension of the contract of user {user_id} to {new_end} was requested.\n\
         Requested by (the authenticated caller):\n{}\
         Reason, as written by the requester (not checked by scimhub):\n{}\
         Approve or reject extension request {id} in the admin API.",
        user_text(by),
        user_text(reason),
    );
    if let (Some(a), Some(r)) = (
        api_url(policy, &format!("/extensions/{id}/approve")),
        api_url(policy, &format!("/extensions/{id}/reject")),
    ) {
        body.push_str(&format!("\nApprove: POST {a}\nReject: POST {r}\n"));
    }
    Notice {
        kind: "extension_request",
        subject: "scimhub: contract extension requested".into(),
        body,
    }
}

/// What an incident notice names.
#[derive(Debug, Clone, Copy)]
pub struct IncidentNotice<'a> {
    pub id: i64,
    /// `operation_parked`, `sla_breach`, `verification_mismatch`, ...
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    /// The user's userName when the user is known.
    pub user_name: Option<&'a str>,
    pub connector: Option<&'a str>,
    /// Why it was raised (from a connector's error, a rule, a check): quoted.
    pub reason: &'a str,
    /// When it was opened (RFC 3339, as stored).
    pub opened: &'a str,
    /// Which notice this is (1 = the first).
    pub notice: i64,
}

/// An incident for the security and IT recipients, with the admin API URLs to read,
/// acknowledge (stops the reminders) and resolve it.
pub fn incident(policy: &Policy, i: IncidentNotice<'_>) -> Notice {
    let IncidentNotice {
        id,
        kind,
        user_id,
        user_name,
        connector,
        reason,
        opened,
        notice,
    } = i;
    let what = kind.replace('_', " ");
    let mut body = format!("Incident {id}: {what}\nOpened: {opened}\n");
    if let Some(c) = connector {
        body.push_str(&format!("Connector: {c}\n"));
    }
    if let Some(u) = user_id {
        body.push_str(&format!("User: {u}\n"));
        if let Some(n) = user_name {
            body.push_str(&format!("Their userName:\n{}", user_text(n)));
        }
    }
    body.push_str(&format!(
        "Reason, as recorded by scimhub:\n{}",
        user_text(reason)
    ));
    if notice > 1 {
        body.push_str(&format!(
            "This is reminder {}: the incident is still open and nobody acknowledged it.\n",
            notice - 1
        ));
    }
    body.push_str(&format!(
        "Acknowledge incident {id} in the admin API to stop the reminders; resolve it when fixed."
    ));
    if let (Some(d), Some(a), Some(r)) = (
        api_url(policy, &format!("/incidents/{id}")),
        api_url(policy, &format!("/incidents/{id}/acknowledge")),
        api_url(policy, &format!("/incidents/{id}/resolve")),
    ) {
        body.push_str(&format!(
            "\n\nDetail: GET {d}\nAcknowledge: POST {a}\nResolve: POST {r}\n"
        ));
    }
    let on = connector.map(|c| format!(" on {c}")).unwrap_or_default();
    let again = if notice > 1 { " (reminder)" } else { "" };
    Notice {
        kind: "incident",
        subject: format!("scimhub: incident {id}: {what}{on}{again}"),
        body,
    }
}

/// Text from outside the hub (a reason, a userName) as it goes into a chat message: control
/// characters dropped and `://` written `[://]` (as in [`user_text`]), so no chat client turns
/// it into a link.
fn chat_text(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect::<String>()
        .replace("://", "[://]")
}

/// Slack reads `&`, `<` and `>` as markup (`<url|label>` is a link): they are escaped, as
/// Slack's message formatting documentation asks.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The webhook payload of an incident notice for a chat channel of `format`: Slack incoming
/// webhook `{"text": ...}`, a Teams message carrying an Adaptive Card, or the generic JSON
/// object (signed by the sender).
pub fn incident_chat(
    policy: &Policy,
    format: crate::policy::ChatFormat,
    i: IncidentNotice<'_>,
) -> String {
    use crate::policy::ChatFormat;
    use serde_json::json;
    let what = i.kind.replace('_', " ");
    let detail = api_url(policy, &format!("/incidents/{}", i.id));
    let reminder = if i.notice > 1 {
        format!(" (reminder {})", i.notice - 1)
    } else {
        String::new()
    };
    let title = format!("scimhub incident {}: {what}{reminder}", i.id);
    let user = match (i.user_id, i.user_name) {
        (Some(id), Some(n)) => Some(format!("{} ({id})", chat_text(n))),
        (Some(id), None) => Some(id.to_string()),
        _ => None,
    };
    let payload = match format {
        ChatFormat::Slack => {
            let mut text = format!("*{}*\nOpened: {}", slack_escape(&title), i.opened);
            if let Some(c) = i.connector {
                text.push_str(&format!("\nConnector: {}", slack_escape(c)));
            }
            if let Some(u) = &user {
                text.push_str(&format!("\nUser: {}", slack_escape(u)));
            }
            text.push_str(&format!("\nReason: {}", slack_escape(&chat_text(i.reason))));
            if let Some(d) = &detail {
                text.push_str(&format!("\n<{d}|Open incident {}>", i.id));
            }
            json!({ "text": text })
        }
        ChatFormat::Teams => {
            let mut facts = vec![json!({"title": "Opened", "value": i.opened})];
            if let Some(c) = i.connector {
                facts.push(json!({"title": "Connector", "value": c}));
            }
            if let Some(u) = &user {
                facts.push(json!({"title": "User", "value": u}));
            }
            let mut card = json!({
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true},
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": chat_text(i.reason), "wrap": true},
                ],
            });
            if let Some(d) = &detail {
                card["actions"] = json!([
                    {"type": "Action.OpenUrl", "title": "Open incident", "url": d}
                ]);
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": card,
                }],
            })
        }
        ChatFormat::Json => json!({
            "type": "incident",
            "id": i.id,
            "kind": i.kind,
            "user_id": i.user_id,
            "user_name": i.user_name,
            "connector": i.connector,
            "reason": i.reason,
            "opened": i.opened,
            "notice": i.notice,
            "url": detail,
        }),
    };
    payload.to_string()
}
/// To a user's manager: a drift finding about the user's access, to keep (an exception until
/// `until`) or remove.
pub fn drift_review(
    user_name: &str,
    connector: &str,
    what: &str,
    keep: &str,
    remove: &str,
    until: &str,
) -> Notice {
    Notice {
        kind: "drift_review",
        subject: format!("scimhub: review {user_name}'s access on {connector}"),
        body: format!(
            "A reconciliation of {connector} found access that the access policy does not \
             explain for {user_name}:\n\n  {what}\n\nIf it is still needed, keep it: it is \
             recorded as an exception until {until}. Otherwise remove it.\n\n\
             Keep: {keep}\nRemove: {remove}\n\nEach link works once.\n"
        ),
    }
}

/// At most this many people are listed per section of an onboarding confirmation (a roster
/// import of 100,000 joiners stays a readable mail).
pub const ONBOARDING_MAX_LISTED: usize = 500;

/// The bulk onboarding confirmation for the HR and IT leads (`engine::onboarding`): per joiner
/// (named by displayName and userName, quoted: the directory's text) what was granted, what
/// waits for approval and from whom, and what failed with the reason; people needing attention
/// first, then those waiting, then those with everything.
pub fn onboarding_confirmation(s: &super::onboarding::OnboardingSummary) -> Notice {
    use super::onboarding::{Access, Joiner};
    use crate::store::bursts::BurstSource;
    let tally = super::onboarding::tally(s);
    let count = |k: &str| tally.get(k).copied().unwrap_or(0);
    let (ready, waiting, attention) = (count("ready"), count("waiting"), count("attention"));
    let total = s.joiners.len();
    let source = match s.source {
        BurstSource::Bulk => "one /Bulk request",
        BurstSource::Import => "one roster import (scimhub import)",
        BurstSource::Window => "joiners sent close together",
    };
    let joiners = |n: usize| if n == 1 { "joiner" } else { "joiners" };
    let on = |a: &Access| {
        if a.what == "account" {
            format!("account on {}", a.system)
        } else {
            format!("{} on {}", a.what, a.system)
        }
    };
    let mut body = format!(
        "Onboarding confirmation: {total} {} written by the client {} ({source}), planned from \
         {} to {}.\n\n\
         Every plan reached a final state:\n\
         - {ready} with all access granted\n\
         - {waiting} waiting for approval\n\
         - {attention} needing attention (a failure, or held for confirmation)\n",
        joiners(total),
        s.client,
        s.started.format("%Y-%m-%d %H:%M:%S UTC"),
        s.last_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    let person = |j: &Joiner| {
        user_text(&person_label(
            &j.user_id,
            j.user_name.as_deref(),
            j.display_name.as_deref(),
        ))
    };
    let section = |title: &str, people: Vec<&Joiner>, body: &mut String| {
        if people.is_empty() {
            return;
        }
        body.push_str(&format!("\n{title} ({}):\n", people.len()));
        let more = people.len().saturating_sub(ONBOARDING_MAX_LISTED);
        for j in people.into_iter().take(ONBOARDING_MAX_LISTED) {
            body.push_str("\nPerson (as the directory names them):\n");
            body.push_str(&person(j));
            for f in &j.failed {
                body.push_str(&format!(
                    "  Failed: {}. Reason, as recorded by scimhub:\n{}",
                    on(&f.access),
                    user_text(&f.reason)
                ));
            }
            for a in &j.held {
                body.push_str(&format!(
                    "  Held for confirmation (blast-radius hold): {}\n",
                    on(a)
                ));
            }
            for w in &j.waiting {
                body.push_str(&format!(
                    "  Waiting for approval: {}, to be decided at the {} level",
                    on(&w.access),
                    w.level
                ));
                if w.level == "manager" {
                    match w.approvers.first() {
                        Some(m) => {
                            body.push_str(" by their manager:\n");
                            body.push_str(&user_text(m));
                        }
                        None => body.push_str(" (the directory names no manager)\n"),
                    }
                } else if w.approvers.is_empty() {
                    body.push_str(" (the policy names no approver)\n");
                } else {
                    body.push_str(&format!(" by {}\n", w.approvers.join(", ")));
                }
                if !w.addresses.is_empty() {
                    body.push_str(&format!("    also asked: {}\n", w.addresses.join(", ")));
                }
            }
            if !j.granted.is_empty() {
                let list: Vec<String> = j.granted.iter().map(&on).collect();
                body.push_str(&format!("  Granted: {}\n", list.join("; ")));
            }
        }
        if more > 0 {
            body.push_str(&format!(
                "\n... and {more} more (the events API lists every joiner).\n"
            ));
        }
    };
    let attention_people: Vec<&Joiner> = s
        .joiners
        .iter()
        .filter(|j| !j.failed.is_empty() || !j.held.is_empty())
        .collect();
    let waiting_people: Vec<&Joiner> = s
        .joiners
        .iter()
        .filter(|j| j.failed.is_empty() && j.held.is_empty() && !j.waiting.is_empty())
        .collect();
    let ready_people: Vec<&Joiner> = s
        .joiners
        .iter()
        .filter(|j| j.failed.is_empty() && j.held.is_empty() && j.waiting.is_empty())
        .collect();
    section("Needing attention", attention_people, &mut body);
    section("Waiting for approval", waiting_people, &mut body);
    section("All access granted", ready_people, &mut body);
    body.push_str(&format!(
        "\nThe events behind this mail are in the admin API (GET {API_PREFIX}/events?user=ID).\n"
    ));
    let mut subject = format!(
        "scimhub: onboarding confirmation: {total} {} from {}",
        joiners(total),
        s.client
    );
    if waiting + attention > 0 {
        subject.push_str(&format!(
            " ({waiting} waiting for approval, {attention} needing attention)"
        ));
    }
    Notice {
        kind: "onboarding_confirmation",
        subject,
        body,
    }
}
