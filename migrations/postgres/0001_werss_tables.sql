-- WeRSS 1.4.9 tables, created only when missing so a stopped WeRSS database can be adopted.
-- Free-text columns are TEXT here: PostgreSQL enforces VARCHAR(n) (SQLite does not), and a
-- long article URL must not fail an upload. Adopted WeRSS databases keep their own types.
-- Our extra columns are added by the migrator (see src/store/pg/migrate.rs), never by
-- retyping or dropping a WeRSS column.
CREATE TABLE IF NOT EXISTS we_users (
    id VARCHAR(255) PRIMARY KEY,
    username VARCHAR(50) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS we_cascade_nodes (
    id VARCHAR(255) PRIMARY KEY,
    node_type INTEGER NOT NULL DEFAULT 1,
    name TEXT NOT NULL,
    description TEXT,
    api_url TEXT,
    callback_url TEXT,
    api_key VARCHAR(255),
    api_secret_hash VARCHAR(255),
    parent_id VARCHAR(255),
    status INTEGER NOT NULL DEFAULT 0,
    sync_config TEXT,
    last_sync_at TIMESTAMP,
    last_heartbeat_at TIMESTAMP,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS we_cascade_task_allocations (
    id VARCHAR(255) PRIMARY KEY,
    task_id VARCHAR(255) NOT NULL,
    task_name TEXT,
    cron_exp TEXT,
    node_id VARCHAR(255),
    feed_ids TEXT,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    result_summary TEXT,
    error_message TEXT,
    dispatched_at TIMESTAMP,
    claimed_at TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    schedule_run_id VARCHAR(255),
    article_count INTEGER DEFAULT 0,
    new_article_count INTEGER DEFAULT 0,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS we_cascade_sync_logs (
    id VARCHAR(255) PRIMARY KEY,
    node_id VARCHAR(255),
    operation VARCHAR(50),
    direction VARCHAR(20),
    status INTEGER DEFAULT 0,
    data_count INTEGER DEFAULT 0,
    error_message TEXT,
    extra_data TEXT,
    started_at TIMESTAMP,
    completed_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS we_feeds (
    id VARCHAR(255) PRIMARY KEY,
    mp_name TEXT,
    mp_cover TEXT,
    mp_intro TEXT,
    status INTEGER DEFAULT 1,
    sync_time INTEGER,
    update_time INTEGER,
    created_at TIMESTAMP,
    updated_at TIMESTAMP,
    faker_id VARCHAR(255)
);

CREATE TABLE IF NOT EXISTS we_message_tasks (
    id VARCHAR(255) PRIMARY KEY,
    message_type INTEGER DEFAULT 0,
    name TEXT,
    message_template TEXT,
    web_hook_url TEXT,
    headers TEXT,
    cookies TEXT,
    mps_id TEXT,
    cron_exp TEXT,
    status INTEGER DEFAULT 0,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS we_articles (
    id VARCHAR(255) PRIMARY KEY,
    mp_id VARCHAR(255),
    title TEXT,
    pic_url TEXT,
    url TEXT,
    description TEXT,
    extinfo TEXT,
    status INTEGER DEFAULT 1,
    publish_time BIGINT,
    created_at TIMESTAMP,
    updated_at TIMESTAMP,
    updated_at_millis BIGINT,
    is_export INTEGER,
    is_read INTEGER DEFAULT 0,
    content TEXT,
    content_html TEXT,
    content_markdown TEXT
);

-- Ours: parent settings (the generated JWT secret, the schema version).
CREATE TABLE IF NOT EXISTS cascade_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Ours: webhooks waiting to be sent, one row per task and upload batch, written in the
-- upload's transaction so a parent that stops loses none.
CREATE TABLE IF NOT EXISTS cascade_webhook_outbox (
    id VARCHAR(64) PRIMARY KEY,
    task_id VARCHAR(255) NOT NULL,
    article_ids TEXT NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
