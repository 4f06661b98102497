//! JSON Web Token verification (HS256, RS256, ES256) with issuer, audience and expiry checks,
//! against static keys from the configuration and, with `[jwt] jwks_url`, the IdP's key set
//! ([`super::jwks`]).

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{load_secret, JwtConfig, MIN_SECRET_BYTES};

use super::{Principal, Scope, UserRef};

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies JWTs against the configured keys.
pub struct JwtVerifier {
    keys: Vec<Key>,
    jwks: Option<super::jwks::JwksCache>,
    issuer: String,
    audience: Vec<String>,
    scope_claim: String,
    client_claim: String,
    user_claim: String,
    leeway: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl JwtVerifier {
    /// Builds the verifier, reading PEM files; fails on an unknown algorithm or a bad key.
    pub fn from_config(cfg: &JwtConfig) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for (i, k) in cfg.keys.iter().enumerate() {
            let algorithm = match k.algorithm.to_ascii_uppercase().as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    anyhow::bail!("unsupported JWT algorithm {other:?} (use HS256, RS256 or ES256)")
                }
            };
            let pem = match (&k.public_key_pem, &k.public_key_file) {
                (Some(p), _) => Some(p.clone().into_bytes()),
                (None, Some(file)) => Some(std::fs::read(file)?),
                (None, None) => None,
            };
            let key = match algorithm {
                Algorithm::HS256 => {
                    let name = format!("jwt.keys[{i}].secret");
                    let setting = k
                        .secret
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("HS256 key needs `secret`"))?;
                    let secret = load_secret(&name, setting).map_err(anyhow::Error::msg)?;
                    // Also checked when the configuration loads; repeated for configurations
                    // built in code.
                    anyhow::ensure!(
                        secret.expose().len() >= MIN_SECRET_BYTES,
                        "{name} must be at least {MIN_SECRET_BYTES} bytes"
                    );
                    DecodingKey::from_secret(secret.expose().as_bytes())?
                }
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem.ok_or_else(|| {
                    anyhow::anyhow!("RS256 key needs `public_key_pem` or `public_key_file`")
                })?)?,
                _ => DecodingKey::from_ec_pem(&pem.ok_or_else(|| {
                    anyhow::anyhow!("ES256 key needs `public_key_pem` or `public_key_file`")
                })?)?,
            };
            keys.push(Key {
                kid: k.kid.clone(),
                algorithm,
                key,
            });
        }
        let jwks = cfg
            .jwks_url
            .as_deref()
            .map(|url| super::jwks::JwksCache::new(url, super::jwks::JwksTiming::from_config(cfg)))
            .transpose()?;
        anyhow::ensure!(
            !keys.is_empty() || jwks.is_some(),
            "[jwt] needs at least one key or a jwks_url"
        );
        Ok(JwtVerifier {
            keys,
            jwks,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            scope_claim: cfg.scope_claim.clone(),
            client_claim: cfg.client_claim.clone(),
            user_claim: cfg.user_claim.clone(),
            leeway: cfg.leeway_secs,
        })
    }

    /// Whether `token` looks like a JWT (three base64url segments) rather than an opaque token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("ey")
    }

    /// Verifies signature, `iss`, `aud`, `exp` (required) and `nbf` against the static keys,
    /// then reads the scopes. The error is safe to log (it never contains the token).
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
        self.verify_with(token, &header, &[])
    }

    /// [`Self::verify`] against the static keys and the IdP's key set (`jwks_url`), which is
    /// fetched first when it is stale or lacks the token's `kid` (bounded wait, rate limited;
    /// see [`super::jwks`]). No matching key: an error (401).
    pub async fn verify_async(&self, token: &str) -> Result<Principal, String> {
        let header = decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
        let Some(jwks) = &self.jwks else {
            return self.verify_with(token, &header, &[]);
        };
        let static_match = self
            .keys
            .iter()
            .any(|k| k.algorithm == header.alg && k.kid.is_some() && k.kid == header.kid);
        if static_match {
            return self.verify_with(token, &header, &[]);
        }
        let fetched = jwks.keys_for(header.kid.as_deref()).await;
        self.verify_with(token, &header, &fetched)
    }

    /// Fetches started for the key set (0 without `jwks_url`).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks.as_ref().map_or(0, |j| j.fetches())
    }

    fn verify_with(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        fetched: &[super::jwks::JwksKey],
    ) -> Result<Principal, String> {
        let fits = |alg: Algorithm, kid: &Option<String>| {
            alg == header.alg && (header.kid.is_none() || kid.is_none() || *kid == header.kid)
        };
        let candidates = self
            .keys
            .iter()
            .filter(|k| fits(k.algorithm, &k.kid))
            .map(|k| (k.algorithm, &k.key))
            .chain(
                fetched
                    .iter()
                    .filter(|k| fits(k.algorithm, &k.kid))
                    .map(|k| (k.algorithm, &k.key)),
            );
        let mut last = String::from("no key for the token's algorithm and kid");
        for (algorithm, key) in candidates {
            let mut v = Validation::new(algorithm);
            v.set_issuer(&[&self.issuer]);
            v.set_audience(&self.audience);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            v.validate_nbf = true;
            v.leeway = self.leeway;
            match decode::<serde_json::Map<String, Value>>(token, key, &v) {
                Ok(data) => return Ok(self.principal(&data.claims)),
                Err(e) => last = format!("JWT rejected: {e}"),
            }
        }
        Err(last)
    }

    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Principal {
        let scopes = match claims.get(&self.scope_claim) {
            Some(Value::String(s)) => s.split_whitespace().filter_map(Scope::parse).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Scope::parse)
                .collect(),
            _ => Vec::new(),
        };
        let client = claims
            .get(&self.client_claim)
            .and_then(Value::as_str)
            .unwrap_or("jwt")
            .to_string();
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string);
        // The user the token speaks for: matched against userName when a decision needs it.
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.trim().is_empty())
            .map(|u| UserRef::UserName(u.to_string()));
        Principal {
            client,
            scopes,
            subject,
            user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtKey;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn cfg(scope_claim: &str) -> JwtConfig {
        JwtConfig {
            issuer: "https://idp.test".into(),
            audience: vec!["scimhub".into()],
            scope_claim: scope_claim.into(),
            client_claim: "sub".into(),
            user_claim: "sub".into(),
            leeway_secs: 0,
            keys: vec![JwtKey {
                algorithm: "HS256".into(),
                kid: None,
                secret: Some("0123456789abcdef0123456789abcdef".into()),
                public_key_pem: None,
                public_key_file: None,
            }],
            jwks_url: None,
            jwks_min_cache_secs: 60,
            jwks_max_cache_secs: 3600,
            jwks_refresh_interval_secs: 30,
            jwks_timeout_ms: 2000,
        }
    }

    fn sign(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").expect("key"),
        )
        .unwrap_or_default()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn accepts_a_valid_token_with_string_scopes() {
        let v = JwtVerifier::from_config(&cfg("scope")).expect("verifier");
        let t = sign(
            json!({"iss":"https://idp.test","aud":"scimhub","exp":now()+60,"sub":"okta","scope":"scim:read scim:write other"}),
        );
        let p = v.verify(&t).expect("valid");
        assert_eq!(p.client, "okta");
        assert_eq!(p.scopes, vec![Scope::Read, Scope::Write]);
        assert_eq!(p.user, Some(UserRef::UserName("okta".into())));
    }

    #[test]
    fn the_user_claim_names_the_directory_user() {
        let mut c = cfg("scope");
        c.client_claim = "azp".into();
        c.user_claim = "preferred_username".into();
        let v = JwtVerifier::from_config(&c).expect("verifier");
        let t = sign(
            json!({"iss":"https://idp.test","aud":"scimhub","exp":now()+60,
            "sub":"00u1abc","azp":"approvals-app","preferred_username":"grace","scope":"approvals"}),
        );
        let p = v.verify(&t).expect("valid");
        assert_eq!(p.client, "approvals-app");
        assert_eq!(p.subject.as_deref(), Some("00u1abc"));
        assert_eq!(p.user, Some(UserRef::UserName("grace".into())));
        assert_eq!(p.scopes, vec![Scope::Approvals]);
        // Without the claim the token acts as nobody.
        let t = sign(json!({"iss":"https://idp.test","aud":"scimhub","exp":now()+60,"azp":"svc"}));
        assert_eq!(v.verify(&t).expect("valid").user, None);
    }

    #[test]
    fn reads_array_scopes() {
        let v = JwtVerifier::from_config(&cfg("scp")).expect("verifier");
        let t = sign(
            json!({"iss":"https://idp.test","aud":["x","scimhub"],"exp":now()+60,"sub":"c","scp":["admin"]}),
        );
        assert_eq!(v.verify(&t).expect("valid").scopes, vec![Scope::Admin]);
    }

    #[test]
    fn rejects_wrong_issuer_audience_expiry_signature() {
        let v = JwtVerifier::from_config(&cfg("scope")).expect("verifier");
        let bad = [
            json!({"iss":"https://evil","aud":"scimhub","exp":now()+60}),
            json!({"iss":"https://idp.test","aud":"other","exp":now()+60}),
            json!({"iss":"https://idp.test","aud":"scimhub","exp":now()-120}),
            json!({"iss":"https://idp.test","aud":"scimhub"}),
        ];
        for claims in bad {
            assert!(v.verify(&sign(claims.clone())).is_err(), "{claims}");
        }
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss":"https://idp.test","aud":"scimhub","exp":now()+60}),
            &EncodingKey::from_secret(b"another secret of enough length!!").expect("key"),
        )
        .unwrap_or_default();
        assert!(v.verify(&forged).is_err());
    }

    #[test]
    fn short_hs256_secrets_are_refused() {
        let mut c = cfg("scope");
        c.keys[0].secret = Some("0123456789abcdef0123456789abcde".into());
        let e = JwtVerifier::from_config(&c)
            .expect_err("too short")
            .to_string();
        assert!(e.contains("jwt.keys[0].secret"), "{e}");
        assert!(!e.contains("0123456789abcdef"), "{e}");
    }

    #[test]
    fn es256_keys_verify() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let private = std::fs::read(format!("{dir}/../tests/e2e/fixtures/es256-private.pem"))
            .expect("fixture");
        let public =
            std::fs::read_to_string(format!("{dir}/../tests/e2e/fixtures/es256-public.pem"))
                .expect("fixture");
        let mut c = cfg("scope");
        c.keys = vec![JwtKey {
            algorithm: "ES256".into(),
            kid: Some("k1".into()),
            secret: None,
            public_key_pem: Some(public),
            public_key_file: None,
        }];
        let v = JwtVerifier::from_config(&c).expect("verifier");
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        let t = encode(
            &h,
            &json!({"iss":"https://idp.test","aud":"scimhub","exp":now()+60,"sub":"entra","scope":"scim:read"}),
            &EncodingKey::from_ec_pem(&private).expect("key"),
        )
        .expect("sign");
        assert_eq!(v.verify(&t).expect("valid").scopes, vec![Scope::Read]);
    }
}
