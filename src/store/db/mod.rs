//! The one seam between the store's operations and the two databases.
//!
//! Every operation is written once, as an `async fn` over a [`Tx`]: SQL in the dialect both
//! backends accept (`$n` parameters, `CAST`, `COALESCE`, `CASE`), typed [`Arg`]s, and rows
//! read back as owned [`Row`]s through [`RowExt`]. Where the dialects truly differ, the SQL
//! names a fragment in braces and [`Tx::sql`] writes it for the backend:
//!
//! | fragment | SQLite | PostgreSQL |
//! |---|---|---|
//! | `{in:$n}` (a list argument) | `IN (SELECT value FROM json_each($n))` | `= ANY($n)` |
//! | `{not_in:$n}` | `NOT IN (SELECT value FROM json_each($n))` | `<> ALL($n)` |
//! | `{for_update}` | nothing (one writer) | `FOR UPDATE` |
//! | `{skip_locked}` | nothing | `FOR UPDATE SKIP LOCKED` |
//! | `{least}` / `{greatest}` | `MIN` / `MAX` | `LEAST` / `GREATEST` |
//! | `{true}` / `{false}` | `1` / `0` | `TRUE` / `FALSE` |
//!
//! A `LIMIT` or `OFFSET` argument is written `CAST($n AS BIGINT)`, never a bare `$n`: SQLite's
//! planner reads a bare one's value, and the statement is then prepared again each time it
//! is bound (a sixth of a claim's time).
//!
//! How a request runs differs by backend, never what it does:
//! - **SQLite**: every write runs on one thread that owns the write connection ([`sqlite`]).
//!   A request costs one hand-off; requests queued while the thread was busy commit together
//!   (group commit), each inside its own savepoint so one failure rolls back only itself.
//!   Reads run on a small pool of read-only connections on the blocking threads.
//! - **PostgreSQL**: a request is one transaction on a pooled connection, run in its own task
//!   so a caller that goes away cannot leave it half done.
//!
//! On SQLite an operation's futures are always ready (the connection is synchronous), so the
//! same `async` code is driven to completion on the writer thread without a runtime.

mod pg;
pub(crate) mod sqlite;

pub(crate) use pg::PgDb;

use super::rows::RowExt;
use super::{Error, Result};
use crate::protocol::time;
use chrono::NaiveDateTime;
use futures::future::BoxFuture;
use std::borrow::Cow;
use std::sync::Arc;

/// Which SQL dialect a [`Tx`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound value. Nulls keep their type (PostgreSQL infers a parameter's type from it).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    /// A UTC time: text (`YYYY-MM-DD HH:MM:SS.ffffff`) on SQLite, `TIMESTAMP` on PostgreSQL.
    Time(Option<NaiveDateTime>),
    /// A list of strings for `{in:$n}`: JSON text on SQLite, `text[]` on PostgreSQL.
    List(Vec<String>),
}

macro_rules! arg_from {
    ($($t:ty => $v:ident, $conv:expr;)*) => {$(
        impl From<$t> for Arg {
            fn from(value: $t) -> Self {
                let conv: fn($t) -> _ = $conv;
                Arg::$v(conv(value))
            }
        }
    )*};
}

arg_from! {
    i64 => Int, Some;
    Option<i64> => Int, |v| v;
    i32 => Int, |v| Some(i64::from(v));
    f64 => Real, Some;
    Option<f64> => Real, |v| v;
    bool => Bool, Some;
    Option<bool> => Bool, |v| v;
    String => Text, Some;
    &String => Text, |v| Some(v.clone());
    &str => Text, |v| Some(v.to_string());
    Option<String> => Text, |v| v;
    Option<&String> => Text, |v| v.cloned();
    Option<&str> => Text, |v| v.map(str::to_string);
    &Option<String> => Text, Clone::clone;
    NaiveDateTime => Time, Some;
    Option<NaiveDateTime> => Time, |v| v;
    Vec<String> => List, |v| v;
    &Vec<String> => List, Clone::clone;
    &[String] => List, <[String]>::to_vec;
}

/// Builds an `&[Arg]` from values of any type [`Arg`] converts from.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::db::Arg::from($v)),*][..] };
}
pub(crate) use args;

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Time(NaiveDateTime),
}

/// One row, owned, with its column names (shared by the rows of one result).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    cols: Arc<[String]>,
    vals: Vec<Val>,
}

impl Row {
    pub(crate) fn new(cols: Arc<[String]>, vals: Vec<Val>) -> Self {
        Self { cols, vals }
    }

    fn get(&self, col: &str) -> Result<&Val> {
        self.cols
            .iter()
            .position(|c| c == col)
            .map(|i| &self.vals[i])
            .ok_or_else(|| Error::Invalid(format!("no column {col} in the result")))
    }

    /// The first column.
    fn first(&self) -> &Val {
        self.vals.first().unwrap_or(&Val::Null)
    }
}

impl Val {
    fn text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Int(n) => Some(n.to_string()),
            Val::Real(x) => Some(x.to_string()),
            Val::Text(s) => Some(s.clone()),
            Val::Time(t) => Some(time::to_db(*t)),
        }
    }

    #[allow(clippy::cast_possible_truncation)]
    fn int(&self) -> Option<i64> {
        match self {
            Val::Int(n) => Some(*n),
            Val::Real(x) => Some(*x as i64),
            Val::Text(s) => s.trim().parse().ok(),
            Val::Null | Val::Time(_) => None,
        }
    }

    fn time(&self) -> Option<NaiveDateTime> {
        match self {
            Val::Time(t) => Some(*t),
            Val::Text(s) => time::parse(s),
            _ => None,
        }
    }
}

impl RowExt for Row {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.get(col)?.text())
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.get(col)?.int())
    }
    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }
    fn time(&self, col: &str) -> Result<Option<NaiveDateTime>> {
        Ok(self.get(col)?.time())
    }
}

/// A request's connection, inside its transaction (writes) or on a read connection.
pub(crate) enum Tx {
    Sqlite(rusqlite::Connection),
    Pg(pg::PgConn),
}

impl Tx {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Pg(_) => Dialect::Postgres,
        }
    }

    pub(crate) fn is_pg(&self) -> bool {
        self.dialect() == Dialect::Postgres
    }

    /// Runs a statement; the number of rows it changed.
    pub(crate) async fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64> {
        let sql = render(self.dialect(), sql);
        match self {
            Tx::Sqlite(c) => sqlite::exec(c, &sql, args),
            Tx::Pg(c) => c.exec(&sql, args).await,
        }
    }

    /// Runs a query; all its rows.
    pub(crate) async fn rows(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
        let sql = render(self.dialect(), sql);
        match self {
            Tx::Sqlite(c) => sqlite::rows(c, &sql, args, usize::MAX),
            Tx::Pg(c) => c.rows(&sql, args).await,
        }
    }

    /// Runs a query; its first row, if any.
    pub(crate) async fn opt(&mut self, sql: &str, args: &[Arg]) -> Result<Option<Row>> {
        let sql = render(self.dialect(), sql);
        match self {
            Tx::Sqlite(c) => Ok(sqlite::rows(c, &sql, args, 1)?.into_iter().next()),
            Tx::Pg(c) => c.opt(&sql, args).await,
        }
    }

    /// Runs a query that returns a row.
    pub(crate) async fn one(&mut self, sql: &str, args: &[Arg]) -> Result<Row> {
        self.opt(sql, args)
            .await?
            .ok_or_else(|| Error::Invalid("the query returned no row".into()))
    }

    /// The first column of the first row as an integer (`None` for no row or NULL).
    pub(crate) async fn int(&mut self, sql: &str, args: &[Arg]) -> Result<Option<i64>> {
        Ok(self.opt(sql, args).await?.and_then(|r| r.first().int()))
    }

    /// The first column of the first row as text (`None` for no row or NULL).
    pub(crate) async fn text(&mut self, sql: &str, args: &[Arg]) -> Result<Option<String>> {
        Ok(self.opt(sql, args).await?.and_then(|r| r.first().text()))
    }

    /// The first column of every row as text.
    pub(crate) async fn texts(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<String>> {
        Ok(self
            .rows(sql, args)
            .await?
            .iter()
            .filter_map(|r| r.first().text())
            .collect())
    }

    /// Runs several statements without arguments (schema text).
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Tx::Sqlite(c) => c.execute_batch(sql).map_err(sqlite::error),
            Tx::Pg(c) => c.batch(sql).await,
        }
    }
}

/// Writes the fragments of `sql` (see the module's table) for `dialect`. On SQLite, `$n`
/// becomes `?n`: a numbered parameter binds by its number, where a named one (`$n` is a name
/// to SQLite) would cost a search of every name per bind.
pub(crate) fn render(dialect: Dialect, sql: &str) -> Cow<'_, str> {
    let sql = fragments(dialect, sql);
    if dialect == Dialect::Sqlite && sql.contains('$') {
        return Cow::Owned(numbered(&sql));
    }
    sql
}

/// `$n` → `?n`, outside quoted text.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn fragments(dialect: Dialect, sql: &str) -> Cow<'_, str> {
    if !sql.contains('{') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let token = &rest[open + 1..open + close];
        let pg = dialect == Dialect::Postgres;
        match token.split_once(':') {
            Some(("in", p)) if pg => out.push_str(&format!("= ANY({p})")),
            Some(("in", p)) => out.push_str(&format!("IN (SELECT value FROM json_each({p}))")),
            Some(("not_in", p)) if pg => out.push_str(&format!("<> ALL({p})")),
            Some(("not_in", p)) => {
                out.push_str(&format!("NOT IN (SELECT value FROM json_each({p}))"));
            }
            _ => out.push_str(match (token, pg) {
                ("for_update", true) => "FOR UPDATE",
                ("skip_locked", true) => "FOR UPDATE SKIP LOCKED",
                ("for_update" | "skip_locked", false) => "",
                ("least", true) => "LEAST",
                ("least", false) => "MIN",
                ("greatest", true) => "GREATEST",
                ("greatest", false) => "MAX",
                ("true", true) => "TRUE",
                ("true", false) => "1",
                ("false", true) => "FALSE",
                ("false", false) => "0",
                // Not a fragment (JSON text in a literal, say): kept as written.
                _ => &rest[open..=open + close],
            }),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// An operation run as one request: it borrows the request's [`Tx`] for its whole life.
pub(crate) type Op<T> = Box<dyn for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send>;

/// The database behind a store: how requests reach it.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(Arc<sqlite::SqliteDb>),
    Pg(pg::PgDb),
}

impl Db {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Pg(_) => Dialect::Postgres,
        }
    }

    /// Runs `op` as one write transaction; its result once committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => db.write(Box::new(op)).await,
            Db::Pg(db) => db.write(Box::new(op)).await,
        }
    }

    /// Runs `op` as a write whose statements need not commit together (each is correct
    /// alone): on PostgreSQL each commits by itself, saving the transaction's two round
    /// trips; on SQLite it is a [`Db::write`] (its writer commits in groups anyway).
    pub(crate) async fn write_each<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => db.write(Box::new(op)).await,
            Db::Pg(db) => db.write_each(Box::new(op)).await,
        }
    }

    /// Runs `op` on a read connection (one consistent snapshot on SQLite).
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => db.read(Box::new(op)).await,
            Db::Pg(db) => db.read(Box::new(op)).await,
        }
    }

    /// The PostgreSQL pool, for what only PostgreSQL has (LISTEN/NOTIFY).
    pub(crate) fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match self {
            Db::Pg(db) => Some(&db.pool),
            Db::Sqlite(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_written_for_each_dialect() {
        let sql = "SELECT * FROM t WHERE id {in:$1} AND n = {least}(a, b) {skip_locked}";
        assert_eq!(
            render(Dialect::Postgres, sql),
            "SELECT * FROM t WHERE id = ANY($1) AND n = LEAST(a, b) FOR UPDATE SKIP LOCKED"
        );
        assert_eq!(
            render(Dialect::Sqlite, sql),
            "SELECT * FROM t WHERE id IN (SELECT value FROM json_each(?1)) AND n = MIN(a, b) "
        );
        assert_eq!(
            render(Dialect::Sqlite, "x {not_in:$2} AND '{\"a\":1}'"),
            "x NOT IN (SELECT value FROM json_each(?2)) AND '{\"a\":1}'"
        );
        assert!(matches!(
            render(Dialect::Sqlite, "SELECT 1"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn values_read_leniently() {
        let row = Row::new(
            vec!["a".into(), "b".into(), "c".into(), "d".into()].into(),
            vec![
                Val::Text(" 42 ".into()),
                Val::Int(7),
                Val::Null,
                Val::Text("2026-01-02 03:04:05".into()),
            ],
        );
        assert_eq!(row.opt_int("a").unwrap(), Some(42));
        assert_eq!(row.opt_text("b").unwrap().as_deref(), Some("7"));
        assert_eq!(row.opt_text("c").unwrap(), None);
        assert!(row.time("d").unwrap().is_some());
        assert!(row.flag("b").unwrap());
        assert!(row.opt_int("zz").is_err());
    }
}
