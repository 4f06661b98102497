//! SCIM operations over the store, free of HTTP: request documents in, stored resources out.
//!
//! Every write goes through the `scim-schema` protocol model, in this order:
//!
//! 1. the client's [`Dialect`] rewrites its quirks into RFC form
//!    ([`scim_schema::dialect::normalize_resource`] for POST/PUT bodies,
//!    [`scim_schema::dialect::normalize_patch`] for PATCH);
//! 2. PATCH operations are applied by [`scim_schema::patch::apply_patch`] — Group `members`
//!    operations become a membership delta ([`scim_schema::patch::group_member_delta`]) so their
//!    cost does not depend on the group's size;
//! 3. the result is validated in context ([`scim_schema::schema::validate`]: `Create`, `Replace`
//!    or `Patch` with the stored resource), which also normalises it;
//! 4. for Users, the policy's source-of-truth rules ([`ownership`]) keep or refuse changes to
//!    attributes another client owns, against the stored resource inside the write transaction;
//! 5. a clear-text `password` is replaced by its argon2 hash; then the store writes.
//!
//! Every function blocks (it calls the store) and is run by the HTTP layer on its bounded
//! blocking pool (`AppState::db`). Errors are [`HubError`]s (protocol errors as
//! `HubError::Scim`); the HTTP layer maps them once.

pub mod bulk;
pub mod ownership;
pub mod schemas;

use std::collections::HashMap;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use scim_schema::dialect::{normalize_patch, normalize_resource, Dialect};
use scim_schema::json::{find_key, get_ci};
use scim_schema::message::{PatchOpRequest, PatchOperation};
use scim_schema::patch::{apply_patch, group_member_delta, RemoveSpec};
use scim_schema::schema::{validate, ValidationContext};
use scim_schema::Error;
use serde_json::Value;

use crate::error::HubError;
use crate::store::{
    etag, Doc, LoadedResource, MemberRemoval, NewMember, ResourceKind, Store, StoredResource,
};

pub use ownership::SourceRules;

/// The SCIM base path, where the HTTP layer mounts the SCIM endpoints (RFC 7644 §3.13 leaves it
/// to the service provider). Here, below both the HTTP layer and the admin simulation that
/// accepts `/scim/v2/Users/ID` paths.
pub const BASE_PATH: &str = "/scim/v2";
pub use schemas::Schemas;

use ownership::WriteKind;

/// Who is writing: the client's name (it scopes `externalId` uniqueness), its dialect, the
/// attributes other clients are the source of truth for, and the request, for the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client: String,
    pub dialect: Dialect,
    pub sources: SourceRules,
    /// The request id recorded with each write in the audit chain (`X-Request-Id`, or one the
    /// hub made up); empty when there is none.
    pub request_id: String,
}

impl Caller {
    /// Audits the store writes made on this thread while the scope lives with this request id.
    fn audit_scope(&self) -> crate::store::audit_chain::RequestScope {
        crate::store::audit_chain::request_scope(&self.request_id)
    }
}

/// Applies the caller's source-of-truth rules to a User write and logs what was kept.
fn enforce_sources(
    caller: &Caller,
    kind: ResourceKind,
    write: WriteKind,
    id: Option<&str>,
    existing: Option<&Doc>,
    new: &mut Doc,
) -> Result<(), HubError> {
    if kind != ResourceKind::User || caller.sources.is_empty() {
        return Ok(());
    }
    for k in caller.sources.enforce(write, existing, new)? {
        tracing::info!(
            client = %caller.client, user = id.unwrap_or(""), attribute = %k.attribute,
            owner = %k.owner, "source of truth: kept the stored value"
        );
    }
    Ok(())
}

/// The resource kind behind an endpoint segment (`Users`, `Groups`, any case).
pub fn kind_of_endpoint(segment: &str) -> Option<ResourceKind> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.endpoint().eq_ignore_ascii_case(segment))
}

/// Clear-text passwords of one request with their argon2 hashes, computed before the write
/// transaction opens: an argon2 hash costs tens of milliseconds of CPU, and inside the
/// transaction it would hold the writer (and on SQLite every write queued behind it) that long.
/// The HTTP layer computes them before it submits the write ([`prepare_create`],
/// [`prepare_replace`], [`prepare_patch`]), on the blocking pool when
/// [`prepare_is_heavy`].
#[derive(Debug, Default)]
pub struct Prehashed(HashMap<String, String>);

/// Array items beyond which preparing a body ([`prepare_is_heavy`]) leaves the actix worker:
/// validating a few thousand Group members takes milliseconds.
const HEAVY_ITEMS: usize = 1000;

/// Whether preparing `body` is too slow for an actix worker, which serves other requests
/// meanwhile: it may set a password (an argon2 hash, tens of milliseconds) or holds more than
/// [`HEAVY_ITEMS`] array items (a Group PUT or PATCH with thousands of members).
pub fn prepare_is_heavy(body: &Value) -> bool {
    fn items_over(v: &Value, budget: &mut usize) -> bool {
        match v {
            Value::Array(items) => {
                if items.len() > *budget {
                    return true;
                }
                *budget -= items.len();
                items.iter().any(|i| items_over(i, budget))
            }
            Value::Object(m) => m.values().any(|i| items_over(i, budget)),
            _ => false,
        }
    }
    let mut budget = HEAVY_ITEMS;
    mentions_password(body) || items_over(body, &mut budget)
}

/// Whether a request body may carry a password (a `password` member anywhere, or a PATCH path
/// naming one): its preparation hashes it, which is too slow to run on an actix worker.
pub fn mentions_password(body: &Value) -> bool {
    match body {
        Value::Object(m) => m.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("password")
                || (k.eq_ignore_ascii_case("path")
                    && v.as_str().is_some_and(|p| {
                        // Bytes, not str: a cut inside a multi-byte character would panic.
                        let b = p.as_bytes();
                        b.len() >= 8 && b[b.len() - 8..].eq_ignore_ascii_case(b"password")
                    }))
                || mentions_password(v)
        }),
        Value::Array(items) => items.iter().any(mentions_password),
        _ => false,
    }
}

impl Prehashed {
    /// The `password` of a POST or PUT body.
    fn of_doc(doc: &Doc) -> Result<Prehashed, Error> {
        let mut p = Prehashed::default();
        if let Some(Value::String(clear)) = get_ci(doc, "password") {
            p.add(clear)?;
        }
        Ok(p)
    }

    /// The passwords a PATCH may set: the value of an operation whose path is `password`, and
    /// the `password` member of a path-less operation's value, also under a schema URN key
    /// (`{"urn:…:core:2.0:User": {"password": …}}`).
    fn of_ops(ops: &[PatchOperation]) -> Result<Prehashed, Error> {
        let mut p = Prehashed::default();
        for op in ops {
            match (&op.path, &op.value) {
                (Some(path), Some(Value::String(v)))
                    if path.attr.name.eq_str("password") && path.attr.sub_attr.is_none() =>
                {
                    p.add(v)?;
                }
                (None, Some(Value::Object(v))) => {
                    if let Some(Value::String(clear)) = get_ci(v, "password") {
                        p.add(clear)?;
                    }
                    for (key, inner) in v {
                        if let (true, Value::Object(inner)) = (key.starts_with("urn:"), inner) {
                            if let Some(Value::String(clear)) = get_ci(inner, "password") {
                                p.add(clear)?;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }

    fn add(&mut self, clear: &str) -> Result<(), Error> {
        if !self.0.contains_key(clear) {
            let hash = argon2_hash(clear)?;
            self.0.insert(clear.to_string(), hash);
        }
        Ok(())
    }
}

fn argon2_hash(clear: &str) -> Result<String, Error> {
    // Tens of milliseconds: on SQLite's group-commit writer it would hold every write behind
    // it (see `Prehashed`; the HTTP layer prepares writes before submitting them).
    debug_assert_ne!(
        std::thread::current().name(),
        Some("scimhub-writer"),
        "a password hashed on the group-commit writer thread"
    );
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(clear.as_bytes(), &salt)
        .map_err(|_| Error::InvalidValue("password cannot be hashed.".into()))?
        .to_string())
}

/// Hashes `password` with argon2 when it is new: absent from `existing`, or different from the
/// stored hash. A value equal to the stored hash is kept (the document came from the store), so
/// a client can never store a hash of its choosing by sending one. The hash is taken from
/// `pre` (computed before the transaction); a password `pre` does not hold is hashed here.
fn hash_password(doc: &mut Doc, existing: Option<&Doc>, pre: &Prehashed) -> Result<(), Error> {
    let Some(key) = find_key(doc, "password").cloned() else {
        return Ok(());
    };
    let stored = existing.and_then(|e| get_ci(e, "password"));
    match doc.get(&key) {
        Some(v) if Some(v) == stored => Ok(()),
        Some(Value::String(clear)) => {
            let hash = match pre.0.get(clear.as_str()) {
                Some(hash) => hash.clone(),
                None => argon2_hash(clear)?,
            };
            doc.insert(key, Value::String(hash));
            Ok(())
        }
        Some(Value::Null) | None => {
            doc.shift_remove(&key);
            Ok(())
        }
        Some(_) => Err(Error::InvalidValue("password must be a string.".into())),
    }
}

fn object(body: Value, what: &str) -> Result<Doc, Error> {
    match body {
        Value::Object(doc) => Ok(doc),
        _ => Err(Error::InvalidSyntax(format!(
            "{what} must be a JSON object."
        ))),
    }
}

/// Tolerances for POST/PUT bodies that the dialects do not cover because every kind of client
/// needs them (and they lose nothing):
///
/// * `schemas` absent: filled in with the main schema and the extensions the body carries
///   (RFC 7643 §3 makes `schemas` REQUIRED; with `strict = true` its absence stays an error).
/// * `schemas` naming an extension of the resource type that the body does not carry (Entra ID
///   lists the enterprise extension on every user): the URN is dropped.
fn tolerate(mut doc: Doc, schema: &scim_schema::schema::ResourceSchema, strict: bool) -> Doc {
    match find_key(&doc, "schemas").cloned() {
        None if !strict => {
            let urns = schema.schema_urns_for(&doc);
            doc.insert("schemas".into(), serde_json::json!(urns));
        }
        Some(key) => {
            let carried: Vec<String> = schema.schema_urns_for(&doc);
            if let Some(Value::Array(urns)) = doc.get_mut(&key) {
                urns.retain(|u| {
                    u.as_str().is_none_or(|u| {
                        schema.extension(u).is_none()
                            || carried.iter().any(|c| c.eq_ignore_ascii_case(u))
                    })
                });
            }
        }
        None => {}
    }
    doc
}

/// POST: normalises, validates, hashes the password and creates.
pub fn create(
    store: &Store,
    schemas: &Schemas,
    kind: ResourceKind,
    body: Value,
    caller: &Caller,
) -> Result<StoredResource, HubError> {
    let _audit = caller.audit_scope();
    let doc = new_resource(schemas, kind, body, caller)?;
    store.create(kind, doc, Some(&caller.client))
}

/// [`create`] in its two steps, for a caller that prepares one write while another is being
/// written (`scimhub import`): [`prepare_create`] does everything before the transaction
/// (dialect, validation, sources of truth, password hash; no store access), then
/// [`create_prepared`] writes the result (the store's transaction: the row, the engine hook,
/// the audit chain). `create` is exactly the two in a row.
pub fn prepare_create(
    schemas: &Schemas,
    kind: ResourceKind,
    body: Value,
    caller: &Caller,
) -> Result<Doc, HubError> {
    let _audit = caller.audit_scope();
    new_resource(schemas, kind, body, caller)
}

/// The write of a document [`prepare_create`] made.
pub fn create_prepared(
    store: &Store,
    kind: ResourceKind,
    doc: Doc,
    caller: &Caller,
) -> Result<StoredResource, HubError> {
    let _audit = caller.audit_scope();
    store.create(kind, doc, Some(&caller.client))
}

/// [`create_prepared`], answering with the row as written (see `Store::create_loaded`).
pub fn create_prepared_loaded(
    store: &Store,
    kind: ResourceKind,
    doc: Doc,
    caller: &Caller,
) -> Result<LoadedResource, HubError> {
    let _audit = caller.audit_scope();
    store.create_loaded(kind, doc, Some(&caller.client))
}

/// [`create`], answering with the row as written (see `Store::create_loaded`).
pub fn create_loaded(
    store: &Store,
    schemas: &Schemas,
    kind: ResourceKind,
    body: Value,
    caller: &Caller,
) -> Result<LoadedResource, HubError> {
    let _audit = caller.audit_scope();
    let doc = new_resource(schemas, kind, body, caller)?;
    store.create_loaded(kind, doc, Some(&caller.client))
}

/// A POST body made into the document to store: normalised for the caller's dialect,
/// validated, sources of truth enforced, the password hashed.
fn new_resource(
    schemas: &Schemas,
    kind: ResourceKind,
    body: Value,
    caller: &Caller,
) -> Result<Doc, HubError> {
    let schema = schemas.of(kind);
    let doc = normalize_resource(object(body, "The resource")?, caller.dialect, schema)?;
    let doc = tolerate(doc, schema, schemas.validation.reject_unknown_attributes);
    let mut doc = validate(&doc, schema, ValidationContext::Create, schemas.validation)?;
    enforce_sources(caller, kind, WriteKind::Create, None, None, &mut doc)?;
    // No transaction is open yet.
    hash_password(&mut doc, None, &Prehashed::default())?;
    Ok(doc)
}

/// PUT: normalises and validates against the stored resource (immutability), then replaces in
/// the same transaction. Group `members` in the body replace the member set. A `password` left
/// out of the body is kept: clients can never read it back, so they cannot resend it.
pub fn replace(
    store: &Store,
    schemas: &Schemas,
    kind: ResourceKind,
    id: &str,
    body: Value,
    if_match: Option<&str>,
    caller: &Caller,
) -> Result<StoredResource, HubError> {
    let prepared = prepare_replace(schemas, kind, id, body, caller)?;
    replace_prepared(store, schemas, kind, id, &prepared, if_match, caller)
}

/// A PUT body normalised for the caller's dialect, with its password hashed: everything of
/// [`replace`] that needs no store.
#[derive(Debug)]
pub struct PreparedReplace {
    doc: Doc,
    pre: Prehashed,
}

/// The first step of [`replace`] (see [`Prehashed`]).
pub fn prepare_replace(
    schemas: &Schemas,
    kind: ResourceKind,
    id: &str,
    body: Value,
    caller: &Caller,
) -> Result<PreparedReplace, HubError> {
    let schema = schemas.of(kind);
    let doc = normalize_resource(object(body, "The resource")?, caller.dialect, schema)?;
    let doc = tolerate(doc, schema, schemas.validation.reject_unknown_attributes);
    if let Some(body_id) = get_ci(&doc, "id").and_then(Value::as_str) {
        if body_id != id {
            return Err(Error::Mutability("id cannot be changed.".into()).into());
        }
    }
    let pre = Prehashed::of_doc(&doc)?;
    Ok(PreparedReplace { doc, pre })
}

/// The write of [`replace`]: validation against the stored resource and the replacement, in
/// one transaction. Runs again as often as the write does.
pub fn replace_prepared(
    store: &Store,
    schemas: &Schemas,
    kind: ResourceKind,
    id: &str,
    prepared: &PreparedReplace,
    if_match: Option<&str>,
    caller: &Caller,
) -> Result<StoredResource, HubError> {
    let _audit = caller.audit_scope();
    let schema = schemas.of(kind);
    let options = schemas.validation;
    let (doc, pre) = (&prepared.doc, &prepared.pre);
    store.replace_with(kind, id, if_match, Some(&caller.client), |existing| {
        let ctx = ValidationContext::Replace {
            existing: &existing,
        };
        let mut new = validate(doc, schema, ctx, options)?;
        enforce_sources(
            caller,
            kind,
            WriteKind::Replace,
            Some(id),
            Some(&existing),
            &mut new,
        )?;
        if find_key(&new, "password").is_none() {
            if let Some(p) = get_ci(&existing, "password") {
                new.insert("password".into(), p.clone());
            }
        }
        hash_password(&mut new, Some(&existing), pre)?;
        Ok(new)
    })
}

/// DELETE. A User's deletion is the person's departure (the leaver cascade follows), so while a
/// `[[source]]` owns `active` only that source, or a client granted `scim:delete`, may delete
/// Users ([`SourceRules::may_delete`]); the check precedes the transaction, as it depends on
/// the caller and the policy only. Groups have no sources: any writer deletes them.
pub fn delete(
    store: &Store,
    kind: ResourceKind,
    id: &str,
    if_match: Option<&str>,
    caller: &Caller,
) -> Result<(), HubError> {
    let _audit = caller.audit_scope();
    if kind == ResourceKind::User {
        caller.sources.may_delete()?;
    }
    store.delete_by(kind, id, if_match, Some(&caller.client))
}

/// The outcome of a PATCH.
#[derive(Debug)]
pub struct Patched {
    /// The resource after the PATCH. A Group carries its members only when the reply asked for
    /// them (see [`PatchReply`]).
    pub resource: StoredResource,
    /// Member ids that named no resource: left out, the rest applied.
    pub unknown_members: Vec<String>,
    /// The PATCH changed Group membership and the caller expressed no wish for a
    /// representation: answer 204 (RFC 7644 §3.5.2 allows it), so that adding one member costs
    /// the same at any group size instead of echoing every member.
    pub no_content: bool,
}

/// What the caller wants back from a PATCH; decides whether a Group's members are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchReply {
    /// No preference: a membership PATCH of a Group answers 204, anything else 200 with the
    /// whole resource.
    Default,
    /// `attributes`/`excludedAttributes` given (RFC 7644 §3.5.2: then 200 is a MUST) or
    /// `Prefer: return=representation`; `members` says whether Group members are wanted.
    Representation { members: bool },
    /// `Prefer: return=minimal`, or no HTTP reply at all (Bulk, simulation).
    Minimal,
}

/// Parses and normalises a PatchOp body for `kind` in the caller's dialect.
pub fn patch_operations(
    schemas: &Schemas,
    kind: ResourceKind,
    body: Value,
    dialect: Dialect,
) -> Result<Vec<PatchOperation>, Error> {
    if !body.is_object() {
        return Err(Error::InvalidSyntax(
            "A PatchOp request must be a JSON object.".into(),
        ));
    }
    let mut raw: PatchOpRequest = serde_json::from_value(body)
        .map_err(|e| Error::InvalidSyntax(format!("The PatchOp request is malformed: {e}")))?;
    let schema = schemas.of(kind);
    for op in raw.operations.iter_mut() {
        drop_extension_schemas(op, schema);
    }
    normalize_patch(raw, dialect, schema)
}

/// Drops a `schemas` member from an extension's value object: `{"op":"add","path":"urn:…:
/// enterprise:2.0:User","value":{"schemas":[…],"employeeNumber":"1"}}` (scim2-tester sends it;
/// some SDKs serialise extension objects that way). An extension has no `schemas` attribute, and
/// the echo says nothing the path does not, so it is ignored rather than rejected.
fn drop_extension_schemas(
    op: &mut scim_schema::message::RawPatchOperation,
    schema: &scim_schema::schema::ResourceSchema,
) {
    let strip = |v: &mut Value| {
        if let Value::Object(o) = v {
            scim_schema::json::remove_ci(o, "schemas");
        }
    };
    match (op.path.as_deref().map(str::trim), op.value.as_mut()) {
        (Some(p), Some(v)) if schema.extension(p).is_some() => strip(v),
        (None, Some(Value::Object(values))) => {
            for (k, v) in values.iter_mut() {
                if schema.extension(k).is_some() {
                    strip(v);
                }
            }
        }
        _ => {}
    }
}

/// Applies `ops` to `existing` and validates the result as a PATCH of it.
fn patched_doc(
    schemas: &Schemas,
    kind: ResourceKind,
    existing: &Doc,
    ops: &[PatchOperation],
    dialect: Dialect,
    pre: &Prehashed,
) -> Result<Doc, Error> {
    let schema = schemas.of(kind);
    let new = apply_patch(existing, ops, schema, &dialect.patch_options())?;
    let mut new = validate(
        &new,
        schema,
        ValidationContext::Patch { existing },
        schemas.validation,
    )?;
    hash_password(&mut new, Some(existing), pre)?;
    Ok(new)
}

/// Whether any operation touches Group `members` (by path, or as a key of a path-less value).
fn touches_members(ops: &[PatchOperation]) -> bool {
    ops.iter().any(|op| match (&op.path, &op.value) {
        (Some(p), _) => {
            p.attr.urn.is_none() && p.attr.name.eq_str("members")
                || p.attr.name.eq_str("members")
                    && p.attr
                        .urn
                        .as_ref()
                        .is_some_and(|u| u.eq_str(scim_schema::schema::core::GROUP))
        }
        (None, Some(Value::Object(v))) => find_key(v, "members").is_some(),
        _ => false,
    })
}

fn new_member(v: &Value) -> Option<NewMember> {
    let o = v.as_object()?;
    let text = |k: &str| get_ci(o, k).and_then(Value::as_str).map(str::to_string);
    Some(NewMember {
        value: text("value")?,
        member_type: text("type"),
        display: text("display"),
    })
}

/// PATCH: applies the operations atomically. Group `members` operations become a membership
/// delta (cost independent of group size); when they cannot (a filter on another
/// sub-attribute), the group is loaded with its members and replaced. Members that name no
/// resource are skipped and reported instead of failing the request (what Okta and Entra
/// expect).
#[allow(clippy::too_many_arguments)]
pub fn patch(
    store: &Store,
    schemas: &Schemas,
    kind: ResourceKind,
    id: &str,
    body: Value,
    if_match: Option<&str>,
    caller: &Caller,
    reply: PatchReply,
) -> Result<Patched, HubError> {
    let prepared = prepare_patch(schemas, kind, body, caller)?;
    patch_prepared(store, schemas, kind, id, &prepared, if_match, caller, reply)
}

/// A PATCH request's operations, parsed for the caller's dialect, with the passwords they set
/// hashed: everything of [`patch`] that needs no store.
#[derive(Debug)]
pub struct PreparedPatch {
    ops: Vec<PatchOperation>,
    pre: Prehashed,
}

/// The first step of [`patch`] (see [`Prehashed`]).
pub fn prepare_patch(
    schemas: &Schemas,
    kind: ResourceKind,
    body: Value,
    caller: &Caller,
) -> Result<PreparedPatch, HubError> {
    let ops = patch_operations(schemas, kind, body, caller.dialect)?;
    let pre = Prehashed::of_ops(&ops)?;
    Ok(PreparedPatch { ops, pre })
}

/// The write of [`patch`]. Runs again as often as the write does.
#[allow(clippy::too_many_arguments)]
pub fn patch_prepared(
    store: &Store,
    schemas: &Schemas,
    kind: ResourceKind,
    id: &str,
    prepared: &PreparedPatch,
    if_match: Option<&str>,
    caller: &Caller,
    reply: PatchReply,
) -> Result<Patched, HubError> {
    let _audit = caller.audit_scope();
    let (ops, pre) = (&prepared.ops, &prepared.pre);
    let client = Some(caller.client.as_str());
    let dialect = caller.dialect;
    let done = |resource| Patched {
        resource,
        unknown_members: vec![],
        no_content: false,
    };
    if kind == ResourceKind::User || !touches_members(ops) {
        let resource = store.update_with(kind, id, if_match, client, |doc| {
            let mut new = patched_doc(schemas, kind, &doc, ops, dialect, pre)?;
            enforce_sources(
                caller,
                kind,
                WriteKind::Patch,
                Some(id),
                Some(&doc),
                &mut new,
            )?;
            Ok(new)
        })?;
        return Ok(done(resource));
    }
    match group_member_delta(ops, schemas.of(kind)) {
        Some(delta) => {
            let mut add: Vec<NewMember> = delta.add.iter().filter_map(new_member).collect();
            let remove = match delta.remove {
                RemoveSpec::All => MemberRemoval::All,
                RemoveSpec::Values(ids) if ids.is_empty() => MemberRemoval::None,
                RemoveSpec::Values(ids) => MemberRemoval::Ids(ids),
            };
            let other = delta.other_ops;
            let with_members = matches!(reply, PatchReply::Representation { members: true });
            let mut unknown = Vec::new();
            loop {
                let attempt = store.update_group_with(
                    id,
                    if_match,
                    client,
                    add.clone(),
                    remove.clone(),
                    with_members,
                    {
                        let other = &other;
                        move |doc| {
                            if other.is_empty() {
                                Ok(doc)
                            } else {
                                Ok(patched_doc(schemas, kind, &doc, other, dialect, pre)?)
                            }
                        }
                    },
                );
                match attempt {
                    Err(HubError::UnknownMembers(ids)) if !ids.is_empty() => {
                        add.retain(|m| !ids.contains(&m.value));
                        unknown.extend(ids);
                    }
                    other => {
                        break Ok(Patched {
                            resource: other?,
                            unknown_members: unknown,
                            no_content: reply == PatchReply::Default,
                        })
                    }
                }
            }
        }
        None => {
            let mut out = patch_group_whole(store, schemas, id, ops, if_match, caller, pre)?;
            out.no_content = reply == PatchReply::Default;
            Ok(out)
        }
    }
}

/// The fallback for member operations that are not a plain delta: read the group with its
/// members, apply the PATCH to the whole document, and replace it if nobody wrote in between.
fn patch_group_whole(
    store: &Store,
    schemas: &Schemas,
    id: &str,
    ops: &[PatchOperation],
    if_match: Option<&str>,
    caller: &Caller,
    pre: &Prehashed,
) -> Result<Patched, HubError> {
    let kind = ResourceKind::Group;
    let current = store.get(kind, id, true)?;
    crate::store::check_if_match(if_match, current.version)?;
    let mut new = patched_doc(schemas, kind, &current.doc, ops, caller.dialect, pre)?;
    let version = etag(current.version);
    let mut unknown = Vec::new();
    loop {
        let doc = new.clone();
        match store.replace(kind, id, doc, Some(&version), Some(&caller.client)) {
            Err(HubError::UnknownMembers(ids)) if !ids.is_empty() => {
                if let Some(Value::Array(members)) = find_key(&new, "members")
                    .cloned()
                    .and_then(|k| new.get_mut(&k))
                {
                    members.retain(|m| new_member(m).is_none_or(|m| !ids.contains(&m.value)));
                }
                unknown.extend(ids);
            }
            other => {
                return Ok(Patched {
                    resource: other?,
                    unknown_members: unknown,
                    no_content: false,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Schemas {
        Schemas::new(schemas::registry(), false).expect("schemas")
    }

    /// Whatever sets a password is recognised, so that its hashing leaves the actix worker;
    /// bodies without one are prepared in place.
    #[test]
    fn bodies_that_may_set_a_password_are_recognised() {
        for body in [
            json!({"userName": "a", "password": "x"}),
            json!({"userName": "a", "PassWord": "x"}),
            json!({"Operations": [{"op": "replace", "path": "password", "value": "x"}]}),
            json!({"Operations": [{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": "x"}]}),
            json!({"Operations": [{"op": "replace", "value": {"password": "x"}}]}),
            json!({"Operations": [{"op": "add", "value": {"urn:ietf:params:scim:schemas:core:2.0:User": {"password": "x"}}}]}),
        ] {
            assert!(mentions_password(&body), "{body}");
        }
        for body in [
            json!({"userName": "password", "displayName": "Password"}),
            json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
            json!({"Operations": [{"op": "replace", "value": {"title": "password"}}]}),
            json!([1, "password"]),
            // A path ending in multi-byte characters (a byte cut inside one would panic).
            json!({"userName": "a", "path": "€€€"}),
            json!({"Operations": [{"op": "replace", "path": "displayName€", "value": "x"}]}),
        ] {
            assert!(!mentions_password(&body), "{body}");
        }
    }

    /// Bodies with a password or thousands of members are prepared off the actix worker.
    #[test]
    fn heavy_bodies_are_recognised() {
        let members = |n: usize| -> Vec<Value> {
            (0..n).map(|i| json!({"value": format!("u{i}")})).collect()
        };
        assert!(prepare_is_heavy(&json!({"userName": "a", "password": "x"})));
        assert!(prepare_is_heavy(
            &json!({"displayName": "g", "members": members(HEAVY_ITEMS + 1)})
        ));
        assert!(prepare_is_heavy(&json!({"Operations": [
            {"op": "add", "path": "members", "value": members(600)},
            {"op": "remove", "path": "members", "value": members(600)}]})));
        assert!(!prepare_is_heavy(
            &json!({"displayName": "g", "members": members(HEAVY_ITEMS)})
        ));
        assert!(!prepare_is_heavy(
            &json!({"userName": "a", "emails": [{"value": "a@x"}]})
        ));
    }

    /// Preparing a PATCH hashes the passwords it sets (so the write, which may run more than
    /// once, never does); preparing a PUT refuses what needs no store (a changed id) at once.
    #[test]
    fn prepared_writes_carry_their_hashes_and_refuse_early() {
        let schemas = schemas();
        let caller = Caller {
            client: "test".into(),
            dialect: Default::default(),
            sources: SourceRules::default(),
            request_id: String::new(),
        };
        let patch = prepare_patch(
            &schemas,
            ResourceKind::User,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "password", "value": "s3cret"}]}),
            &caller,
        )
        .expect("prepared");
        assert_eq!(patch.ops.len(), 1);
        assert!(patch.pre.0.contains_key("s3cret"));
        let put = prepare_replace(
            &schemas,
            ResourceKind::User,
            "u1",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "id": "u2", "userName": "a"}),
            &caller,
        );
        assert!(matches!(put, Err(HubError::Scim(Error::Mutability(_)))));
    }

    #[test]
    fn passwords_are_hashed_once() {
        let none = Prehashed::default();
        let mut doc = Doc::new();
        doc.insert("password".into(), json!("t1meMach1ne"));
        hash_password(&mut doc, None, &none).expect("hash");
        let hash = doc["password"].as_str().expect("hash").to_string();
        assert!(hash.starts_with("$argon2"));
        let existing = doc.clone();
        hash_password(&mut doc, Some(&existing), &none).expect("unchanged");
        assert_eq!(doc["password"], json!(hash));
        // A client sending a hash-looking string gets it hashed, not stored.
        let mut forged = Doc::new();
        forged.insert("password".into(), json!("$argon2id$v=19$forged"));
        hash_password(&mut forged, Some(&existing), &none).expect("hash");
        assert_ne!(forged["password"], json!("$argon2id$v=19$forged"));
    }

    /// The hash a PUT or PATCH stores is the one computed before the transaction: inside it,
    /// `hash_password` only looks it up (two argon2 runs never give the same salted hash, so an
    /// equal hash proves no second run).
    #[test]
    fn passwords_are_hashed_before_the_transaction() {
        let s = schemas();
        let ops = patch_operations(
            &s,
            ResourceKind::User,
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
                {"op":"replace","path":"password","value":"first-Secret1"},
                {"op":"replace","value":{"password":"second-Secret2","title":"x"}},
                {"op":"replace","path":"title","value":"not a password"},
                {"op":"add","value":{"urn:ietf:params:scim:schemas:core:2.0:User":
                    {"password":"fourth-Secret4"}}}]}),
            Dialect::Strict,
        )
        .expect("ops");
        let pre = Prehashed::of_ops(&ops).expect("hashed");
        let mut keys: Vec<&str> = pre.0.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec!["first-Secret1", "fourth-Secret4", "second-Secret2"]
        );
        let mut doc = Doc::new();
        doc.insert("password".into(), json!("second-Secret2"));
        hash_password(&mut doc, None, &pre).expect("hash");
        assert_eq!(doc["password"], json!(pre.0["second-Secret2"]));

        let body = object(json!({"userName":"a","Password":"third-Secret3"}), "x").expect("doc");
        let pre = Prehashed::of_doc(&body).expect("hashed");
        let mut doc = body.clone();
        hash_password(&mut doc, None, &pre).expect("hash");
        assert_eq!(doc["Password"], json!(pre.0["third-Secret3"]));
    }

    #[test]
    fn rfc7644_3_5_2_member_operations_are_detected() {
        let s = schemas();
        let ops = |v: Value| {
            patch_operations(
                &s,
                ResourceKind::Group,
                json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations": v}),
                Dialect::Strict,
            )
            .expect("ops")
        };
        assert!(touches_members(&ops(
            json!([{"op":"add","path":"members","value":[{"value":"a"}]}])
        )));
        assert!(touches_members(&ops(
            json!([{"op":"replace","value":{"members":[{"value":"a"}]}}])
        )));
        assert!(!touches_members(&ops(
            json!([{"op":"replace","path":"displayName","value":"x"}])
        )));
    }

    #[test]
    fn missing_schemas_are_filled_and_absent_extensions_dropped() {
        let s = schemas();
        let user = s.of(ResourceKind::User);
        let ent = scim_schema::schema::core::ENTERPRISE_USER;
        let core = scim_schema::schema::core::USER;
        let doc = |v: Value| object(v, "x").expect("object");
        let t = tolerate(doc(json!({"userName":"a"})), user, false);
        assert_eq!(t["schemas"], json!([core]));
        let t = tolerate(doc(json!({"userName":"a"})), user, true);
        assert!(t.get("schemas").is_none());
        let t = tolerate(
            doc(json!({"schemas":[core, ent],"userName":"a"})),
            user,
            true,
        );
        assert_eq!(t["schemas"], json!([core]));
        let t = tolerate(
            doc(json!({"schemas":[core, ent],"userName":"a", ent: {"employeeNumber":"1"}})),
            user,
            true,
        );
        assert_eq!(t["schemas"], json!([core, ent]));
    }

    #[test]
    fn extension_values_may_echo_their_schemas() {
        let s = schemas();
        let ent = scim_schema::schema::core::ENTERPRISE_USER;
        let ops = patch_operations(
            &s,
            ResourceKind::User,
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
                {"op":"add","path":ent,"value":{"schemas":[ent],"employeeNumber":"1"}},
                {"op":"replace","value":{ent:{"schemas":[ent],"costCenter":"2"}}}]}),
            Dialect::Strict,
        )
        .expect("ops");
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].value, Some(json!({"employeeNumber":"1"})));
    }

    #[test]
    fn patch_bodies_that_are_not_patch_ops_are_invalid_syntax() {
        let s = schemas();
        for body in [json!([1]), json!({"Operations": "x"}), json!({})] {
            let e = patch_operations(&s, ResourceKind::User, body.clone(), Dialect::Strict)
                .expect_err("rejected");
            assert!(matches!(e, Error::InvalidSyntax(_)), "{body}: {e:?}");
        }
    }
}
