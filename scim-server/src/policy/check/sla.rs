//! `[sla]`: how long each kind of event may take, per event type.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::policy::diagnostics::Diags;
use crate::policy::model::EVENT_TYPES;
use crate::policy::raw::S;

use super::duration_at;

pub(super) fn check(
    raw: &BTreeMap<String, S<String>>,
    d: &mut Diags<'_>,
) -> BTreeMap<String, Duration> {
    let mut sla = BTreeMap::new();
    for (event, v) in raw {
        if !EVENT_TYPES.contains(&event.as_str()) {
            d.at(
                v.span(),
                format!(
                    "unknown event type {event:?} (one of {})",
                    EVENT_TYPES.join(", ")
                ),
            );
        }
        if let Some(dur) = duration_at(d, v) {
            sla.insert(event.clone(), dur);
        }
    }
    sla
}
