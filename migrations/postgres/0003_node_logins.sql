-- Logins each child reports in its heartbeats (issue 12 §5): never secrets, only what an
-- operator needs to see. A node's set is replaced by each heartbeat that carries `logins`.
CREATE TABLE IF NOT EXISTS cascade_node_logins (
    node_id VARCHAR(255) NOT NULL,
    login_id VARCHAR(255) NOT NULL,
    kind VARCHAR(20) NOT NULL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    state VARCHAR(20) NOT NULL,
    expires_at TIMESTAMP,
    cooldown_until TIMESTAMP,
    last_ok_at TIMESTAMP,
    last_error TEXT,
    reported_at TIMESTAMP NOT NULL,
    PRIMARY KEY (node_id, login_id)
);
