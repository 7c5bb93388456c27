//! Embedded, idempotent migrations, the same steps on both backends: create missing WeRSS
//! tables, add our columns to tables that lack them (an adopted WeRSS database), create our
//! tables and indexes, then bring adopted allocations under our state machine
//! ([`crate::store::adopt`]). A database already at this version is only read, so a local
//! command beside a running parent takes no write lock. On PostgreSQL, parents that start
//! together serialize on an advisory lock; on SQLite the writer thread's `BEGIN IMMEDIATE`
//! waits for another process's writer instead of failing.

use crate::clock::Clock;
use crate::store::adopt;
use crate::store::db::{Db, Dialect, Tx, args};
use crate::store::dedup::{ADD_LINK, LINKS_PAGE, key_of};
use crate::store::rows::RowExt;
use crate::store::schema::{OUR_COLUMNS, SCHEMA_VERSION, pg_declaration};
use crate::store::{Error, Result};
use chrono::NaiveDateTime;
use std::collections::{HashMap, HashSet};

/// The schema files of one dialect, in the order they run.
struct Files {
    werss_tables: &'static str,
    node_logins: &'static str,
    login_flows: &'static str,
    login_reminders: &'static str,
    sources: &'static str,
    article_links: &'static str,
    login_budgets: &'static str,
    node_commands: &'static str,
    indexes: &'static str,
    claim_indexes: &'static str,
    feed_schedule: &'static str,
    freshness: &'static str,
    console: &'static str,
}

macro_rules! sql_file {
    ($dir:literal, $name:literal) => {
        include_str!(concat!("../../../migrations/", $dir, "/", $name))
    };
}

macro_rules! files {
    ($dir:literal) => {
        Files {
            werss_tables: sql_file!($dir, "0001_werss_tables.sql"),
            indexes: sql_file!($dir, "0002_indexes.sql"),
            node_logins: sql_file!($dir, "0003_node_logins.sql"),
            login_flows: sql_file!($dir, "0004_login_flows.sql"),
            login_reminders: sql_file!($dir, "0005_login_reminders.sql"),
            sources: sql_file!($dir, "0006_sources.sql"),
            article_links: sql_file!($dir, "0007_article_links.sql"),
            login_budgets: sql_file!($dir, "0008_login_budgets.sql"),
            node_commands: sql_file!($dir, "0009_node_commands.sql"),
            claim_indexes: sql_file!($dir, "0010_claim_indexes.sql"),
            feed_schedule: sql_file!($dir, "0011_feed_schedule.sql"),
            freshness: sql_file!($dir, "0012_freshness.sql"),
            console: sql_file!($dir, "0013_console.sql"),
        }
    };
}

const SQLITE: Files = files!("sqlite");
const POSTGRES: Files = files!("postgres");

/// The advisory lock key PostgreSQL migrations hold (any constant shared by every parent).
const MIGRATION_LOCK: i64 = 0x0057_6552_5353_0001;

/// Brings the schema of `db` up to date in one transaction, unless it is current.
pub(crate) async fn run(db: &Db) -> Result<()> {
    let current = db
        .read(|tx| {
            Box::pin(async move {
                // An unreadable version (no table yet) means not current.
                Ok(tx
                    .text(
                        "SELECT value FROM cascade_settings WHERE key = 'schema_version'",
                        &[],
                    )
                    .await
                    .ok()
                    .flatten())
            })
        })
        .await?;
    if current.as_deref() == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    db.write(|tx| Box::pin(async move { migrate(tx, Clock::system().now()).await }))
        .await
}

async fn step(tx: &mut Tx, sql: &str, what: &str) -> Result<()> {
    tx.batch(sql)
        .await
        .map_err(|e| Error::Migrate(format!("{what}: {e}")))
}

async fn migrate(tx: &mut Tx, now: NaiveDateTime) -> Result<()> {
    let pg = tx.dialect() == Dialect::Postgres;
    let files = if pg { &POSTGRES } else { &SQLITE };
    if pg {
        tx.exec("SELECT pg_advisory_xact_lock($1)", args![MIGRATION_LOCK])
            .await?;
    }
    step(tx, files.werss_tables, "creating tables").await?;
    for (table, column, decl) in OUR_COLUMNS {
        if !has_column(tx, table, column).await? {
            let decl = if pg {
                pg_declaration(decl)
            } else {
                (*decl).to_string()
            };
            let sql = format!("ALTER TABLE {table} ADD COLUMN {column} {decl}");
            step(tx, &sql, &format!("adding {table}.{column}")).await?;
        }
    }
    step(tx, files.node_logins, "creating cascade_node_logins").await?;
    step(tx, files.login_flows, "creating cascade_login_flows").await?;
    step(tx, files.sources, "creating cascade_sources").await?;
    // These files add columns, and SQLite has no `ADD COLUMN IF NOT EXISTS`: each runs once,
    // while its column is missing.
    if !has_column(tx, "cascade_node_logins", "reminded_stage").await? {
        step(tx, files.login_reminders, "adding login reminder columns").await?;
    }
    if !has_column(tx, "cascade_node_logins", "budget").await? {
        step(tx, files.login_budgets, "adding login budget columns").await?;
    }
    let links_new = !has_table(tx, "cascade_article_links").await?;
    step(tx, files.article_links, "creating cascade_article_links").await?;
    if links_new {
        backfill_links(tx).await?;
    }
    step(tx, files.node_commands, "creating cascade_node_commands").await?;
    step(tx, files.indexes, "creating indexes").await?;
    step(tx, files.claim_indexes, "creating claim indexes").await?;
    step(tx, files.feed_schedule, "creating the feed schedule index").await?;
    step(
        tx,
        files.freshness,
        "creating the freshness indexes and ordering planned feeds",
    )
    .await?;
    step(
        tx,
        files.console,
        "creating the attempt history, audit log and node samples",
    )
    .await?;
    backfill(tx, now).await?;
    tx.exec(
        "INSERT INTO cascade_settings (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        args![SCHEMA_VERSION],
    )
    .await?;
    Ok(())
}

/// Whether `table` has `column`.
async fn has_column(tx: &mut Tx, table: &str, column: &str) -> Result<bool> {
    let sql = if tx.is_pg() {
        "SELECT COUNT(*) FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
    } else {
        "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2"
    };
    Ok(tx.int(sql, args![table, column]).await?.unwrap_or(0) > 0)
}

/// Whether `table` exists.
async fn has_table(tx: &mut Tx, table: &str) -> Result<bool> {
    let sql = if tx.is_pg() {
        "SELECT COUNT(*) FROM information_schema.tables
          WHERE table_schema = current_schema() AND table_name = $1"
    } else {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
    };
    Ok(tx.int(sql, args![table]).await?.unwrap_or(0) > 0)
}

/// Applies [`adopt::plan`] to the open allocations and feed pointers (on PostgreSQL the rows
/// are locked, so a parent still running the previous version cannot move them meanwhile).
async fn backfill(tx: &mut Tx, now: NaiveDateTime) -> Result<()> {
    let rows = tx
        .rows(
            &format!("{} ORDER BY id {{for_update}}", adopt::OPEN_ROWS),
            &[],
        )
        .await?;
    let open = rows
        .iter()
        .map(adopt::open_row)
        .collect::<Result<Vec<_>>>()?;
    let mut pointers = HashMap::new();
    for r in tx
        .rows(
            "SELECT id, open_allocation_id FROM we_feeds WHERE open_allocation_id IS NOT NULL",
            &[],
        )
        .await?
    {
        pointers.insert(r.text("id")?, r.text("open_allocation_id")?);
    }
    let children: HashSet<String> = tx
        .texts("SELECT id FROM we_cascade_nodes WHERE node_type = 1", &[])
        .await?
        .into_iter()
        .collect();
    let plan = adopt::plan(&open, &pointers, &children, now);
    for fix in plan.rows {
        tx.exec(
            "UPDATE we_cascade_task_allocations
                SET status = $2, node_id = $3, assigned_node_id = $4,
                    feed_ids = COALESCE($5, feed_ids), feed_count = $6, attempt = $7,
                    available_at = $8, lease_expires_at = $9,
                    error_message = COALESCE($10, error_message),
                    completed_at = CASE WHEN CAST($10 AS TEXT) IS NULL THEN completed_at ELSE $11 END,
                    updated_at = CASE WHEN CAST($10 AS TEXT) IS NULL THEN updated_at ELSE $11 END
              WHERE id = $1",
            args![
                &fix.id,
                &fix.status,
                &fix.node_id,
                &fix.assigned_node_id,
                &fix.feed_ids,
                fix.feed_count,
                fix.attempt,
                fix.available_at,
                fix.lease_expires_at,
                &fix.closed,
                now,
            ],
        )
        .await?;
    }
    for (feed, allocation) in plan.pointers {
        tx.exec(
            "UPDATE we_feeds SET open_allocation_id = $2 WHERE id = $1",
            args![feed, allocation],
        )
        .await?;
    }
    Ok(())
}

/// Records the link key of every stored article with a WeChat link, a page of ids at a time.
async fn backfill_links(tx: &mut Tx) -> Result<()> {
    let mut after = String::new();
    loop {
        let rows = tx.rows(LINKS_PAGE, args![&after]).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.text("id")?;
        for r in &rows {
            if let Some(key) = key_of(&r.text("url")?) {
                tx.exec(ADD_LINK, args![r.text("mp_id")?, key, r.text("id")?])
                    .await?;
            }
        }
    }
}
