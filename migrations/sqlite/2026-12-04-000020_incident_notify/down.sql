ALTER TABLE engine_notifications DROP COLUMN channel;
DROP INDEX engine_incidents_notify_idx;
ALTER TABLE engine_incidents DROP COLUMN note;
ALTER TABLE engine_incidents DROP COLUMN resolved_by;
ALTER TABLE engine_incidents DROP COLUMN resolved_at;
ALTER TABLE engine_incidents DROP COLUMN acknowledged_by;
ALTER TABLE engine_incidents DROP COLUMN acknowledged_at;
ALTER TABLE engine_incidents DROP COLUMN next_notify_at;
ALTER TABLE engine_incidents DROP COLUMN notify_count;
