ALTER TABLE engine_users DROP COLUMN holds_access;
