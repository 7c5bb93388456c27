-- Commands a parent hands a node through the command channel besides QR logins (issue 13 §6):
-- today `search` (MP searchbiz by name). The admin request waits for the node's answer; any
-- parent of a shared database delivers the command and takes the answer.
CREATE TABLE IF NOT EXISTS cascade_node_commands (
    id VARCHAR(64) PRIMARY KEY,
    node_id VARCHAR(255) NOT NULL,
    command VARCHAR(20) NOT NULL,
    payload TEXT NOT NULL,
    state VARCHAR(20) NOT NULL,
    answer TEXT,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    answered_at TIMESTAMP
);
CREATE INDEX IF NOT EXISTS cascade_node_commands_node
    ON cascade_node_commands (node_id, state);
