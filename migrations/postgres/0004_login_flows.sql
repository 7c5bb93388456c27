-- QR login flows (issue 12 §3(b), §4): an admin asked a node to log in, or a node whose login
-- expired started one by itself (`auto_login`). The node runs the flow and reports its steps;
-- the QR text is kept only while the flow is open, the login's secrets never come here.
CREATE TABLE IF NOT EXISTS cascade_login_flows (
    id VARCHAR(64) PRIMARY KEY,
    node_id VARCHAR(255) NOT NULL,
    kind VARCHAR(20) NOT NULL,
    origin VARCHAR(20) NOT NULL,
    state VARCHAR(20) NOT NULL,
    is_open BOOLEAN NOT NULL DEFAULT TRUE,
    qr_text TEXT,
    qr_number INTEGER NOT NULL DEFAULT 0,
    qr_expires_at TIMESTAMP,
    otp_code VARCHAR(16),
    login_id VARCHAR(255),
    account_name VARCHAR(255),
    login_expires_at TIMESTAMP,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- One open flow per node and kind: a second request joins the first (single flight).
CREATE UNIQUE INDEX IF NOT EXISTS cascade_login_flows_one_open
    ON cascade_login_flows (node_id, kind) WHERE is_open;
CREATE INDEX IF NOT EXISTS cascade_login_flows_node
    ON cascade_login_flows (node_id, created_at);
