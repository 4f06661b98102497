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

#[cfg(test)]
mod tests {
    use crate::policy::{CertSchedule, Policy};

    const BASE: &str = "[[connector]]\nname = \"github\"\ntype = \"memory\"\n\n\
                        [[profile]]\nname = \"eng\"\nmatch = 'department eq \"Eng\"'\n\n";

    #[test]
    fn defaults_values_and_refusals() {
        let p = Policy::parse(BASE, "t.toml").expect("policy");
        assert_eq!(p.certification.schedule, CertSchedule::Quarterly);
        assert_eq!(p.certification.due, chrono::Duration::days(14));
        let p = Policy::parse(
            &format!(
                "{BASE}[certification]\nschedule = \"monthly\"\ndue = \"21d\"\n\
                 remind = [\"2d\"]\nescalation = \"1d\"\n\
                 scopes = [\"connector=github,privileged\", \"profile=eng,department=Sales\"]\n"
            ),
            "t.toml",
        )
        .expect("policy");
        let c = &p.certification;
        assert_eq!(c.schedule, CertSchedule::Monthly);
        assert_eq!(c.remind, vec![chrono::Duration::days(2)]);
        assert_eq!(c.scopes.len(), 2);
        assert!(c.scopes[0].1.privileged);
        assert_eq!(c.scopes[1].1.departments, vec!["Sales".to_string()]);
        for (bad, says) in [
            ("schedule = \"weekly\"", "unknown schedule"),
            ("remind = [\"30d\"]", "before the due"),
            ("due = \"0s\"", "above zero"),
            ("scopes = [\"connector=nope\"]", "unknown connector"),
            ("scopes = [\"profile=nope\"]", "unknown profile"),
            ("scopes = [\"colour=blue\"]", "not a scope term"),
        ] {
            let e = Policy::parse(&format!("{BASE}[certification]\n{bad}\n"), "t.toml")
                .expect_err(bad)
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
