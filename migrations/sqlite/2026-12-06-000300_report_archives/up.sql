-- Reports kept as they were made: a contractor's provisioning history, rendered as the report's
-- JSON when the contract-expiry plan completes, so later changes (a rehire, pruned audit
-- entries, deleted rows) do not rewrite it. The contractor report serves the latest copy.
CREATE TABLE report_archives (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- the report: 'contractor'
    kind      TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    -- the engine_events row whose completion archived it (once per event)
    event_id  BIGINT NOT NULL,
    created   TEXT NOT NULL,
    -- the report's JSON, as generated
    body      TEXT NOT NULL
);
CREATE UNIQUE INDEX report_archives_event_idx ON report_archives (kind, event_id);
CREATE INDEX report_archives_user_idx ON report_archives (kind, user_id, id);
