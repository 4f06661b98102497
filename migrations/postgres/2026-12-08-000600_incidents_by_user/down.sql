DROP INDEX IF EXISTS engine_incidents_user_kind_idx;
