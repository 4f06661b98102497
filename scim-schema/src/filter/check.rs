//! Checks a parsed filter against the attributes it names, for what the grammar alone cannot
//! reject: RFC 7644 §3.4.2.2 says `gt`, `ge`, `lt` and `le` on a Boolean or Binary attribute
//! "SHALL cause a failed response (HTTP status code 400) with a scimType of invalidFilter".
//! Attributes the schema does not know are left alone (they match nothing, §3.4.2.2). An
//! ordering comparison of a dateTime attribute needs a literal that is a date-time (or a
//! date): §3.4.2.2 orders dateTimes chronologically, and comparing `"2020-13-45T00:00:00Z"`
//! or `"zzz"` as text would match everything or nothing without telling the client.
//! `meta.location` and the `$ref` of `members` and `groups` are built from the request's own
//! address when a response is written, never stored, so a filter on them would match nothing
//! (or, behind a proxy, depend on the address the client used): it is `invalidFilter`, naming
//! the attribute to filter on instead.

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use super::fold::{fold, FilterFold};
use crate::error::Error;
use crate::schema::{AttrType, AttributeDef, ResourceSchema, Returned};

/// `Ok` when every comparison in `filter` is allowed on the attribute it names.
pub fn check_filter(filter: &Filter, schema: &ResourceSchema) -> Result<(), Error> {
    fold(&mut OrderingCheck { schema }, filter)
}

/// `Ok` when `sortBy` may order by `path`: not an attribute that is never returned (ordering by
/// the stored password hash would tell it, and who has one) nor one built when a response is
/// written (it would order by nothing). Refused with `invalidValue`.
pub fn check_sort_by(path: &AttrPath, schema: &ResourceSchema) -> Result<(), Error> {
    let check = OrderingCheck { schema };
    check
        .stored(None, path)
        .and_then(|()| check.returned(None, path))
        .map_err(|e| match e {
            Error::InvalidFilter(d) => Error::InvalidValue(format!(
                "sortBy: {}",
                d.replace("filtered on", "sorted by")
                    .replace("filter on", "sort by")
            )),
            other => other,
        })
}

struct OrderingCheck<'a> {
    schema: &'a ResourceSchema,
}

impl OrderingCheck<'_> {
    /// Refuses `path` (inside `scope`) when it names an attribute built at response time.
    fn stored(&self, scope: Option<&AttrPath>, path: &AttrPath) -> Result<(), Error> {
        let core = |p: &AttrPath| {
            p.urn
                .as_ref()
                .is_none_or(|u| self.schema.main.id.eq_str(u.as_str()))
        };
        let is = |p: &AttrPath, name: &str| core(p) && p.name.eq_str(name);
        let (outer, sub) = match scope {
            Some(outer) => (outer, Some(&path.name)),
            None => (path, path.sub_attr.as_ref()),
        };
        let sub_is = |name: &str| sub.is_some_and(|s| s.eq_str(name));
        let instead = if is(outer, "meta") && sub_is("location") {
            "id"
        } else if (is(outer, "members") || is(outer, "groups")) && sub_is("$ref") {
            if outer.name.eq_str("members") {
                "members.value"
            } else {
                "groups.value"
            }
        } else {
            return Ok(());
        };
        Err(Error::InvalidFilter(format!(
            "'{}' is built from the request's address when a response is written and cannot \
             be filtered on; filter on {instead}",
            match scope {
                Some(outer) => format!("{outer}[{path}]"),
                None => path.to_string(),
            }
        )))
    }

    /// Refuses `path` when its schema says it is never returned (`password`, RFC 7643 §4.1.1):
    /// a filter on it would answer, one comparison at a time, what reading it may not.
    fn returned(&self, scope: Option<&AttrPath>, path: &AttrPath) -> Result<(), Error> {
        let never = |d: Option<&AttributeDef>| d.is_some_and(|d| d.returned == Returned::Never);
        // The attribute itself, or the complex attribute a sub-attribute path is under.
        let outer = match scope {
            Some(outer) => self.schema.lookup(outer),
            None => self.schema.lookup(&AttrPath {
                sub_attr: None,
                ..path.clone()
            }),
        };
        if never(self.def(scope, path)) || never(outer) {
            return Err(Error::InvalidFilter(format!(
                "'{path}' is never returned, so it cannot be filtered on (RFC 7643 §7)"
            )));
        }
        Ok(())
    }

    /// The definition of `path`, inside the value path `scope` when there is one.
    fn def(&self, scope: Option<&AttrPath>, path: &AttrPath) -> Option<&AttributeDef> {
        match scope {
            None => self.schema.lookup(path),
            Some(scope) => self.schema.lookup(scope)?.sub_attribute(path.name.as_str()),
        }
    }
}

impl FilterFold for OrderingCheck<'_> {
    type Output = Result<(), Error>;

    fn compare(
        &mut self,
        scope: Option<&AttrPath>,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Self::Output {
        self.stored(scope, path)?;
        self.returned(scope, path)?;
        let ordering = matches!(
            op,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        );
        match self.def(scope, path) {
            Some(def)
                if ordering && matches!(def.attr_type, AttrType::Boolean | AttrType::Binary) =>
            {
                Err(Error::InvalidFilter(format!(
                    "'{}' is {}; {} cannot compare it (RFC 7644 §3.4.2.2)",
                    path,
                    if def.attr_type == AttrType::Boolean {
                        "a boolean"
                    } else {
                        "binary"
                    },
                    op_name(op)
                )))
            }
            Some(def)
                if ordering
                    && def.attr_type == AttrType::DateTime
                    && !is_datetime_literal(value) =>
            {
                Err(Error::InvalidFilter(format!(
                    "'{}' is a dateTime; {} needs a date-time such as \"2024-05-13T04:42:34Z\" \
                     (RFC 7644 §3.4.2.2)",
                    path,
                    op_name(op)
                )))
            }
            _ => Ok(()),
        }
    }

    fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) -> Self::Output {
        self.stored(scope, path)?;
        self.returned(scope, path)
    }

    fn and(&mut self, left: Self::Output, right: Self::Output) -> Self::Output {
        left.and(right)
    }

    fn or(&mut self, left: Self::Output, right: Self::Output) -> Self::Output {
        left.and(right)
    }

    fn not(&mut self, inner: Self::Output) -> Self::Output {
        inner
    }

    fn value_path(&mut self, _: &AttrPath, inner: Self::Output) -> Self::Output {
        inner
    }
}

/// An RFC 3339 date-time, or a full date (`2024-05-13`, compared as text as before).
fn is_datetime_literal(value: &CompValue) -> bool {
    match value {
        CompValue::Str(s) => {
            super::eval::datetime(s).is_some()
                || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        }
        _ => false,
    }
}

fn op_name(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Gt => "gt",
        CompareOp::Ge => "ge",
        CompareOp::Lt => "lt",
        _ => "le",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::filter::parse::parse_filter;
    use crate::schema::SchemaRegistry;

    fn check(f: &str) -> Result<(), String> {
        let rs = SchemaRegistry::core().resource_schema("User").unwrap();
        check_filter(&parse_filter(f).unwrap(), &rs).map_err(|e| e.scim_type().as_str().to_owned())
    }

    #[test]
    fn rfc7644_3_4_2_2_ordering_on_boolean_is_invalid_filter() {
        for f in [
            "active gt true",
            "active ge false",
            "userName pr and active lt true",
            r#"emails[primary le true]"#,
            r#"not (emails[type eq "work" and primary gt false])"#,
        ] {
            assert_eq!(check(f), Err("invalidFilter".into()), "{f}");
        }
    }

    #[test]
    fn rfc7644_3_4_2_2_ordering_on_binary_is_invalid_filter() {
        assert_eq!(
            check(r#"x509Certificates.value gt "AA==""#),
            Err("invalidFilter".into())
        );
    }

    #[test]
    fn ordering_a_datetime_needs_a_datetime_literal() {
        for f in [
            r#"meta.lastModified gt "2020-13-45T00:00:00Z""#,
            r#"meta.lastModified lt "zzz""#,
            r#"meta.lastModified ge "yesterday""#,
            r#"meta.created le 5"#,
            r#"meta.created gt true"#,
        ] {
            assert_eq!(check(f), Err("invalidFilter".into()), "{f}");
        }
        for f in [
            r#"meta.lastModified gt "2011-05-13T04:42:34+02:00""#,
            r#"meta.lastModified lt "2011-05-13""#,
            r#"meta.lastModified eq "zzz""#,
            r#"meta.lastModified sw "2011""#,
        ] {
            assert_eq!(check(f), Ok(()), "{f}");
        }
    }

    #[test]
    fn attributes_built_at_response_time_are_invalid_filter() {
        for f in [
            r#"meta.location eq "http://x/scim/v2/Users/1""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:meta.location sw "http""#,
            "meta.location pr",
            r#"META.LOCATION co "Users""#,
            r#"groups.$ref eq "http://x/scim/v2/Groups/1""#,
            r#"groups[$ref eq "http://x/scim/v2/Groups/1"]"#,
            r#"userName pr and not (groups.$ref pr)"#,
        ] {
            assert_eq!(check(f), Err("invalidFilter".into()), "{f}");
        }
        let group = SchemaRegistry::core().resource_schema("Group").unwrap();
        let f = parse_filter(r#"members[type eq "User" and $ref co "x"]"#).unwrap();
        let e = check_filter(&f, &group).unwrap_err();
        assert!(e.to_string().contains("members.value"), "{e}");
        // What is stored filters as before.
        for f in [
            r#"meta.lastModified pr"#,
            r#"groups.value eq "1""#,
            r#"groups[value eq "1"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.$ref pr"#,
        ] {
            assert_eq!(check(f), Ok(()), "{f}");
        }
    }

    /// `password` is never returned (RFC 7643 §4.1.1): a filter on it would leak the stored
    /// hash one character at a time (`password sw "$a"`, `"$ar"`, ...).
    #[test]
    fn attributes_never_returned_are_invalid_filter() {
        for f in [
            r#"password sw "$argon2""#,
            r#"password eq "secret""#,
            "password pr",
            r#"PASSWORD gt "a""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:password co "a""#,
            r#"userName pr and not (password pr)"#,
        ] {
            assert_eq!(check(f), Err("invalidFilter".into()), "{f}");
        }
    }

    #[test]
    fn sort_by_refuses_what_filters_refuse_as_invalid_value() {
        let rs = SchemaRegistry::core().resource_schema("User").unwrap();
        for p in ["password", "meta.location", "groups.$ref"] {
            let path = crate::filter::parse::parse_attr_path(p).unwrap();
            let e = check_sort_by(&path, &rs).unwrap_err();
            assert_eq!(e.scim_type().as_str(), "invalidValue", "{p}");
            assert!(e.to_string().contains("sorted by"), "{p}: {e}");
        }
        for p in [
            "userName",
            "meta.lastModified",
            "name.familyName",
            "unknownAttribute",
        ] {
            let path = crate::filter::parse::parse_attr_path(p).unwrap();
            assert!(check_sort_by(&path, &rs).is_ok(), "{p}");
        }
    }

    #[test]
    fn other_comparisons_pass() {
        for f in [
            "active eq true",
            "active ne false",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"userName ge "b""#,
            r#"emails[primary eq true]"#,
            "unknownAttribute gt true",
        ] {
            assert_eq!(check(f), Ok(()), "{f}");
        }
    }
}
