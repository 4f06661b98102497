//! Opaque API tokens: `shub_<prefix>_<secret>`.
//!
//! The prefix (12 hex characters) is stored in clear and used to find the token row; the whole
//! token is stored only as its SHA-256 (the secret has 256 bits of entropy, so a slow hash adds
//! nothing) and compared in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_PREFIX: &str = "shub_";

/// A freshly generated token: show `token` once, store `prefix` and `hash`.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub prefix: String,
    pub hash: String,
}

/// Generates a new random token.
pub fn generate() -> NewToken {
    let mut rng = rand::thread_rng();
    let mut prefix = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut prefix);
    rng.fill_bytes(&mut secret);
    let prefix = hex::encode(prefix);
    let token = format!("{TOKEN_PREFIX}{prefix}_{}", hex::encode(secret));
    let hash = hash(&token);
    NewToken {
        token,
        prefix,
        hash,
    }
}

/// The lookup prefix of a token of our format, or `None` for anything else.
pub fn prefix_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && !secret.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(prefix)
}

/// SHA-256 of the whole token, lowercase hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `stored_hash`, compared in constant time.
pub fn verify(token: &str, stored_hash: &str) -> bool {
    let computed = hash(token);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time equality of two secrets of any length (used for the bootstrap token: both sides
/// are hashed first so the comparison does not leak the length either).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_round_trip() {
        let t = generate();
        assert!(t.token.starts_with("shub_"));
        assert_eq!(prefix_of(&t.token), Some(t.prefix.as_str()));
        assert!(verify(&t.token, &t.hash));
        assert!(!verify(&format!("{}x", t.token), &t.hash));
        assert_ne!(generate().token, t.token);
    }

    #[test]
    fn foreign_tokens_have_no_prefix() {
        assert_eq!(prefix_of("eyJhbGciOi.x.y"), None);
        assert_eq!(prefix_of("shub_short_x"), None);
        assert_eq!(prefix_of("shub_0123456789ab_"), None);
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
