DROP INDEX engine_incidents_dedupe_idx;
ALTER TABLE engine_incidents DROP COLUMN dedupe_key;
DROP INDEX engine_outbox_plan_idx;
DROP INDEX engine_events_plan_idx;
ALTER TABLE engine_events DROP COLUMN unsupported;
ALTER TABLE engine_events DROP COLUMN sla_seconds;
ALTER TABLE engine_events DROP COLUMN sla_result;
ALTER TABLE engine_events DROP COLUMN completed;
ALTER TABLE engine_events DROP COLUMN sla_due;
