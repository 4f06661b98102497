//! End-to-end tests: the real `scimhub` binary over HTTP, on SQLite and (with
//! `SCIMHUB_TEST_POSTGRES_URL`) PostgreSQL.

#![allow(clippy::unwrap_used)]

mod harness;

mod api;
mod audit;
mod auth;
mod bounds;
mod campaign_cli;
mod clients;
mod errors;
mod failover;
mod grants_cli;
mod import;
mod jwks;
mod metrics;
mod more_clients;
mod onboarding;
mod operator_cli;
mod policy_reload;
mod proxy;
mod queries;
mod security;
mod sorting;
mod strict_dialect;
mod tls;
mod transport;
