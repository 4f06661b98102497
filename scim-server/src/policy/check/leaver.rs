//! `[leaver]`: which deprovisioning steps are required (a connector that cannot take one raises
//! an incident instead of skipping it quietly).

use crate::policy::diagnostics::Diags;
use crate::policy::model::{LeaverRules, LEAVER_STEPS};
use crate::policy::raw::RawLeaver;

pub(super) fn check(raw: &RawLeaver, d: &mut Diags<'_>) -> LeaverRules {
    let mut required: Vec<String> = Vec::new();
    for step in &raw.required {
        let name = step.get_ref().as_str();
        if !LEAVER_STEPS.contains(&name) {
            d.at(
                step.span(),
                format!(
                    "leaver.required: unknown step {name:?} (one of {})",
                    LEAVER_STEPS.join(", ")
                ),
            );
        } else if required.iter().any(|r| r == name) {
            d.at(
                step.span(),
                format!("leaver.required: {name:?} is listed twice"),
            );
        } else {
            required.push(name.to_string());
        }
    }
    LeaverRules { required }
}
