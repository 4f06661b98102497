//! Value handling shared by the PATCH operations: canonicalising incoming values against the
//! schema, comparing values (caseExact-aware), and keeping one `primary` (RFC 7643 §2.4).

use serde_json::{Map, Value};

use crate::error::Error;
use crate::json::{find_key, get_ci};
use crate::name::eq_ci;
use crate::schema::{AttrType, AttributeDef, Mutability};

/// Checks `value` against `def`'s type and returns it in canonical form:
/// * multi-valued attributes become arrays (a lone value is wrapped);
/// * complex values get their sub-attribute keys spelled as the schema spells them, `null`
///   sub-attributes dropped (RFC 7643 §2.5: null is unassigned) and `readOnly` sub-attributes
///   dropped (as RFC 7644 §3.5.1 does for PUT; e.g. `manager.displayName`).
///
/// Sub-attributes the schema does not define are kept as sent; rejecting them is validation's job.
pub(crate) fn prepare(def: &AttributeDef, value: Value) -> Result<Value, Error> {
    if def.multi_valued {
        let items = match value {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if !item.is_null() {
                out.push(prepare_single(def, item)?);
            }
        }
        Ok(Value::Array(out))
    } else {
        prepare_single(def, value)
    }
}

/// One value (or one element of a multi-valued attribute).
pub(crate) fn prepare_single(def: &AttributeDef, value: Value) -> Result<Value, Error> {
    if value.is_null() {
        return Ok(value);
    }
    if def.attr_type != AttrType::Complex {
        return if type_ok(def.attr_type, &value) {
            Ok(value)
        } else {
            Err(type_error(def))
        };
    }
    let Value::Object(map) = value else {
        return Err(type_error(def));
    };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        match def.sub_attribute(&k) {
            Some(sub) => {
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                let v = prepare(sub, v)?;
                out.insert(sub.name.as_str().to_owned(), v);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    Ok(Value::Object(out))
}

fn type_ok(t: AttrType, v: &Value) -> bool {
    match t {
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => {
            v.is_string()
        }
        AttrType::Boolean => v.is_boolean(),
        AttrType::Integer => v.is_i64() || v.is_u64(),
        AttrType::Decimal => v.is_number(),
        AttrType::Complex => v.is_object(),
    }
}

pub(crate) fn type_error(def: &AttributeDef) -> Error {
    let expected = match def.attr_type {
        AttrType::String => "a string",
        AttrType::Reference => "a reference string",
        AttrType::Binary => "a base64 string",
        AttrType::DateTime => "a dateTime string",
        AttrType::Boolean => "a boolean",
        AttrType::Integer => "an integer",
        AttrType::Decimal => "a number",
        AttrType::Complex => "an object",
    };
    Error::InvalidValue(format!("attribute '{}' expects {expected}", def.name))
}

/// Equality of two values of attribute `def`: strings of a non-caseExact attribute compare
/// case-insensitively, numbers numerically, complex values sub-attribute by sub-attribute.
pub(crate) fn values_equal(def: Option<&AttributeDef>, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let case_exact = def.is_some_and(|d| d.case_exact || d.attr_type == AttrType::Binary);
            if case_exact {
                x == y
            } else {
                x.eq_ignore_ascii_case(y) || (!x.is_ascii() && x.to_lowercase() == y.to_lowercase())
            }
        }
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(def, a, b))
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(def, x, y, &[]),
        _ => a == b,
    }
}

/// Equality of two complex values, ignoring the sub-attributes named in `ignore`.
fn objects_equal(
    def: Option<&AttributeDef>,
    x: &Map<String, Value>,
    y: &Map<String, Value>,
    ignore: &[&str],
) -> bool {
    let relevant = |m: &Map<String, Value>| {
        m.iter()
            .filter(|(k, v)| !v.is_null() && !ignore.iter().any(|i| eq_ci(i, k)))
            .count()
    };
    if relevant(x) != relevant(y) {
        return false;
    }
    x.iter()
        .filter(|(k, v)| !v.is_null() && !ignore.iter().any(|i| eq_ci(i, k)))
        .all(|(k, v)| {
            let sub = def.and_then(|d| d.sub_attribute(k));
            get_ci(y, k).is_some_and(|w| values_equal(sub, v, w))
        })
}

/// Whether two elements of the multi-valued attribute `def` are "the same value" for the purpose
/// of RFC 7644 §3.5.2.1 ("If the target location already contains the value specified, no
/// changes SHOULD be made"): for complex elements with a `value` sub-attribute, the same `value`
/// (caseExact-aware) and, when both carry one, the same `type`; otherwise all sub-attributes
/// except `primary` and `display` equal.
pub(crate) fn same_element(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => match (get_ci(x, "value"), get_ci(y, "value")) {
            (Some(vx), Some(vy)) if !vx.is_null() && !vy.is_null() => {
                let value_def = def.sub_attribute("value");
                if !values_equal(value_def, vx, vy) {
                    return false;
                }
                match (get_ci(x, "type"), get_ci(y, "type")) {
                    (Some(tx), Some(ty)) if !tx.is_null() && !ty.is_null() => {
                        values_equal(def.sub_attribute("type"), tx, ty)
                    }
                    _ => true,
                }
            }
            _ => objects_equal(Some(def), x, y, &["primary", "display"]),
        },
        _ => values_equal(Some(def), a, b),
    }
}

/// Whether `v` is an element marked `primary: true`.
pub(crate) fn is_primary(v: &Value) -> bool {
    v.as_object()
        .and_then(|m| get_ci(m, "primary"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Number of elements marked primary.
pub(crate) fn count_primary(items: &[Value]) -> usize {
    items.iter().filter(|v| is_primary(v)).count()
}

/// RFC 7643 §2.4: "The primary attribute value 'true' MUST appear no more than once." Sets
/// `primary` to false on every element but `keep`.
pub(crate) fn clear_primary_except(items: &mut [Value], keep: Option<usize>) {
    for (i, item) in items.iter_mut().enumerate() {
        if Some(i) == keep {
            continue;
        }
        if let Value::Object(m) = item {
            if let Some(k) = find_key(m, "primary").cloned() {
                if m.get(&k).and_then(Value::as_bool) == Some(true) {
                    m.insert(k, Value::Bool(false));
                }
            }
        }
    }
}

/// Sets `key` in `obj`, reusing the existing spelling of the key when present.
pub(crate) fn set_ci(obj: &mut Map<String, Value>, key: &str, value: Value) {
    match find_key(obj, key).cloned() {
        Some(k) => {
            obj.insert(k, value);
        }
        None => {
            obj.insert(key.to_owned(), value);
        }
    }
}
