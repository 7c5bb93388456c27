//! PostgreSQL: a request is one transaction on a pooled connection, run in its own task.

use super::{Arg, Op, Row, Tx, Val};
use crate::store::{Error, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Column, PgConnection, PgPool, Postgres, Row as _, TypeInfo, ValueRef};
use std::sync::Arc;

/// A request's PostgreSQL connection: inside a transaction for writes.
pub(crate) enum PgConn {
    Tx(sqlx::Transaction<'static, Postgres>),
    Plain(PoolConnection<Postgres>),
}

impl PgConn {
    fn conn(&mut self) -> &mut PgConnection {
        match self {
            PgConn::Tx(t) => t,
            PgConn::Plain(c) => c,
        }
    }

    pub(super) async fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64> {
        let done = bind(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn rows(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
        let rows = bind(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args)
            .fetch_all(self.conn())
            .await?;
        convert(&rows)
    }

    pub(super) async fn opt(&mut self, sql: &str, args: &[Arg]) -> Result<Option<Row>> {
        let row = bind(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args)
            .fetch_optional(self.conn())
            .await?;
        Ok(convert(row.as_slice())?.into_iter().next())
    }

    pub(super) async fn batch(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

fn bind<'q>(
    mut q: Query<'q, Postgres, PgArguments>,
    args: &[Arg],
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        q = match arg.clone() {
            Arg::Int(v) => q.bind(v),
            Arg::Real(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::List(v) => q.bind(v),
        };
    }
    q
}

/// Reads rows by their column types, so an adopted WeRSS database (INTEGER, BOOLEAN,
/// TIMESTAMP, or text where numbers are expected) reads the same as ours.
fn convert(rows: &[PgRow]) -> Result<Vec<Row>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let cols: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    rows.iter()
        .map(|r| {
            let vals = (0..cols.len())
                .map(|i| value(r, i))
                .collect::<Result<Vec<_>>>()?;
            Ok(Row::new(Arc::clone(&cols), vals))
        })
        .collect()
}

fn value(r: &PgRow, i: usize) -> Result<Val> {
    let raw = r.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Val::Null);
    }
    let kind = raw.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INT2" => Val::Int(i64::from(r.try_get::<i16, _>(i)?)),
        "INT4" => Val::Int(i64::from(r.try_get::<i32, _>(i)?)),
        "INT8" => Val::Int(r.try_get::<i64, _>(i)?),
        "BOOL" => Val::Int(i64::from(r.try_get::<bool, _>(i)?)),
        "FLOAT4" => Val::Real(f64::from(r.try_get::<f32, _>(i)?)),
        "FLOAT8" => Val::Real(r.try_get::<f64, _>(i)?),
        "TIMESTAMP" => Val::Time(r.try_get::<NaiveDateTime, _>(i)?),
        "TIMESTAMPTZ" => Val::Time(r.try_get::<DateTime<Utc>, _>(i)?.naive_utc()),
        _ => r
            .try_get_unchecked::<String, _>(i)
            .map_or(Val::Null, Val::Text),
    })
}

/// The PostgreSQL database: its pool.
#[derive(Clone)]
pub(crate) struct PgDb {
    pub(crate) pool: PgPool,
}

impl PgDb {
    /// Connects to `url` (a `postgres://` URL).
    pub(crate) async fn open(url: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            // A ping before each use is one more round trip per request (217 → 292 claim
            // cycles/s at 32 children without it); a dead connection fails its request
            // once and the pool drops it.
            .test_before_acquire(false)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Runs `op` in one transaction in its own task: a caller that goes away does not cut
    /// the transaction short.
    pub(crate) async fn write<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        let pool = self.pool.clone();
        let task = tokio::spawn(async move {
            let mut tx = Tx::Pg(PgConn::Tx(pool.begin().await?));
            let result = op(&mut tx).await;
            let Tx::Pg(PgConn::Tx(t)) = tx else {
                unreachable!("a PostgreSQL write keeps its transaction")
            };
            match result {
                Ok(v) => {
                    t.commit().await?;
                    Ok(v)
                }
                Err(e) => {
                    t.rollback().await.ok();
                    Err(e)
                }
            }
        });
        task.await
            .map_err(|_| Error::Invalid("the request failed inside the database".into()))?
    }

    /// Runs `op` in its own task with each statement committing on its own: no `BEGIN` and
    /// `COMMIT` round trips, for writes whose statements need not stand or fall together.
    pub(crate) async fn write_each<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        let pool = self.pool.clone();
        let task = tokio::spawn(async move {
            let mut tx = Tx::Pg(PgConn::Plain(pool.acquire().await?));
            op(&mut tx).await
        });
        task.await
            .map_err(|_| Error::Invalid("the request failed inside the database".into()))?
    }

    /// Runs `op` on a pooled connection.
    pub(crate) async fn read<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        let mut tx = Tx::Pg(PgConn::Plain(self.pool.acquire().await?));
        op(&mut tx).await
    }
}
