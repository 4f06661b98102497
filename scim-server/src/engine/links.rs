//! Signed one-click links: the actions a mail lets its recipient take without signing in. A
//! link is `base64url(payload).hex(HMAC-SHA256(payload))` with an expiry inside the payload; it
//! needs no login, so it grants exactly one action on one object until it expires.
//!
//! Each link is addressed: its payload names the recipient it was mailed to (`to`: a user id, a
//! userName, or an address) and the role it was sent to them in (`r`: `manager`, `approver`,
//! `sponsor`, `security`, `helpdesk`). The signature is the proof of identity, since there is
//! no login: only the recipient received the link. Following it checks that the addressee still
//! holds that role (see `admin::legacy_access`, `admin::notice_links`).
//!
//! What a link acts on: a mover event or a drift finding or a contract end (`ev`, whose links
//! share a single use recorded by a row keyed by the event, `engine_used_links`), or a request,
//! a hold or an incident (`id`, acting once because a decided object no longer acts).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::notices::API_PREFIX;
use crate::policy::Policy;

/// What a link does: a mover's legacy access (`ack`, `extend`: `ev` names the mover event) or
/// a decision on a pending approval request (`approve`, `reject`: `id` names the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Ack,
    Extend,
    Approve,
    Reject,
    /// Keep a drift finding (`ev` = `drift:<id>`, see `admin::drift`).
    DriftKeep,
    /// Remove what a drift finding found.
    DriftRemove,
    /// Confirm a blast-radius hold (`id` names the hold): its operations run.
    HoldConfirm,
    /// Discard a blast-radius hold: its operations never run.
    HoldDiscard,
    /// Acknowledge an incident (`id` names it): its reminders stop.
    IncidentAck,
    /// Resolve an incident.
    IncidentResolve,
    /// Ask for an extension of a contract (`ev` = `contract:<user>:<end>`): the sponsor's link
    /// in a contract reminder; the page asks for the new end date and the reason.
    ExtensionAsk,
    /// Certify a campaign item (`id` names the item, see `admin::certification`).
    CertCertify,
    /// Revoke the access of a campaign item.
    CertRevoke,
    /// Hand a campaign item to another reviewer (named on the confirmation page).
    CertDelegate,
}

impl LinkAction {
    /// The `a` claim of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Ack => "ack",
            LinkAction::Extend => "extend",
            LinkAction::Approve => "approve",
            LinkAction::Reject => "reject",
            LinkAction::DriftKeep => "drift-keep",
            LinkAction::DriftRemove => "drift-remove",
            LinkAction::HoldConfirm => "hold-confirm",
            LinkAction::HoldDiscard => "hold-discard",
            LinkAction::IncidentAck => "incident-ack",
            LinkAction::IncidentResolve => "incident-resolve",
            LinkAction::ExtensionAsk => "extension-ask",
            LinkAction::CertCertify => "cert-certify",
            LinkAction::CertRevoke => "cert-revoke",
            LinkAction::CertDelegate => "cert-delegate",
        }
    }

    /// The action an `a` claim names; `None` for an unknown one (refused).
    pub fn parse(a: &str) -> Option<LinkAction> {
        Some(match a {
            "ack" => LinkAction::Ack,
            "extend" => LinkAction::Extend,
            "approve" => LinkAction::Approve,
            "reject" => LinkAction::Reject,
            "drift-keep" => LinkAction::DriftKeep,
            "drift-remove" => LinkAction::DriftRemove,
            "hold-confirm" => LinkAction::HoldConfirm,
            "hold-discard" => LinkAction::HoldDiscard,
            "incident-ack" => LinkAction::IncidentAck,
            "incident-resolve" => LinkAction::IncidentResolve,
            "extension-ask" => LinkAction::ExtensionAsk,
            "cert-certify" => LinkAction::CertCertify,
            "cert-revoke" => LinkAction::CertRevoke,
            "cert-delegate" => LinkAction::CertDelegate,
            _ => return None,
        })
    }

    /// Whether the action decides an approval request (`id` claim) rather than a mover event.
    pub fn is_decision(self) -> bool {
        matches!(self, LinkAction::Approve | LinkAction::Reject)
    }

    /// Whether the action decides a certification campaign item (`admin::certification`).
    pub fn is_certification(self) -> bool {
        matches!(
            self,
            LinkAction::CertCertify | LinkAction::CertRevoke | LinkAction::CertDelegate
        )
    }

    /// The decision a certification link takes (`certify`, `revoke`, `delegate`).
    pub fn certification_decision(self) -> Option<&'static str> {
        match self {
            LinkAction::CertCertify => Some("certify"),
            LinkAction::CertRevoke => Some("revoke"),
            LinkAction::CertDelegate => Some("delegate"),
            _ => None,
        }
    }

    /// Whether the action answers a drift review (`admin::drift`).
    pub fn is_drift(self) -> bool {
        matches!(self, LinkAction::DriftKeep | LinkAction::DriftRemove)
    }

    /// Whether the action decides a blast-radius hold (`id` claim, `admin::notice_links`).
    pub fn is_hold(self) -> bool {
        matches!(self, LinkAction::HoldConfirm | LinkAction::HoldDiscard)
    }

    /// Whether the action acknowledges or resolves an incident (`id` claim).
    pub fn is_incident(self) -> bool {
        matches!(self, LinkAction::IncidentAck | LinkAction::IncidentResolve)
    }

    /// Whether the action names its object by the `id` claim (a request, a hold, an incident)
    /// rather than by an event.
    pub fn names_id(self) -> bool {
        self.is_decision() || self.is_hold() || self.is_incident()
    }
}

/// The role of a link sent to a security address (`[notify] security`).
pub const ROLE_SECURITY: &str = "security";
/// The role of a link sent to a helpdesk address (`[notify] helpdesk`).
pub const ROLE_HELPDESK: &str = "helpdesk";
/// The role of an extension decision link sent to the contractor's sponsor (`to` is the
/// sponsor's user id).
pub const ROLE_SPONSOR: &str = "sponsor";

/// What a link does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The user.
    pub u: String,
    /// The action ([`LinkAction::as_str`]).
    pub a: String,
    /// Days to extend by (`extend`).
    #[serde(default)]
    pub d: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Who the link was sent to: the manager's user id, or a security address.
    pub to: String,
    /// The role it was sent to them in: `manager` or `security`.
    pub r: String,
    /// The event the link belongs to (the mover plan's id): it acts only while that is the
    /// user's latest move, and every link of the event shares one use. Empty in links signed
    /// before events were named, which are refused.
    #[serde(default)]
    pub ev: String,
    /// The approval request a decision link (`approve`, `reject`) acts on; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

fn mac(key: &[u8], payload: &str) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    m.update(payload.as_bytes());
    Some(m)
}

/// Signs claims with `key`.
pub fn sign(key: &[u8], claims: &LinkClaims) -> Option<String> {
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?);
    let tag = mac(key, &payload)?.finalize().into_bytes();
    Some(format!("{payload}.{}", hex::encode(tag)))
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("malformed link")]
    Malformed,
    #[error("invalid signature")]
    BadSignature,
    #[error("link expired")]
    Expired,
}

/// Verifies a token (constant-time MAC comparison) and its expiry.
pub fn verify(key: &[u8], token: &str, now: DateTime<Utc>) -> Result<LinkClaims, LinkError> {
    let (payload, tag) = token.split_once('.').ok_or(LinkError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| LinkError::Malformed)?;
    mac(key, payload)
        .ok_or(LinkError::Malformed)?
        .verify_slice(&tag)
        .map_err(|_| LinkError::BadSignature)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LinkError::Malformed)?;
    let claims: LinkClaims = serde_json::from_slice(&bytes).map_err(|_| LinkError::Malformed)?;
    if claims.exp < now.timestamp() {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

/// The link key from the policy (`[notify] link_secret`), if configured and loadable.
pub fn key(policy: &Policy) -> Option<Vec<u8>> {
    let s = policy.notify.link_secret.as_ref()?.load().ok()?;
    Some(s.expose().as_bytes().to_vec())
}

/// The link key for links mailed to a person's own address (a manager, an approver, a sponsor,
/// a reviewer): only while that address is trusted ([`Policy::person_email_trusted`]); links
/// to the `[notify]` addresses use [`key`].
pub fn person_key(policy: &Policy) -> Option<Vec<u8>> {
    key(policy).filter(|_| policy.person_email_trusted())
}

/// `(acknowledge, extend by 7 days)` URLs for a user's mover event `event_id`, addressed to `to`
/// in `role` (`manager`: `to` is the manager's user id; `security`: a security address), signed
/// with `key` ([`key`]), when the policy has a base URL for them.
pub fn links_for(
    policy: &Policy,
    key: &[u8],
    user_id: &str,
    event_id: &str,
    to: &str,
    role: &str,
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    let exp = (now + policy.notify.link_ttl).timestamp();
    let claims = |a: &str, d: i64| LinkClaims {
        u: user_id.into(),
        a: a.into(),
        d,
        exp,
        to: to.into(),
        r: role.into(),
        ev: event_id.into(),
        id: String::new(),
    };
    let ack = sign(key, &claims("ack", 0))?;
    let ext = sign(key, &claims("extend", 7))?;
    Some((
        format!("{base}{API_PREFIX}/links/{ack}"),
        format!("{base}{API_PREFIX}/links/{ext}"),
    ))
}

/// The keep and remove links of a drift finding (`finding_id`) about `user_id`, addressed to
/// the user's manager (`to`): each names the finding as its event (`drift:<id>`), so the two
/// share one use and act on that finding only.
pub fn drift_links(
    policy: &Policy,
    key: &[u8],
    user_id: &str,
    finding_id: i64,
    to: &str,
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    let exp = (now + policy.notify.link_ttl).timestamp();
    let claims = |a: &str| LinkClaims {
        u: user_id.into(),
        a: a.into(),
        d: finding_id,
        exp,
        to: to.into(),
        r: "manager".into(),
        ev: format!("drift:{finding_id}"),
        id: String::new(),
    };
    let keep = sign(key, &claims(LinkAction::DriftKeep.as_str()))?;
    let remove = sign(key, &claims(LinkAction::DriftRemove.as_str()))?;
    Some((
        format!("{base}{API_PREFIX}/links/{keep}"),
        format!("{base}{API_PREFIX}/links/{remove}"),
    ))
}

/// The role of a decision link's addressee: `manager` (`to` is the manager's user id) or
/// `approver` (`to` is the approver's userName, as the policy names owners and security
/// approvers).
pub const ROLE_APPROVER: &str = "approver";

/// `(approve, reject)` URLs for approval request `request_id` of user `user_id`, addressed to
/// `to` in `role` (`manager`: a user id; [`ROLE_APPROVER`]: a userName), signed with `key`, when
/// the policy has a base URL for them. Following one decides the request as that person, with
/// the authority the admin API would check for them.
pub fn decision_links(
    policy: &Policy,
    key: &[u8],
    user_id: &str,
    request_id: &str,
    to: &str,
    role: &str,
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    id_links(
        policy,
        key,
        user_id,
        request_id,
        to,
        role,
        (LinkAction::Approve, LinkAction::Reject),
        now,
    )
}

/// The two links of one object named by id (a hold, an incident): `(first, second)` actions,
/// for `user_id` (empty when the object is about no one user), addressed to `to` in `role`,
/// signed with `key`, when the policy has a base URL for them.
#[allow(clippy::too_many_arguments)]
pub fn id_links(
    policy: &Policy,
    key: &[u8],
    user_id: &str,
    id: &str,
    to: &str,
    role: &str,
    actions: (LinkAction, LinkAction),
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    let exp = (now + policy.notify.link_ttl).timestamp();
    let claims = |a: LinkAction| LinkClaims {
        u: user_id.into(),
        a: a.as_str().into(),
        d: 0,
        exp,
        to: to.into(),
        r: role.into(),
        ev: String::new(),
        id: id.into(),
    };
    let first = sign(key, &claims(actions.0))?;
    let second = sign(key, &claims(actions.1))?;
    Some((
        format!("{base}{API_PREFIX}/links/{first}"),
        format!("{base}{API_PREFIX}/links/{second}"),
    ))
}

/// The event of a contract's extension-ask links: the contract of `user_id` ending at `end`
/// (RFC 3339). The links of one contract end share one use; after an extension moves the end,
/// the next reminder's links name the new one.
pub fn contract_event(user_id: &str, end: &str) -> String {
    format!("contract:{user_id}:{end}")
}

/// The *ask for an extension* link of a contract reminder for the contractor's sponsor (`to`:
/// the sponsor's user id), naming the contract end `end`.
pub fn extension_ask_link(
    policy: &Policy,
    key: &[u8],
    user_id: &str,
    end: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    let claims = LinkClaims {
        u: user_id.into(),
        a: LinkAction::ExtensionAsk.as_str().into(),
        d: 0,
        exp: (now + policy.notify.link_ttl).timestamp(),
        to: to.into(),
        r: ROLE_SPONSOR.into(),
        ev: contract_event(user_id, end),
        id: String::new(),
    };
    Some(format!("{base}{API_PREFIX}/links/{}", sign(key, &claims)?))
}

/// `(confirm, discard)` links of blast-radius hold `hold_id` for security address `to`.
pub fn hold_links(
    policy: &Policy,
    key: &[u8],
    hold_id: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    id_links(
        policy,
        key,
        "",
        hold_id,
        to,
        ROLE_SECURITY,
        (LinkAction::HoldConfirm, LinkAction::HoldDiscard),
        now,
    )
}

/// `(acknowledge, resolve)` links of incident `incident_id` for `to` in `role`
/// ([`ROLE_SECURITY`] or [`ROLE_HELPDESK`]).
pub fn incident_links(
    policy: &Policy,
    key: &[u8],
    incident_id: i64,
    user_id: Option<&str>,
    to: &str,
    role: &str,
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    id_links(
        policy,
        key,
        user_id.unwrap_or(""),
        &incident_id.to_string(),
        to,
        role,
        (LinkAction::IncidentAck, LinkAction::IncidentResolve),
        now,
    )
}

/// The certify, revoke and delegate URLs of campaign item `item_id` about `user_id`, addressed
/// to reviewer `to` (a user id) at `level` (`manager`, `owner`, `security`, `delegate`), valid
/// until `exp`. The item is decided once, by the reviewer it is addressed to when the link is
/// followed: a link of a reviewer the item was escalated or delegated away from no longer acts.
pub fn certification_links(
    policy: &Policy,
    key: &[u8],
    user_id: &str,
    item_id: &str,
    to: &str,
    level: &str,
    exp: DateTime<Utc>,
) -> Option<[String; 3]> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    let claims = |a: LinkAction| LinkClaims {
        u: user_id.into(),
        a: a.as_str().into(),
        d: 0,
        exp: exp.timestamp(),
        to: to.into(),
        r: level.into(),
        ev: format!("cert:{item_id}"),
        id: item_id.into(),
    };
    let url = |a| {
        Some(format!(
            "{base}{API_PREFIX}/links/{}",
            sign(key, &claims(a))?
        ))
    };
    Some([
        url(LinkAction::CertCertify)?,
        url(LinkAction::CertRevoke)?,
        url(LinkAction::CertDelegate)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_expire() {
        let now = Utc::now();
        let c = LinkClaims {
            u: "u1".into(),
            a: "ack".into(),
            d: 0,
            exp: now.timestamp() + 60,
            to: "u-manager".into(),
            r: "manager".into(),
            ev: "plan-1".into(),
            id: String::new(),
        };
        let t = sign(b"k", &c).expect("sign");
        assert_eq!(verify(b"k", &t, now), Ok(c.clone()));
        // The addressee is signed: a link cannot be re-addressed.
        let (payload, tag) = t.split_once('.').expect("token");
        let forged = LinkClaims {
            to: "u-attacker".into(),
            ..c
        };
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).expect("json"));
        assert_ne!(payload, forged_payload);
        assert_eq!(
            verify(b"k", &format!("{forged_payload}.{tag}"), now),
            Err(LinkError::BadSignature)
        );
        assert_eq!(verify(b"other", &t, now), Err(LinkError::BadSignature));
        assert_eq!(
            verify(b"k", &t, now + chrono::Duration::minutes(2)),
            Err(LinkError::Expired)
        );
        assert!(verify(b"k", "x.00", now).is_err());
    }

    #[test]
    fn decision_links_name_request_action_and_addressee() {
        let policy = crate::policy::Policy::parse(
            "[notify]\nlink_base_url = \"https://hub.example\"\n",
            "t.toml",
        )
        .expect("policy");
        let now = Utc::now();
        let (a, r) = decision_links(&policy, b"k", "u1", "req-1", "grace", ROLE_APPROVER, now)
            .expect("links");
        for (url, action) in [(a, LinkAction::Approve), (r, LinkAction::Reject)] {
            let token = url
                .strip_prefix("https://hub.example/admin/v1/links/")
                .expect("link url");
            let c = verify(b"k", token, now).expect("verifies");
            assert_eq!(LinkAction::parse(&c.a), Some(action));
            assert_eq!(
                (c.id.as_str(), c.to.as_str(), c.r.as_str()),
                ("req-1", "grace", "approver")
            );
            assert!(c.ev.is_empty());
        }
    }
}
