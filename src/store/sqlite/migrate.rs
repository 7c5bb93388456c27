//! Embedded, idempotent migrations: create missing WeRSS tables, add our columns to tables that
//! lack them (an adopted WeRSS database), create our indexes, then bring adopted allocations
//! under our state machine ([`crate::store::adopt`]). A database already at this version is
//! only read, so a local command beside a running parent takes no write lock.

use crate::clock::Clock;
use crate::protocol::time::to_db;
use crate::store::adopt;
use crate::store::dedup::{ADD_LINK, LINKS_PAGE, key_of};
use crate::store::schema::{OUR_COLUMNS, SCHEMA_VERSION};
use crate::store::{Error, Result};
use chrono::NaiveDateTime;
use sqlx::{SqliteConnection, SqlitePool};
use std::collections::{HashMap, HashSet};

const WERSS_TABLES: &str = include_str!("../../../migrations/sqlite/0001_werss_tables.sql");
const INDEXES: &str = include_str!("../../../migrations/sqlite/0002_indexes.sql");
const NODE_LOGINS: &str = include_str!("../../../migrations/sqlite/0003_node_logins.sql");
const LOGIN_FLOWS: &str = include_str!("../../../migrations/sqlite/0004_login_flows.sql");
const SOURCES: &str = include_str!("../../../migrations/sqlite/0006_sources.sql");
const LOGIN_REMINDERS: &str = include_str!("../../../migrations/sqlite/0005_login_reminders.sql");
const ARTICLE_LINKS: &str = include_str!("../../../migrations/sqlite/0007_article_links.sql");
const LOGIN_BUDGETS: &str = include_str!("../../../migrations/sqlite/0008_login_budgets.sql");
const NODE_COMMANDS: &str = include_str!("../../../migrations/sqlite/0009_node_commands.sql");
const CLAIM_INDEXES: &str = include_str!("../../../migrations/sqlite/0010_claim_indexes.sql");

/// Whether the schema is at [`SCHEMA_VERSION`] (an unreadable version means no).
async fn current(pool: &SqlitePool) -> bool {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM cascade_settings WHERE key = 'schema_version'")
            .fetch_optional(pool)
            .await
            .ok()
            .flatten();
    stored.as_deref() == Some(SCHEMA_VERSION)
}

/// Brings the schema up to date in one transaction, taken as the writer from its start
/// (`BEGIN IMMEDIATE`, so it waits for another process's writer instead of failing).
pub(super) async fn run(pool: &SqlitePool) -> Result<()> {
    if current(pool).await {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(WERSS_TABLES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating tables: {e}")))?;
    for (table, column, decl) in OUR_COLUMNS {
        if !has_column(&mut tx, table, column).await? {
            let sql = format!("ALTER TABLE {table} ADD COLUMN {column} {decl}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::Migrate(format!("adding {table}.{column}: {e}")))?;
        }
    }
    sqlx::raw_sql(NODE_LOGINS)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating cascade_node_logins: {e}")))?;
    sqlx::raw_sql(LOGIN_FLOWS)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating cascade_login_flows: {e}")))?;
    sqlx::raw_sql(SOURCES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating cascade_sources: {e}")))?;
    // SQLite has no `ADD COLUMN IF NOT EXISTS`: the file runs once, while its column is missing.
    if !has_column(&mut tx, "cascade_node_logins", "reminded_stage").await? {
        sqlx::raw_sql(LOGIN_REMINDERS)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::Migrate(format!("adding login reminder columns: {e}")))?;
    }
    if !has_column(&mut tx, "cascade_node_logins", "budget").await? {
        sqlx::raw_sql(LOGIN_BUDGETS)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::Migrate(format!("adding login budget columns: {e}")))?;
    }
    let links_new = !has_table(&mut tx, "cascade_article_links").await?;
    sqlx::raw_sql(ARTICLE_LINKS)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating cascade_article_links: {e}")))?;
    if links_new {
        backfill_links(&mut tx).await?;
    }
    sqlx::raw_sql(NODE_COMMANDS)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating cascade_node_commands: {e}")))?;
    sqlx::raw_sql(INDEXES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating indexes: {e}")))?;
    sqlx::raw_sql(CLAIM_INDEXES)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(format!("creating claim indexes: {e}")))?;
    backfill(&mut tx, Clock::system().now()).await?;
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

/// Whether `table` has `column`.
async fn has_column(tx: &mut SqliteConnection, table: &str, column: &str) -> Result<bool> {
    let present: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
            .bind(table)
            .bind(column)
            .fetch_one(&mut *tx)
            .await?;
    Ok(present > 0)
}

/// Applies [`adopt::plan`] to the open allocations and feed pointers.
async fn backfill(tx: &mut SqliteConnection, now: NaiveDateTime) -> Result<()> {
    let rows = sqlx::query(adopt::OPEN_ROWS).fetch_all(&mut *tx).await?;
    let open = rows
        .iter()
        .map(adopt::open_row)
        .collect::<Result<Vec<_>>>()?;
    let pointers: HashMap<String, String> = sqlx::query_as(
        "SELECT id, open_allocation_id FROM we_feeds WHERE open_allocation_id IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let children: HashSet<String> =
        sqlx::query_scalar("SELECT id FROM we_cascade_nodes WHERE node_type = 1")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let plan = adopt::plan(&open, &pointers, &children, now);
    for fix in plan.rows {
        sqlx::query(
            "UPDATE we_cascade_task_allocations
                SET status = $2, node_id = $3, assigned_node_id = $4,
                    feed_ids = COALESCE($5, feed_ids), feed_count = $6, attempt = $7,
                    available_at = $8, lease_expires_at = $9,
                    error_message = COALESCE($10, error_message),
                    completed_at = CASE WHEN $10 IS NULL THEN completed_at ELSE $11 END,
                    updated_at = CASE WHEN $10 IS NULL THEN updated_at ELSE $11 END
              WHERE id = $1",
        )
        .bind(&fix.id)
        .bind(&fix.status)
        .bind(&fix.node_id)
        .bind(&fix.assigned_node_id)
        .bind(&fix.feed_ids)
        .bind(fix.feed_count)
        .bind(fix.attempt)
        .bind(fix.available_at.map(to_db))
        .bind(fix.lease_expires_at.map(to_db))
        .bind(&fix.closed)
        .bind(to_db(now))
        .execute(&mut *tx)
        .await?;
    }
    for (feed, allocation) in plan.pointers {
        sqlx::query("UPDATE we_feeds SET open_allocation_id = $2 WHERE id = $1")
            .bind(feed)
            .bind(allocation)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

const HAS_TABLE: &str = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1";

/// Whether `table` exists.
async fn has_table(tx: &mut SqliteConnection, table: &str) -> Result<bool> {
    let present: i64 = sqlx::query_scalar(HAS_TABLE)
        .bind(table)
        .fetch_one(&mut *tx)
        .await?;
    Ok(present > 0)
}

/// Records the link key of every stored article with a WeChat link, a page of ids at a time.
async fn backfill_links(tx: &mut SqliteConnection) -> Result<()> {
    let mut after = String::new();
    loop {
        let rows: Vec<(String, String, String)> = sqlx::query_as(LINKS_PAGE)
            .bind(&after)
            .fetch_all(&mut *tx)
            .await?;
        let Some((last, _, _)) = rows.last() else {
            return Ok(());
        };
        after.clone_from(last);
        for (id, mp_id, url) in &rows {
            if let Some(key) = key_of(url) {
                sqlx::query(ADD_LINK)
                    .bind(mp_id)
                    .bind(key)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
}
