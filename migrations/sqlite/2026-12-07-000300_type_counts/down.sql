-- Nothing to undo: PostgreSQL only (per-type resource counts kept by triggers, see the PostgreSQL migration of
-- the same name): SQLite counts once and caches in the process, its one writer keeping the
-- cache current. The version exists on both backends so that their migration lists match.
SELECT 1;
