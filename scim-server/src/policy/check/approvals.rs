//! `[approvals]`: who the security approvers are (userNames), and whether manager/sponsor
//! attributes that no `[[source]]` owns are trusted.

use scim_schema::filter::AttrPath;

use crate::policy::attrs::AttrChecker;
use crate::policy::diagnostics::Diags;
use crate::policy::model::{ApproverSettings, Settings};
use crate::policy::raw::RawApprovals;

use super::check_user_names;

pub(super) fn check(raw: &RawApprovals, d: &mut Diags<'_>) -> ApproverSettings {
    // Group membership is written by any client with `scim:write`: a group cannot make anyone
    // an approver, or that client could add itself and decide every request.
    if let Some(first) = raw.security_groups.first() {
        d.at(
            first.span(),
            "[approvals] security_groups is no longer accepted: any SCIM client with scim:write \
             can change group membership and would make itself a security approver; list the \
             security approvers by userName in [approvals] security",
        );
    }
    ApproverSettings {
        security: check_user_names(d, &raw.security, "[approvals] security"),
        trust_unowned_attributes: raw.trust_unowned_attributes,
        manager_path: None,
        sponsor_path: None,
    }
}

/// The attributes that make someone an approver of a user's requests, resolved as `owns`
/// entries are: the enterprise manager, and the sponsor attribute (when set).
pub(super) fn authority_paths(
    attrs: &AttrChecker,
    settings: &Settings,
) -> (Option<AttrPath>, Option<AttrPath>) {
    let manager = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";
    (
        attrs.resolve_owned(manager).ok(),
        settings
            .sponsor_attribute
            .as_deref()
            .and_then(|a| attrs.resolve_owned(a).ok()),
    )
}

/// The message for `what` (a grant, a SoD rule) that needs security approvers when the policy
/// declares none.
pub(super) fn no_security(what: &str) -> String {
    format!("{what} needs security approvers: declare them in [approvals] security (userNames)")
}
