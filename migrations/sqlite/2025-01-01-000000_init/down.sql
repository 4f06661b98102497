DROP TABLE api_tokens;
DROP TABLE group_members;
DROP TABLE resource_values;
DROP TABLE resources;
