//! `[verification]`: how long after a plan the systems are read back, and after which events.

use chrono::Duration;

use crate::policy::diagnostics::Diags;
use crate::policy::model::{Verification, EVENT_TYPES};
use crate::policy::raw::{RawVerification, S};

use super::duration_at;

pub(super) fn check(raw: RawVerification, d: &mut Diags<'_>) -> Verification {
    let mut out = Verification::default();
    if let Some(v) = &raw.delay {
        if let Some(delay) = positive(d, v) {
            out.delay = delay;
        }
    }
    if let Some(after) = raw.after {
        out.after.clear();
        for e in after {
            let name = e.get_ref();
            if !EVENT_TYPES.contains(&name.as_str()) {
                d.at(
                    e.span(),
                    format!(
                        "unknown event type {name:?} (one of {})",
                        EVENT_TYPES.join(", ")
                    ),
                );
            } else if out.after.contains(name) {
                d.at(e.span(), format!("{name:?} is listed twice"));
            } else {
                out.after.push(name.clone());
            }
        }
    }
    out
}

/// A verification delay: a duration above zero (reading back at once would race the change).
pub(super) fn positive(d: &mut Diags<'_>, v: &S<String>) -> Option<Duration> {
    let dur = duration_at(d, v)?;
    if dur <= Duration::zero() {
        d.at(v.span(), "a verification delay must be above zero");
        return None;
    }
    Some(dur)
}
