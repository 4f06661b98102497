ALTER TABLE engine_holds DROP COLUMN guard;
ALTER TABLE engine_policy_applied DROP COLUMN guard;
