-- Per-login budgets (issue 13 §7): what a reported login's budget has left
-- (`{"hour_left","day_left","resets_at"}`, JSON text) and, while it has no call left, when
-- it gets one back (placement leaves such a login out).
ALTER TABLE cascade_node_logins ADD COLUMN IF NOT EXISTS budget TEXT;
ALTER TABLE cascade_node_logins ADD COLUMN IF NOT EXISTS budget_until TIMESTAMP;
