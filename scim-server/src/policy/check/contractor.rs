//! `[contractor]`: who counts as a contractor, the profile they get, the connectors they never
//! get, reminders before the end date, the longest extension, and that somebody can decide
//! extensions.

use chrono::Duration;

use crate::policy::attrs::{check_filter, AttrChecker};
use crate::policy::diagnostics::Diags;
use crate::policy::model::{ApproverSettings, ContractorRules, Profile, Settings};
use crate::policy::raw::RawContractor;

use super::connectors::CheckedConnectors;
use super::{check_user_names, duration_at};

/// `None` when the match filter is invalid (reported).
pub(super) fn check(
    c: RawContractor,
    attrs: &AttrChecker,
    profiles: &[Profile],
    connectors: &CheckedConnectors,
    settings: &Settings,
    approvals: &ApproverSettings,
    d: &mut Diags<'_>,
) -> Option<ContractorRules> {
    let filter = check_filter(d, attrs, &c.match_expr, "contractor match");
    if !profiles.iter().any(|p| &p.name == c.profile.get_ref()) {
        d.at(
            c.profile.span(),
            format!("unknown profile {:?}", c.profile.get_ref()),
        );
    }
    for x in &c.exclude_connectors {
        connectors.known(d, x);
    }
    let reminders = match &c.reminders {
        Some(list) => list.iter().filter_map(|r| duration_at(d, r)).collect(),
        None => vec![Duration::days(30), Duration::days(7), Duration::hours(24)],
    };
    let max_extension = c
        .max_extension
        .as_ref()
        .and_then(|m| duration_at(d, m))
        .unwrap_or_else(|| Duration::days(90));
    let owners = check_user_names(d, &c.owners, "[contractor] owners");
    if owners.is_empty() && settings.sponsor_attribute.is_none() && !approvals.has_security() {
        d.at(
            c.match_expr.span(),
            "[contractor]: nobody could decide contract extensions: set [settings] \
             sponsor_attribute, [contractor] owners or [approvals] security",
        );
    }
    Some(ContractorRules {
        match_expr: c.match_expr.into_inner(),
        filter: filter?,
        profile: c.profile.into_inner(),
        exclude_connectors: c
            .exclude_connectors
            .into_iter()
            .map(|x| x.into_inner())
            .collect(),
        reminders,
        max_extension,
        owners,
    })
}
