//! Case-insensitive names.
//!
//! RFC 7643 §2.1: attribute names and schema URIs are case-insensitive. Rather than remembering to
//! fold at every comparison, names are held in [`CiString`], whose equality, ordering and hashing
//! ignore ASCII case while the original spelling is kept for output. Attribute names are ASCII
//! (RFC 7643 §2.1 ATTRNAME), so ASCII folding is exact for them; URNs fold the same way.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Case-insensitive equality of two names.
pub fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// An owned name compared without regard to ASCII case; displays its original spelling.
#[derive(Clone, Default)]
pub struct CiString(String);

impl CiString {
    pub fn new(s: impl Into<String>) -> Self {
        CiString(s.into())
    }

    /// The original spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Case-insensitive equality with a plain string.
    pub fn eq_str(&self, other: &str) -> bool {
        eq_ci(&self.0, other)
    }

    /// Whether `self` starts with `prefix`, ignoring case (used for URN-qualified attribute paths).
    pub fn starts_with_ci(&self, prefix: &str) -> bool {
        self.0.len() >= prefix.len()
            && self.0.is_char_boundary(prefix.len())
            && eq_ci(&self.0[..prefix.len()], prefix)
    }
}

impl PartialEq for CiString {
    fn eq(&self, other: &Self) -> bool {
        eq_ci(&self.0, &other.0)
    }
}
impl Eq for CiString {}

impl PartialEq<str> for CiString {
    fn eq(&self, other: &str) -> bool {
        eq_ci(&self.0, other)
    }
}
impl PartialEq<&str> for CiString {
    fn eq(&self, other: &&str) -> bool {
        eq_ci(&self.0, other)
    }
}

impl Hash for CiString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl Ord for CiString {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = self.0.bytes().map(|b| b.to_ascii_lowercase());
        let b = other.0.bytes().map(|b| b.to_ascii_lowercase());
        a.cmp(b)
    }
}
impl PartialOrd for CiString {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for CiString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl fmt::Display for CiString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CiString {
    fn from(s: &str) -> Self {
        CiString(s.to_owned())
    }
}
impl From<String> for CiString {
    fn from(s: String) -> Self {
        CiString(s)
    }
}

impl AsRef<str> for CiString {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for CiString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for CiString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(CiString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rfc7643_2_1_names_are_case_insensitive() {
        assert_eq!(CiString::from("userName"), CiString::from("USERNAME"));
        assert_ne!(CiString::from("userName"), CiString::from("userNam"));
        let set: HashSet<CiString> = ["emails", "EMAILS", "Emails"]
            .into_iter()
            .map(CiString::from)
            .collect();
        assert_eq!(set.len(), 1);
        assert_eq!(CiString::from("name").to_string(), "name");
    }

    #[test]
    fn ordering_ignores_case() {
        let mut v: Vec<CiString> = ["b", "A", "a", "C"]
            .into_iter()
            .map(CiString::from)
            .collect();
        v.sort();
        assert_eq!(
            v.iter().map(CiString::as_str).collect::<Vec<_>>(),
            ["A", "a", "b", "C"]
        );
    }

    #[test]
    fn urn_prefix() {
        let n = CiString::from("URN:ietf:params:scim:schemas:core:2.0:User:userName");
        assert!(n.starts_with_ci("urn:ietf:params:scim:schemas:core:2.0:user"));
        assert!(!n.starts_with_ci("urn:ietf:params:scim:schemas:core:2.0:Group"));
    }
}
