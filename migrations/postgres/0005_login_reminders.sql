-- Expiry reminders of reported logins (issue 12 §4): the highest reminder already sent for a
-- login (0 none, 1 the 24 h one, 2 the 6 h one, 3 the expiry one) and the `expires_at` it was
-- sent for. A heartbeat's replacement of a node's logins keeps both for logins that stay.
ALTER TABLE cascade_node_logins ADD COLUMN IF NOT EXISTS reminded_stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cascade_node_logins ADD COLUMN IF NOT EXISTS reminded_expires_at TIMESTAMP;
