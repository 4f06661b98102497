//! `[blast_radius]`: the share of users that may be deprovisioned within a window before the
//! engine holds further removals.

use crate::policy::diagnostics::Diags;
use crate::policy::model::BlastRadius;
use crate::policy::raw::RawBlast;

use super::duration_at;

/// `None` when the window is not a duration (reported).
pub(super) fn check(b: RawBlast, d: &mut Diags<'_>) -> Option<BlastRadius> {
    let share = *b.max_share.get_ref();
    if !(share > 0.0 && share <= 1.0) {
        d.at(b.max_share.span(), "max_share must be in (0, 1]");
    }
    let window = duration_at(d, &b.window)?;
    Some(BlastRadius {
        max_share: share,
        window,
        min_population: b.min_population,
    })
}
