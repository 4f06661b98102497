-- The audit chain's append as a server-side function, so that a group-commit batch can send its
-- append and its COMMIT in one simple-query message (which carries no bind parameters): the
-- entries travel as one JSON text, and the function's plan stays cached in the session where
-- the same statement written out with its values would be parsed and planned on every batch.
--
-- `entries` is a JSON array of arrays `[at, actor, user_id, connector or null, action, outcome,
-- detail]`, in chain order. The function locks the head, chains the entries after it with their
-- hashes over the canonical form (netstrings of `octet_length`, the bytes `audit_chain::canonical`
-- hashes in Rust; `verify` recomputes every hash, so a difference could not go unnoticed),
-- inserts them, moves the head to the last and returns its `seq`. Only used where the database's
-- encoding is UTF8 (`sha256` then sees the text's UTF-8 bytes).
--
-- Expand only: a node of the previous release keeps its own statement, which computes the same
-- hashes. Nodes of this release call the function by name: a later change of what it takes or
-- does is a new function (`_v2`) beside this one, never a `CREATE OR REPLACE` of it.
CREATE FUNCTION scimhub_audit_append_v1(entries TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    last_seq BIGINT;
BEGIN
    WITH RECURSIVE v(n, at, actor, user_id, connector, action, outcome, detail) AS (
        SELECT e.n, e.x->>0, e.x->>1, e.x->>2, e.x->>3, e.x->>4, e.x->>5, e.x->>6
        FROM jsonb_array_elements(CAST(entries AS JSONB)) WITH ORDINALITY AS e(x, n)
    ),
    h AS (SELECT seq, hash FROM engine_audit_head WHERE id = 1 FOR UPDATE),
    chain(n, seq, prev, hash) AS (
        SELECT CAST(0 AS BIGINT), h.seq, CAST(NULL AS TEXT), h.hash FROM h
        UNION ALL
        SELECT v.n, chain.seq + 1, chain.hash, encode(sha256(convert_to('scimhub-audit-v1,'
            || octet_length((chain.seq + 1)::text) || ':' || (chain.seq + 1)::text || ','
            || octet_length(chain.hash) || ':' || chain.hash || ','
            || octet_length(v.at) || ':' || v.at || ','
            || octet_length(v.actor) || ':' || v.actor || ','
            || octet_length(v.user_id) || ':' || v.user_id || ','
            || CASE WHEN v.connector IS NULL THEN '~'
               ELSE octet_length(v.connector) || ':' || v.connector || ',' END
            || octet_length(v.action) || ':' || v.action || ','
            || octet_length(v.outcome) || ':' || v.outcome || ','
            || octet_length(v.detail) || ':' || v.detail || ',', 'UTF8')), 'hex')
        FROM chain JOIN v ON v.n = chain.n + 1
    ),
    ins AS (
        INSERT INTO engine_audit
            (seq, at, actor, user_id, connector, action, outcome, detail, prev_hash, hash)
        SELECT chain.seq, v.at, v.actor, v.user_id, v.connector, v.action, v.outcome,
            v.detail, chain.prev, chain.hash
        FROM chain JOIN v ON v.n = chain.n
    )
    UPDATE engine_audit_head SET seq = last.seq, hash = last.hash
    FROM (SELECT seq, hash FROM chain ORDER BY n DESC LIMIT 1) AS last
    WHERE engine_audit_head.id = 1
    RETURNING last.seq INTO last_seq;
    IF last_seq IS NULL THEN
        RAISE EXCEPTION 'the audit chain head row is missing, or no entry was given';
    END IF;
    RETURN last_seq;
END
$$;
