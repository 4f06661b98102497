//! Query parameters of list, search and read requests (RFC 7644 §3.4.2, §3.4.3, §3.9; RFC 9865).
//!
//! The same [`ListParams`] comes from a GET query string or a POST `/.search` body, so both
//! paths validate identically.

use serde_json::Value;

use scim_schema::dialect::{check_request_message, Dialect};
use scim_schema::filter::AttrPath;
use scim_schema::message::SEARCH_REQUEST;
use scim_schema::projection::parse_attribute_list;
use scim_schema::Error;

/// The members of a SearchRequest (RFC 7644 §3.4.3; `cursor` from RFC 9865 §2).
const SEARCH_MEMBERS: &[&str] = &[
    "attributes",
    "excludedAttributes",
    "filter",
    "sortBy",
    "sortOrder",
    "startIndex",
    "count",
    "cursor",
];

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.9), parsed with
/// [`scim_schema::projection::parse_attribute_list`] and applied by
/// [`scim_schema::projection::project`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    /// Whether top-level attribute `name` (e.g. "members") is left out of the response, so need
    /// not be loaded: `attributes` is given and names neither it nor one of its sub-attributes,
    /// or `excludedAttributes` names it whole.
    pub fn excludes(&self, name: &str) -> bool {
        if !self.attributes.is_empty() {
            !self.attributes.iter().any(|a| a.name.eq_str(name))
        } else {
            self.excluded
                .iter()
                .any(|a| a.name.eq_str(name) && a.sub_attr.is_none())
        }
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.excluded.is_empty()
    }
}

/// Parameters of a list or search request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: SortOrder,
    /// 1-based; values below 1 are taken as 1 (RFC 7644 §3.4.2.4).
    pub start_index: u64,
    /// Page size, already capped at the advertised maximum. `None`: the default (the maximum).
    pub count: Option<u64>,
    /// RFC 9865: `Some("")` asks for the first page of cursor paging.
    pub cursor: Option<String>,
    pub projection: Projection,
}

/// The single-valued list parameters seen so far. One given twice (`filter=…&filter=…`, or
/// `filter` and `Filter` in a search body) is refused: taking either would answer a question
/// the client may not have asked (a second, empty `filter` would list the whole directory).
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn once(&mut self, key: &str, as_given: &str) -> Result<(), Error> {
        const SINGLE: [&str; 6] = [
            "filter",
            "sortby",
            "sortorder",
            "startindex",
            "count",
            "cursor",
        ];
        if !SINGLE.contains(&key) {
            return Ok(());
        }
        if self.0.iter().any(|k| k == key) {
            return Err(Error::InvalidValue(format!(
                "The parameter {as_given} is given more than once."
            )));
        }
        self.0.push(key.to_string());
        Ok(())
    }
}

fn parse_int(name: &str, raw: &str) -> Result<i64, Error> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| Error::InvalidValue(format!("{name} must be an integer, got {raw:?}.")))
}

fn clamp_count(n: i64, max: u64) -> u64 {
    (n.max(0) as u64).min(max)
}

/// Parses the `attributes` and `excludedAttributes` parameters of a query string.
pub fn projection_from_query(query: &str) -> Result<Projection, Error> {
    Ok(ListParams::from_query(query, u64::MAX)?.projection)
}

impl ListParams {
    /// From a URL query string. Parameter names are matched case-insensitively.
    pub fn from_query(query: &str, max_results: u64) -> Result<Self, Error> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| Error::InvalidSyntax(format!("The query string is malformed: {e}")))?;
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        let mut seen = Seen::default();
        for (k, v) in pairs {
            let key = k.to_ascii_lowercase();
            seen.once(&key, &k)?;
            match key.as_str() {
                "filter" => p.filter = Some(v),
                "sortby" => p.sort_by = Some(v).filter(|s| !s.is_empty()),
                "sortorder" => p.sort_order = parse_order(&v)?,
                "startindex" => p.start_index = parse_int("startIndex", &v)?.max(1) as u64,
                "count" => p.count = Some(clamp_count(parse_int("count", &v)?, max_results)),
                "cursor" => p.cursor = Some(v),
                // Repeated, each adds to the list (a client may send one name per parameter).
                "attributes" => p.projection.attributes.extend(parse_attribute_list(&v)?),
                "excludedattributes" => p.projection.excluded.extend(parse_attribute_list(&v)?),
                _ => {}
            }
        }
        Ok(p)
    }

    /// From a `SearchRequest` body (RFC 7644 §3.4.3, with RFC 9865's `cursor`). Outside the
    /// Lenient dialect it must list the SearchRequest schema and hold no other member: a
    /// misspelt `filter` would otherwise list the whole directory.
    pub fn from_search_body(
        body: &Value,
        max_results: u64,
        dialect: Dialect,
    ) -> Result<Self, Error> {
        let obj = body
            .as_object()
            .ok_or_else(|| Error::InvalidSyntax("A SearchRequest must be a JSON object.".into()))?;
        check_request_message(
            obj,
            "SearchRequest",
            SEARCH_REQUEST,
            SEARCH_MEMBERS,
            dialect,
        )?;
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        let string = |name: &str, v: &Value| -> Result<String, Error> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::InvalidValue(format!("{name} must be a string.")))
        };
        let list = |name: &str, v: &Value| -> Result<Vec<AttrPath>, Error> {
            let joined = match v {
                Value::Array(items) => items
                    .iter()
                    .map(|i| string(name, i))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                Value::String(s) => s.clone(),
                _ => {
                    return Err(Error::InvalidValue(format!(
                        "{name} must be an array of strings."
                    )))
                }
            };
            parse_attribute_list(&joined)
        };
        let int = |name: &str, v: &Value| -> Result<i64, Error> {
            match v {
                Value::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| Error::InvalidValue(format!("{name} must be an integer."))),
                Value::String(s) => parse_int(name, s),
                _ => Err(Error::InvalidValue(format!("{name} must be an integer."))),
            }
        };
        let mut seen = Seen::default();
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            let key = k.to_ascii_lowercase();
            seen.once(&key, k)?;
            match key.as_str() {
                "filter" => p.filter = Some(string("filter", v)?),
                "sortby" => p.sort_by = Some(string("sortBy", v)?).filter(|s| !s.is_empty()),
                "sortorder" => p.sort_order = parse_order(&string("sortOrder", v)?)?,
                "startindex" => p.start_index = int("startIndex", v)?.max(1) as u64,
                "count" => p.count = Some(clamp_count(int("count", v)?, max_results)),
                "cursor" => p.cursor = Some(string("cursor", v)?),
                "attributes" => p.projection.attributes = list("attributes", v)?,
                "excludedattributes" => p.projection.excluded = list("excludedAttributes", v)?,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Refuses a `startIndex` above `cap` with `invalidValue` (cursor pages ignore startIndex).
    /// RFC 7644 §3.4.2.4 sets no upper bound; an empty page would read as the end of the
    /// results to a client that pages until one comes back empty, and it would stop early or,
    /// reconciling, take the resources it did not see for deleted. A refusal says what happened.
    pub fn check_start_index(&self, cap: u64) -> Result<(), Error> {
        if self.cursor.is_none() && self.start_index > cap {
            return Err(Error::InvalidValue(format!(
                "startIndex {} is past the largest this server pages to ({cap}); page deeper \
                 with cursor (RFC 9865): cursor=\"\" for the first page, then nextCursor.",
                self.start_index
            )));
        }
        Ok(())
    }

    /// The page size in force.
    pub fn page_size(&self, max_results: u64) -> u64 {
        self.count.unwrap_or(max_results).min(max_results)
    }
}

fn parse_order(v: &str) -> Result<SortOrder, Error> {
    if v.eq_ignore_ascii_case("ascending") || v.is_empty() {
        Ok(SortOrder::Ascending)
    } else if v.eq_ignore_ascii_case("descending") {
        Ok(SortOrder::Descending)
    } else {
        Err(Error::InvalidValue(format!(
            "sortOrder must be \"ascending\" or \"descending\", got {v:?}."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7644_3_4_2_4_paging_rules() {
        let p = ListParams::from_query("startIndex=-5&count=100000", 200).expect("parse");
        assert_eq!(p.start_index, 1);
        assert_eq!(p.count, Some(200));
        let p = ListParams::from_query("startIndex=0&count=-1", 200).expect("parse");
        assert_eq!((p.start_index, p.count), (1, Some(0)));
        let p = ListParams::from_query("count=0", 200).expect("parse");
        assert_eq!(p.page_size(200), 0);
        assert_eq!(
            ListParams::from_query("", 200)
                .expect("parse")
                .page_size(200),
            200
        );
    }

    #[test]
    fn start_index_is_capped() {
        let huge = ListParams::from_query("startIndex=9223372036854775807", 200).expect("parse");
        assert_eq!(huge.start_index, 9_223_372_036_854_775_807);
        assert!(matches!(
            huge.check_start_index(1_000_000),
            Err(Error::InvalidValue(_))
        ));
        let body =
            json!({"schemas": [SEARCH_REQUEST], "startIndex": 1_000_001, "sortBy": "userName"});
        let p = ListParams::from_search_body(&body, 200, Dialect::Strict).expect("parse");
        assert!(p.check_start_index(1_000_000).is_err());
        let p = ListParams::from_query("startIndex=1000000", 200).expect("parse");
        assert!(p.check_start_index(1_000_000).is_ok());
        // A cursor page ignores startIndex.
        let p = ListParams::from_query("startIndex=5000000&cursor=", 200).expect("parse");
        assert!(p.check_start_index(1_000_000).is_ok());
    }

    #[test]
    fn a_single_valued_parameter_given_twice_is_refused() {
        for query in [
            "filter=userName%20eq%20%22a%22&filter=",
            "count=1&COUNT=2",
            "startIndex=1&startindex=1",
            "sortBy=userName&sortBy=id",
            "cursor=&cursor=abc",
        ] {
            let e = ListParams::from_query(query, 200).expect_err(query);
            assert!(matches!(e, Error::InvalidValue(_)), "{query}: {e:?}");
        }
        let body = serde_json::json!({"schemas": [SEARCH_REQUEST], "filter": "userName eq \"a\"", "Filter": "id pr"});
        assert!(matches!(
            ListParams::from_search_body(&body, 200, Dialect::Standard),
            Err(Error::InvalidValue(_))
        ));
        // Attribute lists add up.
        let p =
            ListParams::from_query("attributes=userName&attributes=emails", 200).expect("parse");
        assert_eq!(p.projection.attributes.len(), 2);
    }

    #[test]
    fn non_numeric_paging_is_invalid_value() {
        for q in [
            "startIndex=abc",
            "count=1.5",
            "count=ten",
            "sortOrder=sideways",
        ] {
            assert!(
                matches!(ListParams::from_query(q, 200), Err(Error::InvalidValue(_))),
                "{q}"
            );
        }
    }

    #[test]
    fn parses_everything() {
        let p = ListParams::from_query(
            "filter=userName%20eq%20%22a%22&SORTBY=name.familyName&sortOrder=descending&attributes=userName,emails&excludedAttributes=members&cursor=",
            50,
        )
        .expect("parse");
        assert_eq!(p.filter.as_deref(), Some("userName eq \"a\""));
        assert_eq!(p.sort_by.as_deref(), Some("name.familyName"));
        assert_eq!(p.sort_order, SortOrder::Descending);
        assert_eq!(
            p.projection.attributes,
            vec![AttrPath::simple("userName"), AttrPath::simple("emails")]
        );
        assert_eq!(p.cursor.as_deref(), Some(""));
    }

    #[test]
    fn search_body_matches_query() {
        let b = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter":"active eq true","startIndex":0,"count":5,"attributes":["userName"],"excludedAttributes":null});
        let p = ListParams::from_search_body(&b, 200, Dialect::Strict).expect("parse");
        assert_eq!((p.start_index, p.count), (1, Some(5)));
        assert_eq!(p.projection.attributes, vec![AttrPath::simple("userName")]);
        assert!(matches!(
            ListParams::from_search_body(
                &json!({"schemas": [SEARCH_REQUEST], "count":"x"}),
                200,
                Dialect::Standard
            ),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            ListParams::from_search_body(&json!([1]), 200, Dialect::Standard),
            Err(Error::InvalidSyntax(_))
        ));
    }

    /// A SearchRequest without its schema, or with a member RFC 7644 §3.4.3 does not define
    /// (`filtr` would list everyone), is `invalidSyntax` but in the Lenient dialect, which
    /// ignores both.
    #[test]
    fn search_body_envelope_is_checked_outside_lenient() {
        let refused = [
            json!({"filter": "userName eq \"a\""}),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "filter": "id pr"}),
            json!({"schemas": [SEARCH_REQUEST], "filtr": "userName eq \"a\""}),
            json!({"schemas": [SEARCH_REQUEST], "filter": "id pr", "itemsPerPage": 5}),
        ];
        for body in refused {
            for dialect in [
                Dialect::Strict,
                Dialect::Standard,
                Dialect::EntraId,
                Dialect::Okta,
            ] {
                let e = ListParams::from_search_body(&body, 200, dialect).expect_err("refused");
                assert!(
                    matches!(e, Error::InvalidSyntax(_)),
                    "{body} {dialect:?}: {e:?}"
                );
            }
            assert!(
                ListParams::from_search_body(&body, 200, Dialect::Lenient).is_ok(),
                "{body}"
            );
        }
        // `schemas` twice in different cases: refused whichever comes first, in every dialect.
        for body in [
            json!({"schemas": [SEARCH_REQUEST], "SCHEMAS": ["bogus"], "filter": "id pr"}),
            json!({"SCHEMAS": ["bogus"], "schemas": [SEARCH_REQUEST], "filter": "id pr"}),
        ] {
            for dialect in [Dialect::Strict, Dialect::Standard, Dialect::Lenient] {
                let e = ListParams::from_search_body(&body, 200, dialect).expect_err("refused");
                assert!(
                    matches!(e, Error::InvalidSyntax(_)),
                    "{body} {dialect:?}: {e:?}"
                );
            }
        }
        // Members and the schema in any case, and RFC 9865's cursor, are taken.
        let body = json!({"SCHEMAS": [SEARCH_REQUEST.to_ascii_uppercase()], "Filter": "id pr",
            "SortBy": "userName", "CURSOR": "", "Count": 2});
        let p = ListParams::from_search_body(&body, 200, Dialect::Strict).expect("parse");
        assert_eq!((p.filter.as_deref(), p.count), (Some("id pr"), Some(2)));
        assert_eq!(p.cursor.as_deref(), Some(""));
    }

    #[test]
    fn members_exclusion() {
        let ex = Projection {
            attributes: vec![],
            excluded: vec![AttrPath::simple("members")],
        };
        assert!(ex.excludes("members"));
        let only = Projection {
            attributes: vec![AttrPath::simple("displayName")],
            excluded: vec![],
        };
        assert!(only.excludes("members"));
        let with = Projection {
            attributes: vec![AttrPath::with_sub("members", "value")],
            excluded: vec![],
        };
        assert!(!with.excludes("members"));
        assert!(!Projection::default().excludes("members"));
        let sub = Projection {
            attributes: vec![],
            excluded: vec![AttrPath::with_sub("members", "display")],
        };
        assert!(!sub.excludes("members"));
        assert!(matches!(
            ListParams::from_query("attributes=userName,,emails", 200),
            Err(Error::InvalidPath(_))
        ));
    }
}
