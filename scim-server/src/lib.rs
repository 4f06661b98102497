//! scimhub: the SCIM 2.0 identity hub server.
//!
//! * [`config`] — layered configuration (defaults, TOML, `SCIMHUB_*`, flags).
//! * [`cli`] — the `scimhub` command line.
//! * [`auth`] — bearer tokens, JWTs, scopes.
//! * [`http`] — the actix-web service: routes, thin handlers, the one error mapping.
//! * [`service`] — SCIM operations over the store, free of HTTP.
//! * [`store`] — the diesel store (SQLite or PostgreSQL).

pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
mod run;
pub mod service;
pub mod store;

pub use run::run;
