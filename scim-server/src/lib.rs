//! scimhub: the SCIM 2.0 identity hub server.
//!
//! The modules are layered; each uses only those below it (checked by `tests/architecture.rs`):
//! `run`, `cli`, `demo` → [`http`] → [`admin`], [`jobs`], [`notify`], [`report`] → [`engine`], [`service`],
//! [`auth`] → [`policy`], [`config`], [`clock`] → [`store`] → [`error`].
//!
//! * [`config`] — layered configuration (defaults, TOML, `SCIMHUB_*`, flags).
//! * [`cli`] — the `scimhub` command line.
//! * [`auth`] — bearer tokens, JWTs, scopes.
//! * [`http`] — the actix-web service: SCIM and admin routes, thin handlers, the one error
//!   mapping.
//! * [`service`] — SCIM operations over the store, free of HTTP.
//! * [`clock`] — where time comes from (injected, so tests move it), retry backoff.
//! * [`store`] — the diesel store (SQLite or PostgreSQL).
//! * [`error`] — [`error::HubError`], what any operation on the hub's data can fail with.
//! * [`policy`] — the access policy file (TOML), its checks, reload and runbook.
//! * [`engine`] — desired state, plans and the write hook that puts them in the outbox.
//! * [`jobs`] — outbox workers, durable timers.
//! * [`notify`] — the notification outbox and its SMTP delivery.
//! * [`admin`] — the admin operations behind the admin API (approvals, holds, simulation,
//!   one-click links), free of HTTP.
//! * [`report`] — termination, period and contractor reports as JSON and printable HTML.
//! * [`reflect`] — the keys a `Deserialize` type accepts (configuration and policy references).
//! * [`demo`] — `scimhub demo`: the hub, in-memory apps and the HRIS simulator in one command.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod http;
pub mod import;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod reflect;
pub mod report;
mod run;
mod run_audit;
mod run_import;
mod run_report;
pub mod scheduling;
pub mod service;
pub mod store;

pub use run::{run, PendingMigrations};
