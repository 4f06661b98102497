//! RFC 7644 §3.5.2 PATCH as a pure function over a resource.
//!
//! [`apply_patch`] applies normalised [`PatchOperation`]s in order to a copy of the resource and
//! returns the new resource, or an error and nothing else: the caller's resource is never
//! modified, so a rejected request leaves it exactly as it was (all or nothing, §3.5.2: "the
//! operations ... MUST be applied ... if any ... fails, ... the original resource unchanged").
//!
//! What the operations do (§3.5.2.1–§3.5.2.3, RFC 7643 §2.4, §2.5, §7):
//!
//! | op | target | effect |
//! |---|---|---|
//! | add / replace | no path | `value` is a partial resource: each attribute is added/replaced as below; extension attributes nest under their URN |
//! | add | single-valued | set (complex: sub-attributes merged) |
//! | add | multi-valued | values appended; a value already present (same `value`/`type`, caseExact-aware) is merged, not duplicated |
//! | replace | single-valued complex | sub-attributes given replace, others kept (§3.5.2.3) |
//! | replace | multi-valued, no filter | all values replaced |
//! | add / replace | `attr[filter]` | matching elements merged (add) or replaced (replace); none matching → `noTarget` |
//! | add / replace | `attr[filter].sub` | `sub` set on every matching element; none matching → `noTarget` |
//! | remove | no path | `noTarget` (§3.5.2.2) |
//! | remove | attribute / `a.sub` | unassigned |
//! | remove | `attr[filter]` / `attr[filter].sub` | matching elements / their `sub` removed; an emptied multi-valued attribute is unassigned |
//!
//! Mutability (RFC 7643 §2.2, RFC 7644 §3.5.2): `readOnly` targets (`id`, `meta`, `groups`,
//! `schemas`, ...) and changes to a set `immutable` value are `mutability` errors; an `immutable`
//! attribute may be set while unassigned; writing a `readOnly`/`immutable` attribute with the value
//! it already has is accepted as a no-op (Okta sends the group `id` back in its rename PATCH).
//! `readOnly` sub-attributes inside a value (`manager.displayName`) are dropped as on PUT.
//! Removing a `required` attribute is `invalidValue`. `null` or `[]` as a replace value unassigns
//! the attribute (RFC 7643 §2.5).
//!
//! `primary` (RFC 7643 §2.4): an operation that sets `primary: true` on an element clears it on the
//! others; a value that itself carries two primaries is `invalidValue`.
//!
//! Client quirks are *not* handled here: [`crate::dialect`] rewrites requests into RFC form and
//! chooses the [`PatchOptions`]. [`group_member_delta`] lets the server apply Group membership
//! changes as row inserts/deletes without loading the members.

mod delta;
mod value;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::filter::ast::{CompValue, CompareOp, Filter, PatchPath};
use crate::filter::eval::matches_value;
use crate::json::{find_key, get_ci, get_ci_mut, remove_ci};
use crate::name::eq_ci;
use crate::schema::{AttrType, AttributeDef, Mutability, ResourceSchema};

pub use crate::message::{PatchOpKind, PatchOperation};
pub use delta::{group_member_delta, MemberDelta, RemoveSpec};

use value::{
    clear_primary_except, count_primary, is_primary, prepare, prepare_single, same_element, set_ci,
    values_equal,
};

/// Behaviour switches beyond the RFC, chosen per request by [`crate::dialect::Dialect`].
/// `PatchOptions::default()` is strict RFC 7644 behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchOptions {
    /// `add`/`replace` on `attr[filter]` or `attr[filter].sub` that matches nothing creates the
    /// element from the filter's `eq` comparisons (`emails[type eq "work"].value` → a new
    /// `{"type": "work", "value": ...}`) instead of failing with `noTarget`. Entra ID relies on it.
    pub create_on_filter_miss: bool,
    /// The same for `add` only. RFC 7644 §3.5.2.1 gives `add` no `noTarget` case ("if the target
    /// location specifies an attribute that does not exist ... the attribute is added"), so
    /// creating is a reading of the RFC; §3.5.2.3 requires `noTarget` for `replace`.
    pub create_on_add_filter_miss: bool,
    /// `remove` with a filter that matches nothing succeeds instead of failing with `noTarget`
    /// (removing a member that is already gone is idempotent for IdPs that retry).
    pub remove_unmatched_ok: bool,
    /// Operations on `readOnly` attributes (and `schemas`) are skipped silently instead of failing
    /// with `mutability`.
    pub ignore_read_only: bool,
}

/// Applies `ops` in order to a copy of `resource` and returns the result. On error `resource` is
/// untouched (it is never mutated) and the error detail names the failing operation's index in
/// the request ([`PatchOperation::request_index`]), else its position in `ops`.
pub fn apply_patch(
    resource: &Map<String, Value>,
    ops: &[PatchOperation],
    schema: &ResourceSchema,
    opts: &PatchOptions,
) -> Result<Map<String, Value>, Error> {
    let mut doc = resource.clone();
    let mut ctx = Ctx {
        schema,
        opts,
        extensions_touched: false,
    };
    for (i, op) in ops.iter().enumerate() {
        ctx.apply_op(&mut doc, op)
            .map_err(|e| e.in_operation(op.request_index.unwrap_or(i)))?;
    }
    if ctx.extensions_touched {
        sync_extensions(&mut doc, schema);
    }
    Ok(doc)
}

/// Drops emptied extension objects and makes `schemas` list exactly the extensions present
/// (RFC 7643 §3: `schemas` names the extensions a resource carries). Unknown URNs are kept.
fn sync_extensions(doc: &mut Map<String, Value>, schema: &ResourceSchema) {
    for (ext, _) in &schema.extensions {
        let urn = ext.id.as_str();
        if let Some(k) = find_key(doc, urn).cloned() {
            if doc
                .get(&k)
                .is_some_and(|v| v.as_object().is_some_and(Map::is_empty) || v.is_null())
            {
                doc.shift_remove(&k);
            }
        }
    }
    let mut urns: Vec<Value> = match get_ci(doc, "schemas") {
        Some(Value::Array(a)) => a.clone(),
        _ => vec![Value::String(schema.main.id.to_string())],
    };
    let before = urns.len();
    let mut changed = false;
    urns.retain(|u| {
        let keep = u
            .as_str()
            .is_none_or(|s| !schema.is_extension_key(s) || find_key(doc, s).is_some());
        changed |= !keep;
        keep
    });
    for (ext, _) in &schema.extensions {
        let urn = ext.id.as_str();
        let present = find_key(doc, urn).is_some();
        let listed = urns
            .iter()
            .any(|u| u.as_str().is_some_and(|s| eq_ci(s, urn)));
        if present && !listed {
            urns.push(Value::String(urn.to_owned()));
        }
    }
    if changed || urns.len() != before || get_ci(doc, "schemas").is_none() {
        set_ci(doc, "schemas", Value::Array(urns));
    }
}

struct Ctx<'a> {
    schema: &'a ResourceSchema,
    opts: &'a PatchOptions,
    extensions_touched: bool,
}

/// Where a top-level attribute lives: directly in the resource, or in an extension object.
#[derive(Clone, Copy)]
struct Target<'s> {
    ext: Option<&'s str>,
    def: &'s AttributeDef,
}

fn value_required(op: &PatchOperation) -> Result<&Value, Error> {
    op.value.as_ref().ok_or_else(|| {
        Error::InvalidValue(format!("'{}' operation requires a value", op.op.as_str()))
    })
}

fn is_schemas_path(p: &PatchPath) -> bool {
    p.attr.urn.is_none() && p.attr.name.eq_str("schemas")
}

impl<'a> Ctx<'a> {
    fn apply_op(&mut self, doc: &mut Map<String, Value>, op: &PatchOperation) -> Result<(), Error> {
        match &op.path {
            None => match op.op {
                PatchOpKind::Remove => {
                    Err(Error::NoTarget("'remove' operation requires a path".into()))
                }
                kind => match value_required(op)? {
                    Value::Object(m) => self.apply_pathless(doc, kind, m),
                    _ => Err(Error::InvalidValue(format!(
                        "'{}' without a path requires an object of attributes as value",
                        kind.as_str()
                    ))),
                },
            },
            Some(p) => {
                if op.op == PatchOpKind::Remove && op.value.is_some() {
                    return Err(Error::InvalidSyntax(
                        "'remove' takes no value; select values with a filter in the path".into(),
                    ));
                }
                self.apply_path(doc, op, p)
            }
        }
    }

    // --- resolution -------------------------------------------------------------------------

    fn resolve(&self, urn: Option<&str>, name: &str) -> Option<Target<'a>> {
        let (s, def) = self.schema.top_level(urn, name)?;
        let ext = (!s.id.eq_str(self.schema.main.id.as_str())).then_some(s.id.as_str());
        Some(Target { ext, def })
    }

    fn container<'d>(
        &mut self,
        doc: &'d mut Map<String, Value>,
        ext: Option<&str>,
        create: bool,
    ) -> Result<Option<&'d mut Map<String, Value>>, Error> {
        let Some(urn) = ext else {
            return Ok(Some(doc));
        };
        self.extensions_touched = true;
        let key = match find_key(doc, urn) {
            Some(k) => k.clone(),
            None if create => {
                doc.insert(urn.to_owned(), Value::Object(Map::new()));
                urn.to_owned()
            }
            None => return Ok(None),
        };
        match doc.get_mut(&key) {
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v @ Value::Null) if create => {
                *v = Value::Object(Map::new());
                Ok(v.as_object_mut())
            }
            Some(Value::Null) | None => Ok(None),
            Some(_) => Err(Error::InvalidValue(format!(
                "extension '{urn}' is not an object"
            ))),
        }
    }

    /// Mutability gate for writing `new` to a top-level attribute (RFC 7643 §2.2): `Ok(false)`
    /// when the operation is to be skipped, an error when it is not allowed.
    fn may_write(
        &self,
        def: &AttributeDef,
        current: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<bool, Error> {
        let unchanged = || match (current, new) {
            (Some(c), Some(n)) => values_equal(Some(def), c, n),
            _ => false,
        };
        match def.mutability {
            Mutability::ReadOnly => {
                if self.opts.ignore_read_only || unchanged() {
                    Ok(false)
                } else {
                    Err(Error::Mutability(format!(
                        "attribute '{}' is readOnly",
                        def.name
                    )))
                }
            }
            Mutability::Immutable => match current {
                None | Some(Value::Null) => Ok(true),
                Some(_) if unchanged() => Ok(false),
                Some(_) => Err(Error::Mutability(format!(
                    "attribute '{}' is immutable and already set",
                    def.name
                ))),
            },
            Mutability::ReadWrite | Mutability::WriteOnly => Ok(true),
        }
    }

    // --- path-less add / replace ------------------------------------------------------------

    fn apply_pathless(
        &mut self,
        doc: &mut Map<String, Value>,
        kind: PatchOpKind,
        value: &Map<String, Value>,
    ) -> Result<(), Error> {
        // The attributes set so far: one named twice (`title` and `Title`, or a core attribute
        // by its URN-qualified name too, or an extension attribute inside and outside its
        // object) is refused, as POST refuses it, instead of the later key winning silently.
        let mut seen: Vec<&AttributeDef> = Vec::new();
        let mut once = |def: &'a AttributeDef, key: &str| -> Result<(), Error> {
            if seen.iter().any(|d| std::ptr::eq(*d, def)) {
                return Err(Error::InvalidSyntax(format!(
                    "attribute '{key}' is given more than once"
                )));
            }
            seen.push(def);
            Ok(())
        };
        for (k, v) in value {
            if eq_ci(k, "schemas") {
                self.check_schemas_value(v)?;
                continue;
            }
            if let Some(ext) = self.schema.extension(k) {
                let ext_id = ext.id.as_str();
                let Value::Object(inner) = v else {
                    if v.is_null() && kind == PatchOpKind::Replace {
                        self.remove_extension(doc, ext_id)?;
                        continue;
                    }
                    return Err(Error::InvalidValue(format!(
                        "extension '{ext_id}' must be an object"
                    )));
                };
                for (k2, v2) in inner {
                    let def = ext.attribute(k2).ok_or_else(|| {
                        Error::InvalidValue(format!(
                            "unknown attribute '{k2}' in extension '{ext_id}'"
                        ))
                    })?;
                    once(def, k2)?;
                    // Borrow of `ext` is tied to the schema, not to `self`.
                    let target = Target {
                        ext: Some(ext_id),
                        def,
                    };
                    self.set_attr(doc, kind, target, v2)?;
                }
                continue;
            }
            let target = self
                .resolve(None, k)
                .ok_or_else(|| Error::InvalidValue(format!("unknown attribute '{k}'")))?;
            once(target.def, k)?;
            self.set_attr(doc, kind, target, v)?;
        }
        Ok(())
    }

    /// `schemas` inside a path-less value: accepted (and ignored, it is recomputed) when it names
    /// only schemas of this resource type.
    fn check_schemas_value(&self, v: &Value) -> Result<(), Error> {
        let ok = match v {
            Value::Array(items) => items.iter().all(|u| {
                u.as_str().is_some_and(|s| {
                    self.schema.main.id.eq_str(s) || self.schema.is_extension_key(s)
                })
            }),
            _ => false,
        };
        if ok || self.opts.ignore_read_only {
            Ok(())
        } else {
            Err(Error::InvalidValue(
                "'schemas' names a schema this resource type does not have".into(),
            ))
        }
    }

    fn remove_extension(&mut self, doc: &mut Map<String, Value>, urn: &str) -> Result<(), Error> {
        if let Some(ext) = self.schema.extension(urn) {
            let present = get_ci(doc, urn).and_then(Value::as_object);
            if let Some(m) = present {
                for a in &ext.attributes {
                    if get_ci(m, a.name.as_str()).is_some() {
                        self.may_write(a, get_ci(m, a.name.as_str()), None)?;
                        if a.required {
                            return Err(Error::InvalidValue(format!(
                                "attribute '{}' is required",
                                a.name
                            )));
                        }
                    }
                }
            }
        }
        if self
            .schema
            .extensions
            .iter()
            .any(|(s, req)| *req && s.id.eq_str(urn))
        {
            return Err(Error::InvalidValue(format!(
                "extension '{urn}' is required"
            )));
        }
        self.extensions_touched = true;
        remove_ci(doc, urn);
        Ok(())
    }

    /// add/replace of a whole top-level attribute.
    fn set_attr(
        &mut self,
        doc: &mut Map<String, Value>,
        kind: PatchOpKind,
        t: Target<'a>,
        v: &Value,
    ) -> Result<(), Error> {
        let def = t.def;
        // RFC 7643 §2.5: null and [] are "unassigned" (so is a list of nulls, which `prepare`
        // empties). Adding nothing changes nothing.
        let new = if v.is_null() {
            None
        } else {
            Some(prepare(def, v.clone())?)
                .filter(|n| !(def.multi_valued && n.as_array().is_some_and(Vec::is_empty)))
        };
        let Some(new) = new else {
            return match kind {
                PatchOpKind::Replace => self.remove_attr(doc, t),
                _ => Ok(()),
            };
        };
        let current = self
            .container(doc, t.ext, false)?
            .and_then(|c| get_ci(c, def.name.as_str()));
        if def.multi_valued {
            let items = new.as_array().map(Vec::as_slice).unwrap_or_default();
            if count_primary(items) > 1 {
                return Err(Error::InvalidValue(format!(
                    "more than one '{}' value is primary",
                    def.name
                )));
            }
            // For add, only values not yet present would change an immutable attribute.
            let effective = match (kind, current) {
                (PatchOpKind::Add, Some(Value::Array(cur))) => {
                    let mut merged = cur.clone();
                    add_values(&mut merged, def, items.to_vec())?;
                    Value::Array(merged)
                }
                _ => new.clone(),
            };
            if !self.may_write(def, current, Some(&effective))? {
                return Ok(());
            }
            let c = self.container(doc, t.ext, true)?.ok_or_else(no_container)?;
            set_ci(c, def.name.as_str(), effective);
            return Ok(());
        }
        if def.attr_type == AttrType::Complex {
            // Single-valued complex: add and replace both merge sub-attributes (§3.5.2.1, §3.5.2.3).
            let mut merged = match current {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            if let Value::Object(nm) = new {
                merge_complex(&mut merged, def, nm)?;
            }
            let merged = Value::Object(merged);
            if !self.may_write(def, current, Some(&merged))? {
                return Ok(());
            }
            let c = self.container(doc, t.ext, true)?.ok_or_else(no_container)?;
            set_ci(c, def.name.as_str(), merged);
            return Ok(());
        }
        if !self.may_write(def, current, Some(&new))? {
            return Ok(());
        }
        let c = self.container(doc, t.ext, true)?.ok_or_else(no_container)?;
        set_ci(c, def.name.as_str(), new);
        Ok(())
    }

    fn remove_attr(&mut self, doc: &mut Map<String, Value>, t: Target<'a>) -> Result<(), Error> {
        let def = t.def;
        let Some(c) = self.container(doc, t.ext, false)? else {
            return Ok(());
        };
        let current = get_ci(c, def.name.as_str());
        if def.mutability == Mutability::ReadOnly {
            return if self.opts.ignore_read_only {
                Ok(())
            } else {
                Err(Error::Mutability(format!(
                    "attribute '{}' is readOnly",
                    def.name
                )))
            };
        }
        if current.is_none_or(Value::is_null) {
            return Ok(());
        }
        if def.mutability == Mutability::Immutable {
            return Err(Error::Mutability(format!(
                "attribute '{}' is immutable",
                def.name
            )));
        }
        if def.required {
            return Err(Error::InvalidValue(format!(
                "attribute '{}' is required",
                def.name
            )));
        }
        remove_ci(c, def.name.as_str());
        Ok(())
    }

    // --- operations with a path -------------------------------------------------------------

    fn apply_path(
        &mut self,
        doc: &mut Map<String, Value>,
        op: &PatchOperation,
        p: &PatchPath,
    ) -> Result<(), Error> {
        if is_schemas_path(p) {
            return if self.opts.ignore_read_only {
                Ok(())
            } else {
                Err(Error::Mutability("'schemas' cannot be modified".into()))
            };
        }
        // A path that is an extension URN itself designates the whole extension object: add and
        // replace act as a path-less operation scoped to it, remove drops it.
        let whole_extension = match p.value_filter {
            None => self.schema.extension_index_named_by(&p.attr),
            Some(_) => None,
        };
        if let Some(idx) = whole_extension {
            let id = self.schema.extensions[idx].0.id.as_str();
            return match op.op {
                PatchOpKind::Remove => self.remove_extension(doc, id),
                kind => {
                    let mut wrapped = Map::new();
                    wrapped.insert(id.to_owned(), value_required(op)?.clone());
                    self.apply_pathless(doc, kind, &wrapped)
                }
            };
        }
        let urn = p.attr.urn.as_ref().map(|u| u.as_str());
        let t = self
            .resolve(urn, p.attr.name.as_str())
            .ok_or_else(|| Error::InvalidPath(format!("unknown attribute '{}'", p.attr.name)))?;
        let def = t.def;
        let sub_name = match (&p.value_filter, &p.attr.sub_attr, &p.sub_attr) {
            (Some(_), None, s) | (None, s, None) => s.as_ref(),
            (None, None, s) => s.as_ref(),
            (Some(_), Some(_), _) | (None, Some(_), Some(_)) => {
                return Err(Error::InvalidPath(
                    "a value filter cannot follow a sub-attribute".into(),
                ))
            }
        };
        let sub = match sub_name {
            Some(s) => {
                if def.attr_type != AttrType::Complex {
                    return Err(Error::InvalidPath(format!(
                        "attribute '{}' has no sub-attributes",
                        def.name
                    )));
                }
                Some(def.sub_attribute(s.as_str()).ok_or_else(|| {
                    Error::InvalidPath(format!("unknown sub-attribute '{}.{}'", def.name, s))
                })?)
            }
            None => None,
        };
        if p.value_filter.is_some() && !def.multi_valued {
            return Err(Error::InvalidPath(format!(
                "attribute '{}' is not multi-valued",
                def.name
            )));
        }
        if def.mutability == Mutability::ReadOnly && (sub.is_some() || p.value_filter.is_some()) {
            return if self.opts.ignore_read_only {
                Ok(())
            } else {
                Err(Error::Mutability(format!(
                    "attribute '{}' is readOnly",
                    def.name
                )))
            };
        }
        if let Some(s) = sub {
            if s.mutability == Mutability::ReadOnly {
                return if self.opts.ignore_read_only {
                    Ok(())
                } else {
                    Err(Error::Mutability(format!(
                        "attribute '{}.{}' is readOnly",
                        def.name, s.name
                    )))
                };
            }
        }
        match (&p.value_filter, sub) {
            (None, None) => match op.op {
                PatchOpKind::Remove => self.remove_attr(doc, t),
                kind => self.set_attr(doc, kind, t, value_required(op)?),
            },
            (None, Some(s)) if !def.multi_valued => self.single_sub(doc, op, t, s),
            (filter, sub) => self.multi_valued(doc, op, t, filter.as_ref(), sub),
        }
    }

    /// `name.givenName`-style paths on a single-valued complex attribute.
    fn single_sub(
        &mut self,
        doc: &mut Map<String, Value>,
        op: &PatchOperation,
        t: Target<'a>,
        s: &AttributeDef,
    ) -> Result<(), Error> {
        let def = t.def;
        let new = match op.op {
            PatchOpKind::Remove => None,
            _ => {
                let v = value_required(op)?;
                if v.is_null() {
                    None
                } else {
                    Some(prepare(s, v.clone())?)
                }
            }
        };
        if new.is_none() && op.op == PatchOpKind::Add {
            return Ok(());
        }
        let current_parent = self
            .container(doc, t.ext, false)?
            .and_then(|c| get_ci(c, def.name.as_str()));
        let current_sub = current_parent
            .and_then(Value::as_object)
            .and_then(|m| get_ci(m, s.name.as_str()));
        if def.mutability == Mutability::Immutable && current_parent.is_some_and(|v| !v.is_null()) {
            let same = match (current_sub, &new) {
                (Some(c), Some(n)) => values_equal(Some(s), c, n),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(Error::Mutability(format!(
                    "attribute '{}' is immutable and already set",
                    def.name
                )));
            }
        }
        match new {
            None => {
                if current_sub.is_none_or(Value::is_null) {
                    return Ok(());
                }
                if s.required {
                    return Err(Error::InvalidValue(format!(
                        "attribute '{}.{}' is required",
                        def.name, s.name
                    )));
                }
                if s.mutability == Mutability::Immutable {
                    return Err(Error::Mutability(format!(
                        "attribute '{}.{}' is immutable",
                        def.name, s.name
                    )));
                }
                let c = self
                    .container(doc, t.ext, false)?
                    .ok_or_else(no_container)?;
                let mut emptied = false;
                if let Some(Value::Object(m)) = get_ci_mut(c, def.name.as_str()) {
                    remove_ci(m, s.name.as_str());
                    emptied = m.is_empty();
                }
                if emptied {
                    if def.required {
                        return Err(Error::InvalidValue(format!(
                            "attribute '{}' is required",
                            def.name
                        )));
                    }
                    remove_ci(c, def.name.as_str());
                }
                Ok(())
            }
            Some(n) => {
                if s.mutability == Mutability::Immutable
                    && current_sub.is_some_and(|c| !c.is_null() && !values_equal(Some(s), c, &n))
                {
                    return Err(Error::Mutability(format!(
                        "attribute '{}.{}' is immutable",
                        def.name, s.name
                    )));
                }
                let c = self.container(doc, t.ext, true)?.ok_or_else(no_container)?;
                let parent = match find_key(c, def.name.as_str()).cloned() {
                    Some(k) => c.get_mut(&k),
                    None => {
                        c.insert(def.name.as_str().to_owned(), Value::Object(Map::new()));
                        c.get_mut(def.name.as_str())
                    }
                };
                match parent {
                    Some(v) if v.is_null() => {
                        let mut m = Map::new();
                        m.insert(s.name.as_str().to_owned(), n);
                        *v = Value::Object(m);
                    }
                    Some(Value::Object(m)) => set_ci(m, s.name.as_str(), n),
                    _ => {
                        return Err(Error::InvalidValue(format!(
                            "attribute '{}' is not an object",
                            def.name
                        )))
                    }
                }
                Ok(())
            }
        }
    }

    /// Paths on a multi-valued attribute with a filter and/or a sub-attribute.
    fn multi_valued(
        &mut self,
        doc: &mut Map<String, Value>,
        op: &PatchOperation,
        t: Target<'a>,
        filter: Option<&Filter>,
        sub: Option<&'a AttributeDef>,
    ) -> Result<(), Error> {
        let def = t.def;
        let new = match op.op {
            PatchOpKind::Remove => None,
            _ => {
                let v = value_required(op)?;
                match sub {
                    Some(s) => Some(prepare(s, v.clone())?),
                    None => Some(prepare_single(def, v.clone())?),
                }
            }
        };
        let mut items: Vec<Value> = match self
            .container(doc, t.ext, false)?
            .and_then(|c| get_ci(c, def.name.as_str()))
        {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(Error::InvalidValue(format!(
                    "attribute '{}' is not an array",
                    def.name
                )))
            }
        };
        let matched: Vec<usize> = match filter {
            Some(f) => (0..items.len())
                .filter(|&i| matches_value(f, &items[i], Some(def)))
                .collect(),
            None => (0..items.len()).collect(),
        };
        if matched.is_empty() {
            let what = format!("no value of '{}' matches the path", def.name);
            return match (op.op, filter) {
                (PatchOpKind::Remove, _) if self.opts.remove_unmatched_ok || filter.is_none() => {
                    Ok(())
                }
                (PatchOpKind::Remove, _) => Err(Error::NoTarget(what)),
                (kind, Some(f))
                    if self.opts.create_on_filter_miss
                        || (kind == PatchOpKind::Add && self.opts.create_on_add_filter_miss) =>
                {
                    let element =
                        element_from_filter(def, f, sub, new).ok_or(Error::NoTarget(what))?;
                    let primary = is_primary(&element);
                    items.push(element);
                    if primary {
                        let last = items.len() - 1;
                        clear_primary_except(&mut items, Some(last));
                    }
                    self.store_items(doc, t, items, false)
                }
                _ => Err(Error::NoTarget(what)),
            };
        }
        let immutable_sub =
            |s: &AttributeDef, cur: Option<&Value>, n: Option<&Value>| -> Result<(), Error> {
                let changed = match (cur, n) {
                    (Some(c), Some(n)) => !c.is_null() && !values_equal(Some(s), c, n),
                    (Some(c), None) => !c.is_null(),
                    _ => false,
                };
                if s.mutability == Mutability::Immutable && changed {
                    Err(Error::Mutability(format!(
                        "attribute '{}.{}' is immutable",
                        def.name, s.name
                    )))
                } else {
                    Ok(())
                }
            };
        if def.mutability == Mutability::Immutable && op.op != PatchOpKind::Add {
            return Err(Error::Mutability(format!(
                "attribute '{}' is immutable",
                def.name
            )));
        }
        match (op.op, sub, new) {
            (PatchOpKind::Remove, None, _) => {
                if def.required && matched.len() == items.len() {
                    return Err(Error::InvalidValue(format!(
                        "attribute '{}' is required",
                        def.name
                    )));
                }
                let mut i = 0;
                items.retain(|_| {
                    let keep = matched.binary_search(&i).is_err();
                    i += 1;
                    keep
                });
                self.store_items(doc, t, items, true)
            }
            (PatchOpKind::Remove, Some(s), _) => {
                for &i in &matched {
                    if let Value::Object(m) = &mut items[i] {
                        let cur = get_ci(m, s.name.as_str());
                        if cur.is_some_and(|c| !c.is_null()) && s.required {
                            return Err(Error::InvalidValue(format!(
                                "attribute '{}.{}' is required",
                                def.name, s.name
                            )));
                        }
                        immutable_sub(s, cur, None)?;
                        remove_ci(m, s.name.as_str());
                    }
                }
                items.retain(|v| v.as_object().is_none_or(|m| !m.is_empty()));
                self.store_items(doc, t, items, true)
            }
            (_, Some(s), Some(n)) => {
                let sets_primary = s.name.eq_str("primary") && n.as_bool() == Some(true);
                if sets_primary && matched.len() > 1 {
                    return Err(Error::InvalidValue(format!(
                        "more than one '{}' value would be primary",
                        def.name
                    )));
                }
                for &i in &matched {
                    match &mut items[i] {
                        Value::Object(m) => {
                            immutable_sub(s, get_ci(m, s.name.as_str()), Some(&n))?;
                            if n.is_null() {
                                remove_ci(m, s.name.as_str());
                            } else {
                                set_ci(m, s.name.as_str(), n.clone());
                            }
                        }
                        _ => {
                            return Err(Error::InvalidValue(format!(
                                "attribute '{}' has non-object values",
                                def.name
                            )))
                        }
                    }
                }
                if sets_primary {
                    clear_primary_except(&mut items, matched.first().copied());
                }
                self.store_items(doc, t, items, false)
            }
            (kind, None, Some(n)) => {
                let Value::Object(nm) = n else {
                    return Err(Error::InvalidValue(format!(
                        "a value of '{}' must be an object",
                        def.name
                    )));
                };
                let primary = is_primary(&Value::Object(nm.clone()));
                if primary && matched.len() > 1 {
                    return Err(Error::InvalidValue(format!(
                        "more than one '{}' value would be primary",
                        def.name
                    )));
                }
                for &i in &matched {
                    let Value::Object(m) = &mut items[i] else {
                        return Err(Error::InvalidValue(format!(
                            "attribute '{}' has non-object values",
                            def.name
                        )));
                    };
                    if kind == PatchOpKind::Replace {
                        for s in &def.sub_attributes {
                            if s.mutability == Mutability::Immutable {
                                immutable_sub(
                                    s,
                                    get_ci(m, s.name.as_str()),
                                    get_ci(&nm, s.name.as_str()),
                                )?;
                            }
                        }
                        *m = nm.clone();
                    } else {
                        merge_complex(m, def, nm.clone())?;
                    }
                }
                if primary {
                    clear_primary_except(&mut items, matched.first().copied());
                }
                self.store_items(doc, t, items, false)
            }
            (_, _, None) => Ok(()),
        }
    }

    /// Writes a multi-valued attribute back; an empty list unassigns it.
    fn store_items(
        &mut self,
        doc: &mut Map<String, Value>,
        t: Target<'a>,
        items: Vec<Value>,
        removal: bool,
    ) -> Result<(), Error> {
        if count_primary(&items) > 1 {
            return Err(Error::InvalidValue(format!(
                "more than one '{}' value is primary",
                t.def.name
            )));
        }
        let c = self.container(doc, t.ext, !items.is_empty())?;
        let Some(c) = c else {
            return Ok(());
        };
        if items.is_empty() && removal {
            if t.def.required {
                return Err(Error::InvalidValue(format!(
                    "attribute '{}' is required",
                    t.def.name
                )));
            }
            remove_ci(c, t.def.name.as_str());
        } else {
            set_ci(c, t.def.name.as_str(), Value::Array(items));
        }
        Ok(())
    }
}

fn no_container() -> Error {
    Error::InvalidValue("extension object missing".into())
}

/// Appends `new` to `items`, merging a value already present instead of duplicating it; a new
/// primary value clears the others.
fn add_values(items: &mut Vec<Value>, def: &AttributeDef, new: Vec<Value>) -> Result<(), Error> {
    for v in new {
        let primary = is_primary(&v);
        let at = match items.iter().position(|e| same_element(def, e, &v)) {
            Some(i) => {
                if let (Value::Object(existing), Value::Object(nm)) = (&mut items[i], v) {
                    merge_complex(existing, def, nm)?;
                }
                i
            }
            None => {
                items.push(v);
                items.len() - 1
            }
        };
        if primary {
            clear_primary_except(items, Some(at));
        }
    }
    Ok(())
}

/// Merges sub-attributes of `new` into `existing`; changing a set immutable sub-attribute fails.
fn merge_complex(
    existing: &mut Map<String, Value>,
    def: &AttributeDef,
    new: Map<String, Value>,
) -> Result<(), Error> {
    for (k, v) in new {
        let sub = def.sub_attribute(&k);
        if let Some(s) = sub {
            if s.mutability == Mutability::Immutable {
                if let Some(cur) = get_ci(existing, &k) {
                    if !cur.is_null() && !values_equal(Some(s), cur, &v) {
                        return Err(Error::Mutability(format!(
                            "attribute '{}.{}' is immutable",
                            def.name, s.name
                        )));
                    }
                }
            }
        }
        set_ci(existing, &k, v);
    }
    Ok(())
}

/// The element an `add`/`replace` on `attr[filter]...` creates when nothing matches (with
/// [`PatchOptions::create_on_filter_miss`]): the filter must be `eq` comparisons joined by `and`,
/// which give the new element's sub-attributes; the operation's value fills in the rest.
fn element_from_filter(
    def: &AttributeDef,
    filter: &Filter,
    sub: Option<&AttributeDef>,
    new: Option<Value>,
) -> Option<Value> {
    let mut m = Map::new();
    collect_equalities(def, filter, &mut m)?;
    match (sub, new) {
        (Some(s), Some(n)) if !n.is_null() => {
            m.insert(s.name.as_str().to_owned(), n);
        }
        (None, Some(Value::Object(nm))) => {
            for (k, v) in nm {
                m.insert(k, v);
            }
        }
        _ => return None,
    }
    Some(Value::Object(m))
}

fn collect_equalities(def: &AttributeDef, f: &Filter, out: &mut Map<String, Value>) -> Option<()> {
    match f {
        Filter::And(a, b) => {
            collect_equalities(def, a, out)?;
            collect_equalities(def, b, out)
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.sub_attr.is_none() && path.urn.is_none() => {
            let s = def.sub_attribute(path.name.as_str())?;
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            out.insert(s.name.as_str().to_owned(), v);
            Some(())
        }
        _ => None,
    }
}
