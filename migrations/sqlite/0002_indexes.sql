-- Indexes for our access paths; run after our columns exist.
CREATE UNIQUE INDEX IF NOT EXISTS ix_cascade_nodes_api_key
    ON we_cascade_nodes (api_key) WHERE api_key IS NOT NULL AND api_key <> '';
DROP INDEX IF EXISTS ix_cascade_alloc_claim;
DROP INDEX IF EXISTS ix_cascade_alloc_assigned;
-- Claims read only pending rows, so only they are indexed in claim order: a row leaves the
-- index when claimed, and its later changes (executing, completed) touch it no more.
DROP INDEX IF EXISTS ix_cascade_alloc_claim_order;
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_pending_claim
    ON we_cascade_task_allocations (status, assigned_node_id, available_at, dispatched_at, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ix_feeds_open_allocation
    ON we_feeds (open_allocation_id) WHERE open_allocation_id IS NOT NULL;
-- Leases are looked up on held rows only (claimed or executing).
DROP INDEX IF EXISTS ix_cascade_alloc_lease;
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_held_lease
    ON we_cascade_task_allocations (lease_expires_at)
    WHERE status IN ('claimed', 'executing');
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_node
    ON we_cascade_task_allocations (node_id, status);
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_task
    ON we_cascade_task_allocations (task_id, status);
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_dispatched
    ON we_cascade_task_allocations (dispatched_at);
CREATE INDEX IF NOT EXISTS ix_cascade_sync_logs_started
    ON we_cascade_sync_logs (started_at);
CREATE INDEX IF NOT EXISTS ix_articles_mp_publish
    ON we_articles (mp_id, publish_time);
CREATE INDEX IF NOT EXISTS ix_cascade_webhook_due
    ON cascade_webhook_outbox (status, next_attempt_at);
