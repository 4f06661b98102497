DROP TABLE IF EXISTS engine_policy_applied;
