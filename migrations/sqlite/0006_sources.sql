-- WeChat sources (issue 13 §3): whether each source is open or found closed for everyone,
-- and (below) the nodes whose logins it refused since its last success: the evidence of closure.
CREATE TABLE IF NOT EXISTS cascade_sources (
    source VARCHAR(40) PRIMARY KEY,
    state VARCHAR(20) NOT NULL DEFAULT 'open',
    since DATETIME,
    last_ok_at DATETIME,
    last_error TEXT,
    last_error_at DATETIME,
    probe_at DATETIME,
    updated_at DATETIME NOT NULL
);
-- Which source last read each feed (issue 13 §2).
CREATE TABLE IF NOT EXISTS cascade_feed_sources (
    feed_id VARCHAR(255) PRIMARY KEY,
    source VARCHAR(40) NOT NULL,
    ok_at DATETIME NOT NULL
);
-- One row per source and node refused since the source's last success (inserted atomically,
-- so concurrent reports from several nodes all count).
CREATE TABLE IF NOT EXISTS cascade_source_refusals (
    source VARCHAR(40) NOT NULL,
    node_id VARCHAR(255) NOT NULL,
    at DATETIME NOT NULL,
    PRIMARY KEY (source, node_id)
);
