ALTER TABLE engine_policy_applied DROP COLUMN security;
