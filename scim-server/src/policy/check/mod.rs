//! Checking a policy: [`Policy::parse`] reads the TOML into its raw form (`raw.rs`) and [`check`]
//! turns it into a [`Policy`], one section at a time, each in its own file here. Every problem is
//! reported with its position (nothing stops at the first one); the sections are checked in the
//! order below because later ones look at earlier results (grants at the connectors and the
//! security approvers, the contractor rules at the profiles, ...).

mod approvals;
mod blast_radius;
mod certification;
mod connectors;
mod contractor;
mod drift;
mod grants;
mod incidents;
mod leaver;
mod notify;
mod profiles;
mod settings;
mod sla;
mod sod;
mod sources;
mod verification;

use chrono::Duration;

use super::attrs::AttrChecker;
use super::diagnostics::{line_col, Diagnostic, Diags, PolicyError};
use super::duration::parse_duration;
use super::model::Policy;
use super::raw::{RawPolicy, S};

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        super::reload::read_policy(path).map(|(policy, _sha256)| policy)
    }

    /// Parses and checks policy text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Policy, PolicyError> {
        let fail = |diagnostics: Vec<Diagnostic>| PolicyError {
            source: source.to_string(),
            diagnostics,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            fail(vec![Diagnostic {
                line,
                column,
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut d = Diags::new(text);
        let policy = check(raw, &mut d, source);
        if d.is_empty() {
            Ok(policy)
        } else {
            Err(fail(d.into_sorted()))
        }
    }
}

/// Checks every section in turn and assembles the policy (meaningful only when `d` stays empty).
fn check(raw: RawPolicy, d: &mut Diags<'_>, source: &str) -> Policy {
    // The attribute checker first: settings, connectors, profiles and sources name attributes.
    let attrs = AttrChecker::new(&settings::declared_extensions(&raw.settings));
    let settings = settings::check(raw.settings, &attrs, d);
    // Grants and SoD rules that need security approvers are checked against these.
    let mut approvals = approvals::check(&raw.approvals, d);
    (approvals.manager_path, approvals.sponsor_path) =
        approvals::authority_paths(&attrs, &settings);
    let connectors = connectors::check(raw.connectors, &attrs, d);
    let profiles = profiles::check(raw.profiles, &attrs, &connectors, &approvals, d);
    let contractor = raw.contractor.and_then(|c| {
        contractor::check(c, &attrs, &profiles, &connectors, &settings, &approvals, d)
    });
    let sod = sod::check(raw.sod, &connectors, &approvals, d);
    let sla = sla::check(&raw.sla, d);
    let leaver = leaver::check(&raw.leaver, d);
    let blast_radius = raw.blast_radius.and_then(|b| blast_radius::check(b, d));
    let sources = sources::check(raw.sources, &attrs, d);
    let notify = notify::check(raw.notify, d);
    let verification = verification::check(raw.verification, d);
    let incidents = incidents::check(raw.incidents, d);
    let drift = drift::check(raw.drift, d);
    let grants = grants::check(raw.grants, &approvals, d);
    let mut policy = Policy {
        source: source.to_string(),
        settings,
        connectors: connectors.defs,
        profiles,
        contractor,
        sod,
        sla,
        leaver,
        blast_radius,
        sources,
        approvals,
        notify,
        verification,
        incidents,
        drift,
        grants,
        certification: Default::default(),
    };
    // Scopes name connectors and profiles: checked against the rest of the policy.
    policy.certification = certification::check(raw.certification, &policy, d);
    policy
}

/// Checks a list of userNames (owners, approvers): none blank, none twice.
fn check_user_names(d: &mut Diags<'_>, names: &[S<String>], what: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let name = n.get_ref().trim();
        if name.is_empty() {
            d.at(n.span(), format!("{what}: a userName cannot be empty"));
        } else if out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            d.at(n.span(), format!("{what}: {name:?} is listed twice"));
        } else {
            out.push(name.to_string());
        }
    }
    out
}

/// Parses a duration, reporting it where it is written when it is not one.
fn duration_at(d: &mut Diags<'_>, s: &S<String>) -> Option<Duration> {
    match parse_duration(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            d.at(s.span(), e);
            None
        }
    }
}
