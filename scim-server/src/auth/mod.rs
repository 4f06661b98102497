//! Who is calling, and what they may do.
//!
//! Three kinds of bearer credential are accepted, checked in this order:
//!
//! 1. the bootstrap token (`SCIMHUB_BOOTSTRAP_TOKEN`), valid with every scope;
//! 2. a JWT (when `[jwt]` is configured), verified by [`jwt::JwtVerifier`];
//! 3. an opaque API token `shub_<prefix>_<secret>` ([`token`]), looked up by prefix in the store
//!    and compared by hash in constant time, then refused when revoked or expired (read on every
//!    request: there is no cache to invalidate).
//!
//! Tokens are never logged; only the client name is.
//!
//! A credential may also act as a directory user ([`Principal::user`]): an API token issued with
//! `scimhub token issue --user`, or a JWT through its user claim (`[jwt] user_claim`, default
//! `sub`, matched against userName). Scopes say which routes a credential reaches; who the user
//! is decides which approval requests they may decide; the layers above judge that authority
//! from the policy, this module only says who is calling.

pub mod jwks;
pub mod jwt;
pub mod token;
pub mod token_cache;
pub mod usage;

use chrono::{DateTime, Utc};
use connectors::secret::Secret;
use serde::{Deserialize, Serialize};

/// What a credential allows. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "scim:read")]
    Read,
    #[serde(rename = "scim:write")]
    Write,
    /// On top of `scim:write`: may DELETE a User while a `[[source]]` of the policy owns
    /// `active` and this client is not that source (a User's deletion starts the leaver
    /// cascade; see `service::ownership`).
    #[serde(rename = "scim:delete")]
    Delete,
    /// The approval routes of the admin API only: list requests, decide approval and extension
    /// requests (as the credential's user, within the authority the policy gives them), ask for
    /// an extension. For managers, owners and sponsors, who are not administrators.
    #[serde(rename = "approvals")]
    Approvals,
    /// `GET /metrics` on the main listener (monitoring systems; reads counts, no identities).
    #[serde(rename = "metrics:read")]
    MetricsRead,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Write,
        Scope::Delete,
        Scope::Approvals,
        Scope::MetricsRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "scim:read",
            Scope::Write => "scim:write",
            Scope::Delete => "scim:delete",
            Scope::Approvals => "approvals",
            Scope::MetricsRead => "metrics:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope name; unknown names yield `None` (and are ignored in tokens).
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }

    /// Parses a space- or comma-separated list, rejecting unknown names.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut out: Vec<Scope> = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(|p| {
                Scope::parse(p).ok_or_else(|| {
                    format!("unknown scope {p:?} (scim:read, scim:write, scim:delete, approvals, metrics:read, admin)")
                })
            })
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The directory user a credential acts as, as the credential names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// A User's SCIM id (API tokens: resolved when the token was issued).
    Id(String),
    /// A userName, matched case-insensitively when the user is needed (JWTs: the user claim).
    UserName(String),
}

impl UserRef {
    /// The id or userName, as given.
    pub fn as_str(&self) -> &str {
        match self {
            UserRef::Id(s) | UserRef::UserName(s) => s,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The client's name (token name, or the JWT's client claim); safe to log.
    pub client: String,
    pub scopes: Vec<Scope>,
    /// The JWT `sub`, when the credential is a JWT.
    pub subject: Option<String>,
    /// The directory user the credential acts as (`None`: the bootstrap token, an API token
    /// issued without `--user`, a JWT without the user claim).
    pub user: Option<UserRef>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A stored API token, as the store returns it for a prefix.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The row's id (what `last_used` is recorded against).
    pub id: String,
    pub name: String,
    pub hash: String,
    pub scopes: Vec<Scope>,
    pub revoked: bool,
    /// The SCIM id of the user the token acts as.
    pub user_id: Option<String>,
    /// When the token stops being accepted; `None`: never.
    pub expires: Option<DateTime<Utc>>,
}

/// The first, synchronous step of authentication.
#[derive(Debug)]
pub enum Credential {
    /// Fully authenticated already (the bootstrap token).
    Done(Principal),
    /// An opaque token whose row must be fetched by this prefix, then checked with [`Authenticator::check_opaque`].
    Lookup { prefix: String },
    /// A JWT, verified by [`Authenticator::verify_jwt`] (which may fetch the IdP's key set).
    Jwt,
}

/// Why authentication failed; always answered 401, the reason only logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure(pub String);

/// Verifies bearer credentials.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// The bootstrap token's hash (`Debug` prints `SecretDigest(***)`).
    bootstrap: Option<token::SecretDigest>,
    jwt: Option<jwt::JwtVerifier>,
    /// When each API token's `last_used` was last written by this node.
    pub usage: usage::TokenUsage,
    /// Stored tokens as last read, for a second ([`token_cache`]).
    pub tokens: token_cache::TokenCache,
}

impl Authenticator {
    pub fn new(bootstrap: Option<Secret>, jwt: Option<jwt::JwtVerifier>) -> Self {
        Authenticator {
            bootstrap: bootstrap
                .filter(|b| !b.expose().is_empty())
                .map(|b| token::SecretDigest::of(b.expose())),
            jwt,
            usage: usage::TokenUsage::default(),
            tokens: token_cache::TokenCache::default(),
        }
    }

    /// Extracts the bearer token from an `Authorization` header value.
    pub fn bearer(header: Option<&str>) -> Result<&str, AuthFailure> {
        let value = header.ok_or_else(|| AuthFailure("no Authorization header".into()))?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or_else(|| AuthFailure("malformed Authorization".into()))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthFailure("Authorization is not a bearer token".into()));
        }
        Ok(token.trim())
    }

    /// Checks what can be checked without the database.
    pub fn classify(&self, token: &str) -> Result<Credential, AuthFailure> {
        if let Some(boot) = &self.bootstrap {
            if boot.matches(token) {
                return Ok(Credential::Done(Principal {
                    client: "bootstrap".into(),
                    scopes: Scope::ALL.to_vec(),
                    subject: None,
                    user: None,
                }));
            }
        }
        if let Some(prefix) = token::prefix_of(token) {
            return Ok(Credential::Lookup {
                prefix: prefix.to_string(),
            });
        }
        match &self.jwt {
            Some(_) if jwt::JwtVerifier::looks_like_jwt(token) => Ok(Credential::Jwt),
            _ => Err(AuthFailure("unknown token".into())),
        }
    }

    /// Verifies a JWT ([`Credential::Jwt`]) against the static keys and the IdP's key set.
    pub async fn verify_jwt(&self, token: &str) -> Result<Principal, AuthFailure> {
        match &self.jwt {
            Some(v) => v.verify_async(token).await.map_err(AuthFailure),
            None => Err(AuthFailure("JWTs are not accepted".into())),
        }
    }

    /// Completes an opaque-token check with the row found for its prefix: the hash must match,
    /// and the token must be neither revoked nor expired at `now`.
    pub fn check_opaque(
        token: &str,
        record: Option<TokenRecord>,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthFailure> {
        let record = record.ok_or_else(|| AuthFailure("unknown token prefix".into()))?;
        if !token::verify(token, &record.hash) {
            return Err(AuthFailure("token does not match".into()));
        }
        if record.revoked {
            return Err(AuthFailure(format!(
                "token of client {} is revoked",
                record.name
            )));
        }
        if let Some(expires) = record.expires.filter(|e| *e <= now) {
            return Err(AuthFailure(format!(
                "token of client {} expired at {}",
                record.name,
                expires.to_rfc3339()
            )));
        }
        Ok(Principal {
            client: record.name,
            scopes: record.scopes,
            subject: None,
            user: record.user_id.map(UserRef::Id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(Authenticator::bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(Authenticator::bearer(Some("bearer  abc ")), Ok("abc"));
        assert!(Authenticator::bearer(Some("Basic abc")).is_err());
        assert!(Authenticator::bearer(Some("Bearer ")).is_err());
        assert!(Authenticator::bearer(None).is_err());
    }

    #[test]
    fn bootstrap_token_has_every_scope() {
        let a = Authenticator::new(Some(Secret::new("boot")), None);
        match a.classify("boot") {
            Ok(Credential::Done(p)) => {
                assert!(p.has(Scope::Admin) && p.has(Scope::Write) && p.has(Scope::Read))
            }
            other => panic!("{other:?}"),
        }
        assert!(a.classify("boo").is_err());
    }

    #[test]
    fn opaque_tokens_need_the_matching_row() {
        let a = Authenticator::new(None, None);
        let t = token::generate();
        let Ok(Credential::Lookup { prefix }) = a.classify(&t.token) else {
            panic!("lookup")
        };
        assert_eq!(prefix, t.prefix);
        let now = Utc::now();
        let row = TokenRecord {
            id: "t-1".into(),
            name: "okta".into(),
            hash: t.hash.clone(),
            scopes: vec![Scope::Read],
            revoked: false,
            user_id: None,
            expires: None,
        };
        let p = Authenticator::check_opaque(&t.token, Some(row.clone()), now).expect("valid");
        assert!(p.has(Scope::Read) && !p.has(Scope::Write));
        assert_eq!(p.user, None);
        let bound = Authenticator::check_opaque(
            &t.token,
            Some(TokenRecord {
                user_id: Some("u-1".into()),
                ..row.clone()
            }),
            now,
        )
        .expect("valid");
        assert_eq!(bound.user, Some(UserRef::Id("u-1".into())));
        assert!(
            Authenticator::check_opaque("shub_000000000000_x", Some(row.clone()), now).is_err()
        );
        assert!(Authenticator::check_opaque(
            &t.token,
            Some(TokenRecord {
                revoked: true,
                ..row.clone()
            }),
            now
        )
        .is_err());
        assert!(Authenticator::check_opaque(&t.token, None, now).is_err());
        // Valid until its expiry, refused from then on.
        let expiring = TokenRecord {
            expires: Some(now + chrono::Duration::seconds(1)),
            ..row
        };
        assert!(Authenticator::check_opaque(&t.token, Some(expiring.clone()), now).is_ok());
        let late = now + chrono::Duration::seconds(1);
        let err = Authenticator::check_opaque(&t.token, Some(expiring), late).expect_err("expired");
        assert!(err.0.contains("expired"), "{err:?}");
    }

    #[test]
    fn scope_lists() {
        assert_eq!(
            Scope::parse_list("scim:write scim:read,scim:read"),
            Ok(vec![Scope::Read, Scope::Write])
        );
        assert_eq!(Scope::parse_list("approvals"), Ok(vec![Scope::Approvals]));
        assert!(Scope::parse_list("root").is_err());
        // `admin` reaches the approval routes too; `approvals` reaches nothing else.
        let p = |scopes: Vec<Scope>| Principal {
            client: "c".into(),
            scopes,
            subject: None,
            user: None,
        };
        assert!(p(vec![Scope::Admin]).has(Scope::Approvals));
        let approver = p(vec![Scope::Approvals]);
        assert!(!approver.has(Scope::Admin) && !approver.has(Scope::Read));
    }
}
