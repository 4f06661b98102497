//! The RFC 7644 §3.4.2.2 filter grammar (with errata 4690), shared by `filter` query parameters and
//! PATCH `path`s.
//!
//! * [`ast`] — the syntax tree: [`Filter`], [`AttrPath`], [`PatchPath`], [`CompareOp`], [`CompValue`].
//! * [`parse`] — the nom parser, with depth and length limits.
//! * [`print`] — `Display` for the AST; printing then parsing yields the same AST.
//! * [`eval`] — evaluation over a JSON resource, honouring caseExact, types and multi-valued rules.
//! * [`fold`] — a fold over the AST, used by the server to translate filters to SQL.
//! * [`check`] — what a filter may not ask of the attributes it names (ordering on booleans).

pub mod ast;
pub mod check;
pub mod eval;
pub mod fold;
pub mod parse;
pub mod print;

pub use ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
pub use check::{check_filter, check_sort_by};
pub use eval::{matches, matches_value};
pub use fold::{fold, FilterFold};
pub use parse::{
    parse_attr_path, parse_filter, parse_filter_as, parse_patch_path, FilterSyntax, MAX_DEPTH,
    MAX_INPUT_LEN,
};
