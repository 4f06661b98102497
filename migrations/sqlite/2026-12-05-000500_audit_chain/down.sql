DROP TABLE engine_audit_checkpoints;
DROP TABLE engine_audit_head;
DROP INDEX engine_audit_at_idx;
DROP INDEX engine_audit_seq_idx;
ALTER TABLE engine_audit DROP COLUMN seq;
