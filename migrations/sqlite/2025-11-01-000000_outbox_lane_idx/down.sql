CREATE INDEX engine_outbox_claim_idx ON engine_outbox (status, priority, id);
DROP INDEX engine_outbox_lane_idx;
