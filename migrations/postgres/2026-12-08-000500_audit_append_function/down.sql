DROP FUNCTION scimhub_audit_append_v1(TEXT);
