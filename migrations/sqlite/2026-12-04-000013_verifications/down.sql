DROP TABLE engine_verifications;
