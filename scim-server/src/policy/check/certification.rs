//! `[certification]`: when scheduled campaigns are created and what they cover, how long
//! reviewers have, the reminders and the escalation ladder's time per level.

use chrono::Duration;

use crate::policy::diagnostics::Diags;
use crate::policy::model::{CertSchedule, CertScope, CertificationSettings, Policy};
use crate::policy::raw::RawCertification;

use super::duration_at;

pub(super) fn check(
    raw: RawCertification,
    policy: &Policy,
    d: &mut Diags<'_>,
) -> CertificationSettings {
    let mut out = CertificationSettings::default();
    if let Some(v) = &raw.schedule {
        match CertSchedule::parse(v.get_ref()) {
            Some(s) => out.schedule = s,
            None => d.at(
                v.span(),
                format!(
                    "unknown schedule {:?} (one of {})",
                    v.get_ref(),
                    CertSchedule::NAMES.join(", ")
                ),
            ),
        }
    }
    let positive = |d: &mut Diags<'_>, v: &crate::policy::raw::S<String>, what: &str| {
        let dur = duration_at(d, v)?;
        if dur <= Duration::zero() {
            d.at(v.span(), format!("{what} must be above zero"));
            return None;
        }
        Some(dur)
    };
    if let Some(v) = &raw.due {
        if let Some(dur) = positive(d, v, "due") {
            out.due = dur;
        }
    }
    if let Some(v) = &raw.escalation {
        if let Some(dur) = positive(d, v, "escalation") {
            out.escalation = dur;
        }
    }
    if let Some(list) = &raw.remind {
        out.remind.clear();
        for v in list {
            if let Some(dur) = positive(d, v, "a reminder") {
                if dur >= out.due {
                    d.at(
                        v.span(),
                        "a reminder must come before the due (below `due`)",
                    );
                } else {
                    out.remind.push(dur);
                }
            }
        }
    }
    if let Some(list) = raw.scopes {
        for v in list {
            match CertScope::parse(v.get_ref(), policy) {
                Ok(s) => out.scopes.push((v.get_ref().clone(), s)),
                Err(e) => d.at(v.span(), format!("scope {:?}: {e}", v.get_ref())),
            }
        }
    }
    out
}
