-- Accounts kept disabled for their records now say so in their planned record
-- (`kept_for_records`), so a later plan of a rehire whose new role has no account there hands
-- the records over instead of deleting them. Accounts kept before this release are the
-- disabled ones with an open `records_kept` incident.
UPDATE engine_accounts
SET planned = json_set(planned, '$.kept_for_records', json('true'))
WHERE json_valid(planned)
  AND json_extract(planned, '$.exists') = 1
  AND json_extract(planned, '$.enabled') = 0
  AND EXISTS (
    SELECT 1 FROM engine_incidents i
    WHERE i.kind = 'records_kept' AND i.status = 'open'
      AND i.user_id = engine_accounts.user_id AND i.connector = engine_accounts.connector
  );
