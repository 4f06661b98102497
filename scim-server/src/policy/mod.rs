//! The access policy: a version-controlled TOML file, parsed and checked into a [`Policy`].
//!
//! ```toml
//! [settings]
//! extensions = ["urn:example:scim:schemas:extension:acme:2.0:User"]
//! start_date_attribute = "urn:example:…:acme:2.0:User:startDate"
//! end_date_attribute = "urn:example:…:acme:2.0:User:contractEndDate"
//! status_attribute = "urn:example:…:acme:2.0:User:employmentStatus"
//! terminated_values = ["terminated"]
//!
//! [[connector]]
//! name = "github"
//! type = "github"
//! settings = { org = "acme" }
//! credentials = { token = { env = "GITHUB_TOKEN" } }
//!
//! [[profile]]
//! name = "engineering"
//! match = 'department eq "Engineering"'
//! include = ["employee"]
//! overlap = "24h"
//! grants = [{ connector = "github", kind = "team", id = "eng", role = "member" },
//!           { connector = "aws", kind = "group", id = "prod-admin", approval = "security" }]
//!
//! [approvals]
//! security = ["alice"]            # userNames of security approvers
//!
//! [[source]]
//! client = "workday"              # the token (or JWT client) name
//! owns = ["active", "title", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"]
//! on_conflict = "ignore"          # or "reject"
//! ```
//!
//! Who may decide an approval request is part of the policy: the subject's manager (`manager`
//! level), the `owners` of the connector or grant (`owner`), the security approvers of
//! `[approvals]` (`security`, and any lower level). The policy only declares them; the admin
//! layer applies these rules when a request is decided.
//!
//! Everything is checked at load ([`Policy::parse`]): unknown connectors and attributes, filters
//! (with the position of the error inside the expression), durations, duplicate names and include
//! cycles, each reported as `FILE:LINE:COL: message`. [`reload::PolicyHandle`] keeps the last good
//! policy in force when a reload fails.
//!
//! Where things are:
//!
//! - `model.rs`: [`Policy`] and the types of its sections, as the rest of the server reads them;
//! - `raw.rs`: the file form, as TOML deserializes it (with spans for diagnostics);
//! - `check/`: one file per section turning its raw form into the model, and `check()` that runs
//!   them in order;
//! - `attrs.rs`: attribute paths and `match` filters checked against the User schemas;
//! - `diagnostics.rs`: [`Diagnostic`] and [`PolicyError`];
//! - `duration.rs`: durations as policies write them (`24h`, `30d`);
//! - `connector_config.rs`: typed settings per connector type;
//! - `docs.rs`: the generated runbook;
//! - `reload.rs`: the policy in force and its reload.

mod attrs;
mod check;
pub mod connector_config;
mod diagnostics;
pub mod docs;
mod duration;
mod model;
mod raw;
#[cfg(test)]
mod reference;
pub mod reload;

pub use diagnostics::{Diagnostic, PolicyError};
pub use duration::{fmt_duration, parse_duration};
pub use model::{
    Approval, ApproverSettings, BlastRadius, CertSchedule, CertScope, CertificationSettings,
    ChatChannel, ChatFormat, ConnectorDef, ContractorRules, DriftAction, DriftSettings, EntRef,
    GrantApproval, GrantSettings, IncidentSettings, LeaverRules, NotifySettings, OnConflict,
    OnLeave, OwnedAttribute, Policy, Profile, Settings, SodAction, SodRule, SourceRule,
    Verification, CONNECTOR_TYPES, DEFAULT_CIRCUIT_FAILURES, DEFAULT_CIRCUIT_PROBE_SECS,
    DRIFT_KINDS, EVENT_TYPES, LEAVER_STEPS,
};

#[cfg(test)]
mod tests;
