-- SLAs per event (issue #14): when a plan's SLA ends (`sla_due`, NULL without an `[sla]` entry),
-- when its last operation was done (`completed`), the result (`met` or `breached`, set at the
-- deadline when the plan is not complete then) and the time it actually took, in seconds.
-- `unsupported` lists (JSON) the steps the policy expected that a connector cannot do.
ALTER TABLE engine_events ADD COLUMN sla_due TEXT;
ALTER TABLE engine_events ADD COLUMN completed TEXT;
ALTER TABLE engine_events ADD COLUMN sla_result TEXT;
ALTER TABLE engine_events ADD COLUMN sla_seconds INTEGER;
ALTER TABLE engine_events ADD COLUMN unsupported TEXT;
CREATE INDEX engine_events_plan_idx ON engine_events (plan_id);
CREATE INDEX engine_outbox_plan_idx ON engine_outbox (plan_id, status);

-- An incident raised at most once per key (an SLA breach per plan, an unsupported step per
-- plan, connector and step); NULL keys never collide.
ALTER TABLE engine_incidents ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX engine_incidents_dedupe_idx ON engine_incidents (dedupe_key);
