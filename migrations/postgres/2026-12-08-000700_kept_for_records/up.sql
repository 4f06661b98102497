-- Accounts kept disabled for their records now say so in their planned record
-- (`kept_for_records`), so a later plan of a rehire whose new role has no account there hands
-- the records over instead of deleting them. Accounts kept before this release are the
-- disabled ones with an open `records_kept` incident.
UPDATE engine_accounts a
SET planned = (a.planned::jsonb || '{"kept_for_records": true}'::jsonb)::text
WHERE (a.planned::jsonb ->> 'exists') = 'true'
  AND (a.planned::jsonb ->> 'enabled') = 'false'
  AND EXISTS (
    SELECT 1 FROM engine_incidents i
    WHERE i.kind = 'records_kept' AND i.status = 'open'
      AND i.user_id = a.user_id AND i.connector = a.connector
  );
