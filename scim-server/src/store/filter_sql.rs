//! Filters to SQL: which attributes have columns (`Translator::column`), and the translation
//! of a filter into a WHERE condition, a fold over the filter AST ([`scim_schema::filter::fold`])
//! so that the tree is walked in one place. Every value is a bind parameter; LIKE patterns escape
//! `\`, `%` and `_`. Each translated comparison is two-valued (never SQL NULL), so `not (...)`
//! means what it means in memory. A part that cannot be translated is TRUE inside `and`; an
//! `or`/`not` containing one becomes TRUE as a whole, and the result is then not exact (see
//! [`super::search`] for what runs in memory).

use scim_schema::filter::fold::{fold, FilterFold};
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter};
use scim_schema::schema::ResourceSchema;

use super::columns::{case_fold, ENTERPRISE_URN};
use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, ResourceKind};

/// The SQL condition for `filter` over `resources` (`None`: TRUE, nothing pushed down) and
/// whether it is exact (no in-memory check needed).
pub(super) fn translate(
    kind: ResourceKind,
    schema: &ResourceSchema,
    filter: &Filter,
) -> (Option<Sql>, bool) {
    let pushed = fold(&mut Translator { kind, schema }, filter);
    (pushed.sql, pushed.exact)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    /// Text compared as stored (caseExact).
    Exact,
    /// Text stored lower-cased; values are folded before comparing.
    Folded,
    Bool,
    /// Fixed-width RFC 3339 UTC text.
    Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A column of `resources`.
    Col(&'static str, ColType),
    /// A column of `resource_values v` for attribute `attr`.
    Value(&'static str, &'static str, ColType),
    /// `group_members gm.member_id`.
    Member,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Resource,
    Emails,
    Members,
}

struct Translator<'a> {
    kind: ResourceKind,
    schema: &'a ResourceSchema,
}

fn urn_ok(urn: Option<&scim_schema::CiString>, expected: &str) -> bool {
    urn.map(|u| u.eq_str(expected)).unwrap_or(true)
}

impl Translator<'_> {
    /// The case-exactness the schema declares for `path`, when it declares one.
    fn case_exact(&self, path: &AttrPath) -> Option<bool> {
        self.schema.lookup(path).map(|d| d.case_exact)
    }

    /// The column for `path` in `scope`, when the store has one whose folding matches the
    /// attribute's caseExact.
    fn column(&self, path: &AttrPath, scope: Scope) -> Option<Target> {
        let name = path.name.as_str();
        let sub = path.sub_attr.as_ref().map(|s| s.as_str());
        let is = |a: &str| name.eq_ignore_ascii_case(a);
        let sub_is = |a: &str| sub.map(|s| s.eq_ignore_ascii_case(a)).unwrap_or(false);
        match scope {
            Scope::Emails => {
                return match (sub, name) {
                    (None, n) if n.eq_ignore_ascii_case("value") => {
                        Some(Target::Value("emails", "v.value_folded", ColType::Folded))
                    }
                    (None, n) if n.eq_ignore_ascii_case("type") => {
                        Some(Target::Value("emails", "v.type_folded", ColType::Folded))
                    }
                    _ => None,
                };
            }
            Scope::Members => return (sub.is_none() && is("value")).then_some(Target::Member),
            Scope::Resource => {}
        }
        let main = self.schema.main.id.as_str();
        let core = urn_ok(path.urn.as_ref(), main);
        let t = match self.kind {
            _ if core && is("id") && sub.is_none() => Target::Col("id", ColType::Exact),
            _ if core && is("externalId") && sub.is_none() => {
                Target::Col("external_id", ColType::Exact)
            }
            _ if core && is("displayName") && sub.is_none() => {
                Target::Col("display_name_folded", ColType::Folded)
            }
            _ if core && is("meta") && sub_is("created") => {
                return Some(Target::Col("created", ColType::Time))
            }
            _ if core && is("meta") && sub_is("lastModified") => {
                return Some(Target::Col("last_modified", ColType::Time))
            }
            ResourceKind::User if core && is("userName") && sub.is_none() => {
                Target::Col("user_name_folded", ColType::Folded)
            }
            ResourceKind::User if core && is("active") && sub.is_none() => {
                Target::Col("active", ColType::Bool)
            }
            ResourceKind::User if core && is("emails") && sub_is("value") => {
                Target::Value("emails", "v.value_folded", ColType::Folded)
            }
            ResourceKind::User if core && is("emails") && sub_is("type") => {
                Target::Value("emails", "v.type_folded", ColType::Folded)
            }
            ResourceKind::User
                if urn_ok(path.urn.as_ref(), ENTERPRISE_URN)
                    && is("employeeNumber")
                    && sub.is_none() =>
            {
                Target::Col("employee_number_folded", ColType::Folded)
            }
            ResourceKind::User
                if urn_ok(path.urn.as_ref(), ENTERPRISE_URN)
                    && is("manager")
                    && sub_is("value") =>
            {
                Target::Col("manager_value_folded", ColType::Folded)
            }
            ResourceKind::Group if core && is("members") && sub_is("value") => Target::Member,
            _ => return None,
        };
        // The column's folding must agree with the attribute's declared caseExact.
        let ty = match t {
            Target::Col(_, ty) | Target::Value(_, _, ty) => ty,
            Target::Member => ColType::Exact,
        };
        match (ty, self.case_exact(path)) {
            (ColType::Folded, Some(true)) => None,
            (ColType::Exact, Some(false)) if !is("id") => None,
            _ => Some(t),
        }
    }

    /// The scope a leaf is in: the resource itself at the top level, or the child table of the
    /// value path around it (`emails[...]` for Users, `members[...]` for Groups). `None` for a
    /// value path the store has no child table for.
    fn scope_of(&self, value_path: Option<&AttrPath>) -> Option<Scope> {
        match value_path {
            None => Some(Scope::Resource),
            Some(p) => match self.kind {
                ResourceKind::User if p.name.eq_str("emails") => Some(Scope::Emails),
                ResourceKind::Group if p.name.eq_str("members") => Some(Scope::Members),
                _ => None,
            },
        }
    }

    /// A comparison (`Some((op, value))`) or presence test (`None`) on one path.
    fn leaf(
        &self,
        path: &AttrPath,
        cmp: Option<(CompareOp, &CompValue)>,
        scope: Scope,
    ) -> Option<Sql> {
        let target = self.column(path, scope)?;
        let (col, ty, child) = match target {
            Target::Col(c, ty) => (c, ty, None),
            Target::Value(attr, c, ty) if scope == Scope::Resource => {
                (c, ty, Some(Scope::Emails).filter(|_| attr == "emails"))
            }
            Target::Value(_, c, ty) => (c, ty, None),
            Target::Member if scope == Scope::Resource => {
                ("gm.member_id", ColType::Exact, Some(Scope::Members))
            }
            Target::Member => ("gm.member_id", ColType::Exact, None),
        };
        // `ne` on a child table is NOT EXISTS(eq), matching "no value equals".
        let (negate, cmp) = match cmp {
            Some((CompareOp::Ne, v)) if child.is_some() => (true, Some((CompareOp::Eq, v))),
            other => (false, other),
        };
        let cond = condition(col, ty, cmp)?;
        let out = match child {
            None => cond,
            Some(child_scope) => exists(child_scope, &cond),
        };
        if negate {
            let mut s = Sql::new("(NOT ");
            s.append(&out).push(")");
            Some(s)
        } else {
            Some(out)
        }
    }
}

/// The translation of a filter (or part of one).
struct Pushdown {
    /// The SQL condition; `None` means TRUE (nothing pushed down).
    sql: Option<Sql>,
    /// Whether `sql` is the whole filter (no in-memory check needed).
    exact: bool,
    /// Whether a value path is inside: value paths do not nest, so one around it is not pushed
    /// down (the parser refuses nested ones; this keeps a hand-built filter from being pushed).
    has_value_path: bool,
}

impl Pushdown {
    fn exact(sql: Option<Sql>) -> Pushdown {
        match sql {
            Some(s) => Pushdown {
                sql: Some(s),
                exact: true,
                has_value_path: false,
            },
            None => Pushdown::none(false),
        }
    }

    /// Nothing pushed down: everything is checked in memory.
    fn none(has_value_path: bool) -> Pushdown {
        Pushdown {
            sql: None,
            exact: false,
            has_value_path,
        }
    }
}

/// The SQL translator is a fold over the filter (`scim_schema::filter::fold`): leaves become
/// column conditions, `and` keeps whichever halves translate, `or` and `not` only when theirs
/// are exact, a value path becomes `EXISTS` over its child table.
impl FilterFold for Translator<'_> {
    type Output = Pushdown;

    fn compare(
        &mut self,
        scope: Option<&AttrPath>,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Pushdown {
        match self.scope_of(scope) {
            Some(scope) => Pushdown::exact(self.leaf(path, Some((op, value)), scope)),
            None => Pushdown::none(false),
        }
    }

    fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) -> Pushdown {
        match self.scope_of(scope) {
            Some(scope) => Pushdown::exact(self.leaf(path, None, scope)),
            None => Pushdown::none(false),
        }
    }

    fn and(&mut self, a: Pushdown, b: Pushdown) -> Pushdown {
        let sql = match (a.sql, b.sql) {
            (Some(x), Some(y)) => {
                let mut s = Sql::new("(");
                s.append(&x).push(" AND ").append(&y).push(")");
                Some(s)
            }
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        };
        Pushdown {
            sql,
            exact: a.exact && b.exact,
            has_value_path: a.has_value_path || b.has_value_path,
        }
    }

    fn or(&mut self, a: Pushdown, b: Pushdown) -> Pushdown {
        let has_value_path = a.has_value_path || b.has_value_path;
        match (a.sql, b.sql) {
            (Some(x), Some(y)) => {
                let mut s = Sql::new("(");
                s.append(&x).push(" OR ").append(&y).push(")");
                Pushdown {
                    sql: Some(s),
                    exact: a.exact && b.exact,
                    has_value_path,
                }
            }
            _ => Pushdown::none(has_value_path),
        }
    }

    fn not(&mut self, inner: Pushdown) -> Pushdown {
        match inner {
            Pushdown {
                sql: Some(x),
                exact: true,
                has_value_path,
            } => {
                let mut s = Sql::new("(NOT ");
                s.append(&x).push(")");
                Pushdown {
                    sql: Some(s),
                    exact: true,
                    has_value_path,
                }
            }
            other => Pushdown::none(other.has_value_path),
        }
    }

    fn value_path(&mut self, path: &AttrPath, inner: Pushdown) -> Pushdown {
        if inner.has_value_path || path.sub_attr.is_some() {
            return Pushdown::none(true);
        }
        let main = self.schema.main.id.as_str();
        if !urn_ok(path.urn.as_ref(), main) {
            return Pushdown::none(true);
        }
        let Some(inner_scope) = self.scope_of(Some(path)) else {
            return Pushdown::none(true);
        };
        match inner {
            Pushdown {
                sql: Some(sql),
                exact: true,
                ..
            } => Pushdown {
                sql: Some(exists(inner_scope, &sql)),
                exact: true,
                has_value_path: true,
            },
            _ => Pushdown::none(true),
        }
    }
}

/// `EXISTS (SELECT 1 FROM <child> WHERE <link> AND cond)`.
fn exists(scope: Scope, cond: &Sql) -> Sql {
    let mut s = match scope {
        Scope::Emails => Sql::new(
            "EXISTS (SELECT 1 FROM resource_values v WHERE v.resource_id = resources.id AND v.attr = 'emails' AND ",
        ),
        _ => Sql::new("EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = resources.id AND "),
    };
    s.append(cond).push(")");
    s
}

/// Escapes LIKE wildcards (escape character `\`).
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for ch in s.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The least string greater than every string starting with `prefix` (byte order), if any.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        while next <= char::MAX as u32 {
            if let Some(c) = char::from_u32(next) {
                chars.push(c);
                return Some(chars.into_iter().collect());
            }
            next += 1;
        }
    }
    None
}

/// The two-valued SQL condition for one column.
fn condition(col: &str, ty: ColType, cmp: Option<(CompareOp, &CompValue)>) -> Option<Sql> {
    let mut s = Sql::new("(");
    s.push(col).push(" IS NOT NULL");
    let Some((op, value)) = cmp else {
        if matches!(ty, ColType::Exact | ColType::Folded) {
            s.push(" AND ").push(col).push(" <> ''");
        }
        s.push(")");
        return Some(s);
    };
    let cmp_sql = |op: CompareOp| match op {
        CompareOp::Eq | CompareOp::Ne => " = ",
        CompareOp::Gt => " > ",
        CompareOp::Ge => " >= ",
        CompareOp::Lt => " < ",
        CompareOp::Le => " <= ",
        _ => "",
    };
    let (op, negate) = if op == CompareOp::Ne {
        (CompareOp::Eq, true)
    } else {
        (op, false)
    };
    match (ty, value) {
        (ColType::Bool, CompValue::Bool(b)) if op == CompareOp::Eq => {
            s.push(" AND ").push(col).push(" = ").bind(Bind::Bool(*b));
        }
        (ColType::Time, CompValue::Str(v))
            if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) =>
        {
            let t = fmt_ts(parse_ts(v)?);
            s.push(" AND ").push(col).push(cmp_sql(op)).text(t);
        }
        (ColType::Exact | ColType::Folded, CompValue::Str(v)) => {
            let v = if ty == ColType::Folded {
                case_fold(v)
            } else {
                v.clone()
            };
            match op {
                CompareOp::Co => {
                    s.push(" AND ")
                        .push(col)
                        .push(" LIKE ")
                        .text(format!("%{}%", like_escape(&v)))
                        .push(" ESCAPE '\\'");
                }
                CompareOp::Ew => {
                    s.push(" AND ")
                        .push(col)
                        .push(" LIKE ")
                        .text(format!("%{}", like_escape(&v)))
                        .push(" ESCAPE '\\'");
                }
                CompareOp::Sw => match prefix_upper_bound(&v) {
                    // A range uses the index on both backends (LIKE with ESCAPE does not on SQLite).
                    Some(upper) => {
                        s.push(" AND ").push(col).push(" >= ").text(v);
                        s.push(" AND ").push(col).push(" < ").text(upper);
                    }
                    None if v.is_empty() => {}
                    None => {
                        s.push(" AND ")
                            .push(col)
                            .push(" LIKE ")
                            .text(format!("{}%", like_escape(&v)))
                            .push(" ESCAPE '\\'");
                    }
                },
                _ => {
                    s.push(" AND ").push(col).push(cmp_sql(op)).text(v);
                }
            }
        }
        _ => return None,
    }
    s.push(")");
    if negate {
        let mut n = Sql::new("(NOT ");
        n.append(&s).push(")");
        Some(n)
    } else {
        Some(s)
    }
}

/// A sort that SQL can do: the column (NOT NULL columns need no NULL handling).
pub(super) fn sort_column(
    kind: ResourceKind,
    path: &AttrPath,
    schema: &ResourceSchema,
) -> Option<&'static str> {
    let t = Translator { kind, schema };
    match t.column(path, Scope::Resource)? {
        Target::Col(
            c @ ("id"
            | "user_name_folded"
            | "display_name_folded"
            | "external_id"
            | "created"
            | "last_modified"),
            _,
        ) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn store_like_escape_and_prefix_bound() {
        assert_eq!(like_escape(r"a%b_c\d"), r"a\%b\_c\\d");
        assert_eq!(prefix_upper_bound("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
    }
}
