//! `[grants]`: the longest a time-bound emergency grant may last, and how grants are approved.

use chrono::Duration;

use crate::policy::diagnostics::Diags;
use crate::policy::model::{ApproverSettings, GrantApproval, GrantSettings};
use crate::policy::raw::RawGrants;

use super::approvals::no_security;
use super::duration_at;

pub(super) fn check(
    raw: RawGrants,
    approvals: &ApproverSettings,
    d: &mut Diags<'_>,
) -> GrantSettings {
    let mut out = GrantSettings::default();
    if let Some(v) = &raw.max_duration {
        if let Some(max) = duration_at(d, v) {
            if max <= Duration::zero() {
                d.at(v.span(), "[grants] max_duration must be above zero");
            } else {
                out.max_duration = max;
            }
        }
    }
    if let Some(a) = raw.approval {
        if *a.get_ref() == GrantApproval::Security && !approvals.has_security() {
            d.at(a.span(), no_security("[grants] approval = \"security\""));
        }
        out.approval = a.into_inner();
    }
    out
}
