-- Incident notices: the ladder position (`notify_count`, `next_notify_at`; NULL = due now) and
-- who acknowledged or resolved it.
ALTER TABLE engine_incidents ADD COLUMN notify_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE engine_incidents ADD COLUMN next_notify_at TEXT;
ALTER TABLE engine_incidents ADD COLUMN acknowledged_at TEXT;
ALTER TABLE engine_incidents ADD COLUMN acknowledged_by TEXT;
ALTER TABLE engine_incidents ADD COLUMN resolved_at TEXT;
ALTER TABLE engine_incidents ADD COLUMN resolved_by TEXT;
ALTER TABLE engine_incidents ADD COLUMN note TEXT;
CREATE INDEX engine_incidents_notify_idx ON engine_incidents (status, next_notify_at);
-- A chat delivery (`[[incidents.chat]]` name) rather than a mail: its body is the webhook payload.
ALTER TABLE engine_notifications ADD COLUMN channel TEXT;
