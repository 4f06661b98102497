DROP TABLE engine_burst_plans;
DROP TABLE engine_bursts;
DROP TABLE store_population;
