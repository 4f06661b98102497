//! `[drift]` and each connector's `reconcile` and `drift` keys: what a reconcile run does about
//! each finding kind, which kinds raise incidents, how long a kept finding stays an exception.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::policy::diagnostics::Diags;
use crate::policy::model::{DriftAction, DriftSettings, DRIFT_KINDS};
use crate::policy::raw::{RawDrift, RawDriftActions, S};

use super::duration_at;

pub(super) fn check(raw: RawDrift, d: &mut Diags<'_>) -> DriftSettings {
    let mut out = DriftSettings {
        actions: actions(
            d,
            &RawDriftActions {
                orphan: raw.orphan,
                departed: raw.departed,
                entitlement_outside: raw.entitlement_outside,
                missing_account: raw.missing_account,
                missing_entitlement: raw.missing_entitlement,
                attribute_drift: raw.attribute_drift,
            },
        ),
        ..DriftSettings::default()
    };
    if let Some(list) = raw.incidents {
        out.incidents.clear();
        for k in list {
            let name = k.get_ref();
            if !DRIFT_KINDS.contains(&name.as_str()) {
                d.at(
                    k.span(),
                    format!(
                        "unknown drift finding kind {name:?} (one of {})",
                        DRIFT_KINDS.join(", ")
                    ),
                );
            } else if out.incidents.contains(name) {
                d.at(k.span(), format!("{name:?} is listed twice"));
            } else {
                out.incidents.push(name.clone());
            }
        }
    }
    if let Some(v) = &raw.review_expiry {
        if let Some(dur) = duration_at(d, v) {
            if dur <= Duration::zero() {
                d.at(v.span(), "review_expiry must be above zero");
            } else {
                out.review_expiry = dur;
            }
        }
    }
    out
}

/// The actions a `drift` table (a connector's, or `[drift]`) names, by kind.
pub(super) fn actions(d: &mut Diags<'_>, raw: &RawDriftActions) -> BTreeMap<String, DriftAction> {
    let mut out = BTreeMap::new();
    for (kind, v) in [
        ("orphan", &raw.orphan),
        ("departed", &raw.departed),
        ("entitlement_outside", &raw.entitlement_outside),
        ("missing_account", &raw.missing_account),
        ("missing_entitlement", &raw.missing_entitlement),
        ("attribute_drift", &raw.attribute_drift),
    ] {
        let Some(v) = v else { continue };
        match DriftAction::parse(v.get_ref()) {
            Some(a) => {
                out.insert(kind.to_string(), a);
            }
            None => d.at(
                v.span(),
                format!(
                    "{kind}: unknown drift action {:?} (one of {})",
                    v.get_ref(),
                    DriftAction::NAMES.join(", ")
                ),
            ),
        }
    }
    out
}

/// A connector's `reconcile` schedule: at least a minute (each run lists every account).
pub(super) fn interval(d: &mut Diags<'_>, v: &S<String>) -> Option<Duration> {
    let dur = duration_at(d, v)?;
    if dur < Duration::minutes(1) {
        d.at(v.span(), "reconcile must be at least 1m");
        return None;
    }
    Some(dur)
}
