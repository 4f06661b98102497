//! Case-insensitive access to JSON objects, and the one rule for a resource's primary email.
//!
//! Clients may spell attribute names in any case (RFC 7643 §2.1); these helpers find a key
//! regardless of case without allocating. [`primary_email`] lives here so the server (engine,
//! notifications) and every connector pick the same address from the same resource.
//! [`from_str_unique`] parses client JSON that names no member twice.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// The key actually used in `obj` for `name`, compared case-insensitively.
pub fn find_key<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// The value under `name`, compared case-insensitively.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    match obj.get(name) {
        Some(v) => Some(v),
        None => obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
    }
}

/// The value under `name`, mutably, compared case-insensitively.
pub fn get_ci_mut<'a>(obj: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    let key = find_key(obj, name)?.clone();
    obj.get_mut(&key)
}

/// Removes `name` (case-insensitively) and returns its value.
pub fn remove_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = find_key(obj, name)?.clone();
    obj.shift_remove(&key)
}

/// The address to use for a resource with a multi-valued `emails` attribute (RFC 7643 §4.1.2):
/// the email marked `primary: true`, else the first email that has a `value`. Attribute names
/// are matched case-insensitively; entries without a string `value` are skipped. The `type`
/// (`work`, `home`, …) is not consulted: `primary` is the client's own statement of which
/// address is preferred, and without it the client's order is the only other signal.
pub fn primary_email(resource: &Map<String, Value>) -> Option<&str> {
    let emails = get_ci(resource, "emails")?.as_array()?;
    let primary = emails
        .iter()
        .filter(|e| is_primary(e))
        .find_map(email_value);
    primary.or_else(|| emails.iter().find_map(email_value))
}

fn email_value(email: &Value) -> Option<&str> {
    get_ci(email.as_object()?, "value")?.as_str()
}

fn is_primary(email: &Value) -> bool {
    email
        .as_object()
        .and_then(|o| get_ci(o, "primary"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Parses JSON text into the [`Value`] `serde_json::from_str` would build, but refuses an object
/// that names a member twice, at any depth: serde_json keeps the last silently, so
/// `{"userName":"a","userName":"b"}` would become "b" before any check could see the "a".
pub fn from_str_unique(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = UniqueValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// serde_json's own `Value` visitor, with the repeat check in `visit_map`. Numbers take the same
/// path (i64/u64/f64 from the same parser, so `float_roundtrip` applies alike); the workspace
/// does not enable `arbitrary_precision`. Unlike serde_json's visitor it gives no meaning to
/// the `raw_value` feature's private marker key: a client's member of that name is a member.
#[derive(Debug, Clone, Copy)]
struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            match members.entry(key) {
                Entry::Vacant(e) => {
                    e.insert(value);
                }
                Entry::Occupied(e) => {
                    return Err(de::Error::custom(format_args!(
                        "member '{}' is given more than once",
                        e.key()
                    )));
                }
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unique_parse_builds_what_serde_json_builds() {
        for text in [
            "null",
            "true",
            " [1, -1, 0, -0, 1.0, -0.0, 0.1, 1e-7, 1e300, 2.5E+3, 123456789012345678901234567890]",
            "[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]",
            "[0.30000000000000004, 5e-324, 1.7976931348623157e308, 3.141592653589793]",
            r#"{"b": 1, "a": {"z": [], "y": {}}, "A": "case differs", "s": "\u00e9\ud83d\ude00\n"}"#,
            r#"[[[{"x": [{"y": null}]}]], "", {}]"#,
        ] {
            let ours = from_str_unique(text).expect(text);
            let theirs: Value = serde_json::from_str(text).expect(text);
            assert_eq!(ours, theirs, "{text}");
            // Same number representation and member order, not only equal values.
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        }
    }

    #[test]
    fn unique_parse_refuses_repeated_members_at_any_depth() {
        for (text, key) in [
            (r#"{"userName":"a","userName":"b"}"#, "userName"),
            (r#"{"name":{"givenName":"a","givenName":"b"}}"#, "givenName"),
            (r#"{"Operations":[],"x":1,"Operations":[]}"#, "Operations"),
            (r#"[1, {"emails":[{"value":"a","value":"a"}]}]"#, "value"),
        ] {
            let e = from_str_unique(text).expect_err(text).to_string();
            assert!(
                e.contains(&format!("member '{key}' is given more than once")),
                "{e}"
            );
        }
        // Names differing in case are different JSON members (the schema check refuses those).
        assert!(from_str_unique(r#"{"userName":"a","USERNAME":"b"}"#).is_ok());
    }

    #[test]
    fn unique_parse_fails_where_serde_json_fails() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":1} x",
            "1e400",
            "nul",
            "[1] [2]",
            "\"\\x\"",
        ] {
            assert!(from_str_unique(text).is_err(), "{text}");
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn finds_keys_in_any_case() {
        let Value::Object(mut m) = json!({"userName": "bjensen", "Name": {"givenName": "B"}})
        else {
            panic!("object");
        };
        assert_eq!(get_ci(&m, "USERNAME"), Some(&json!("bjensen")));
        assert_eq!(find_key(&m, "name").map(String::as_str), Some("Name"));
        assert!(get_ci_mut(&mut m, "name").is_some());
        assert_eq!(remove_ci(&mut m, "username"), Some(json!("bjensen")));
        assert!(get_ci(&m, "userName").is_none());
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn primary_email_prefers_the_primary_entry() {
        let r = obj(json!({"emails": [
            {"value": "home@example.com", "type": "home"},
            {"value": "work@example.com", "type": "work", "primary": true}
        ]}));
        assert_eq!(primary_email(&r), Some("work@example.com"));
    }

    #[test]
    fn primary_email_falls_back_to_the_first_with_a_value() {
        let r = obj(json!({"Emails": [
            {"type": "other"},
            {"value": "first@example.com", "type": "home"},
            {"value": "second@example.com", "type": "work"}
        ]}));
        assert_eq!(primary_email(&r), Some("first@example.com"));
        // a primary entry without a value does not hide the others
        let r = obj(json!({"emails": [
            {"primary": true},
            {"value": "only@example.com", "primary": false}
        ]}));
        assert_eq!(primary_email(&r), Some("only@example.com"));
    }

    #[test]
    fn primary_email_is_none_without_addresses() {
        assert_eq!(primary_email(&obj(json!({"userName": "x"}))), None);
        assert_eq!(primary_email(&obj(json!({"emails": []}))), None);
        assert_eq!(primary_email(&obj(json!({"emails": "a@b"}))), None);
        assert_eq!(primary_email(&obj(json!({"emails": [{"value": 7}]}))), None);
    }
}
