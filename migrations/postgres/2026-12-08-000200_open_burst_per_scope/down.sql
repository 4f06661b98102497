DROP INDEX engine_bursts_scope_key;
DROP INDEX engine_bursts_scope_open;
-- Fails when a scope has a closed and a later burst: drop the older rows' scope_key first.
CREATE UNIQUE INDEX engine_bursts_scope ON engine_bursts (scope_key);
