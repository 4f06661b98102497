//! The filter syntax tree.

use crate::name::CiString;

/// An attribute path (RFC 7644 §3.10 / §3.4.2.2 `attrPath`): `[URI ":"] ATTRNAME ["." subAttr]`.
///
/// `urn` is the schema URN when the path was written fully qualified
/// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value` has
/// `urn = Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")`, `name = "manager"`,
/// `sub_attr = Some("value")`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    pub urn: Option<CiString>,
    pub name: CiString,
    pub sub_attr: Option<CiString>,
}

impl AttrPath {
    /// A path with no URN and no sub-attribute.
    pub fn simple(name: &str) -> Self {
        AttrPath {
            urn: None,
            name: CiString::from(name),
            sub_attr: None,
        }
    }

    /// Whether the whole path, read as one string, is the schema URN `urn` (case-insensitively).
    ///
    /// The grammar cannot tell a bare schema URN from a URN-qualified attribute: the last
    /// `:`-separated part of `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User` parses
    /// as the attribute name `User` under the prefix `…:2.0`. PATCH paths and `attributes` lists
    /// may name a whole extension that way; this is how they recognise it.
    pub fn names_schema(&self, urn: &str) -> bool {
        let (Some(prefix), None) = (&self.urn, &self.sub_attr) else {
            return false;
        };
        let (prefix, name) = (prefix.as_str(), self.name.as_str());
        urn.len() == prefix.len() + 1 + name.len()
            && urn
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            && urn.as_bytes().get(prefix.len()) == Some(&b':')
            && urn
                .get(prefix.len() + 1..)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }

    /// A path with a sub-attribute (`name.givenName`).
    pub fn with_sub(name: &str, sub: &str) -> Self {
        AttrPath {
            urn: None,
            name: CiString::from(name),
            sub_attr: Some(CiString::from(sub)),
        }
    }
}

/// Comparison operators of RFC 7644 §3.4.2.2 Table 3 (matched case-insensitively when parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

/// A comparison literal (RFC 7644 §3.4.2.2 `compValue`). dateTime values are strings in the
/// grammar; they are compared as instants when the attribute's type is dateTime.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    /// JSON number as written (integer or decimal, possibly negative or with an exponent).
    Number(serde_json::Number),
    Str(String),
}

/// A filter expression. `And`/`Or` are binary; precedence (not > and > or) and grouping are
/// resolved by the parser, so the tree is unambiguous.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath compareOp compValue`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath pr`
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `not (filter)`
    Not(Box<Filter>),
    /// `attrPath "[" valFilter "]"`, e.g. `emails[type eq "work" and value co "@example.com"]`.
    /// `path.sub_attr` is `None`; paths inside `filter` are relative to the multi-valued attribute.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

impl Filter {
    /// `a or b or …` over `clauses`, `None` when there are none. The tree is balanced, so its
    /// depth is log2 of the number of clauses: a filter built from a client's list (Entra's
    /// remove-with-values, a connector's batch of ids) cannot grow deep enough for the recursive
    /// evaluator, printer or `Drop` to exhaust the stack. Parsing its printed form gives a
    /// differently shaped tree with the same meaning.
    pub fn any_of(clauses: Vec<Filter>) -> Option<Filter> {
        balanced(clauses, |a, b| Filter::Or(Box::new(a), Box::new(b)))
    }

    /// `a and b and …` over `clauses`, balanced like [`Filter::any_of`].
    pub fn all_of(clauses: Vec<Filter>) -> Option<Filter> {
        balanced(clauses, |a, b| Filter::And(Box::new(a), Box::new(b)))
    }
}

fn balanced(mut level: Vec<Filter>, join: fn(Filter, Filter) -> Filter) -> Option<Filter> {
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut it = level.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => join(a, b),
                None => a,
            });
        }
        level = next;
    }
    level.pop()
}

/// A PATCH operation path (RFC 7644 §3.5.2 `PATH = attrPath / valuePath [subAttr]`).
///
/// * `name.givenName` → `attr = name.givenName`, no filter.
/// * `emails[type eq "work"].value` → `attr = emails`, `value_filter = type eq "work"`,
///   `sub_attr = value`.
/// * `members[value eq "2819c223"]` → `attr = members`, `value_filter = ...`, no sub_attr.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub value_filter: Option<Filter>,
    /// Only used together with `value_filter`; without a filter the sub-attribute is in `attr`.
    pub sub_attr: Option<CiString>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::filter::parse::parse_attr_path;

    #[test]
    fn names_schema_matches_a_bare_urn_only() {
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let p = parse_attr_path(&ent.to_uppercase()).unwrap();
        assert!(p.names_schema(ent));
        assert!(!p.names_schema("urn:ietf:params:scim:schemas:core:2.0:User"));
        assert!(!parse_attr_path(&format!("{ent}:manager"))
            .unwrap()
            .names_schema(ent));
        assert!(!AttrPath::simple("User").names_schema(ent));
        // A schema id with a multi-byte character where the ':' should be: no panic.
        let p = parse_attr_path("urn:x:ab").unwrap();
        assert!(!p.names_schema("urn:xéb"));
    }

    #[test]
    fn any_of_is_balanced() {
        fn depth(f: &Filter) -> usize {
            match f {
                Filter::Or(a, b) | Filter::And(a, b) => 1 + depth(a).max(depth(b)),
                _ => 1,
            }
        }
        let leaves = |n| (0..n).map(|i| Filter::Present(AttrPath::simple(&format!("a{i}"))));
        assert_eq!(Filter::any_of(Vec::new()), None);
        assert_eq!(
            Filter::any_of(leaves(1).collect()),
            Some(Filter::Present(AttrPath::simple("a0")))
        );
        assert_eq!(depth(&Filter::any_of(leaves(1000).collect()).unwrap()), 11);
        assert!(matches!(
            Filter::all_of(leaves(3).collect()),
            Some(Filter::And(..))
        ));
    }
}
