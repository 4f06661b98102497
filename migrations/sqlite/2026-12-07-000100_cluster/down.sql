DROP TABLE cluster_schedules;
DROP TABLE cluster_nodes;
