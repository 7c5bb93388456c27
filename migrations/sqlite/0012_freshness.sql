-- Freshness mode (issue 15): the parent takes the due feeds of one source in `check_order`
-- (the planned next check, moved ahead by the feed's priority), only enabled feeds with no
-- open allocation.
CREATE INDEX IF NOT EXISTS ix_feeds_check_order
    ON we_feeds (source, check_order)
    WHERE open_allocation_id IS NULL AND check_order IS NOT NULL AND status = 1;
-- Feeds never checked nor planned (new, or adopted before schedules existed) go first.
CREATE INDEX IF NOT EXISTS ix_feeds_never_checked
    ON we_feeds (source, id)
    WHERE last_task_at IS NULL AND open_allocation_id IS NULL AND check_order IS NULL
      AND status = 1;
-- Feeds planned before `check_order` existed (schema 16) keep their planned check.
UPDATE we_feeds SET check_order = next_check_at
 WHERE check_order IS NULL AND next_check_at IS NOT NULL;
