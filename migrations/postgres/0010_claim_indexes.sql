-- The steal path of a claim (issue 14): each of its parts walks an index in claim order
-- (available_at, dispatched_at, id) and stops at its LIMIT, whatever the queue's depth. Only
-- pending rows are indexed; `status` leads so that SQLite's planner, which has no statistics,
-- sees an equality and prefers these to the other indexes on `status`.
-- Pending rows in claim order: the steal set's rows available since before `steal_after`.
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_pending_order
    ON we_cascade_task_allocations (status, available_at, dispatched_at, id)
    WHERE status = 'pending';
-- Pending rows whose availability moved past their dispatch (retried or released): the only
-- rows that can be old by dispatch yet available only recently.
CREATE INDEX IF NOT EXISTS ix_cascade_alloc_pending_moved
    ON we_cascade_task_allocations (status, available_at, dispatched_at, id)
    WHERE status = 'pending' AND available_at > dispatched_at;
