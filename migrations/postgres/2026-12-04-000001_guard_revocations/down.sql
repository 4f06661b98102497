DROP TABLE engine_replan_users;
DROP INDEX engine_events_hold_idx;
DROP INDEX engine_events_revokes_idx;
ALTER TABLE engine_events DROP COLUMN revokes;
