-- The claim query orders by (priority DESC, id) per status; with this index it reads the lane in
-- order and stops at its LIMIT instead of sorting every pending operation on each claim.
CREATE INDEX engine_outbox_lane_idx ON engine_outbox (status, priority DESC, id);
DROP INDEX engine_outbox_claim_idx;
