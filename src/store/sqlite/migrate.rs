//! Embedded, idempotent migrations: create missing WeRSS tables, add our columns to tables that
//! lack them (an adopted WeRSS database), then create our indexes. Safe to run at every start.

use crate::store::schema::{OUR_COLUMNS, SCHEMA_VERSION};
use crate::store::{Error, Result};
use sqlx::SqlitePool;

const WERSS_TABLES: &str = include_str!("../../../migrations/sqlite/0001_werss_tables.sql");
const INDEXES: &str = include_str!("../../../migrations/sqlite/0002_indexes.sql");

/// Brings the schema up to date in one transaction.
pub(super) async fn run(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(WERSS_TABLES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating tables: {e}")))?;
    for (table, column, decl) in OUR_COLUMNS {
        let present: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
                .bind(*table)
                .bind(*column)
                .fetch_one(&mut *tx)
                .await?;
        if present == 0 {
            let sql = format!("ALTER TABLE {table} ADD COLUMN {column} {decl}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::Migrate(format!("adding {table}.{column}: {e}")))?;
        }
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
