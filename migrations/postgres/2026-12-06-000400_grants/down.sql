DROP INDEX engine_grants_created_idx;
DROP INDEX engine_grants_state_idx;
DROP INDEX engine_grants_user_idx;
DROP TABLE engine_grants;
