//! The wording of every mail the hub queues: approval requests, blast-radius holds, mover
//! summaries, contract reminders and expiries, extension requests, incidents and drift reviews.
//! People are named as the directory names them (display name and userName, quoted since a SCIM
//! client wrote them); the only URLs a mail carries are signed one-click links bound to the
//! recipient (`engine::links`), never an admin API URL that needs a bearer token.
//!
//! The engine, the timer rules and the admin actions word their notices here and nowhere else,
//! so the text a person receives is read (and changed) in one file. Every function is pure: it
//! returns the subject and body; who receives it and when it is queued is the caller's decision.

use chrono::{DateTime, Duration, Utc};

use crate::policy::{BlastRadius, Policy};

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

/// The two one-click links of one recipient's copy of a hold or incident notice.
#[derive(Debug, Clone, Copy)]
pub struct PairLinks<'a> {
    /// The addressee (the address the copy is mailed to).
    pub addressee: &'a str,
    pub expires: DateTime<Utc>,
    /// Hold: (confirm, discard); incident: (acknowledge, resolve).
    pub first: &'a str,
    pub second: &'a str,
}

/// The sentence under a copy's one-click links: for whom they are, that they act as them, once,
/// after a confirmation page, and until when.
fn links_note(addressee: &str, expires: DateTime<Utc>) -> String {
    // The addressee is the directory's (a userName, an email address): kept on this line.
    format!(
        "These links are for you ({}) only and act as you; each opens a page to confirm \
         the action, works once, and expires at {}.\n",
        inline_text(addressee),
        expires.format("%Y-%m-%d %H:%M UTC"),
    )
}

/// A person's label ([`person_label`]) as quoted mail lines ([`user_text`]).
pub fn quoted_person(user_id: &str, user_name: Option<&str>, display_name: Option<&str>) -> String {
    user_text(&person_label(user_id, user_name, display_name))
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
    let what = inline_text(&what);
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
            inline_text(l.addressee),
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

/// A blast-radius hold for one security recipient. With `links`, that recipient's own confirm
/// and discard links; without, where to decide it signed in. Never a URL that needs a bearer
/// token.
pub fn hold(reason: &str, id: &str, links: Option<PairLinks<'_>>) -> Notice {
    let mut body = format!(
        "Access removals are held for confirmation: {reason}.\n\n\
         Nothing is removed until the hold is confirmed; discarding it cancels the held \
         removals (the next change to those people plans them afresh).\n\
         Hold: {id}\n"
    );
    match links {
        Some(l) => {
            body.push_str(&format!(
                "\nConfirm (the held removals run): {}\nDiscard (nothing held is removed): {}\n\n",
                l.first, l.second
            ));
            body.push_str(&links_note(l.addressee, l.expires));
        }
        None => body.push_str(
            "\nThis copy has no decision links. A hub administrator confirms or discards it \
             through the hub's holds API (GET /admin/v1/holds) with their own credentials.\n",
        ),
    }
    Notice {
        kind: "blast_radius_hold",
        subject: "scimhub: access removal held for confirmation".into(),
        body,
    }
}

/// A share of users as people read it: `30%`, `2.5%`.
fn percent(share: f64) -> String {
    format!("{}%", (share * 1000.0).round() / 10.0)
}

/// What a blast-radius guard holds, in a sentence.
pub fn guard_rule(guard: Option<&BlastRadius>) -> String {
    match guard {
        None => "off (nothing is held, however many users lose access)".into(),
        Some(b) => format!(
            "removals are held when more than {} of the users would lose access within {}, \
             in a directory of {} users or more",
            percent(b.max_share),
            crate::policy::fmt_duration(b.window),
            b.min_population
        ),
    }
}

/// A policy change that loosened the blast-radius guard, for security: which policy, what it
/// loosened, and what that means for the changes after it. The same edit may have emptied
/// `[notify] security`, so the caller mails the addresses of the policy before it too.
pub fn guard_loosened(
    sha256: &str,
    previous_sha256: &str,
    node: &str,
    before: &BlastRadius,
    now: Option<&BlastRadius>,
) -> Notice {
    let mut changes = Vec::new();
    match now {
        None => changes
            .push("the guard is removed ([blast_radius] is no longer in the policy)".to_string()),
        Some(after) => {
            if after.max_share > before.max_share {
                changes.push(format!(
                    "max_share {} -> {}: a larger share of users may lose access before anything is held",
                    percent(before.max_share),
                    percent(after.max_share)
                ));
            }
            if after.window < before.window {
                changes.push(format!(
                    "window {} -> {}: removals spread over a longer time are no longer counted together",
                    crate::policy::fmt_duration(before.window),
                    crate::policy::fmt_duration(after.window)
                ));
            }
            if after.min_population > before.min_population {
                changes.push(format!(
                    "min_population {} -> {}: directories under {} users are not guarded",
                    before.min_population, after.min_population, after.min_population
                ));
            }
        }
    }
    let mut body = format!(
        "A policy change loosened the blast-radius guard.\n\n\
         Policy now in force: sha256 {}\n\
         Policy before it: sha256 {}\n\
         Applied by node: {}\n\n\
         What changed in the guard:\n",
        inline_text(sha256),
        inline_text(previous_sha256),
        inline_text(node),
    );
    for change in &changes {
        body.push_str(&format!("  {change}\n"));
    }
    body.push_str(&format!(
        "\nGuard before: {}.\nGuard now: {}.\n\n\
         The re-plan this change brought was judged by the stricter of the two guards, so it \
         could not take away what the guard before would have held. Every change after it \
         (SCIM writes, group changes, drift clean-ups and the next policy change) is judged by \
         the new guard alone.\n\n\
         If nobody meant to loosen the guard, restore [blast_radius] in the policy file and \
         reload it. The hub's audit chain records this change as policy_applied with the \
         outcome guard_loosened.\n",
        guard_rule(Some(before)),
        guard_rule(now),
    ));
    Notice {
        kind: "guard_loosened",
        subject: "scimhub: a policy change loosened the blast-radius guard".into(),
        body,
    }
}

/// One line of a mover summary's legacy access: connector, entitlement kind and id, until.
#[derive(Debug, Clone, Copy)]
pub struct KeptAccess<'a> {
    pub connector: &'a str,
    pub kind: &'a str,
    pub id: &'a str,
    /// The policy's description of the entitlement, when a grant gives one.
    pub description: Option<&'a str>,
    pub until: DateTime<Utc>,
}

/// The part of a mover summary every recipient gets: the person (`person`, a [`person_label`]),
/// the new profiles, the changes (`(connector, description)`) and the legacy access kept during
/// the overlap window.
pub fn mover_summary_body(
    person: &str,
    profiles: &[String],
    changes: &[(&str, String)],
    kept: &[KeptAccess<'_>],
) -> String {
    let mut body = format!(
        "A person moved to a new role, and their access changes.\n\n\
         Person (as the directory names them):\n{}\
         Roles now: {}\n\nChanges:\n",
        user_text(person),
        if profiles.is_empty() {
            "(none)".to_string()
        } else {
            profiles.join(", ")
        }
    );
    if changes.is_empty() {
        body.push_str("  (none)\n");
    }
    // An operation names its account by key, which defaults to the userName a SCIM client
    // wrote: kept on its line, so it cannot add lines (or links) of the hub's own.
    for (connector, change) in changes {
        body.push_str(&format!(
            "  {}: {}\n",
            inline_text(connector),
            inline_text(change)
        ));
    }
    if !kept.is_empty() {
        body.push_str("\nAccess of the old role kept during the overlap window:\n");
        for k in kept {
            let what = entitlement_text(k.kind, k.id, None);
            let what = match k.description {
                Some(d) => format!("{d} ({what})"),
                None => what,
            };
            body.push_str(&format!(
                "  {} on {}, until {}\n",
                inline_text(&what),
                inline_text(k.connector),
                k.until.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    body
}

/// `kind:id`, with its role when it has one, as [`entitlement_label`] writes it.
pub fn entitlement_text(kind: &str, id: &str, role: Option<&str>) -> String {
    match role {
        Some(r) => format!("{kind}:{id} (role {r})"),
        None => format!("{kind}:{id}"),
    }
}

/// A mover summary for one recipient (`address`): the common body, then that recipient's own
/// one-click links `(acknowledge, extend)` when there are some. A copy that has kept access but
/// no links says how to decide signed in.
pub fn mover_summary(
    body: &str,
    address: &str,
    links: Option<&(String, String)>,
    expires: DateTime<Utc>,
    has_kept: bool,
) -> Notice {
    let mut text = body.to_string();
    match (links, has_kept) {
        (Some(l), _) => {
            text.push_str(&format!(
                "\nAcknowledge (remove legacy access now): {}\n\
                 Extend by 7 days: {}\n\n",
                l.0, l.1
            ));
            text.push_str(&links_note(address, expires));
        }
        (None, true) => text.push_str(
            "\nThis copy has no links. A hub administrator acknowledges or extends the kept \
             access through the hub's legacy-access API (/admin/v1/users/ID/legacy-access) with \
             their own credentials.\n",
        ),
        (None, false) => {}
    }
    Notice {
        kind: "mover_summary",
        subject: "scimhub: permission change summary".into(),
        body: text,
    }
}

/// The sponsor's *ask for an extension* link in their copy of a contract reminder.
#[derive(Debug, Clone, Copy)]
pub struct AskLink<'a> {
    /// How the mail names the sponsor.
    pub addressee: &'a str,
    pub expires: DateTime<Utc>,
    pub url: &'a str,
}

/// A reminder that a contract ends: `person` is the contractor's [`person_label`] (written by a
/// SCIM client: quoted), `end` and `offset` as the timer recorded them. The sponsor's copy
/// (`ask`) carries their link to ask for an extension; the others say how the sponsor asks.
pub fn contract_reminder(
    person: &str,
    end: &str,
    offset: &str,
    ask: Option<AskLink<'_>>,
) -> Notice {
    let end = DateTime::parse_from_rfc3339(end)
        .map(|e| {
            e.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| inline_text(end));
    let mut body = format!(
        "A contract ends in {offset}, at {end}; all of the contractor's access is removed \
         then.\n\nContractor (as the directory names them):\n{}\n",
        user_text(person)
    );
    match ask {
        Some(a) => {
            body.push_str(&format!(
                "You are the contractor's sponsor. If the work goes on, ask for an extension \
                 (the page asks for the new end date and the reason; a contractor owner or \
                 a security approver then decides it, not you):\n\
                 Ask for an extension: {}\n\n",
                a.url
            ));
            body.push_str(&links_note(a.addressee, a.expires));
        }
        None => body.push_str(
            "If the work goes on, the contractor's sponsor asks for an extension from the link \
             in their copy of this reminder, or through the hub's extension API \
             (POST /admin/v1/users/ID/extensions) with their own credentials; the sponsor or a \
             contractor owner then decides it from the mail they receive.\n",
        ),
    }
    Notice {
        kind: "contract_reminder",
        subject: format!("scimhub: a contract ends in {offset}"),
        body,
    }
}

/// A contract ended and all access was removed; `person` as in [`contract_reminder`].
pub fn contract_expired(person: &str) -> Notice {
    Notice {
        kind: "contract_expired",
        subject: "scimhub: contractor access expired".into(),
        body: format!(
            "A contract ended and all of the contractor's access was removed.\n\n\
             Contractor (as the directory names them):\n{}",
            user_text(person)
        ),
    }
}

/// What an extension-request notice names.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionRequest<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    /// The contractor's userName and displayName, when the directory has them.
    pub user_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
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
/// prefixed (U+2028 and U+2029 end a line as `\n` does), other control characters and the
/// bidirectional controls dropped, and `://` written `[://]` so that no mail client
/// links a URL in it either (plain-text readers link URLs on their own).
pub fn user_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter_map(|c| match c {
            // Separators end a line as `\n` does: the next line is quoted too.
            '\n' | '\u{2028}' | '\u{2029}' => Some('\n'),
            c if breaks_or_reorders(c) => None,
            c => Some(c),
        })
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

/// Whether `c` is dropped from text from outside the hub: control characters (line breaks
/// among them), the Unicode line and paragraph separators (U+2028, U+2029: some readers break
/// lines there too) and the bidirectional marks, embeddings, overrides and isolates (they make
/// a reader see the text in another order than it is written).
fn breaks_or_reorders(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` from outside the hub (a userName, an account key, an entitlement a system reports)
/// inside one of the hub's own lines: it stays on that line (a line break or separator becomes
/// a space, every other character [`user_text`] drops is dropped) and `://` is written `[://]`,
/// so neither a mail client nor the HTML alternative (`notify::mail_html`) links a URL in it.
pub fn inline_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() && breaks_or_reorders(c) => Some(' '),
            c if breaks_or_reorders(c) => None,
            c => Some(c),
        })
        .collect::<String>()
        .replace("://", "[://]")
}

/// A contract-extension request for one recipient. With `links`, that recipient's own approve
/// and reject links (bound to them: following one decides as them, with the authority the admin
/// API checks); without, where to decide it signed in. Who asked and why are quoted as
/// user-provided text ([`user_text`]).
pub fn extension_request(r: ExtensionRequest<'_>, links: Option<AddressedLinks<'_>>) -> Notice {
    let new_end = DateTime::parse_from_rfc3339(r.new_end)
        .map(|e| {
            e.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| inline_text(r.new_end));
    let mut body = format!(
        "A contract extension needs a decision.\n\n\
         Contractor (as the directory names them):\n{}\
         New end date asked for: {new_end}\n\
         Requested by (the authenticated caller):\n{}\
         Reason, as written by the requester (not checked by scimhub):\n{}\
         Request: {}\n",
        quoted_person(r.user_id, r.user_name, r.display_name),
        user_text(r.by),
        user_text(r.reason),
        r.id,
    );
    match links {
        Some(l) => {
            body.push_str(&format!(
                "\nApprove: {}\nReject (you can give a reason): {}\n\n",
                l.approve, l.reject
            ));
            body.push_str(&links_note(l.addressee, l.expires));
        }
        None => body.push_str(
            "\nThis copy has no decision links. The sponsor or a contractor owner decides it \
             through the hub's approvals API (GET /admin/v1/approvals) with their own \
             credentials.\n",
        ),
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
    /// The user's displayName when the directory has one.
    pub display_name: Option<&'a str>,
    pub connector: Option<&'a str>,
    /// Why it was raised (from a connector's error, a rule, a check): quoted.
    pub reason: &'a str,
    /// When it was opened (RFC 3339, as stored).
    pub opened: &'a str,
    /// Which notice this is (1 = the first).
    pub notice: i64,
}

/// An incident for one security or helpdesk recipient. With `links`, that recipient's own
/// acknowledge (stops the reminders) and resolve links; without, where to act signed in.
pub fn incident(i: IncidentNotice<'_>, links: Option<PairLinks<'_>>) -> Notice {
    let IncidentNotice {
        id,
        kind,
        user_id,
        user_name,
        display_name,
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
        body.push_str(&format!(
            "Person (as the directory names them):\n{}",
            quoted_person(u, user_name, display_name)
        ));
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
    match links {
        Some(l) => {
            body.push_str(&format!(
                "\nAcknowledge (stops the reminders; it stays open): {}\n\
                 Resolve (it is fixed): {}\n\n",
                l.first, l.second
            ));
            body.push_str(&links_note(l.addressee, l.expires));
        }
        None => body.push_str(
            "\nThis copy has no links. Acknowledge it to stop the reminders, and resolve it \
             when fixed, through the hub's incidents API (GET /admin/v1/incidents) with your own \
             credentials.\n",
        ),
    }
    let on = connector.map(|c| format!(" on {c}")).unwrap_or_default();
    let again = if notice > 1 { " (reminder)" } else { "" };
    Notice {
        kind: "incident",
        subject: format!("scimhub: incident {id}: {what}{on}{again}"),
        body,
    }
}

/// Text from outside the hub (a reason, a userName) as it goes into a chat message: line
/// breaks kept as `\n` (a Unicode line or paragraph separator becomes one), other control and
/// bidi characters dropped, and `://` written `[://]` (as in [`user_text`]), so no chat client
/// turns it into a link or shows it reordered.
fn chat_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\u{2028}' | '\u{2029}' => Some('\n'),
            c if breaks_or_reorders(c) => None,
            c => Some(c),
        })
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
#[allow(clippy::too_many_arguments)]
/// To a user's manager: a drift finding about the user's access (`person`, a
/// [`person_label`], quoted), to keep (an exception until `until`) or remove.
pub fn drift_review(
    person: &str,
    connector: &str,
    what: &str,
    keep: &str,
    remove: &str,
    until: &str,
    address: &str,
    expires: DateTime<Utc>,
) -> Notice {
    // What was found names the account and entitlement as the downstream system reports them.
    let what = inline_text(what);
    let mut body = format!(
        "A reconciliation of {connector} found access that the access policy does not explain.\n\n\
         Person (as the directory names them):\n{}\
         Access found: {what}\n\n\
         If it is still needed, keep it: it is recorded as an exception until {until}. \
         Otherwise remove it.\n\n\
         Keep: {keep}\nRemove: {remove}\n\n",
        user_text(person)
    );
    body.push_str(&links_note(address, expires));
    Notice {
        kind: "drift_review",
        subject: format!("scimhub: review access found on {connector}"),
        body,
    }
}

/// Why a certification review mail is sent: the campaign opened (or an item was delegated or
/// escalated to the reviewer), or a reminder before the due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertMail {
    Opened,
    Reminder,
    Escalated,
    Delegated,
}

/// One item of a certification review mail: a person's access, as last read back.
#[derive(Debug, Clone)]
pub struct CertLine<'a> {
    /// The person ([`person_label`]); quoted as user-provided text.
    pub person: &'a str,
    pub connector: &'a str,
    /// The entitlement as people read it ([`entitlement_label`]).
    pub entitlement: &'a str,
    /// `profile`, `outside-profile`, `grant`.
    pub source: &'a str,
    pub privileged: bool,
    /// When and how the access was last seen (`verification 2026-12-01 10:00 UTC`).
    pub seen: &'a str,
    /// `[certify, revoke, delegate]` one-click URLs, when links are configured.
    pub links: Option<&'a [String; 3]>,
    /// The item id (for the admin API when there are no links).
    pub item: &'a str,
}

/// To a reviewer: the access to certify in a campaign, item by item, what falls outside the
/// role profile and emergency grants marked, each with certify / revoke / delegate links (or
/// the admin API path to decide it).
pub fn certification_review(
    campaign: &str,
    campaign_id: &str,
    due: DateTime<Utc>,
    why: CertMail,
    lines: &[CertLine<'_>],
) -> Notice {
    let opening = match why {
        CertMail::Opened => "An access review needs your decisions.",
        CertMail::Reminder => "Reminder: an access review still needs your decisions.",
        CertMail::Escalated => {
            "An access review was escalated to you: the reviewer before you did not decide in time."
        }
        CertMail::Delegated => "An access review was delegated to you.",
    };
    let mut body = format!(
        "{opening}\n\nCampaign: {campaign}\nDecide by: {}\nItems: {}\n\n\
         For each item, certify the access if the person still needs it, or revoke it; \
         delegate it if someone else should decide. Each decision asks for a reason.\n",
        due.format("%Y-%m-%d %H:%M UTC"),
        lines.len()
    );
    for (n, l) in lines.iter().enumerate() {
        let mark = match (l.source, l.privileged) {
            ("outside-profile", true) => "  ** OUTSIDE THE ROLE PROFILE, PRIVILEGED **\n",
            ("outside-profile", false) => "  ** OUTSIDE THE ROLE PROFILE **\n",
            ("grant", _) => "  ** EMERGENCY GRANT **\n",
            ("revoked", _) => {
                "  ** REVOKED BY AN EARLIER REVIEW: certify to give it back, revoke to keep it removed **\n"
            }
            (_, true) => "  (privileged)\n",
            _ => "",
        };
        body.push_str(&format!(
            "\n{}. Person (as the directory names them):\n{}  Access: {} on {}\n{mark}  Last seen: {}\n",
            n + 1,
            user_text(l.person),
            inline_text(l.entitlement),
            inline_text(l.connector),
            inline_text(l.seen),
        ));
        match l.links {
            Some([certify, revoke, delegate]) => body.push_str(&format!(
                "  Certify: {certify}\n  Revoke: {revoke}\n  Delegate: {delegate}\n"
            )),
            None => body.push_str(&format!(
                "  Decide: POST {API_PREFIX}/campaigns/{campaign_id}/items/{}/decision\n",
                l.item
            )),
        }
    }
    if lines.iter().any(|l| l.links.is_some()) {
        body.push_str(
            "\nThe links are for you only and decide as you; each opens a page to confirm the \
             decision with a reason, and an item is decided once.\n",
        );
    }
    let what = match why {
        CertMail::Reminder => "reminder: access review",
        CertMail::Escalated => "escalated access review",
        CertMail::Delegated => "delegated access review",
        CertMail::Opened => "access review",
    };
    Notice {
        kind: "certification_review",
        subject: format!("scimhub: {what}: {campaign} ({} items)", lines.len()),
        body,
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
                    body.push_str(&format!(" by {}\n", inline_text(&w.approvers.join(", "))));
                }
                if !w.addresses.is_empty() {
                    body.push_str(&format!(
                        "    also asked: {}\n",
                        inline_text(&w.addresses.join(", "))
                    ));
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A userName as a SCIM client may write it: line breaks of every kind, a bidi override, and
    /// a forged line carrying a URL under the hub's own base.
    pub(crate) const EVIL: &str = "bob\r\n\nURGENT\u{2028}Acknowledge (remove legacy access now): \
                        http://hub.example/admin/v1/links/x\u{2029}\u{202E}kcab\u{2066}";

    pub(crate) fn forbidden(c: char) -> bool {
        matches!(
            c,
            '\r' | '\u{2028}' | '\u{2029}' | '\u{202E}' | '\u{2066}' | '\u{200F}'
        )
    }

    #[test]
    fn inline_text_stays_on_its_line_and_links_nothing() {
        let t = inline_text(EVIL);
        assert!(!t.contains('\n') && !t.chars().any(forbidden), "{t:?}");
        assert!(!t.contains("http://"), "{t}");
        assert!(t.contains("URGENT Acknowledge"), "{t}");
        assert!(t.contains("http[://]hub.example/admin/v1/links/x"), "{t}");
        assert_eq!(inline_text("grace@example.com"), "grace@example.com");
    }

    #[test]
    fn chat_text_keeps_lines_and_drops_bidi_controls() {
        assert_eq!(
            chat_text("a\u{2028}b\r\n\u{202E}c\u{2066}d http://x"),
            "a\nb\ncd http[://]x"
        );
    }

    #[test]
    fn user_text_drops_separators_and_bidi_controls() {
        let t = user_text(EVIL);
        assert!(!t.chars().any(forbidden), "{t:?}");
        assert!(t.lines().all(|l| l.starts_with(USER_TEXT_PREFIX)), "{t}");
        assert!(!t.contains("http://"), "{t}");
    }
}
