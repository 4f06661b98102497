DROP FUNCTION scimhub_audit_append(TEXT);
