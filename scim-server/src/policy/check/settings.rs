//! `[settings]`: the declared extensions and the attributes that carry start and end dates,
//! employment status and the contractor's sponsor.

use crate::policy::attrs::AttrChecker;
use crate::policy::diagnostics::Diags;
use crate::policy::model::Settings;
use crate::policy::raw::{RawSettings, S};

/// The extension URNs as written (the attribute checker accepts their attributes).
pub(super) fn declared_extensions(raw: &RawSettings) -> Vec<String> {
    raw.extensions.iter().map(|e| e.get_ref().clone()).collect()
}

pub(super) fn check(raw: RawSettings, attrs: &AttrChecker, d: &mut Diags<'_>) -> Settings {
    let extensions = declared_extensions(&raw);
    for e in &raw.extensions {
        if !e.get_ref().starts_with("urn:") {
            d.at(
                e.span(),
                format!("extension {:?} is not a URN", e.get_ref()),
            );
        }
    }
    Settings {
        start_date_attribute: attribute(
            attrs,
            d,
            &raw.start_date_attribute,
            "start_date_attribute",
        ),
        end_date_attribute: attribute(attrs, d, &raw.end_date_attribute, "end_date_attribute"),
        status_attribute: attribute(attrs, d, &raw.status_attribute, "status_attribute"),
        sponsor_attribute: attribute(attrs, d, &raw.sponsor_attribute, "sponsor_attribute"),
        terminated_values: if raw.terminated_values.is_empty() {
            vec!["terminated".into()]
        } else {
            raw.terminated_values
        },
        extensions,
    }
}

/// An optional setting naming a User attribute: kept as written, reported when unknown.
fn attribute(
    attrs: &AttrChecker,
    d: &mut Diags<'_>,
    setting: &Option<S<String>>,
    what: &str,
) -> Option<String> {
    let s = setting.as_ref()?;
    if let Some(msg) = attrs.check_text(s.get_ref()) {
        d.at(s.span(), format!("{what}: {msg}"));
    }
    Some(s.get_ref().clone())
}
