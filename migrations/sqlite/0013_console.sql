-- The operator's console (issue 16).
-- Each attempt of an allocation that did not complete (a failure report, an expired lease, an
-- offline or disabled node, a release, a cancel): the detail drawer shows them with their
-- errors. A completed attempt is the allocation row itself, so completions write nothing here.
CREATE TABLE IF NOT EXISTS cascade_allocation_attempts (
    id VARCHAR(64) PRIMARY KEY,
    allocation_id VARCHAR(255) NOT NULL,
    attempt INTEGER NOT NULL,
    node_id VARCHAR(255),
    outcome VARCHAR(20) NOT NULL,
    reason VARCHAR(40),
    error_message TEXT,
    at DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_cascade_attempts_allocation
    ON cascade_allocation_attempts (allocation_id, at);
-- Who did what, when: one row per operator action (never a secret in `detail`).
CREATE TABLE IF NOT EXISTS cascade_audit_log (
    id VARCHAR(64) PRIMARY KEY,
    at DATETIME NOT NULL,
    actor VARCHAR(255) NOT NULL,
    action VARCHAR(60) NOT NULL,
    target VARCHAR(255),
    detail TEXT
);
CREATE INDEX IF NOT EXISTS ix_cascade_audit_at ON cascade_audit_log (at);
-- A node's state once a minute, for the health chart; any parent may write a minute, the
-- first one wins.
CREATE TABLE IF NOT EXISTS cascade_node_samples (
    node_id VARCHAR(255) NOT NULL,
    minute DATETIME NOT NULL,
    online INTEGER NOT NULL,
    cooling INTEGER NOT NULL,
    session_expired INTEGER NOT NULL,
    held INTEGER NOT NULL,
    PRIMARY KEY (node_id, minute)
);
CREATE INDEX IF NOT EXISTS ix_cascade_node_samples_minute ON cascade_node_samples (minute);
-- Throughput per minute reads finished allocations by their end.
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_completed
    ON we_cascade_task_allocations (completed_at) WHERE completed_at IS NOT NULL;
