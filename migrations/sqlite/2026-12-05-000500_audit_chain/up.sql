-- The tamper-evident audit chain (see store/audit_chain.rs and docs/operating.md "Audit trail").
-- Every entry gets a strictly increasing `seq`; `hash` = SHA-256 over `prev_hash` and the entry's
-- canonical form. Rows written before this migration are chained in id order at the next start.
ALTER TABLE engine_audit ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX engine_audit_seq_idx ON engine_audit (seq);
CREATE INDEX engine_audit_at_idx ON engine_audit (at);

-- The chain head: one row, locked (FOR UPDATE on PostgreSQL) by every append, so concurrent
-- writers take turns and never fork the chain.
CREATE TABLE engine_audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO engine_audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Retention: a pruned prefix leaves a checkpoint (the last pruned entry's seq and hash),
-- HMAC-signed with `[audit] checkpoint_key`, from which verification of the rest starts.
CREATE TABLE engine_audit_checkpoints (
    seq    BIGINT PRIMARY KEY,
    hash   TEXT NOT NULL,
    at     TEXT NOT NULL,
    pruned BIGINT NOT NULL,
    mac    TEXT NOT NULL
);
