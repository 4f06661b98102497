ALTER TABLE engine_approvals DROP COLUMN decided_as;
ALTER TABLE engine_approvals DROP COLUMN decided_by_credential;
ALTER TABLE engine_approvals DROP COLUMN decided_by_user_id;
ALTER TABLE api_tokens DROP COLUMN user_id;
