DROP TABLE engine_used_links;
