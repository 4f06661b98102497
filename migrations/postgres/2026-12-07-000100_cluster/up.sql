-- Several nodes on one database (docs/deployment.md, "Several nodes").
--
-- The nodes that run on this database: each upserts its row every few seconds and whenever it
-- loads a policy, so an operator sees which policy file (SHA-256) each node runs and when it was
-- loaded; the newest load is the cluster's policy and a node that differs is reported.
CREATE TABLE cluster_nodes (
    node_id          TEXT PRIMARY KEY,
    started          TEXT NOT NULL,
    seen             TEXT NOT NULL,
    policy_sha256    TEXT,
    policy_loaded    TEXT
);
-- Jobs that run once per period across nodes (audit anchoring and retention): the node that
-- moves next_at forward runs the period (compare-and-set), the others skip it.
CREATE TABLE cluster_schedules (
    name     TEXT PRIMARY KEY,
    next_at  TEXT NOT NULL,
    owner    TEXT
);

-- Wake-ups across nodes: a transaction that makes outbox work runnable, or queues a timer that
-- is already due, sends a NOTIFY (delivered at commit, none after a rollback, duplicates within
-- a transaction folded into one); every node LISTENs and wakes its workers. Claims, renewals and
-- outcomes notify nobody (a finished operation's successor is claimed by the node that finished
-- it), and a retry's future not_before does not either: the poll covers those.
CREATE FUNCTION scimhub_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scimhub_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER engine_outbox_notify_insert AFTER INSERT ON engine_outbox
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION scimhub_notify_outbox();
-- released (held, failed or waiting -> pending) or made due earlier (a resume, a retry now)
CREATE TRIGGER engine_outbox_notify_release AFTER UPDATE OF status, not_before ON engine_outbox
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'running'
        AND (OLD.status <> 'pending' OR NEW.not_before < OLD.not_before))
    EXECUTE FUNCTION scimhub_notify_outbox();

CREATE FUNCTION scimhub_notify_timers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scimhub_timers', '');
    RETURN NULL;
END $$;
-- Timestamps are stored as RFC 3339 text with microseconds and Z (store::fmt_ts), so text order
-- is time order.
CREATE TRIGGER engine_timers_notify_due AFTER INSERT ON engine_timers
    FOR EACH ROW WHEN (NEW.status = 'pending'
        AND NEW.due <= to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    EXECUTE FUNCTION scimhub_notify_timers();
