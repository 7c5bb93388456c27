-- Feeds whose next check is not planned yet (issue 15): a completion clears a feed's
-- `next_check_at`, and the parent's schedule pass plans it again from the feed's history.
CREATE INDEX IF NOT EXISTS ix_feeds_unscheduled
    ON we_feeds (last_task_at)
    WHERE next_check_at IS NULL AND last_task_at IS NOT NULL;
