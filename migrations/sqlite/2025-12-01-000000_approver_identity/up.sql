-- Approver identity: an API token may act as a directory user (`scimhub token issue --user`), and
-- an approval decision records who decided it (the user, the credential, and the authority the
-- policy gave them for the request's level).
ALTER TABLE api_tokens ADD COLUMN user_id TEXT;
ALTER TABLE engine_approvals ADD COLUMN decided_by_user_id TEXT;
ALTER TABLE engine_approvals ADD COLUMN decided_by_credential TEXT;
ALTER TABLE engine_approvals ADD COLUMN decided_as TEXT;
