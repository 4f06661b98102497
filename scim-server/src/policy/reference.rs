//! The policy reference in docs/policy.md cannot drift from the loader: every key the policy
//! file accepts is read off the serde types themselves ([`crate::reflect::keys_of`] over
//! [`super::raw::RawPolicy`] and each connector type's settings struct), and the test below
//! names any key without a row in the reference, and any row naming a key the loader refuses.

use std::collections::BTreeSet;

use connectors::aws_iam::AwsIamSettings;
use connectors::github::GitHubSettings;
use connectors::ldap::{AdSettings, LdapSettings};
use connectors::memory::MemorySettings;
use connectors::okta::OktaSettings;
use connectors::scim::ScimSettings;
use connectors::slack::SlackSettings;
use connectors::webhook::WebhookSettings;
use serde::de::DeserializeOwned;

/// The keys as the reference writes them: `*` (any map key) as `<name>`; connector settings as
/// `<type>.settings.<key>` (each connector type accepts its own `settings` table).
pub(super) fn reference_keys() -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    let policy = crate::reflect::keys_of::<super::raw::RawPolicy>().map_err(|(_, e)| e)?;
    out.extend(policy.into_iter().map(|k| k.replace('*', "<name>")));
    fn settings<T: DeserializeOwned>(kind: &str, out: &mut BTreeSet<String>) -> Result<(), String> {
        let keys = crate::reflect::keys_of::<T>().map_err(|(_, e)| format!("{kind}: {e}"))?;
        out.extend(
            keys.into_iter()
                .map(|k| format!("{kind}.settings.{}", k.replace('*', "<name>"))),
        );
        Ok(())
    }
    settings::<MemorySettings>("memory", &mut out)?;
    settings::<ScimSettings>("scim", &mut out)?;
    settings::<SlackSettings>("slack", &mut out)?;
    settings::<OktaSettings>("okta", &mut out)?;
    settings::<WebhookSettings>("webhook", &mut out)?;
    settings::<AwsIamSettings>("aws_iam", &mut out)?;
    settings::<LdapSettings>("ldap", &mut out)?;
    settings::<AdSettings>("ad", &mut out)?;
    settings::<GitHubSettings>("github", &mut out)?;
    Ok(out)
}

/// The keys with a row in the reference: the first cell of each table row between the
/// `<!-- policy-keys:begin -->` and `<!-- policy-keys:end -->` markers, written `` `key` ``.
pub(super) fn documented_keys(doc: &str) -> BTreeSet<String> {
    let Some((_, rest)) = doc.split_once("<!-- policy-keys:begin -->") else {
        return BTreeSet::new();
    };
    let body = rest.split("<!-- policy-keys:end -->").next().unwrap_or("");
    body.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(k, _)| k.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = include_str!("../../../docs/policy.md");

    #[test]
    fn reflection_reaches_every_policy_key() {
        let keys = reference_keys().expect("every policy field accepts the placeholder");
        for k in [
            "settings.extensions",
            "connector[].max_attempts",
            "connector[].circuit_probe",
            "connector[].credentials.<name>",
            "profile[].grants[].approval",
            "incidents.chat[].url",
            "leaver.required",
            "sla.<name>",
            "scim.settings.base_url",
        ] {
            assert!(keys.contains(k), "{k} missing from {keys:?}");
        }
        // Spanned is transparent: no private serde names leak into the keys.
        assert!(!keys.iter().any(|k| k.contains('$')), "{keys:?}");
    }

    /// Add a row to the reference in docs/policy.md when adding a policy key; remove it when
    /// removing one.
    #[test]
    fn every_policy_key_is_documented_and_every_documented_key_exists() {
        let known = reference_keys().expect("reflection");
        let documented = documented_keys(DOC);
        let missing: Vec<&String> = known.difference(&documented).collect();
        let unknown: Vec<&String> = documented.difference(&known).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "policy keys missing from the reference in docs/policy.md: {missing:?}; \
             documented keys the loader does not accept: {unknown:?}"
        );
    }

    #[test]
    fn the_check_sees_a_removed_row_and_an_invented_one() {
        let known = reference_keys().expect("reflection");
        let without = DOC.replace("| `connector[].max_attempts` |", "| max_attempts |");
        assert!(!documented_keys(&without).contains("connector[].max_attempts"));
        assert!(known.contains("connector[].max_attempts"));
        let invented = DOC.replace(
            "<!-- policy-keys:end -->",
            "| `connector[].max_retries` | x |\n<!-- policy-keys:end -->",
        );
        assert!(documented_keys(&invented).contains("connector[].max_retries"));
        assert!(!known.contains("connector[].max_retries"));
    }
}
