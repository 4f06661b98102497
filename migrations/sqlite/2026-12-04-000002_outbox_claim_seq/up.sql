-- The fencing token of an outbox claim: +1 on every claim, never reset (attempts is reset by an
-- admin retry). A worker's state changes apply only under (lease_owner, claim_seq).
ALTER TABLE engine_outbox ADD COLUMN claim_seq INTEGER NOT NULL DEFAULT 0;
