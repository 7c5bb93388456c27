-- Freshness mode (issue 15): the parent takes due feeds in `check_order` (the planned next
-- check, moved ahead by the feed's priority), only those with no open allocation.
CREATE INDEX IF NOT EXISTS ix_feeds_check_order
    ON we_feeds (check_order)
    WHERE open_allocation_id IS NULL AND check_order IS NOT NULL;
-- Feeds never checked nor planned (new, or adopted before schedules existed) go first.
CREATE INDEX IF NOT EXISTS ix_feeds_never_checked
    ON we_feeds (id)
    WHERE last_task_at IS NULL AND open_allocation_id IS NULL AND check_order IS NULL;
