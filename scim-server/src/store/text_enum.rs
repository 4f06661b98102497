//! `text_enum!`: the statuses and kinds the engine tables store as text (outbox and hold
//! statuses, approval kinds, levels and statuses), as Rust enums whose text is fixed here.
//! The stored text is the serialised form too, so the admin API's JSON is that same text.

/// Declares an enum stored as text: `as_str`, `parse`, `Display`, serde `Serialize`, and
/// `from_stored` (a stored text that is none of the variants is a [`super::HubError::Backend`]).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// The text stored for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// The value whose stored text is `s` (exactly).
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// [`Self::parse`] for text read from the database.
            pub(crate) fn from_stored(s: &str) -> $crate::error::HubResult<$name> {
                $name::parse(s).ok_or_else(|| {
                    $crate::error::HubError::Backend(format!(
                        "stored {} {s:?} is unknown",
                        stringify!($name)
                    ))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum;
