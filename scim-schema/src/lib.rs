//! The SCIM 2.0 protocol model (RFC 7643, RFC 7644), pure and free of I/O.
//!
//! Everything stateful (HTTP, storage, the policy engine) lives in other crates and calls in here:
//!
//! * [`schema`] — schemas and attribute characteristics as data, the core User/Group/EnterpriseUser
//!   schemas, custom extensions loaded from RFC 7643 §7 JSON, and validation in context.
//! * [`filter`] — the RFC 7644 §3.4.2.2 filter grammar (also used for PATCH paths): AST, nom
//!   parser, printer, evaluator and a fold for translating filters to other languages (SQL).
//! * [`patch`] — RFC 7644 §3.5.2 PATCH as a pure, all-or-nothing function over a resource.
//! * [`dialect`] — what Microsoft Entra ID and Okta really send, normalised to RFC behaviour.
//! * [`projection`] and [`sort`] — `attributes`/`excludedAttributes` and `sortBy`/`sortOrder`.
//! * [`message`] — ListResponse, Error, PatchOp, SearchRequest, BulkRequest/BulkResponse.
//! * [`error`] — typed errors that map 1:1 to RFC 7644 §3.12 `scimType`s.
//!
//! Resources are plain `serde_json` objects: extension attributes live under their schema URN,
//! and attribute names are matched case-insensitively through [`name::CiString`] and [`name::eq_ci`].

pub mod dialect;
pub mod error;
pub mod filter;
pub mod json;
pub mod message;
pub mod name;
pub mod patch;
pub mod projection;
pub mod schema;
pub mod sort;

pub use error::{Error, ScimType};
pub use name::CiString;
