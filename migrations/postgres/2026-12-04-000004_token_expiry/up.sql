-- An API token may expire (`scimhub token issue --expires 90d`); NULL: it does not.
ALTER TABLE api_tokens ADD COLUMN expires TEXT COLLATE "C";
