DROP TABLE engine_revocations;
DROP TABLE engine_campaign_items;
DROP TABLE engine_campaigns;
