//! Embedded, idempotent migrations for PostgreSQL, the same steps as SQLite's: create missing
//! WeRSS tables, add our columns (`ADD COLUMN IF NOT EXISTS`), create our indexes. Parents that
//! start together serialize on an advisory lock, so each step runs once at a time.

use crate::store::schema::{OUR_COLUMNS, SCHEMA_VERSION, pg_declaration};
use crate::store::{Error, Result};
use sqlx::PgPool;

const WERSS_TABLES: &str = include_str!("../../../migrations/postgres/0001_werss_tables.sql");
const INDEXES: &str = include_str!("../../../migrations/postgres/0002_indexes.sql");

/// Whether the schema is at [`SCHEMA_VERSION`] (an unreadable version means no).
async fn current(pool: &PgPool) -> bool {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM cascade_settings WHERE key = 'schema_version'")
            .fetch_optional(pool)
            .await
            .ok()
            .flatten();
    stored.as_deref() == Some(SCHEMA_VERSION)
}

/// The advisory lock key migrations hold (any constant shared by every parent).
const MIGRATION_LOCK: i64 = 0x0057_6552_5353_0001;

/// Brings the schema up to date in one transaction. A database already at this version is
/// left alone: DDL takes exclusive table locks, which would stall the other parents of a
/// rolling restart behind any long transaction.
pub(super) async fn run(pool: &PgPool) -> Result<()> {
    if current(pool).await {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(WERSS_TABLES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating tables: {e}")))?;
    for (table, column, decl) in OUR_COLUMNS {
        let sql = format!(
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {}",
            pg_declaration(decl)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::Migrate(format!("adding {table}.{column}: {e}")))?;
    }
    sqlx::raw_sql(INDEXES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating indexes: {e}")))?;
    sqlx::query(
        "INSERT INTO cascade_settings (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(SCHEMA_VERSION)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
