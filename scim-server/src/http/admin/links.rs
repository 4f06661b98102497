//! One-click links under `/admin/v1/links/{token}`: a signed link from a mover notification is
//! its own credential. `GET` shows what it would do (a confirmation page, or JSON), so a mail
//! scanner that fetches it changes nothing; `POST` does it, once. Every response carries headers
//! that keep the token out of caches and Referers and the page out of frames.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{admin_of, ok, run};
use crate::admin::{LinkPreview, VerifiedLink};
use crate::http::body::BoundedBody;
use crate::http::error::{html_page, ApiResult};
use crate::http::AppState;

/// Whether the client asked for JSON (`Accept: application/json` or `?format=json`); browsers
/// get a small HTML page.
fn wants_json(req: &HttpRequest) -> bool {
    req.query_string().split('&').any(|p| p == "format=json")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// The headers of every one-click link response: the token is a credential (never cached,
/// never leaked in a Referer), and the confirmation page may not be framed (a framed page could
/// trick a click on its button).
fn link_headers(mut resp: HttpResponse) -> HttpResponse {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    resp
}

/// The link's signature and expiry, checked on the request's thread before anything else: a
/// forged or expired link takes no database permit, no blocking thread and no transaction.
fn verified(state: &web::Data<AppState>, token: &str) -> ApiResult<VerifiedLink> {
    Ok(admin_of(state)?.verify_link(token)?)
}

/// `GET` of a one-click link: checks it and says what it would do, with a form that `POST`s the
/// same link. Nothing changes, so a mail scanner that fetches every link spends none.
pub(super) async fn preview_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let token = path.into_inner();
    let json = wants_json(&req);
    let result = match verified(&state, &token) {
        Ok(link) => run(&state, move |a| a.preview_verified(link)).await,
        Err(e) => Err(e),
    };
    link_headers(match (result, json) {
        (Ok(p), true) => {
            let mut v = json!(p);
            v["confirm"] = json!({"method": "POST", "path": req.path()});
            ok(StatusCode::OK, v)
        }
        (Ok(p), false) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(confirm_page(&p, &token)),
        (Err(e), true) => actix_web::ResponseError::error_response(&e),
        (Err(e), false) => e.html_response(),
    })
}

/// The confirmation page of a one-click link: what will happen, for whom, and one button.
pub(crate) fn confirm_page(p: &LinkPreview, token: &str) -> String {
    let esc = crate::notify::mail_html::escape_html;
    let who = p.user_name.as_deref().unwrap_or(&p.user_id);
    // A manager or sponsor is bound by user id; the page names them by userName.
    let to = p.addressee_name.as_deref().unwrap_or(&p.addressee);
    let button = match p.action.as_str() {
        "ack" => "Remove legacy access",
        "drift-keep" => "Keep this access",
        "drift-remove" => "Remove this access",
        "approve" => "Approve",
        "reject" => "Reject",
        "hold-confirm" => "Confirm the hold",
        "hold-discard" => "Discard the hold",
        "incident-ack" => "Acknowledge",
        "incident-resolve" => "Resolve",
        "extension-ask" => "Ask for the extension",
        "cert-certify" => "Certify",
        "cert-revoke" => "Revoke",
        "cert-delegate" => "Delegate",
        _ => "Extend legacy access",
    };
    let (sent, reason) = match p.action.as_str() {
        "approve" | "reject" => (
            format!(
                "This link was sent to {} and decides as them; it works once.",
                esc(to)
            ),
            if p.action == "reject" {
                "<p><label for=\"reason\">Reason (optional, recorded with the decision):</label><br>\
                 <textarea id=\"reason\" name=\"reason\" rows=\"3\" cols=\"60\" maxlength=\"1000\">\
                 </textarea></p>"
            } else {
                ""
            },
        ),
        "extension-ask" => (
            format!(
                "This link was sent to {} as the contractor's sponsor and asks as them; it \
                 works once. A contractor owner or a security approver then decides it.",
                esc(to)
            ),
            "<p><label for=\"end\">New end date:</label><br>\
             <input type=\"date\" id=\"end\" name=\"end\" required></p>\
             <p><label for=\"reason\">Reason (recorded with the request, shown to who \
             decides):</label><br>\
             <textarea id=\"reason\" name=\"reason\" rows=\"3\" cols=\"60\" maxlength=\"1000\" \
             required></textarea></p>",
        ),
        "hold-confirm" | "hold-discard" | "incident-ack" | "incident-resolve" => (
            format!(
                "This link was sent to {} as a {} recipient and acts as them; it works once.",
                esc(to),
                esc(&p.role)
            ),
            "",
        ),
        "cert-certify" | "cert-revoke" | "cert-delegate" => (
            format!(
                "This link was sent to {} as the {} reviewer and decides as them; the item is \
                 decided once.",
                esc(to),
                esc(&p.role)
            ),
            if p.action == "cert-delegate" {
                "<p><label for=\"delegate_to\">Delegate to (their userName):</label><br>\
                 <input id=\"delegate_to\" name=\"delegate_to\" required maxlength=\"200\"></p>\
                 <p><label for=\"reason\">Reason (required, recorded with the decision):</label><br>\
                 <textarea id=\"reason\" name=\"reason\" rows=\"3\" cols=\"60\" maxlength=\"1000\" \
                 required></textarea></p>"
            } else {
                "<p><label for=\"reason\">Reason (required, recorded with the decision):</label><br>\
                 <textarea id=\"reason\" name=\"reason\" rows=\"3\" cols=\"60\" maxlength=\"1000\" \
                 required></textarea></p>"
            },
        ),
        _ => (
            format!(
                "This link was sent to {} as the user's {}; it works once.",
                esc(to),
                esc(&p.role)
            ),
            "",
        ),
    };
    // A hold is about many people, an incident maybe about none: no "User:" line for them.
    let user =
        if p.user_id.is_empty() || p.action.starts_with("hold-") || p.action == "extension-ask" {
            String::new()
        } else {
            format!("User: {}. ", esc(who))
        };
    // The form posts to this same URL: the link's last path segment is the token.
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>scimhub: confirm</title></head>\
         <body><h1>Confirm</h1><p>{message}</p>\
         <p>{user}{sent}</p>\
         <form method=\"post\" action=\"{action}\">{reason}<button type=\"submit\">{button}</button></form>\
         </body></html>",
        message = esc(&p.message),
        action = esc(token),
        button = esc(button),
    )
}

/// The confirmation page's form: a rejection's optional reason; an extension ask's new end
/// date and reason.
#[derive(Debug, Default, serde::Deserialize)]
struct LinkForm {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    end: Option<String>,
    /// A certification delegation's delegate (userName).
    #[serde(default)]
    delegate_to: Option<String>,
}

/// `POST` of a one-click link (the confirmation page's form): performs the action, once. The
/// body, when there is one, is the form (`reason=...`); anything else is ignored.
pub(super) async fn follow_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: BoundedBody,
) -> HttpResponse {
    let token = path.into_inner();
    let json = wants_json(&req);
    let form: LinkForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let result = match verified(&state, &token) {
        Ok(link) => {
            run(&state, move |a| {
                a.follow_verified_form(link, form.reason, form.end, form.delegate_to)
            })
            .await
        }
        Err(e) => Err(e),
    };
    link_headers(match (result, json) {
        (Ok(o), true) => ok(StatusCode::OK, json!(o)),
        (Ok(o), false) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html_page("Done", &o.message)),
        (Err(e), true) => actix_web::ResponseError::error_response(&e),
        (Err(e), false) => e.html_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_page_says_what_happens_and_posts_the_same_link() {
        let p = LinkPreview {
            action: "ack".into(),
            user_id: "u1".into(),
            user_name: Some("bob <b>".into()),
            addressee: "u-grace".into(),
            addressee_name: None,
            role: "manager".into(),
            message: "Remove bob <b>'s legacy access now.".into(),
        };
        let page = confirm_page(&p, "eyJ1.abc\"x");
        assert!(
            page.contains("Remove bob &lt;b&gt;&#39;s legacy access now."),
            "{page}"
        );
        assert!(
            page.contains("<form method=\"post\" action=\"eyJ1.abc&quot;x\">"),
            "{page}"
        );
        assert!(
            page.contains("sent to u-grace as the user's manager"),
            "{page}"
        );
        assert!(!page.contains("<b>"), "{page}");
        assert!(!page.contains("textarea"), "{page}");
    }

    #[test]
    fn a_rejection_page_asks_for_a_reason_and_names_the_addressee() {
        let p = LinkPreview {
            action: "reject".into(),
            user_id: "u1".into(),
            user_name: Some("bob".into()),
            addressee: "grace".into(),
            addressee_name: None,
            role: "approver".into(),
            message: "Reject Bob (bob)'s request for org:acme on github.".into(),
        };
        let page = confirm_page(&p, "tok");
        assert!(
            page.contains("<textarea id=\"reason\" name=\"reason\""),
            "{page}"
        );
        assert!(page.contains("sent to grace and decides as them"), "{page}");
        assert!(page.contains(">Reject</button>"), "{page}");
    }

    /// The confirmation page (`GET` of a link) of each kind of link: insta snapshots, and the
    /// HTML written to `$SCIMHUB_MAIL_ARTIFACTS/` when set (rendered in a browser for
    /// `tests/artifacts/`).
    #[test]
    fn confirmation_pages() {
        let page = |action: &str, user: &str, name: Option<&str>, to: &str, role: &str, m: &str| {
            confirm_page(
                &LinkPreview {
                    action: action.into(),
                    user_id: user.into(),
                    user_name: name.map(str::to_string),
                    addressee: to.into(),
                    addressee_name: match role {
                        "manager" => Some("grace".to_string()),
                        "sponsor" => Some("sam".to_string()),
                        _ => None,
                    },
                    role: role.into(),
                    message: m.into(),
                },
                "eyJhIjoiYXBwcm92ZSJ9.00aa",
            )
        };
        let pages = [
            (
                "link_page_approve",
                page(
                    "approve",
                    "u1",
                    Some("bob@example.com"),
                    "2819c223-grace",
                    "manager",
                    "Approve Bob <Builder> (bob@example.com)'s request for group:engineering on apps.",
                ),
            ),
            (
                "link_page_reject",
                page(
                    "reject",
                    "u1",
                    Some("bob@example.com"),
                    "pat",
                    "approver",
                    "Reject Bob <Builder> (bob@example.com)'s request for group:prod-admin on aws.",
                ),
            ),
            (
                "link_page_hold_confirm",
                page(
                    "hold-confirm",
                    "",
                    None,
                    "security@example.com",
                    "security",
                    "Confirm hold 0190aa7e: run the held 14 operations for 7 people (more than 30% \
                     of 10 users would lose access within 10m).",
                ),
            ),
            (
                "link_page_incident_ack",
                page(
                    "incident-ack",
                    "u1",
                    Some("bob@example.com"),
                    "helpdesk@example.com",
                    "helpdesk",
                    "Acknowledge incident 42 (operation parked about Bob (bob@example.com) on \
                     github): its reminders stop; it stays open.",
                ),
            ),
            (
                "link_page_extension_ask",
                page(
                    "extension-ask",
                    "u2",
                    None,
                    "7d3a0c55-sponsor",
                    "sponsor",
                    "Ask for an extension of the contract of Carl Contractor (carl.contractor), \
                     which ends at 2026-12-31T00:00:00Z.",
                ),
            ),
        ];
        for (name, html) in &pages {
            assert!(!html.contains("<Builder>"), "{html}");
            insta::assert_snapshot!(*name, html.clone());
            if let Some(dir) = std::env::var_os("SCIMHUB_MAIL_ARTIFACTS") {
                std::fs::write(
                    std::path::Path::new(&dir).join(format!("{name}.html")),
                    html,
                )
                .expect("artifact");
            }
        }
        assert!(pages[1].1.contains("<textarea"), "the reject page asks why");
        assert!(!pages[2].1.contains("User:"), "a hold is about many people");
        assert!(
            pages[4]
                .1
                .contains("type=\"date\" id=\"end\" name=\"end\" required"),
            "an extension ask asks for the date"
        );
    }

    /// A certification link's page asks for the reason (required) and, to delegate, for the
    /// delegate: snapshot, and the HTML written to `$SCIMHUB_MAIL_ARTIFACTS/` when set.
    #[test]
    fn a_certification_page_requires_a_reason_and_names_the_delegate() {
        let p = LinkPreview {
            action: "cert-delegate".into(),
            user_id: "u1".into(),
            user_name: Some("fay <i>".into()),
            addressee: "u-grace".into(),
            addressee_name: None,
            role: "manager".into(),
            message: "Delegate the review of fay <i>'s group:ap on erp to someone else.".into(),
        };
        let page = confirm_page(&p, "tok");
        assert!(page.contains("name=\"delegate_to\" required"), "{page}");
        assert!(page.contains("name=\"reason\""), "{page}");
        assert!(page.contains("required></textarea>"), "{page}");
        assert!(page.contains(">Delegate</button>"), "{page}");
        assert!(!page.contains("<i>"), "{page}");
        insta::assert_snapshot!("certification_delegate_page", page.clone());
        let revoke = confirm_page(
            &LinkPreview {
                action: "cert-revoke".into(),
                ..p
            },
            "tok",
        );
        assert!(!revoke.contains("delegate_to"), "{revoke}");
        assert!(revoke.contains(">Revoke</button>"), "{revoke}");
        if let Some(dir) = std::env::var_os("SCIMHUB_MAIL_ARTIFACTS") {
            std::fs::write(
                std::path::Path::new(&dir).join("certification_delegate_page.html"),
                &page,
            )
            .expect("artifact");
        }
    }
}
