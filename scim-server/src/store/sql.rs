//! A small SQL builder whose values always travel as bind parameters.
//!
//! [`Sql`] is a diesel query: the text is built from fixed fragments written in this module tree
//! (never from request data) and every value is a bind parameter, so the backend's placeholder
//! style (`?` or `$n`) is produced by diesel. The statement is safe to cache: diesel keeps one
//! prepared statement per distinct SQL text on each connection.

use std::marker::PhantomData;

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::QueryResult;

use super::conn::MultiBackend;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
    OptBool(Option<bool>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Sql(String),
    Bind(Bind),
}

/// A SQL fragment or statement. `ST` is the SQL type of the rows it returns (`()` for fragments
/// and statements without rows).
#[derive(Debug, Clone)]
pub(crate) struct Sql<ST = ()> {
    parts: Vec<Part>,
    _st: PhantomData<ST>,
}

impl Default for Sql<()> {
    fn default() -> Self {
        Sql {
            parts: Vec::new(),
            _st: PhantomData,
        }
    }
}

impl<ST> Sql<ST> {
    pub fn new(sql: &str) -> Self {
        let mut s = Sql {
            parts: Vec::new(),
            _st: PhantomData,
        };
        s.push(sql);
        s
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        match self.parts.last_mut() {
            Some(Part::Sql(s)) => s.push_str(sql),
            _ => self.parts.push(Part::Sql(sql.to_string())),
        }
        self
    }

    pub fn bind(&mut self, b: Bind) -> &mut Self {
        self.parts.push(Part::Bind(b));
        self
    }

    pub fn text(&mut self, s: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(s.into()))
    }

    pub fn int(&mut self, i: i64) -> &mut Self {
        self.bind(Bind::Int(i))
    }

    /// ` LIMIT n`, with `n` bound. SQLite (3.53) plans a `LIMIT ?` with the value bound at
    /// prepare time and marks the statement to be prepared again whenever that parameter is
    /// bound anew, so a cached statement was re-parsed on every execution (a fifth of a
    /// `userName eq` lookup). Behind a CAST the limit is an expression SQLite does not read at
    /// prepare time, and the cached statement is reused; the plan is the same.
    pub fn limit(&mut self, n: i64) -> &mut Self {
        self.push(" LIMIT CAST(").int(n).push(" AS BIGINT)")
    }

    /// Appends another fragment (its text and binds).
    pub fn append<T>(&mut self, other: &Sql<T>) -> &mut Self {
        for p in &other.parts {
            match p {
                Part::Sql(s) => {
                    self.push(s);
                }
                Part::Bind(b) => {
                    self.bind(b.clone());
                }
            }
        }
        self
    }

    /// How many bind parameters it carries.
    pub fn binds(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Bind(_)))
            .count()
    }

    /// `?, ?, ?` for a list of texts.
    pub fn text_list<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.text(item);
        }
        self
    }
}

impl<ST> Sql<ST> {
    /// The statement as PostgreSQL text with `$1…$n` placeholders, and its binds in order: what
    /// diesel sends for it on a PostgreSQL connection, for the async readers
    /// ([`super::pg_reader`]) to send the same statement.
    pub(crate) fn to_postgres(&self) -> (String, Vec<&Bind>) {
        let mut text = String::new();
        let mut binds = Vec::new();
        for p in &self.parts {
            match p {
                Part::Sql(s) => text.push_str(s),
                Part::Bind(b) => {
                    binds.push(b);
                    text.push('$');
                    text.push_str(&binds.len().to_string());
                }
            }
        }
        (text, binds)
    }
}

impl<ST> QueryId for Sql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST: 'static> Query for Sql<ST>
where
    ST: diesel::sql_types::SqlType,
{
    type SqlType = ST;
}

impl<ST> QueryFragment<MultiBackend> for Sql<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        for p in &self.parts {
            match p {
                Part::Sql(s) => out.push_sql(s),
                Part::Bind(Bind::Text(s)) => out.push_bind_param::<Text, String>(s)?,
                Part::Bind(Bind::OptText(s)) => {
                    out.push_bind_param::<Nullable<Text>, Option<String>>(s)?
                }
                Part::Bind(Bind::Int(i)) => out.push_bind_param::<BigInt, i64>(i)?,
                Part::Bind(Bind::Bool(b)) => out.push_bind_param::<Bool, bool>(b)?,
                Part::Bind(Bind::OptBool(b)) => {
                    out.push_bind_param::<Nullable<Bool>, Option<bool>>(b)?
                }
            }
        }
        Ok(())
    }
}

impl<ST, Conn> diesel::RunQueryDsl<Conn> for Sql<ST> {}

/// A [`Sql`] built by one function whose text never varies (only its binds do), named by the
/// marker type `K`: diesel then finds its prepared statement by `K`'s type id instead of
/// writing out and hashing the text on every execution, which showed in a point read's
/// profile. Only for such fixed-text statements: two texts under one `K` would share a
/// prepared statement.
pub(crate) struct Keyed<K, ST> {
    sql: Sql<ST>,
    _key: PhantomData<K>,
}

impl<K, ST> Keyed<K, ST> {
    pub fn new(sql: Sql<ST>) -> Self {
        Keyed {
            sql,
            _key: PhantomData,
        }
    }
}

impl<K: 'static, ST> QueryId for Keyed<K, ST> {
    type QueryId = K;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<K, ST: 'static> Query for Keyed<K, ST>
where
    ST: diesel::sql_types::SqlType,
{
    type SqlType = ST;
}

impl<K, ST> QueryFragment<MultiBackend> for Keyed<K, ST> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        self.sql.walk_ast(out)
    }
}

impl<K, ST, Conn> diesel::RunQueryDsl<Conn> for Keyed<K, ST> {}

/// A [`Sql`] statement whose text varies too much to keep prepared (rows of a batch, say):
/// diesel prepares it anew, unnamed, for each execution instead of caching one per text.
pub(crate) struct Uncached<ST = ()>(pub Sql<ST>);

impl<ST> QueryId for Uncached<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST: 'static> Query for Uncached<ST>
where
    ST: diesel::sql_types::SqlType,
{
    type SqlType = ST;
}

impl<ST> QueryFragment<MultiBackend> for Uncached<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.0.walk_ast(out)
    }
}

impl<ST, Conn> diesel::RunQueryDsl<Conn> for Uncached<ST> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_text_numbers_binds_in_order() {
        let mut inner = Sql::<()>::new("b IN (");
        inner.text_list(["x", "y"]).push(")");
        let mut q = Sql::<()>::new("SELECT 1 WHERE a = ");
        q.text("v").push(" AND ").append(&inner).limit(5);
        let (text, binds) = q.to_postgres();
        assert_eq!(
            text,
            "SELECT 1 WHERE a = $1 AND b IN ($2, $3) LIMIT CAST($4 AS BIGINT)"
        );
        assert_eq!(
            binds,
            vec![
                &Bind::Text("v".into()),
                &Bind::Text("x".into()),
                &Bind::Text("y".into()),
                &Bind::Int(5)
            ]
        );
    }
}
