//! Who may decide an approval request.
//!
//! A decision is taken by a person: the credential must act as a directory user (an API token
//! issued with `scimhub token issue --user`, or a JWT whose user claim names a userName). What
//! that person may decide comes from the policy and the directory, checked when they decide:
//!
//! | request | decided by |
//! |---|---|
//! | `approval = "manager"` | the subject's manager (enterprise `manager.value` is their id), when a `[[source]]` owns `manager` |
//! | `approval = "owner"` | an owner of the entitlement: `owners` on its connector or on a grant of it |
//! | `approval = "security"`, SoD exceptions | a security approver |
//! | emergency grant (`grant`) | as its entitlement's level says (`[grants] approval`, docs/grants.md); never the person who asked for it |
//! | contract extension | the contractor's sponsor (`sponsor_attribute`: their userName, id or an email of theirs; when a `[[source]]` owns it), `[contractor] owners` |
//!
//! A security approver (`[approvals] security` userNames) may decide every request, whatever its
//! level. Authority comes only from what the policy trusts: the policy itself, and manager and
//! sponsor attributes that only their owning `[[source]]` may write (unless
//! `trust_unowned_attributes = true`). Group membership gives no authority: any `scim:write`
//! client can change it. An inactive user decides
//! nothing, whatever credential acts as them. Nobody decides a request for their own access, and nobody decides
//! an extension they asked for themselves. Signed one-click links are the exception to "the
//! credential names the person": the signature is the proof that the link was sent to its
//! addressee (see [`crate::engine::links`]).

use scim_schema::json::get_ci;
use serde_json::Value;

use crate::engine::desired::attr_str;
use crate::policy::Policy;
use crate::store::approvals::{ApprovalKind, ApprovalRow};
use crate::store::Doc;

/// The person deciding, as the directory knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub user_id: String,
    pub user_name: String,
    /// Their email addresses (a sponsor is often named by email).
    pub emails: Vec<String>,
    /// Whether their User is active: an inactive user (and every credential acting as them)
    /// decides nothing.
    pub active: bool,
    /// The credential they decide with (token name or JWT client), for the record.
    pub credential: String,
}

impl Approver {
    /// The approver whose stored document is `doc` (id `user_id`).
    pub fn from_doc(user_id: &str, doc: &Doc, credential: &str) -> Approver {
        let emails = match get_ci(doc, "emails") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|e| e.get("value").and_then(Value::as_str))
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Approver {
            user_id: user_id.to_string(),
            user_name: attr_str(doc, "userName").unwrap_or(user_id).to_string(),
            emails,
            // A User without `active` is active (RFC 7643 leaves the default to the provider;
            // the engine plans such users as active too).
            active: get_ci(doc, "active")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            credential: credential.to_string(),
        }
    }

    /// Whether the policy makes this person a security approver: listed by userName in
    /// `[approvals] security`. Group membership never counts: any `scim:write` client can
    /// change it.
    pub fn is_security(&self, policy: &Policy) -> bool {
        policy
            .approvals
            .security
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&self.user_name))
    }

    /// Whether `reference` (a sponsor attribute's value) names this person: their id, their
    /// userName or one of their emails.
    pub(super) fn is_named_by(&self, reference: &str) -> bool {
        let r = reference.trim();
        r == self.user_id
            || r.eq_ignore_ascii_case(&self.user_name)
            || self.emails.iter().any(|e| e.eq_ignore_ascii_case(r))
    }
}

/// What the engine knows about the user a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    /// Their manager's SCIM id (enterprise `manager.value`).
    pub manager_id: Option<&'a str>,
    /// Their sponsor, as the `sponsor_attribute` holds it (an email, a userName or an id).
    pub sponsor: Option<&'a str>,
}

/// Why the policy lets a person decide a request (recorded as `decided_as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Manager,
    Owner,
    Sponsor,
    Security,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::Manager => "manager",
            Authority::Owner => "owner",
            Authority::Sponsor => "sponsor",
            Authority::Security => "security",
        }
    }
}

/// Why a caller may not decide a request (answered `403`; the request stays pending).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the credential {credential:?} does not act as a directory user; decisions are taken by \
         people: issue a token with `scimhub token issue --user USERNAME`, or use a JWT whose \
         user claim names a userName"
    )]
    NoUser { credential: String },
    #[error("the credential {credential:?} acts as {user:?}, who is not in the directory")]
    UnknownUser { credential: String, user: String },
    #[error("{user_name} cannot decide a request for their own access")]
    OwnAccess { user_name: String },
    #[error("{user_name} asked for this extension and cannot also decide it")]
    OwnRequest { user_name: String },
    #[error("{user_name} asked for this emergency grant and cannot also decide it")]
    OwnGrant { user_name: String },
    #[error("{user_name} is not active in the directory and cannot decide requests")]
    Inactive { user_name: String },
    /// Deliberately does not say who the approvers are: a refused caller learns nothing about
    /// the approval chain.
    #[error("you ({user_name}) are not an approver for this request")]
    NotApprover { user_name: String },
}

/// The authority `approver` has over `request` (for `subject`), or why they have none.
pub fn authority(
    policy: &Policy,
    request: &ApprovalRow,
    subject: &Subject<'_>,
    approver: &Approver,
) -> Result<Authority, Refusal> {
    if !approver.active {
        return Err(Refusal::Inactive {
            user_name: approver.user_name.clone(),
        });
    }
    if approver.user_id == subject.user_id {
        return Err(Refusal::OwnAccess {
            user_name: approver.user_name.clone(),
        });
    }
    let security = approver.is_security(policy);
    let refuse = || Refusal::NotApprover {
        user_name: approver.user_name.clone(),
    };
    if request.kind == ApprovalKind::Extension {
        let requester = request
            .detail
            .get("requested_by_user_id")
            .and_then(Value::as_str);
        if requester == Some(approver.user_id.as_str()) {
            return Err(Refusal::OwnRequest {
                user_name: approver.user_name.clone(),
            });
        }
        if subject.sponsor.is_some_and(|s| approver.is_named_by(s)) {
            return Ok(Authority::Sponsor);
        }
        let owners = policy
            .contractor
            .as_ref()
            .map(|c| c.owners.as_slice())
            .unwrap_or_default();
        if owners
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&approver.user_name))
        {
            return Ok(Authority::Owner);
        }
        if security {
            return Ok(Authority::Security);
        }
        return Err(refuse());
    }
    if request.kind == ApprovalKind::Grant
        && request
            .detail
            .get("requested_by_user_id")
            .and_then(Value::as_str)
            == Some(approver.user_id.as_str())
    {
        // Four eyes on emergency access: whoever asked for a grant does not also approve it.
        return Err(Refusal::OwnGrant {
            user_name: approver.user_name.clone(),
        });
    }
    match (request.kind.as_str(), request.level.as_str()) {
        ("entitlement" | "grant", "manager") => {
            if subject.manager_id == Some(approver.user_id.as_str()) {
                Ok(Authority::Manager)
            } else if security {
                Ok(Authority::Security)
            } else {
                Err(refuse())
            }
        }
        ("entitlement" | "grant", "owner") => {
            let connector = request.connector.as_deref().unwrap_or_default();
            let owners = request
                .entitlement
                .as_deref()
                .and_then(|e| serde_json::from_str::<connectors::Entitlement>(e).ok())
                .map(|e| policy.entitlement_owners(connector, &e))
                .unwrap_or_default();
            if owners
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&approver.user_name))
            {
                Ok(Authority::Owner)
            } else if security {
                Ok(Authority::Security)
            } else {
                Err(refuse())
            }
        }
        // `security` entitlements and SoD exceptions; an unknown level is treated as the
        // strictest.
        _ => {
            if security {
                Ok(Authority::Security)
            } else {
                Err(refuse())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: &str = r#"
[settings]
sponsor_attribute = "title"

[[connector]]
name = "github"
type = "memory"
owners = ["olga"]

[[connector]]
name = "aws"
type = "memory"

[[profile]]
name = "eng"
match = 'title pr'
grants = [
  { connector = "github", kind = "org", id = "acme", role = "admin", approval = "owner" },
  { connector = "aws", kind = "group", id = "prod", approval = "owner", owners = ["pete"] },
  { connector = "aws", kind = "group", id = "audit", approval = "security" },
  { connector = "aws", kind = "group", id = "dev", approval = "manager" },
]

[[profile]]
name = "contractor"

[contractor]
match = 'userType eq "Contractor"'
profile = "contractor"
owners = ["vera"]

[approvals]
security = ["sam"]
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, "t.toml").expect("policy")
    }

    fn request(kind: &str, level: &str, connector: &str, ent: Value) -> ApprovalRow {
        ApprovalRow {
            id: "r1".into(),
            user_id: "u-ada".into(),
            kind: ApprovalKind::parse(kind).expect("approval kind"),
            connector: Some(connector.into()),
            entitlement: Some(ent.to_string()),
            level: crate::store::approvals::ApprovalLevel::parse(level).expect("approval level"),
            detail: json!({}),
            status: crate::store::approvals::ApprovalStatus::Pending,
            requested: String::new(),
            decided: None,
            decided_by: None,
            reason: None,
            decided_by_user_id: None,
            decided_by_credential: None,
            decided_as: None,
        }
    }

    fn person(name: &str) -> Approver {
        Approver {
            user_id: format!("u-{name}"),
            user_name: name.into(),
            emails: vec![format!("{name}@example.com")],
            active: true,
            credential: format!("{name}-token"),
        }
    }

    const ADA: Subject<'static> = Subject {
        user_id: "u-ada",
        manager_id: Some("u-mia"),
        sponsor: None,
    };

    #[test]
    fn the_manager_decides_manager_requests_and_security_any() {
        let p = policy();
        let r = request(
            "entitlement",
            "manager",
            "aws",
            json!({"kind": "group", "id": "dev"}),
        );
        assert_eq!(
            authority(&p, &r, &ADA, &person("mia")),
            Ok(Authority::Manager)
        );
        assert_eq!(
            authority(&p, &r, &ADA, &person("sam")),
            Ok(Authority::Security)
        );
        // Membership of a group named like a security team gives nothing.
        assert!(authority(&p, &r, &ADA, &person("sid")).is_err());
        let e = authority(&p, &r, &ADA, &person("olga")).expect_err("refused");
        assert!(matches!(e, Refusal::NotApprover { .. }), "{e}");
        // The refusal does not say who the approvers are.
        assert_eq!(
            e.to_string(),
            "you (olga) are not an approver for this request"
        );
        // An inactive security approver decides nothing.
        let mut gone = person("sam");
        gone.active = false;
        assert!(matches!(
            authority(&p, &r, &ADA, &gone),
            Err(Refusal::Inactive { .. })
        ));
    }

    #[test]
    fn owners_come_from_the_connector_and_the_grant() {
        let p = policy();
        let org = request(
            "entitlement",
            "owner",
            "github",
            json!({"kind": "org", "id": "acme", "role": "admin"}),
        );
        assert_eq!(
            authority(&p, &org, &ADA, &person("Olga")),
            Ok(Authority::Owner)
        );
        let prod = request(
            "entitlement",
            "owner",
            "aws",
            json!({"kind": "group", "id": "prod"}),
        );
        assert_eq!(
            authority(&p, &prod, &ADA, &person("pete")),
            Ok(Authority::Owner)
        );
        // pete owns aws/prod only, olga github only; the manager is no owner.
        for (r, who) in [(&org, "pete"), (&prod, "olga"), (&prod, "mia")] {
            let e = authority(&p, r, &ADA, &person(who)).expect_err("refused");
            assert!(!e.to_string().contains("olga") || who == "olga", "{e}");
            assert!(!e.to_string().contains("pete") || who == "pete", "{e}");
        }
        assert_eq!(
            authority(&p, &prod, &ADA, &person("sam")),
            Ok(Authority::Security)
        );
    }

    #[test]
    fn security_requests_and_sod_exceptions_need_security() {
        let p = policy();
        let audit = request(
            "entitlement",
            "security",
            "aws",
            json!({"kind": "group", "id": "audit"}),
        );
        let mut sod = request("sod", "security", "aws", json!(null));
        sod.entitlement = Some("pay-and-approve".into());
        for r in [&audit, &sod] {
            // Neither the manager nor an owner: the level is security.
            for who in ["mia", "pete", "olga"] {
                assert!(authority(&p, r, &ADA, &person(who)).is_err());
            }
            assert_eq!(
                authority(&p, r, &ADA, &person("sam")),
                Ok(Authority::Security)
            );
        }
    }

    #[test]
    fn nobody_decides_their_own_access() {
        let p = policy();
        let r = request(
            "entitlement",
            "manager",
            "aws",
            json!({"kind": "group", "id": "dev"}),
        );
        // Not even a security approver who is their own subject.
        let me = Subject {
            user_id: "u-sam",
            manager_id: Some("u-sam"),
            sponsor: None,
        };
        assert_eq!(
            authority(&p, &r, &me, &person("sam")),
            Err(Refusal::OwnAccess {
                user_name: "sam".into()
            })
        );
    }

    #[test]
    fn extensions_go_to_the_sponsor_contractor_owners_or_security() {
        let p = policy();
        let mut r = request("extension", "owner", "", json!(null));
        r.connector = None;
        r.entitlement = None;
        r.detail = json!({"new_end": "2025-06-01", "requested_by_user_id": "u-vera"});
        let cora = Subject {
            user_id: "u-cora",
            manager_id: Some("u-mia"),
            sponsor: Some("GRACE@example.com"),
        };
        assert_eq!(
            authority(&p, &r, &cora, &person("grace")),
            Ok(Authority::Sponsor)
        );
        // The sponsor may be named by id or userName too.
        for s in ["u-grace", "grace"] {
            let sub = Subject {
                sponsor: Some(s),
                ..cora
            };
            assert_eq!(
                authority(&p, &r, &sub, &person("grace")),
                Ok(Authority::Sponsor)
            );
        }
        assert_eq!(
            authority(&p, &r, &cora, &person("sam")),
            Ok(Authority::Security)
        );
        // The manager is not asked; vera owns contractors but asked for this one herself.
        let e = authority(&p, &r, &cora, &person("mia")).expect_err("refused");
        assert!(!e.to_string().contains("GRACE@example.com"), "{e}");
        assert!(!e.to_string().contains("vera"), "{e}");
        assert_eq!(
            authority(&p, &r, &cora, &person("vera")),
            Err(Refusal::OwnRequest {
                user_name: "vera".into()
            })
        );
        r.detail = json!({"new_end": "2025-06-01"});
        assert_eq!(
            authority(&p, &r, &cora, &person("vera")),
            Ok(Authority::Owner)
        );
        // The contractor cannot extend their own contract.
        let e = authority(&p, &r, &cora, &person("cora")).expect_err("refused");
        assert!(matches!(e, Refusal::OwnAccess { .. }));
    }
}
