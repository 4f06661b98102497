-- A policy edit that loosens the blast-radius guard is mailed to security. The same edit could
-- empty [notify] security, so each applied policy records its security addresses (a JSON array
-- of strings; NULL when an earlier release applied it) and the mail goes to those of the policy
-- before as well as the new one's.
ALTER TABLE engine_policy_applied ADD COLUMN security TEXT;
