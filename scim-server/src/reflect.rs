//! The keys a `Deserialize` type accepts, read off the type itself: a deserializer that answers
//! every request with a placeholder and records the path of every field it is asked for. The
//! configuration file (`config::keys`) and the policy file (`policy::reference`) both list
//! their keys this way, so a field added to a struct is a known (and must-be-documented) key
//! with no list to update. Paths are dotted: `jwt.issuer`; `[]` stands for any element of an
//! array (`jwt.keys[].algorithm`) and `*` for any key of a map (`clients.*.dialect`). A
//! `toml::Spanned<T>` is transparent: its key is the one of the value it wraps.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

/// Every key of `T`, sections included. The reflection feeds every field a placeholder (`""`,
/// `0`, `false`, the first variant); a field type that refuses its placeholder (one parsed from
/// a string, such as `IpAddr`) stops the walk: the fields of every struct reached are still
/// recorded and returned with the error.
pub fn keys_of<T: DeserializeOwned>() -> Result<BTreeSet<String>, (BTreeSet<String>, String)> {
    let out = RefCell::new(BTreeSet::new());
    let d = Reflect {
        path: String::new(),
        out: &out,
        record: true,
    };
    match T::deserialize(d) {
        Ok(_) => Ok(out.into_inner()),
        Err(e) => Err((out.into_inner(), e.to_string())),
    }
}

/// The private names `toml::Spanned` (serde_spanned) deserializes itself through.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_PREFIX: &str = "$__serde_spanned_private_";

// ---------------------------------------------------------------------------------------------
// The reflecting deserializer: answers every request with a placeholder and records the path.

struct Reflect<'a> {
    path: String,
    out: &'a RefCell<BTreeSet<String>>,
    record: bool,
}

impl<'a> Reflect<'a> {
    fn child(&self, seg: &str) -> Reflect<'a> {
        let path = if seg == "[]" {
            format!("{}[]", self.path)
        } else if self.path.is_empty() {
            seg.to_string()
        } else {
            format!("{}.{seg}", self.path)
        };
        Reflect {
            path,
            out: self.out,
            record: self.record,
        }
    }

    fn same(&self) -> Reflect<'a> {
        Reflect {
            path: self.path.clone(),
            out: self.out,
            record: self.record,
        }
    }

    fn silent(&self) -> Reflect<'a> {
        Reflect {
            path: self.path.clone(),
            out: self.out,
            record: false,
        }
    }

    fn note(&self) {
        // Elements of an array of values (`jwt.audience[]`) are not keys of their own.
        if self.record && !self.path.is_empty() && !self.path.ends_with("[]") {
            self.out.borrow_mut().insert(self.path.clone());
        }
    }
}

type E = de::value::Error;

macro_rules! leaf {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
            self.note();
            v.$visit($value)
        })*
    };
}

impl<'de> Deserializer<'de> for Reflect<'_> {
    type Error = E;

    leaf! {
        deserialize_any => visit_str(""),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_u8(0),
        deserialize_i16 => visit_u8(0),
        deserialize_i32 => visit_u8(0),
        deserialize_i64 => visit_u8(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u8(0),
        deserialize_u32 => visit_u8(0),
        deserialize_u64 => visit_u8(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_identifier => visit_str(""),
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_unit()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        self.note();
        v.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, E> {
        self.deserialize_unit(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, E> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        self.note();
        v.visit_seq(OneElement(Some(self.child("[]"))))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, E> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, E> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        self.note();
        v.visit_map(Fields {
            names: vec!["x"],
            parent: self,
            wildcard: true,
            next: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        if name == SPANNED {
            // Transparent: the span's start and end are not keys, its value is this key.
            return v.visit_map(Fields {
                names: fields.iter().rev().copied().collect(),
                parent: self,
                wildcard: false,
                next: None,
            });
        }
        self.note();
        // Every field is a key even if a sibling's placeholder is refused below.
        for f in fields {
            self.child(f).note();
        }
        v.visit_map(Fields {
            names: fields.iter().rev().copied().collect(),
            parent: self,
            wildcard: false,
            next: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        // A value (`dialect = "entra"`, `password = { env = "…" }`): a key, nothing below it.
        self.note();
        let first = variants.first().copied().unwrap_or("");
        v.visit_enum(Variant {
            name: first,
            inner: Reflect {
                path: self.path.clone(),
                out: self.out,
                record: false,
            },
        })
    }
}

struct OneElement<'a>(Option<Reflect<'a>>);

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = E;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        self.0.take().map(|d| seed.deserialize(d)).transpose()
    }
}

struct Fields<'a> {
    names: Vec<&'static str>,
    parent: Reflect<'a>,
    wildcard: bool,
    next: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = E;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, E> {
        let Some(name) = self.names.pop() else {
            return Ok(None);
        };
        self.next = Some(name);
        // Borrowed: `Spanned` matches its private field names as `&'de str`.
        let key = de::value::BorrowedStrDeserializer::<'de, E>::new(name);
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, E> {
        let name = if self.wildcard {
            "*"
        } else {
            self.next.unwrap_or("")
        };
        if name == SPANNED_VALUE {
            return seed.deserialize(self.parent.same());
        }
        if name.starts_with(SPANNED_PREFIX) {
            return seed.deserialize(self.parent.silent());
        }
        seed.deserialize(self.parent.child(name))
    }
}

struct Variant<'a> {
    name: &'static str,
    inner: Reflect<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = E;
    type Variant = Reflect<'a>;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Reflect<'a>), E> {
        let key: de::value::StrDeserializer<'_, E> = self.name.into_deserializer();
        Ok((seed.deserialize(key)?, self.inner))
    }
}

impl<'de> de::VariantAccess<'de> for Reflect<'_> {
    type Error = E;
    fn unit_variant(self) -> Result<(), E> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, E> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, E> {
        v.visit_seq(OneElement(None))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        v.visit_map(Fields {
            names: fields.iter().rev().copied().collect(),
            parent: self,
            wildcard: false,
            next: None,
        })
    }
}
