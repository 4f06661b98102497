ALTER TABLE engine_outbox DROP COLUMN claim_seq;
