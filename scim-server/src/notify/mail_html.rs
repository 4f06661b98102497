//! Turning a notification row into an email: a plain-text body (the row's text as written) and an
//! HTML alternative in which every character of the text is escaped and only the hub's own URLs
//! (under `[notify] link_base_url`) become links, so a user-supplied name can never inject markup
//! or a link. Lines of user-provided text (starting with [`USER_TEXT_PREFIX`], see
//! `engine::notices::user_text`) are escaped and never linked, whatever they contain.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::engine::notices::USER_TEXT_PREFIX;

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where URLs start in `text`, and where they end (at whitespace or a character that cannot end
/// a link we write: `<`, `>`, `"`).
fn urls(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let start = match (rest.find("http://"), rest.find("https://")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let from = i + start;
        let len = text[from..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(text.len() - from);
        // A sentence's closing punctuation is not part of the link.
        let mut to = from + len;
        while to > from && text[..to].ends_with(['.', ',', ')', ';']) {
            to -= 1;
        }
        out.push((from, to));
        i = from + len.max(1);
    }
    out
}

/// Whether `url` is under the hub's base URL `hub` (`https://hub.example.com`).
fn is_hub_url(url: &str, hub: Option<&str>) -> bool {
    let Some(hub) = hub
        .map(|h| h.trim_end_matches('/'))
        .filter(|h| !h.is_empty())
    else {
        return false;
    };
    url.strip_prefix(hub)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `text` escaped, with the hub's URLs (under `hub`) as links.
fn linked(text: &str, hub: Option<&str>) -> String {
    let mut body = String::new();
    let mut last = 0;
    for (from, to) in urls(text) {
        if !is_hub_url(&text[from..to], hub) {
            continue;
        }
        body.push_str(&escape_html(&text[last..from]));
        let url = escape_html(&text[from..to]);
        body.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        last = to;
    }
    body.push_str(&escape_html(&text[last..]));
    body
}

/// The HTML alternative of a plain-text body: the hub's own lines escaped with the hub's URLs
/// (under `hub`, the policy's `link_base_url`) linked; user-provided lines escaped only.
pub fn html_body(subject: &str, text: &str, hub: Option<&str>) -> String {
    let mut body = String::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with(USER_TEXT_PREFIX) {
            body.push_str(&escape_html(line));
        } else {
            body.push_str(&linked(line, hub));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><pre style=\"font-family: sans-serif; white-space: pre-wrap\">{body}</pre>\
         </body></html>\n",
        escape_html(subject)
    )
}

/// Why a message could not be built (a permanent failure of that row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// Builds the message. `id` makes the Message-ID stable across retries, so a receiver can drop
/// the duplicate of a delivery whose success was not recorded (a crash right after sending).
pub fn message(
    id: i64,
    from: &Mailbox,
    to: &[Mailbox],
    subject: &str,
    text: &str,
    hub: Option<&str>,
) -> Result<Message, RenderError> {
    let domain = from.email.domain().to_string();
    let mut b = Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(format!("<scimhub-notification-{id}@{domain}>")));
    for m in to {
        b = b.to(m.clone());
    }
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.to_string()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html_body(subject, text, hub)),
            ),
    )
    .map_err(|e| RenderError(format!("cannot build the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_values_are_escaped_and_only_hub_urls_become_links() {
        let text = "User <script>alert('x')</script> & \"co\" moved.\n\
                    Acknowledge: https://hub.example.com/admin/v1/links/abc.def\n\
                    Extend (7 days): http://h/x?a=1&b=2.\n\
                    Account http://evil.example/x and https://hub.example.com.evil/y";
        let html = html_body("Mover <b>", text, Some("http://h/"));
        let hub_html = html_body("Mover <b>", text, Some("https://hub.example.com"));
        // Not under the hub's base URL: text, not a link.
        assert!(!hub_html.contains("href=\"http://evil"), "{hub_html}");
        assert!(!hub_html.contains("hub.example.com.evil/y\""), "{hub_html}");
        assert!(!hub_html.contains("<a href=\"http://h/"), "{hub_html}");
        let html = format!("{html}{hub_html}");
        assert!(html
            .contains("User &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<title>Mover &lt;b&gt;</title>"));
        assert!(html.contains(
            "<a href=\"https://hub.example.com/admin/v1/links/abc.def\">https://hub.example.com/admin/v1/links/abc.def</a>"
        ));
        // The query's & is escaped inside the attribute; the sentence's full stop stays outside.
        assert!(html.contains("<a href=\"http://h/x?a=1&amp;b=2\">http://h/x?a=1&amp;b=2</a>."));
    }

    #[test]
    fn user_provided_text_is_escaped_and_never_linked() {
        let reason =
            "see <a href=\"http://evil.example/x\">the ticket</a>\nor http://evil.example/y";
        let text = format!(
            "Reason:\n{}Approve: POST https://hub.example/admin/v1/extensions/e1/approve\n",
            crate::engine::notices::user_text(reason)
        );
        let html = html_body("Extension", &text, Some("https://hub.example"));
        assert!(!html.contains("<a href=\"http://evil"), "{html}");
        assert_eq!(
            html.matches("<a ").count(),
            1,
            "only the hub's URL is a link: {html}"
        );
        assert!(
            html.contains(
                "    | see &lt;a href=&quot;http[://]evil.example/x&quot;&gt;the ticket&lt;/a&gt;"
            ),
            "{html}"
        );
        assert!(html.contains("    | or http[://]evil.example/y"), "{html}");
        assert!(html.contains("<a href=\"https://hub.example/admin/v1/extensions/e1/approve\">"));
        // A line break in the text cannot start an unquoted line.
        assert_eq!(
            crate::engine::notices::user_text("a\n\nb\r\u{1b}[0m"),
            "    | a\n    | \n    | b[0m\n"
        );
    }

    #[test]
    fn builds_a_multipart_alternative() {
        let from: Mailbox = "scimhub@example.com".parse().expect("from");
        let to: Mailbox = "m@example.com".parse().expect("to");
        let m = message(
            7,
            &from,
            &[to],
            "Subject",
            "Body https://x/y",
            Some("https://x"),
        )
        .expect("message");
        let raw = String::from_utf8(m.formatted()).expect("utf8");
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        assert!(raw.contains("Message-ID: <scimhub-notification-7@example.com>"));
    }

    /// The approval request as its addressee reads it (with links) and as a shared approver
    /// address reads it (without), text and HTML: snapshots, and the HTML written to
    /// `$SCIMHUB_MAIL_ARTIFACTS/` when set (rendered in a browser for `tests/artifacts/`).
    #[test]
    fn approval_request_templates() {
        use crate::engine::notices::{approval_request, AddressedLinks, ApprovalRequest};
        use chrono::TimeZone;
        let row = ApprovalRequest {
            id: "0190aa7e-5c1e-7d3a-9f00-00000000c0de",
            user_id: "2819c223-7f76-453a-919d-413861904646",
            user_name: Some("bob@example.com"),
            display_name: Some("Bob <Builder>"),
            kind: "entitlement",
            entitlement: Some("org:acme (role admin)"),
            connector: Some("github"),
            level: "manager",
        };
        let hub = "https://hub.example.com";
        let linked = approval_request(
            row,
            Some(AddressedLinks {
                addressee: "grace@example.com",
                expires: chrono::Utc
                    .with_ymd_and_hms(2026, 12, 12, 9, 30, 0)
                    .unwrap(),
                approve: "https://hub.example.com/admin/v1/links/eyJhIjoiYXBwcm92ZSJ9.00aa",
                reject: "https://hub.example.com/admin/v1/links/eyJhIjoicmVqZWN0In0.11bb",
            }),
        );
        let shared = approval_request(row, None);
        let sod = approval_request(
            ApprovalRequest {
                kind: "sod",
                entitlement: Some("ap-vs-ar"),
                level: "security",
                display_name: None,
                ..row
            },
            None,
        );
        for (name, n) in [
            ("approval_request_linked", &linked),
            ("approval_request_shared", &shared),
            ("approval_request_sod", &sod),
        ] {
            assert!(!n.body.contains('{'), "{}", n.body);
            assert!(!n.body.contains("POST"), "{}", n.body);
            let html = html_body(&n.subject, &n.body, Some(hub));
            insta::assert_snapshot!(
                format!("{name}_text"),
                format!("Subject: {}\n\n{}", n.subject, n.body)
            );
            insta::assert_snapshot!(format!("{name}_html"), html.clone());
            if let Some(dir) = std::env::var_os("SCIMHUB_MAIL_ARTIFACTS") {
                std::fs::write(
                    std::path::Path::new(&dir).join(format!("{name}.html")),
                    &html,
                )
                .expect("artifact");
            }
        }
        // The display name is escaped in HTML, and the links are links.
        let html = html_body(&linked.subject, &linked.body, Some(hub));
        assert!(html.contains("Bob &lt;Builder&gt;"), "{html}");
        assert!(html.contains(
            "<a href=\"https://hub.example.com/admin/v1/links/eyJhIjoicmVqZWN0In0.11bb\">"
        ));
    }

    /// Writes `html` as `$SCIMHUB_MAIL_ARTIFACTS/{name}.html` when that is set.
    pub(crate) fn artifact(name: &str, html: &str) {
        if let Some(dir) = std::env::var_os("SCIMHUB_MAIL_ARTIFACTS") {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("{name}.html")),
                html,
            )
            .expect("artifact");
        }
    }

    /// Every other mail the hub sends, as its addressee reads it (with that addressee's
    /// one-click links) and as a copy without links reads it: text and HTML snapshots, the
    /// HTML written as an artifact. None carries JSON, a `POST`, or a URL other than the hub's
    /// one-click links.
    #[test]
    fn notice_templates() {
        use crate::engine::notices::*;
        use chrono::TimeZone;
        let hub = "https://hub.example.com";
        let expires = chrono::Utc
            .with_ymd_and_hms(2026, 12, 12, 9, 30, 0)
            .unwrap();
        let link = |t: &str| format!("{hub}/admin/v1/links/{t}");
        let (l1, l2) = (
            link("eyJhIjoiZmlyc3QifQ.00aa"),
            link("eyJhIjoic2Vjb25kIn0.11bb"),
        );
        let pair = PairLinks {
            addressee: "security@example.com",
            expires,
            first: &l1,
            second: &l2,
        };
        let reason = hold_reason(0.1, 250, chrono::Duration::hours(1));
        let hold_id = "0190aa7e-5c1e-7d3a-9f00-00000000h01d";
        let bob = person_label(
            "2819c223-7f76-453a-919d-413861904646",
            Some("bob@example.com"),
            Some("Bob <Builder>"),
        );
        let kept = [KeptAccess {
            connector: "github",
            kind: "team",
            id: "sales",
            description: Some("Sales pipeline team"),
            until: expires,
        }];
        let changes = [
            ("github", "grant bob team:engineering".to_string()),
            ("github", "revoke bob team:sales".to_string()),
        ];
        let mover = mover_summary_body(
            &bob,
            &["employee".into(), "engineering".into()],
            &changes,
            &kept,
        );
        let ext = ExtensionRequest {
            id: "0190aa7e-5c1e-7d3a-9f00-0000000e0e01",
            user_id: "7d3a0c55-1b2e-4c7a-9a55-3f7b1e2d9c10",
            user_name: Some("carl.contractor"),
            display_name: Some("Carl Contractor"),
            by: "sponsor@example.com",
            new_end: "2027-03-31T00:00:00Z",
            reason: "Project runs to end of Q1; see <a href=\"http://evil.example/x\">ticket</a>",
        };
        let incident_row = IncidentNotice {
            id: 42,
            kind: "operation_parked",
            user_id: Some("2819c223-7f76-453a-919d-413861904646"),
            user_name: Some("bob@example.com"),
            display_name: Some("Bob <Builder>"),
            connector: Some("github"),
            reason: "github answered 422: <b>Validation Failed</b> http://evil.example/x",
            opened: "2026-12-05T08:00:00Z",
            notice: 2,
        };
        let records_kept = IncidentNotice {
            id: 43,
            kind: "records_kept",
            connector: Some("webhook-drive"),
            reason: "plan 0190aa7e-5c1e-7d3a-9f00-0000000e0e02: account bob on webhook-drive was \
                     disabled, not deleted: the connector hands a leaver's records to the \
                     manager, and no manager a [[source]] vouches for has an enabled account \
                     there. Hand its records over, then delete it.",
            notice: 1,
            ..incident_row
        };
        let carl = person_label(ext.user_id, ext.user_name, ext.display_name);
        let mover_links = (l1.clone(), l2.clone());
        let before = crate::policy::BlastRadius {
            max_share: 0.1,
            window: chrono::Duration::hours(1),
            min_population: 20,
        };
        let looser = crate::policy::BlastRadius {
            max_share: 0.5,
            window: chrono::Duration::minutes(10),
            min_population: 20,
        };
        let (sha_now, sha_before) = (
            "9f2c1e0b7a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918f7e6d5c4b3a",
            "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809",
        );
        let notices = [
            (
                "guard_removed",
                guard_loosened(sha_now, sha_before, "hub-1", &before, None),
            ),
            (
                "guard_loosened",
                guard_loosened(sha_now, sha_before, "hub-1", &before, Some(&looser)),
            ),
            ("hold_linked", hold(&reason, hold_id, Some(pair))),
            ("hold_shared", hold(&reason, hold_id, None)),
            (
                "hold_policy_change",
                hold(
                    &format!(
                        "{} (240 by this one change): policy change (sha256 1a2b3c4d5e6f…): \
                         re-planning 250 users",
                        hold_reason(0.3, 250, chrono::Duration::minutes(10))
                    ),
                    hold_id,
                    Some(pair),
                ),
            ),
            (
                "hold_policy_loosened",
                hold(
                    &format!(
                        "{} (240 by this one change): policy change (sha256 9f2c1e0b7a5d…, which \
                         loosens the guard: judged by the stricter of it and the guard before \
                         it): re-planning 250 users",
                        hold_reason(0.1, 250, chrono::Duration::hours(1))
                    ),
                    hold_id,
                    Some(pair),
                ),
            ),
            (
                "mover_summary_linked",
                mover_summary(
                    &mover,
                    "grace@example.com",
                    Some(&mover_links),
                    expires,
                    true,
                ),
            ),
            (
                "mover_summary_shared",
                mover_summary(&mover, "security@example.com", None, expires, true),
            ),
            (
                "contract_reminder",
                contract_reminder(&carl, "2026-12-31T00:00:00Z", "7d", None),
            ),
            (
                "contract_reminder_sponsor",
                contract_reminder(
                    &carl,
                    "2026-12-31T00:00:00Z",
                    "7d",
                    Some(AskLink {
                        addressee: "sponsor",
                        expires,
                        url: &l1,
                    }),
                ),
            ),
            ("contract_expired", contract_expired(&carl)),
            (
                "extension_request_linked",
                extension_request(
                    ext,
                    Some(AddressedLinks {
                        addressee: "vendor-manager",
                        expires,
                        approve: &l1,
                        reject: &l2,
                    }),
                ),
            ),
            ("extension_request_shared", extension_request(ext, None)),
            ("incident_linked", incident(incident_row, Some(pair))),
            ("incident_shared", incident(incident_row, None)),
            ("incident_records_kept", incident(records_kept, Some(pair))),
            (
                "drift_review",
                drift_review(
                    &bob,
                    "github",
                    "unexplained_entitlement team:admins on account bob",
                    &l1,
                    &l2,
                    "2027-03-05",
                    "grace",
                    expires,
                ),
            ),
        ];
        for (name, n) in &notices {
            assert!(!n.body.contains('{'), "{name}: {}", n.body);
            assert!(!n.body.contains("POST http"), "{name}: {}", n.body);
            assert!(
                !n.body.contains("2819c223"),
                "{name} names a person by id: {}",
                n.body
            );
            // Every URL in the mail is a one-click link of the hub.
            for (from, to) in urls(&n.body) {
                assert!(
                    n.body[from..to].starts_with(&format!("{hub}/admin/v1/links/")),
                    "{name}: {}",
                    &n.body[from..to]
                );
            }
            let html = html_body(&n.subject, &n.body, Some(hub));
            assert!(
                !html.contains("<b>") && !html.contains("<Builder>"),
                "{html}"
            );
            insta::assert_snapshot!(
                format!("{name}_text"),
                format!("Subject: {}\n\n{}", n.subject, n.body)
            );
            insta::assert_snapshot!(format!("{name}_html"), html.clone());
            artifact(name, &html);
        }
    }

    /// A certification review mail as a reviewer reads it (with links) and as it reads without
    /// links configured, text and HTML: snapshots, and the HTML written to
    /// `$SCIMHUB_MAIL_ARTIFACTS/` when set.
    #[test]
    fn certification_review_templates() {
        use crate::engine::notices::{certification_review, CertLine, CertMail};
        use chrono::TimeZone;
        let hub = "https://hub.example.com";
        let due = chrono::Utc.with_ymd_and_hms(2027, 1, 15, 0, 0, 0).unwrap();
        let links = [
            "https://hub.example.com/admin/v1/links/eyJhIjoiY2VydC1jZXJ0aWZ5In0.01".to_string(),
            "https://hub.example.com/admin/v1/links/eyJhIjoiY2VydC1yZXZva2UifQ.02".to_string(),
            "https://hub.example.com/admin/v1/links/eyJhIjoiY2VydC1kZWxlZ2F0ZSJ9.03".to_string(),
        ];
        let lines = [
            CertLine {
                person: "Fay <b>Fox</b> (fay)",
                connector: "erp",
                entitlement: "group:ap",
                source: "profile",
                privileged: false,
                seen: "verification 2026-12-30 09:00 UTC",
                links: Some(&links),
                item: "0190aa7e-0000-7000-8000-000000000001",
            },
            CertLine {
                person: "bob http://evil.example/x",
                connector: "github",
                entitlement: "org:acme (role admin)",
                source: "outside-profile",
                privileged: true,
                seen: "drift 2026-12-31 06:00 UTC",
                links: Some(&links),
                item: "0190aa7e-0000-7000-8000-000000000002",
            },
            CertLine {
                person: "dan",
                connector: "aws",
                entitlement: "group:breakglass",
                source: "grant",
                privileged: true,
                seen: "applied 2027-01-01 00:00 UTC",
                links: Some(&links),
                item: "0190aa7e-0000-7000-8000-000000000003",
            },
        ];
        let linked = certification_review(
            "Access review 2027-Q1",
            "0190aa7e-c0de-7000-8000-000000000000",
            due,
            CertMail::Opened,
            &lines,
        );
        let plain_lines: Vec<CertLine<'_>> = lines[..1]
            .iter()
            .map(|l| CertLine {
                links: None,
                ..l.clone()
            })
            .collect();
        let plain = certification_review(
            "Access review 2027-Q1",
            "0190aa7e-c0de-7000-8000-000000000000",
            due,
            CertMail::Escalated,
            &plain_lines,
        );
        for (name, n) in [
            ("certification_review_linked", &linked),
            ("certification_review_no_links", &plain),
        ] {
            assert!(!n.body.contains('{'), "{}", n.body);
            let html = html_body(&n.subject, &n.body, Some(hub));
            insta::assert_snapshot!(
                format!("{name}_text"),
                format!("Subject: {}\n\n{}", n.subject, n.body)
            );
            insta::assert_snapshot!(format!("{name}_html"), html.clone());
            artifact(name, &html);
        }
        let html = html_body(&linked.subject, &linked.body, Some(hub));
        // The person's name is escaped and a URL in it is never a link; the hub's links are.
        assert!(html.contains("Fay &lt;b&gt;Fox&lt;/b&gt;"), "{html}");
        assert!(!html.contains("href=\"http://evil.example"), "{html}");
        assert!(html.contains(
            "<a href=\"https://hub.example.com/admin/v1/links/eyJhIjoiY2VydC1yZXZva2UifQ.02\">"
        ));
        assert!(linked
            .body
            .contains("** OUTSIDE THE ROLE PROFILE, PRIVILEGED **"));
        assert!(linked.body.contains("** EMERGENCY GRANT **"));
        assert!(plain.body.contains("Decide: POST /admin/v1/campaigns/"));
    }

    /// The bulk onboarding confirmation (`engine::onboarding`): one joiner needing attention
    /// (a failure with a reason carrying markup and a URL, and a held grant), one waiting for
    /// their manager, one for the entitlement's owners, two with everything. Text and HTML
    /// snapshots; the HTML written to `$SCIMHUB_MAIL_ARTIFACTS/` when set.
    #[test]
    fn onboarding_confirmation_template() {
        use crate::engine::notices::onboarding_confirmation;
        use crate::engine::onboarding::{Access, Failed, Joiner, OnboardingSummary, Waiting};
        use crate::store::bursts::BurstSource;
        use chrono::TimeZone;
        let at = |m: u32| chrono::Utc.with_ymd_and_hms(2026, 12, 4, 9, m, 0).unwrap();
        let chat = |what: &str| Access {
            connector: "chat".into(),
            system: "Team chat (chat)".into(),
            what: what.into(),
        };
        let joiner = |n: u32, user_name: &str, display: Option<&str>| Joiner {
            user_id: format!("0190aa7e-5c1e-7d3a-9f00-0000000000{n:02}"),
            user_name: Some(user_name.into()),
            display_name: display.map(str::to_string),
            granted: vec![chat("account"), chat("channel:general")],
            in_progress: Vec::new(),
            held: Vec::new(),
            waiting: Vec::new(),
            failed: Vec::new(),
        };
        let mut failed = joiner(1, "ada@example.com", Some("Ada <b>Lovelace</b>"));
        failed.failed.push(Failed {
            access: Access {
                connector: "payroll".into(),
                system: "Payroll (payroll)".into(),
                what: "role:clerk".into(),
            },
            reason: "HTTP 500 from http://evil.example/x: <b>boom</b>".into(),
        });
        failed.held.push(Access {
            connector: "aws".into(),
            system: "aws".into(),
            what: "group:prod-admin".into(),
        });
        let mut by_manager = joiner(2, "bob@example.com", Some("Bob Builder"));
        by_manager.waiting.push(Waiting {
            access: Access {
                connector: "github".into(),
                system: "GitHub (github)".into(),
                what: "org:acme (role admin)".into(),
            },
            level: "manager".into(),
            approvers: vec!["Grace Hopper (grace@example.com)".into()],
            addresses: Vec::new(),
        });
        let mut by_owner = joiner(3, "cy@example.com", None);
        by_owner.waiting.push(Waiting {
            access: Access {
                connector: "aws".into(),
                system: "aws".into(),
                what: "group:billing".into(),
            },
            level: "owner".into(),
            approvers: vec!["linus".into(), "pat".into()],
            addresses: vec!["aws-owners@example.com".into()],
        });
        let summary = OnboardingSummary {
            burst_id: "0190aa7e-0000-7000-8000-0000000000b1".into(),
            source: BurstSource::Bulk,
            client: "hris".into(),
            started: at(0),
            last_at: at(2),
            joiners: vec![
                failed,
                by_manager,
                joiner(4, "dan@example.com", Some("Dan Dare")),
                by_owner,
                joiner(5, "eve@example.com", Some("Eve")),
            ],
        };
        let n = onboarding_confirmation(&summary);
        let html = html_body(&n.subject, &n.body, Some("https://hub.example.com"));
        insta::assert_snapshot!(
            "onboarding_confirmation_text",
            format!("Subject: {}\n\n{}", n.subject, n.body)
        );
        insta::assert_snapshot!("onboarding_confirmation_html", html.clone());
        if let Some(dir) = std::env::var_os("SCIMHUB_MAIL_ARTIFACTS") {
            std::fs::write(
                std::path::Path::new(&dir).join("onboarding_confirmation.html"),
                &html,
            )
            .expect("artifact");
        }
        // People and reasons are quoted: markup visible as characters, no link but the hub's.
        assert!(html.contains("Ada &lt;b&gt;Lovelace&lt;/b&gt;"), "{html}");
        assert!(html.contains("&lt;b&gt;boom&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<a href=\"http://evil"), "{html}");
        assert!(n.body.contains("http[://]evil.example/x"), "{}", n.body);
        // Attention first, then waiting, then the rest; every person once.
        let pos = |s: &str| n.body.find(s).unwrap_or(usize::MAX);
        assert!(pos("Needing attention (1)") < pos("Waiting for approval (2)"));
        assert!(pos("Waiting for approval (2)") < pos("All access granted (2)"));
        for who in ["ada@", "bob@", "cy@", "dan@", "eve@"] {
            assert_eq!(n.body.matches(who).count(), 1, "{who}: {}", n.body);
        }
        assert!(n
            .subject
            .contains("5 joiners from hris (2 waiting for approval, 1 needing attention)"));
    }
}

/// Directory text forged to look like the hub's own lines (see `engine::notices::inline_text`)
/// adds neither a line nor a link to the mails built from it, in the text or the HTML part.
#[cfg(test)]
mod forged_text {
    use chrono::Utc;

    use super::html_body;
    use crate::engine::notices::tests::{forbidden, EVIL};
    use crate::engine::notices::*;

    const HUB: &str = "http://hub.example";

    /// How many lines of `body` are the template's own (not quoted user text).
    fn own_lines(body: &str) -> usize {
        body.lines()
            .filter(|l| !l.starts_with(USER_TEXT_PREFIX))
            .count()
    }

    /// The hub's own links of `body` (lines not quoted as user text that hold a URL), and the
    /// HTML alternative's links.
    fn links(body: &str) -> (Vec<&str>, Vec<String>) {
        let text = body
            .lines()
            .filter(|l| !l.starts_with(USER_TEXT_PREFIX) && l.contains("http://"))
            .collect();
        let html = html_body("s", body, Some(HUB));
        let hrefs = html
            .match_indices("<a href=\"")
            .map(|(i, _)| {
                html[i..]
                    .split('"')
                    .nth(1)
                    .expect("an href ends with a quote")
                    .to_string()
            })
            .collect();
        (text, hrefs)
    }

    #[test]
    fn a_forged_user_name_adds_no_line_and_no_link_to_a_mover_summary() {
        let summary = |name: &str| {
            let change = format!("create_or_adopt {name}");
            let body = mover_summary_body(
                &person_label("u1", Some(name), None),
                &[],
                &[("github", change)],
                &[],
            );
            let links = (
                format!("{HUB}/admin/v1/links/ack"),
                format!("{HUB}/admin/v1/links/ext"),
            );
            mover_summary(&body, name, Some(&links), Utc::now(), true).body
        };
        let plain = summary("bob");
        let evil = summary(EVIL);
        super::tests::artifact(
            "mover_summary_forged_name",
            &html_body("Mover summary", &evil, Some(HUB)),
        );
        // The same lines apart from the quoted Person block, which quotes every line of it.
        assert_eq!(own_lines(&evil), own_lines(&plain), "{evil}");
        assert!(!evil.chars().any(forbidden), "{evil:?}");
        let acks = |b: &str| {
            b.lines()
                .filter(|l| l.starts_with("Acknowledge (remove legacy access now):"))
                .count()
        };
        assert_eq!(acks(&evil), 1, "{evil}");
        let want = vec![
            format!("{HUB}/admin/v1/links/ack"),
            format!("{HUB}/admin/v1/links/ext"),
        ];
        let (text, html) = links(&evil);
        assert_eq!(text.len(), 2, "{text:?}");
        assert_eq!(html, want);
    }

    #[test]
    fn a_forged_account_adds_no_line_and_no_link_to_a_drift_review() {
        let review = |account: &str| {
            drift_review(
                &person_label("u1", Some(account), None),
                "erp",
                &format!("entitlement_outside group:x on account {account}"),
                &format!("{HUB}/admin/v1/links/keep"),
                &format!("{HUB}/admin/v1/links/remove"),
                "2027-01-01",
                account,
                Utc::now(),
            )
            .body
        };
        let plain = review("bob");
        let evil = review(EVIL);
        assert_eq!(own_lines(&evil), own_lines(&plain), "{evil}");
        assert!(!evil.chars().any(forbidden), "{evil:?}");
        let (text, html) = links(&evil);
        assert_eq!(text.len(), 2, "{text:?}");
        assert_eq!(
            html,
            vec![
                format!("{HUB}/admin/v1/links/keep"),
                format!("{HUB}/admin/v1/links/remove"),
            ]
        );
    }
}
