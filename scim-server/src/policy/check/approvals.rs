//! `[approvals]`: who the security approvers are (userNames, and the members of named groups).

use crate::policy::diagnostics::Diags;
use crate::policy::model::ApproverSettings;
use crate::policy::raw::RawApprovals;

use super::check_user_names;

pub(super) fn check(raw: &RawApprovals, d: &mut Diags<'_>) -> ApproverSettings {
    ApproverSettings {
        security: check_user_names(d, &raw.security, "[approvals] security"),
        security_groups: {
            let mut groups: Vec<String> = Vec::new();
            for g in &raw.security_groups {
                let name = g.get_ref().trim();
                if name.is_empty() {
                    d.at(
                        g.span(),
                        "[approvals] security_groups: a group name cannot be empty",
                    );
                } else if groups.iter().any(|x| x.eq_ignore_ascii_case(name)) {
                    d.at(
                        g.span(),
                        format!("[approvals] security_groups: {name:?} is listed twice"),
                    );
                } else {
                    groups.push(name.to_string());
                }
            }
            groups
        },
    }
}

/// The message for `what` (a grant, a SoD rule) that needs security approvers when the policy
/// declares none.
pub(super) fn no_security(what: &str) -> String {
    format!(
        "{what} needs security approvers: declare them in [approvals] security (userNames) or \
         security_groups"
    )
}
