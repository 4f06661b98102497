-- A request's or run's burst may be closed before the request or run ends (its plans all
-- finished and no joiner came for the onboarding window); a later joiner of the same scope
-- then starts a new burst under the same key. So the key is unique among open bursts only.
-- Added before the old index goes, so the key stays unique among open bursts throughout; an
-- older node still finds its scope's burst by key (store/bursts.rs).
CREATE UNIQUE INDEX engine_bursts_scope_open ON engine_bursts (scope_key) WHERE reported IS NULL;
DROP INDEX engine_bursts_scope;
CREATE INDEX engine_bursts_scope_key ON engine_bursts (scope_key);
