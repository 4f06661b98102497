//! `sortBy` and `sortOrder` (RFC 7644 §3.4.2.3).
//!
//! * Strings compare case-insensitively unless the attribute is `caseExact` (names the schema
//!   does not define compare case-insensitively); integers and decimals numerically; `dateTime`
//!   values chronologically (values that do not parse compare as strings); booleans
//!   `false < true`.
//! * A multi-valued attribute sorts by its `primary` value, else its first value; for a complex
//!   multi-valued attribute named without a sub-attribute (`emails`) that value's `value`
//!   sub-attribute is used, and `emails.type` uses the primary (else first) email's `type`. A
//!   single-valued complex attribute named alone (`manager`) sorts by its `value` sub-attribute.
//! * Resources lacking the attribute sort last ascending and first descending ("if there is no
//!   data for the specified sortBy value, they are sorted via the sortOrder parameter, i.e., they
//!   are ordered last if ascending and first if descending"), and the sort is stable. The store
//!   (in SQL and in memory) and the server's cross-type merge order by the same rule.
//! * An unknown `sortOrder` is [`Error::InvalidValue`]: the parameter is present but its value is
//!   not one of the two the RFC allows (invalidSyntax is reserved for malformed bodies). A
//!   `sortBy` that is not an attribute path is [`Error::InvalidPath`]; one that names no attribute
//!   simply leaves every resource "absent", so the order is unchanged.
//!
//! [`sort_key`] exposes the value a resource sorts by, for a store that orders in SQL.

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::filter::parse::parse_attr_path;
use crate::filter::AttrPath;
use crate::json::get_ci;
use crate::schema::attribute::{AttrType, AttributeDef};
use crate::schema::validate::parse_date_time;
use crate::schema::ResourceSchema;

/// RFC 7644 §3.4.2.3 `sortOrder`; ascending when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

impl SortOrder {
    /// Parses `ascending` / `descending`, case-insensitively; anything else is
    /// [`Error::InvalidValue`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.eq_ignore_ascii_case("ascending") {
            Ok(SortOrder::Ascending)
        } else if s.eq_ignore_ascii_case("descending") {
            Ok(SortOrder::Descending)
        } else {
            Err(Error::InvalidValue(
                "sortOrder must be \"ascending\" or \"descending\"".into(),
            ))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Ascending => "ascending",
            SortOrder::Descending => "descending",
        }
    }
}

impl FromStr for SortOrder {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        SortOrder::parse(s)
    }
}

/// A parsed `sortBy` + `sortOrder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortSpec {
    pub path: AttrPath,
    pub order: SortOrder,
}

impl SortSpec {
    /// Parses the query parameters: `sortBy` with the shared attribute-path parser
    /// ([`Error::InvalidPath`]) and `sortOrder` with [`SortOrder::parse`].
    pub fn parse(sort_by: &str, sort_order: Option<&str>) -> Result<Self, Error> {
        let path = parse_attr_path(sort_by.trim())?;
        let order = sort_order
            .map(|o| SortOrder::parse(o.trim()))
            .transpose()?
            .unwrap_or_default();
        Ok(SortSpec { path, order })
    }
}

/// The value a resource sorts by, already normalised for comparison: strings of attributes that
/// are not `caseExact` are lower-cased, dateTimes parsed to UTC instants.
///
/// Keys of different kinds (which only happens with inconsistent data) order
/// boolean < number < dateTime < string.
#[derive(Debug, Clone)]
pub enum SortKey {
    Boolean(bool),
    Integer(i64),
    Decimal(f64),
    DateTime(DateTime<Utc>),
    String(String),
}

impl SortKey {
    fn rank(&self) -> u8 {
        match self {
            SortKey::Boolean(_) => 0,
            SortKey::Integer(_) | SortKey::Decimal(_) => 1,
            SortKey::DateTime(_) => 2,
            SortKey::String(_) => 3,
        }
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Boolean(a), SortKey::Boolean(b)) => a.cmp(b),
            (SortKey::Integer(a), SortKey::Integer(b)) => a.cmp(b),
            (SortKey::Integer(a), SortKey::Decimal(b)) => (*a as f64).total_cmp(b),
            (SortKey::Decimal(a), SortKey::Integer(b)) => a.total_cmp(&(*b as f64)),
            (SortKey::Decimal(a), SortKey::Decimal(b)) => a.total_cmp(b),
            (SortKey::DateTime(a), SortKey::DateTime(b)) => a.cmp(b),
            (SortKey::String(a), SortKey::String(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SortKey {}

/// The key `resource` sorts by for `path`, or `None` when the resource lacks the attribute.
pub fn sort_key(
    resource: &Map<String, Value>,
    path: &AttrPath,
    schema: &ResourceSchema,
) -> Option<SortKey> {
    let urn = path.urn.as_ref().map(|u| u.as_str());
    let name = path.name.as_str();
    let (container, def) = match urn {
        Some(urn) if !schema.main.id.eq_str(urn) => {
            let ext = schema.extension(urn)?;
            (
                get_ci(resource, ext.id.as_str())?.as_object()?,
                ext.attribute(name),
            )
        }
        _ => match schema.main_attribute(name) {
            Some(def) => (resource, Some(def)),
            None => match schema.top_level(urn, name) {
                // An unqualified extension attribute.
                Some((ext, def)) if urn.is_none() => {
                    (get_ci(resource, ext.id.as_str())?.as_object()?, Some(def))
                }
                _ => (resource, None),
            },
        },
    };
    let mut value = get_ci(container, name)?;
    if let Value::Array(items) = value {
        value = items
            .iter()
            .find(|v| v.as_object().and_then(|o| get_ci(o, "primary")) == Some(&Value::Bool(true)))
            .or_else(|| items.first())?;
    }
    let (value, leaf) = match (value, &path.sub_attr) {
        (Value::Object(obj), Some(sub)) => (
            get_ci(obj, sub.as_str())?,
            def.and_then(|d| d.sub_attribute(sub.as_str())),
        ),
        (Value::Object(obj), None) => (
            get_ci(obj, "value")?,
            def.and_then(|d| d.sub_attribute("value")),
        ),
        (_, Some(_)) => return None,
        (v, None) => (v, def),
    };
    key_of(value, leaf)
}

fn key_of(value: &Value, def: Option<&AttributeDef>) -> Option<SortKey> {
    match value {
        Value::Bool(b) => Some(SortKey::Boolean(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => SortKey::Integer(i),
            None => SortKey::Decimal(n.as_f64()?),
        }),
        Value::String(s) => {
            if def.is_some_and(|d| d.attr_type == AttrType::DateTime) {
                if let Some(dt) = parse_date_time(s) {
                    return Some(SortKey::DateTime(dt));
                }
            }
            let case_exact = def.is_some_and(|d| d.case_exact);
            Some(SortKey::String(if case_exact {
                s.clone()
            } else {
                s.to_lowercase()
            }))
        }
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Orders two optional keys (RFC 7644 §3.4.2.3): ascending, present keys in order and absent
/// ones last; descending, the whole order reversed (so absent ones first).
pub fn compare_keys(a: Option<&SortKey>, b: Option<&SortKey>, order: SortOrder) -> Ordering {
    let ascending = match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.cmp(b),
    };
    match order {
        SortOrder::Ascending => ascending,
        SortOrder::Descending => ascending.reverse(),
    }
}

/// Compares two resources for `spec` (absent last ascending, first descending).
pub fn compare_resources(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    spec: &SortSpec,
    schema: &ResourceSchema,
) -> Ordering {
    compare_keys(
        sort_key(a, &spec.path, schema).as_ref(),
        sort_key(b, &spec.path, schema).as_ref(),
        spec.order,
    )
}

/// Sorts resources in place, stably, computing each key once.
pub fn sort_resources(
    resources: &mut Vec<Map<String, Value>>,
    spec: &SortSpec,
    schema: &ResourceSchema,
) {
    let mut keyed: Vec<(Option<SortKey>, Map<String, Value>)> = std::mem::take(resources)
        .into_iter()
        .map(|r| (sort_key(&r, &spec.path, schema), r))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| compare_keys(a.as_ref(), b.as_ref(), spec.order));
    resources.extend(keyed.into_iter().map(|(_, r)| r));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_order_parsing() {
        assert_eq!(SortOrder::parse("DESCENDING"), Ok(SortOrder::Descending));
        assert_eq!("ascending".parse::<SortOrder>(), Ok(SortOrder::Ascending));
        assert!(matches!(
            SortOrder::parse("up"),
            Err(Error::InvalidValue(_))
        ));
        assert_eq!(SortOrder::default(), SortOrder::Ascending);
    }

    #[test]
    fn spec_parsing() {
        let spec = SortSpec::parse("name.familyName", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.order, SortOrder::Ascending);
        assert_eq!(spec.path, AttrPath::with_sub("name", "familyName"));
        assert!(matches!(
            SortSpec::parse("name familyName", None),
            Err(Error::InvalidPath(_))
        ));
        assert!(matches!(
            SortSpec::parse("userName", Some("sideways")),
            Err(Error::InvalidValue(_))
        ));
    }

    #[test]
    fn mixed_keys_have_a_total_order() {
        assert!(SortKey::Integer(2) > SortKey::Decimal(1.5));
        assert!(SortKey::Decimal(2.5) > SortKey::Integer(2));
        assert!(SortKey::Boolean(true) < SortKey::Integer(0));
        assert!(SortKey::String("a".into()) > SortKey::Integer(9));
    }

    #[test]
    fn rfc7644_3_4_2_3_absent_last_ascending_first_descending() {
        let (one, two) = (SortKey::Integer(1), SortKey::Integer(2));
        let cmp = compare_keys;
        assert_eq!(
            cmp(None, Some(&one), SortOrder::Ascending),
            Ordering::Greater
        );
        assert_eq!(cmp(Some(&one), None, SortOrder::Ascending), Ordering::Less);
        assert_eq!(cmp(None, Some(&one), SortOrder::Descending), Ordering::Less);
        assert_eq!(
            cmp(Some(&one), None, SortOrder::Descending),
            Ordering::Greater
        );
        assert_eq!(cmp(None, None, SortOrder::Descending), Ordering::Equal);
        assert_eq!(
            cmp(Some(&one), Some(&two), SortOrder::Ascending),
            Ordering::Less
        );
        assert_eq!(
            cmp(Some(&one), Some(&two), SortOrder::Descending),
            Ordering::Greater
        );
    }
}
