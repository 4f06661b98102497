//! Schemas as data (RFC 7643 §2, §7) and validation in context.
//!
//! * [`attribute`] — attribute characteristics ([`AttributeDef`], [`AttrType`], [`Mutability`],
//!   [`Returned`], [`Uniqueness`]) and [`Schema`]/[`ResourceType`], serialised in the RFC's own
//!   JSON representation.
//! * [`core`] — the built-in User, Group and EnterpriseUser schemas and resource types.
//! * [`registry`] — [`SchemaRegistry`]: schemas, resource types and extensions (custom extension
//!   schemas loaded from JSON), and [`ResourceSchema`], the resolved view used to look attributes up.
//! * [`validate`] — validation of a resource in a create, replace, patch or response context.

pub mod attribute;
pub mod core;
pub mod registry;
pub mod validate;

pub use attribute::{
    AttrType, AttributeDef, Mutability, ResourceType, Returned, Schema, SchemaExtension, Uniqueness,
};
pub use registry::{ResourceSchema, SchemaRegistry};
pub use validate::{validate, ValidationContext, ValidationOptions};
