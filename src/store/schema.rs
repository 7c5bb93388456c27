//! The schema both backends share: our columns on WeRSS tables and the schema version.

/// Schema version written after a successful migration.
/// 2: `cascade_webhook_outbox`. 3: adopted allocations backfilled (`store::adopt`).
/// 4: `cascade_node_logins` and `we_cascade_nodes.reports_logins`. 5: `cascade_login_flows`.
/// 6: `cascade_node_logins.reminded_stage` and `.reminded_expires_at` (expiry reminders).
/// 7: `cascade_sources`, `cascade_feed_sources`, `cascade_source_refusals`.
/// 8: `cascade_article_links` (one article per feed across sources), filled from stored links.
/// 9: `we_feeds.source_chain`, `.backlog_offset`, `.backlog_until`; `we_articles.time_estimated`.
/// 10: `cascade_node_logins.budget` and `.budget_until` (per-login budgets).
/// 11: `cascade_node_commands` (search commands).
/// 12: `we_message_tasks.full_text` (full text switchable per task).
/// 13: the claim indexes (`ix_cascade_alloc_pending_order`, `ix_cascade_alloc_pending_moved`).
/// 14: `we_message_tasks.all_feeds` (tasks over every feed, read at dispatch).
/// 15: claim-order and lease indexes hold only the rows they serve (pending; claimed or
///     executing), so a status change moves fewer index entries.
/// 16: `we_feeds.next_check_at`, `.check_errors` (per-feed schedules).
/// 17: `we_feeds.priority`, `.check_order`, `.check_not_before`, `we_message_tasks.priority`
///     (freshness mode, the upstream's wait per feed);
///     `we_cascade_nodes.rate_window_at`, `.rate_done`, `.rate_prev` (measured capacity).
/// 18: `cascade_allocation_attempts`, `cascade_audit_log`, `cascade_node_samples` and the
///     `completed_at` index (the operator's console).
pub(crate) const SCHEMA_VERSION: &str = "18";

/// Our columns added to WeRSS tables: (table, column, SQLite declaration). PostgreSQL takes
/// the same list through [`pg_declaration`].
pub(crate) const OUR_COLUMNS: &[(&str, &str, &str)] = &[
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
        "we_cascade_nodes",
        "reports_logins",
        "BOOLEAN NOT NULL DEFAULT 0",
    ),
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
    ("we_feeds", "source_chain", "VARCHAR(255)"),
    ("we_feeds", "backlog_offset", "BIGINT"),
    ("we_feeds", "backlog_until", "BIGINT"),
    ("we_feeds", "next_check_at", "DATETIME"),
    ("we_feeds", "check_errors", "INTEGER NOT NULL DEFAULT 0"),
    ("we_feeds", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("we_feeds", "check_order", "DATETIME"),
    ("we_feeds", "check_not_before", "DATETIME"),
    ("we_cascade_nodes", "rate_window_at", "BIGINT"),
    ("we_cascade_nodes", "rate_done", "BIGINT NOT NULL DEFAULT 0"),
    ("we_cascade_nodes", "rate_prev", "BIGINT NOT NULL DEFAULT 0"),
    ("we_message_tasks", "priority", "INTEGER NOT NULL DEFAULT 0"),
    (
        "we_message_tasks",
        "expose_to_nodes",
        "BOOLEAN NOT NULL DEFAULT 0",
    ),
    ("we_message_tasks", "next_run_at", "DATETIME"),
    ("we_message_tasks", "last_run_at", "DATETIME"),
    ("we_message_tasks", "full_text", "INTEGER"),
    (
        "we_message_tasks",
        "all_feeds",
        "BOOLEAN NOT NULL DEFAULT 0",
    ),
    ("we_articles", "node_id", "VARCHAR(255)"),
    ("we_articles", "allocation_id", "VARCHAR(255)"),
    (
        "we_articles",
        "time_estimated",
        "BOOLEAN NOT NULL DEFAULT 0",
    ),
];

/// The PostgreSQL form of an SQLite column declaration.
pub(crate) fn pg_declaration(sqlite: &str) -> String {
    sqlite.replace("DATETIME", "TIMESTAMP").replace(
        "BOOLEAN NOT NULL DEFAULT 0",
        "BOOLEAN NOT NULL DEFAULT FALSE",
    )
}
