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
