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

/// A secret kept only as its SHA-256, to compare candidates with in constant time (the
/// bootstrap token): both sides are hashed, so the comparison leaks neither content nor length,
/// and the secret's own hash is computed once, not on every request.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(secret: &str) -> Self {
        SecretDigest(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `candidate` is the secret.
    pub fn matches(&self, candidate: &str) -> bool {
        Sha256::digest(candidate.as_bytes())
            .as_slice()
            .ct_eq(&self.0)
            .into()
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(***)")
    }
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
        let secret = SecretDigest::of("abc");
        assert!(secret.matches("abc"));
        assert!(!secret.matches("abd"));
        assert!(!secret.matches("abcd"));
        assert!(!secret.matches(""));
        assert_eq!(format!("{secret:?}"), "SecretDigest(***)");
    }
}
