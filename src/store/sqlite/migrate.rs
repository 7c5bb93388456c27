//! Embedded, idempotent migrations: create missing WeRSS tables, add our columns to tables that
//! lack them (an adopted WeRSS database), then create our indexes. Safe to run at every start.

use crate::store::{Error, Result};
use sqlx::SqlitePool;

const WERSS_TABLES: &str = include_str!("../../../migrations/sqlite/0001_werss_tables.sql");
const INDEXES: &str = include_str!("../../../migrations/sqlite/0002_indexes.sql");

/// Schema version written after a successful migration.
const SCHEMA_VERSION: &str = "1";

/// Our columns: (table, column, declaration).
const OUR_COLUMNS: &[(&str, &str, &str)] = &[
    ("we_cascade_nodes", "capacity", "INTEGER"),
    ("we_cascade_nodes", "in_use", "INTEGER"),
    ("we_cascade_nodes", "fetchers", "TEXT"),
    ("we_cascade_nodes", "features", "TEXT"),
    (
        "we_cascade_nodes",
        "session_state",
        "VARCHAR(20) NOT NULL DEFAULT 'unknown'",
    ),
    ("we_cascade_nodes", "cooldown_until", "DATETIME"),
    (
        "we_cascade_nodes",
        "cooldown_level",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    ("we_cascade_nodes", "version", "VARCHAR(100)"),
    (
        "we_cascade_task_allocations",
        "assigned_node_id",
        "VARCHAR(255)",
    ),
    (
        "we_cascade_task_allocations",
        "feed_count",
        "INTEGER NOT NULL DEFAULT 1",
    ),
    (
        "we_cascade_task_allocations",
        "attempt",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "we_cascade_task_allocations",
        "max_attempts",
        "INTEGER NOT NULL DEFAULT 5",
    ),
    ("we_cascade_task_allocations", "available_at", "DATETIME"),
    ("we_cascade_task_allocations", "lease_token", "VARCHAR(64)"),
    (
        "we_cascade_task_allocations",
        "lease_expires_at",
        "DATETIME",
    ),
    ("we_cascade_task_allocations", "run_deadline", "DATETIME"),
    ("we_cascade_task_allocations", "reason", "VARCHAR(32)"),
    (
        "we_cascade_task_allocations",
        "feed_source",
        "VARCHAR(20) NOT NULL DEFAULT 'wechat'",
    ),
    (
        "we_feeds",
        "source",
        "VARCHAR(20) NOT NULL DEFAULT 'wechat'",
    ),
    ("we_feeds", "url", "VARCHAR(1000)"),
    ("we_feeds", "open_allocation_id", "VARCHAR(255)"),
    ("we_feeds", "last_allocation_id", "VARCHAR(255)"),
    ("we_feeds", "last_task_status", "VARCHAR(20)"),
    ("we_feeds", "last_task_at", "DATETIME"),
    ("we_feeds", "last_node_id", "VARCHAR(255)"),
    ("we_feeds", "last_error", "TEXT"),
    ("we_feeds", "http_etag", "VARCHAR(255)"),
    ("we_feeds", "http_last_modified", "VARCHAR(255)"),
    (
        "we_message_tasks",
        "expose_to_nodes",
        "BOOLEAN NOT NULL DEFAULT 0",
    ),
    ("we_message_tasks", "next_run_at", "DATETIME"),
    ("we_message_tasks", "last_run_at", "DATETIME"),
    ("we_articles", "node_id", "VARCHAR(255)"),
    ("we_articles", "allocation_id", "VARCHAR(255)"),
];

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
