//! Which downstream accounts the hub may take over and touch.
//!
//! Creating an account that already exists used to adopt it whatever it was: a SCIM client that
//! created `userName=Administrator` got the hub to rewrite the directory's Administrator, and a
//! later leaver deleted it. Connectors that adopt (LDAP/AD, AWS IAM, SCIM) now decide with
//! [`Ownership`]:
//!
//! - **Protected accounts** (names and `*`/`?` globs, case-insensitive; each connector has safe
//!   defaults plus the policy's `protected_accounts`) are never adopted, modified, disabled or
//!   deleted, whoever created them.
//! - **Managed scope** (LDAP OUs, IAM path, a SCIM filter): accounts outside it are refused.
//! - **Owner's mark**: the hub marks what it creates or adopts (an attribute, a tag, the
//!   `externalId`); an account carrying another owner's mark is refused.
//! - **`adopt`**: `never` refuses every pre-existing account that does not carry this hub's mark,
//!   `unowned` (default) adopts in-scope accounts without another owner's mark, `always` adopts
//!   anything in scope.
//!
//! GitHub, Okta and Slack have no mark the hub could write: they use the protected names and the
//! `adopt` choice from here and protect privileged accounts by what the system says about them
//! (GitHub org owners, Okta admin roles, Slack owners and admins).
//!
//! Refusals are [`ConnectorError::refused`] errors: the worker parks the operation at once and
//! raises an incident with the reason.

use serde::Deserialize;

use crate::error::ConnectorError;

/// Whether `create_or_adopt` may take over an account that already exists (`adopt` in the
/// policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adopt {
    /// Only accounts carrying this hub's mark (its own, e.g. after a crash between create and
    /// record).
    Never,
    /// In-scope accounts with no other owner's mark; they get this hub's mark.
    #[default]
    Unowned,
    /// Any in-scope account, whatever its mark; it gets this hub's mark.
    Always,
}

/// The default owner id in marks (`scimhub:<owner_id>`); hubs sharing a directory set their own.
pub const DEFAULT_OWNER_ID: &str = "default";

pub fn default_owner_id() -> String {
    DEFAULT_OWNER_ID.into()
}

/// What an existing account says about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// No owner's mark.
    None,
    /// This hub's mark.
    Ours,
    /// Someone else's mark (as found).
    Other(String),
}

/// Names and glob patterns (`*` any run, `?` one character), matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patterns(Vec<String>);

impl Patterns {
    pub fn new<I, S>(defaults: I, extra: &[String]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = defaults
            .into_iter()
            .map(|s| s.into().to_lowercase())
            .collect();
        v.extend(extra.iter().map(|s| s.to_lowercase()));
        Patterns(v)
    }

    /// The first pattern `name` matches.
    pub fn matching(&self, name: &str) -> Option<&str> {
        let name = name.to_lowercase();
        self.0
            .iter()
            .find(|p| glob(p.as_bytes(), name.as_bytes()))
            .map(String::as_str)
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // iterative wildcard match with one backtrack point (linear enough for short names)
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// One connector's adoption rules: protected names, the `adopt` choice and its name for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub connector: String,
    pub adopt: Adopt,
    pub protected: Patterns,
    /// The mark value this hub writes: `scimhub:<owner_id>`.
    pub mark: String,
}

impl Ownership {
    pub fn new(
        connector: &str,
        adopt: Adopt,
        default_protected: &[&str],
        extra_protected: &[String],
        owner_id: &str,
    ) -> Self {
        Ownership {
            connector: connector.to_owned(),
            adopt,
            protected: Patterns::new(default_protected.iter().copied(), extra_protected),
            mark: format!("scimhub:{owner_id}"),
        }
    }

    /// Why a listed account named `name` is left alone (protected, or outside the managed
    /// scope), for reconciliation.
    pub fn excluded(&self, name: &str, in_scope: bool) -> Option<String> {
        if let Some(p) = self.protected.matching(name) {
            return Some(format!("{name:?} is protected (matches {p:?})"));
        }
        (!in_scope).then(|| format!("{name:?} is outside the managed scope"))
    }

    /// Refuses any operation on a protected account (or group) named `name`.
    pub fn check_not_protected(&self, what: &str, name: &str) -> Result<(), ConnectorError> {
        match self.protected.matching(name) {
            Some(p) => Err(ConnectorError::refused(
                &self.connector,
                format!("{what} {name:?} is protected (matches {p:?}); the hub never touches it"),
            )),
            None => Ok(()),
        }
    }

    /// The mark an account carries, given the mark values found on it.
    pub fn mark_of<'a>(&self, found: impl IntoIterator<Item = &'a str>) -> Mark {
        let mut other = None;
        for v in found {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if v == self.mark {
                return Mark::Ours;
            }
            other.get_or_insert_with(|| v.to_owned());
        }
        other.map_or(Mark::None, Mark::Other)
    }

    /// Whether an existing account `name` may be adopted; `Ok(true)` when it must be marked.
    pub fn may_adopt(
        &self,
        name: &str,
        in_scope: bool,
        mark: &Mark,
    ) -> Result<bool, ConnectorError> {
        self.check_not_protected("account", name)?;
        let refuse = |why: String| Err(ConnectorError::refused(&self.connector, why));
        if !in_scope {
            return refuse(format!(
                "account {name:?} exists outside the scope this hub manages; not adopted"
            ));
        }
        match (self.adopt, mark) {
            (_, Mark::Ours) => Ok(false),
            (Adopt::Never, _) => refuse(format!(
                "account {name:?} already exists and adopt = \"never\"; not adopted"
            )),
            (Adopt::Unowned, Mark::Other(m)) => refuse(format!(
                "account {name:?} already exists and carries another owner's mark {m:?}; not adopted"
            )),
            (Adopt::Unowned, Mark::None) | (Adopt::Always, _) => Ok(true),
        }
    }

    /// Refuses to modify an existing account outside the scope or marked by another owner
    /// (update, enable/disable, delete, grant, revoke). Accounts without a mark pass: the hub may
    /// have adopted them before marks existed.
    pub fn may_manage(
        &self,
        name: &str,
        in_scope: bool,
        mark: &Mark,
    ) -> Result<(), ConnectorError> {
        self.check_not_protected("account", name)?;
        if !in_scope {
            return Err(ConnectorError::refused(
                &self.connector,
                format!("account {name:?} is outside the scope this hub manages"),
            ));
        }
        if let (Mark::Other(m), false) = (mark, self.adopt == Adopt::Always) {
            return Err(ConnectorError::refused(
                &self.connector,
                format!("account {name:?} carries another owner's mark {m:?}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn globs_match_case_insensitively() {
        let p = Patterns::new(["Administrator", "svc-*"], &["break?glass".into()]);
        assert_eq!(p.matching("ADMINISTRATOR"), Some("administrator"));
        assert_eq!(p.matching("svc-backup"), Some("svc-*"));
        assert_eq!(p.matching("SVC-"), Some("svc-*"));
        assert_eq!(p.matching("break-glass"), Some("break?glass"));
        assert_eq!(p.matching("administrators"), None);
        assert_eq!(p.matching("jdoe"), None);
        assert!(glob(b"*a*b", b"xxaxxb"));
        assert!(!glob(b"*a*b", b"xxaxxbc"));
    }

    #[test]
    fn adoption_follows_scope_mark_and_choice() {
        let o = |adopt| Ownership::new("c", adopt, &["root"], &[], "hub1");
        let other = Mark::Other("scimhub:hub2".into());
        let refused = |r: Result<bool, ConnectorError>| r.unwrap_err().kind == ErrorKind::Refused;
        for adopt in [Adopt::Never, Adopt::Unowned, Adopt::Always] {
            assert!(refused(o(adopt).may_adopt("ROOT", true, &Mark::Ours)));
            assert!(refused(o(adopt).may_adopt("x", false, &Mark::None)));
            assert!(!o(adopt).may_adopt("x", true, &Mark::Ours).unwrap());
        }
        assert!(refused(o(Adopt::Never).may_adopt("x", true, &Mark::None)));
        assert!(refused(o(Adopt::Unowned).may_adopt("x", true, &other)));
        assert!(o(Adopt::Unowned).may_adopt("x", true, &Mark::None).unwrap());
        assert!(o(Adopt::Always).may_adopt("x", true, &other).unwrap());
        assert_eq!(o(Adopt::Never).mark_of(["", "scimhub:hub1"]), Mark::Ours);
        assert_eq!(o(Adopt::Never).mark_of(["  "]), Mark::None);
        assert_eq!(o(Adopt::Never).mark_of(["x"]), Mark::Other("x".into()));
        assert!(o(Adopt::Unowned).may_manage("x", true, &other).is_err());
        assert!(o(Adopt::Unowned).may_manage("x", true, &Mark::None).is_ok());
    }
}
