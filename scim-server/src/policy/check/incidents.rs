//! `[incidents]`: the re-notification ladder of open, unacknowledged incidents.

use crate::policy::diagnostics::Diags;
use crate::policy::model::{ChatChannel, ChatFormat, IncidentSettings};
use crate::policy::raw::RawIncidents;

use super::duration_at;

pub(super) fn check(raw: RawIncidents, d: &mut Diags<'_>) -> IncidentSettings {
    let mut out = IncidentSettings::default();
    for ch in raw.chat {
        let span = ch.span();
        let ch = ch.into_inner();
        let name = ch.name.get_ref().trim().to_string();
        if name.is_empty() {
            d.at(ch.name.span(), "a chat channel needs a name");
            continue;
        }
        if out.chat.iter().any(|c| c.name == name) {
            d.at(
                ch.name.span(),
                format!("chat channel {name:?} is listed twice"),
            );
            continue;
        }
        let Some(format) = ChatFormat::parse(ch.format.get_ref()) else {
            d.at(
                ch.format.span(),
                format!(
                    "unknown chat format {:?} (one of {})",
                    ch.format.get_ref(),
                    ChatFormat::NAMES.join(", ")
                ),
            );
            continue;
        };
        match (format, &ch.secret) {
            (ChatFormat::Json, None) => {
                // An unsigned payload could be forged by anyone who learns the URL.
                d.at(span, "a json chat channel needs a signing `secret`");
                continue;
            }
            (ChatFormat::Slack | ChatFormat::Teams, Some(_)) => {
                d.at(
                    ch.format.span(),
                    "only json chat channels are signed: remove `secret` (the url is the credential)",
                );
                continue;
            }
            _ => {}
        }
        out.chat.push(ChatChannel {
            name,
            format,
            url: ch.url,
            secret: ch.secret,
        });
    }
    if let Some(steps) = raw.renotify {
        if steps.get_ref().is_empty() {
            // An empty ladder would mean "never again", which hides incidents.
            d.at(steps.span(), "renotify needs at least one delay");
            return out;
        }
        let mut ladder = Vec::new();
        for s in steps.get_ref() {
            match duration_at(d, s) {
                Some(dur) if dur > chrono::Duration::zero() => ladder.push(dur),
                Some(_) => d.at(s.span(), "a renotify delay must be above zero"),
                None => {}
            }
        }
        if !ladder.is_empty() {
            out.renotify = ladder;
        }
    }
    out
}
