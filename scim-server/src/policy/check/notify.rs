//! `[notify]`: the mail relay, sender and recipients, approver addresses per level, the
//! one-click links in mails, and the bulk onboarding confirmation's leads.

use crate::policy::diagnostics::Diags;
use crate::policy::model::NotifySettings;
use crate::policy::raw::RawNotify;

use super::duration_at;

/// The approval levels `[notify.approvers]` may list addresses for.
const LEVELS: &[&str] = &["manager", "owner", "security"];

pub(super) fn check(raw: RawNotify, d: &mut Diags<'_>) -> NotifySettings {
    for level in raw.approvers.keys() {
        if !LEVELS.contains(&level.as_str()) {
            // The keys of a table carry no span here: the report points at the top of the file.
            d.at(0..0, format!("[notify.approvers]: unknown level {level:?}"));
        }
    }
    let link_ttl = raw
        .link_ttl
        .as_ref()
        .and_then(|t| duration_at(d, t))
        .unwrap_or_else(NotifySettings::default_link_ttl);
    let onboarding_window = raw
        .onboarding_window
        .as_ref()
        .and_then(|t| duration_at(d, t))
        .unwrap_or_else(NotifySettings::default_onboarding_window);
    NotifySettings {
        smtp_url: raw.smtp_url,
        from: raw
            .from
            .unwrap_or_else(|| NotifySettings::DEFAULT_FROM.into()),
        security: raw.security,
        helpdesk: raw.helpdesk,
        approvers: raw.approvers,
        link_base_url: raw.link_base_url,
        link_secret: raw.link_secret,
        link_ttl,
        hr_leads: raw.hr_leads,
        it_leads: raw.it_leads,
        onboarding_window,
        onboarding_min_joiners: raw
            .onboarding_min_joiners
            .unwrap_or(NotifySettings::DEFAULT_ONBOARDING_MIN_JOINERS),
    }
}
