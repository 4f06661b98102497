//! A fold over the filter AST, used by the server to translate filters to SQL (or anything else).
//!
//! Implement [`FilterFold`] with one method per node kind and call [`fold`]. Leaves
//! ([`FilterFold::compare`], [`FilterFold::present`]) receive the enclosing value path's attribute
//! as `scope` (`Some(emails)` inside `emails[type eq "work"]`, `None` at the top level), so a SQL
//! translation knows whether a path names a column or a field of an array element. Inner nodes
//! receive their children's outputs. Use `Output = Option<Fragment>` to say "cannot push this
//! down": `and` can then keep the half it can translate (and filter the rest in memory), while
//! `or` and `not` must give up when a child is `None`.
//!
//! Semantics to preserve when translating (see [`super::eval`]): `ne` is the negation of `eq`
//! (true for a missing attribute), `eq null` means unassigned, and a comparison on a multi-valued
//! attribute means "any value".

use super::ast::{AttrPath, CompValue, CompareOp, Filter};

/// One method per node kind; [`fold`] drives it bottom-up.
pub trait FilterFold {
    type Output;

    /// `path op value`. `scope` is the enclosing value path's attribute, if any.
    fn compare(
        &mut self,
        scope: Option<&AttrPath>,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Self::Output;

    /// `path pr`. `scope` is the enclosing value path's attribute, if any.
    fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) -> Self::Output;

    fn and(&mut self, left: Self::Output, right: Self::Output) -> Self::Output;

    fn or(&mut self, left: Self::Output, right: Self::Output) -> Self::Output;

    fn not(&mut self, inner: Self::Output) -> Self::Output;

    /// `path[inner]`, where `inner` is the folded element filter (its leaves saw
    /// `scope = Some(path)`).
    fn value_path(&mut self, path: &AttrPath, inner: Self::Output) -> Self::Output;
}

/// Folds `filter` with `folder`, children before parents, left before right.
pub fn fold<F: FilterFold + ?Sized>(folder: &mut F, filter: &Filter) -> F::Output {
    fold_in(folder, None, filter)
}

fn fold_in<F: FilterFold + ?Sized>(
    folder: &mut F,
    scope: Option<&AttrPath>,
    filter: &Filter,
) -> F::Output {
    match filter {
        Filter::Compare { path, op, value } => folder.compare(scope, path, *op, value),
        Filter::Present(path) => folder.present(scope, path),
        Filter::And(a, b) => {
            let a = fold_in(folder, scope, a);
            let b = fold_in(folder, scope, b);
            folder.and(a, b)
        }
        Filter::Or(a, b) => {
            let a = fold_in(folder, scope, a);
            let b = fold_in(folder, scope, b);
            folder.or(a, b)
        }
        Filter::Not(inner) => {
            let inner = fold_in(folder, scope, inner);
            folder.not(inner)
        }
        Filter::ValuePath { path, filter } => {
            let inner = fold_in(folder, Some(path), filter);
            folder.value_path(path, inner)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::filter::parse::parse_filter;

    /// Counts leaves and value paths.
    struct Count;
    impl FilterFold for Count {
        type Output = usize;
        fn compare(
            &mut self,
            _: Option<&AttrPath>,
            _: &AttrPath,
            _: CompareOp,
            _: &CompValue,
        ) -> usize {
            1
        }
        fn present(&mut self, _: Option<&AttrPath>, _: &AttrPath) -> usize {
            1
        }
        fn and(&mut self, a: usize, b: usize) -> usize {
            a + b
        }
        fn or(&mut self, a: usize, b: usize) -> usize {
            a + b
        }
        fn not(&mut self, a: usize) -> usize {
            a
        }
        fn value_path(&mut self, _: &AttrPath, inner: usize) -> usize {
            inner
        }
    }

    /// A toy SQL renderer: only `eq` on plain top-level attributes and `pr` push down; value
    /// paths become EXISTS over an element table. `None` means "evaluate in memory".
    struct Sql {
        params: Vec<String>,
    }
    impl FilterFold for Sql {
        type Output = Option<String>;
        fn compare(
            &mut self,
            scope: Option<&AttrPath>,
            path: &AttrPath,
            op: CompareOp,
            value: &CompValue,
        ) -> Option<String> {
            let (CompareOp::Eq, CompValue::Str(s), None, None) =
                (op, value, &path.urn, &path.sub_attr)
            else {
                return None;
            };
            self.params.push(s.clone());
            let column = match scope {
                Some(parent) => format!("{}.{}", parent.name, path.name),
                None => path.name.to_string(),
            };
            Some(format!("lower({column}) = lower(${})", self.params.len()))
        }
        fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) -> Option<String> {
            match scope {
                Some(parent) => Some(format!("{}.{} IS NOT NULL", parent.name, path.name)),
                None => Some(format!("{} IS NOT NULL", path.name)),
            }
        }
        fn and(&mut self, a: Option<String>, b: Option<String>) -> Option<String> {
            Some(format!("({} AND {})", a?, b?))
        }
        fn or(&mut self, a: Option<String>, b: Option<String>) -> Option<String> {
            Some(format!("({} OR {})", a?, b?))
        }
        fn not(&mut self, a: Option<String>) -> Option<String> {
            Some(format!("NOT {}", a?))
        }
        fn value_path(&mut self, path: &AttrPath, inner: Option<String>) -> Option<String> {
            Some(format!("EXISTS (SELECT 1 FROM {path} WHERE {})", inner?))
        }
    }

    #[test]
    fn counts_clauses() {
        let f = parse_filter(r#"userName sw "j" and active eq true and (emails[type eq "work" and value co "@x"] or title pr)"#).unwrap();
        assert_eq!(fold(&mut Count, &f), 5);
        assert_eq!(fold(&mut Count, &parse_filter("not (a pr)").unwrap()), 1);
    }

    #[test]
    fn renders_sql_with_scope_and_gives_up_when_it_must() {
        let mut sql = Sql { params: vec![] };
        let f = parse_filter(r#"userName eq "bjensen" and emails[type eq "work" or display pr]"#)
            .unwrap();
        assert_eq!(
            fold(&mut sql, &f).as_deref(),
            Some("(lower(userName) = lower($1) AND EXISTS (SELECT 1 FROM emails WHERE (lower(emails.type) = lower($2) OR emails.display IS NOT NULL)))")
        );
        assert_eq!(sql.params, ["bjensen", "work"]);

        let mut sql = Sql { params: vec![] };
        let f = parse_filter(r#"not (userName co "j")"#).unwrap();
        assert_eq!(fold(&mut sql, &f), None);
    }

    #[test]
    fn folds_children_left_to_right() {
        struct Trace(Vec<String>);
        impl FilterFold for Trace {
            type Output = ();
            fn compare(&mut self, _: Option<&AttrPath>, p: &AttrPath, _: CompareOp, _: &CompValue) {
                self.0.push(p.to_string());
            }
            fn present(&mut self, _: Option<&AttrPath>, p: &AttrPath) {
                self.0.push(p.to_string());
            }
            fn and(&mut self, (): (), (): ()) {
                self.0.push("and".into());
            }
            fn or(&mut self, (): (), (): ()) {
                self.0.push("or".into());
            }
            fn not(&mut self, (): ()) {
                self.0.push("not".into());
            }
            fn value_path(&mut self, p: &AttrPath, (): ()) {
                self.0.push(format!("{p}[]"));
            }
        }
        let mut t = Trace(vec![]);
        fold(
            &mut t,
            &parse_filter("a pr or not (b eq 1) and c[d pr]").unwrap(),
        );
        assert_eq!(t.0, ["a", "b", "not", "d", "c[]", "and", "or"]);
    }
}
