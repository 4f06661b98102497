DROP TABLE connector_health;
