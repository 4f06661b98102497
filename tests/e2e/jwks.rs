//! JWTs verified with the IdP's key set (`[jwt] jwks_url`) served by a local endpoint that
//! rotates its keys mid-test: a token signed with key A is accepted; after the endpoint switches
//! to key B a token with kid B is accepted once the set is fetched again, and a token signed with
//! A is refused once A is gone and the cached set has expired; a flood of unknown `kid`s costs
//! at most one fetch per refresh interval; the static keys keep working beside the set.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::{Backend, TestApp};

const REFRESH_INTERVAL_SECS: u64 = 3;
const STATIC_SECRET: &str = "static-hs256-secret-of-32-bytes!!";

/// An ES256 key: its JWK and a way to sign with it.
struct EcKey {
    kid: String,
    pair: rcgen::KeyPair,
}

impl EcKey {
    fn new(kid: &str) -> EcKey {
        EcKey {
            kid: kid.into(),
            pair: rcgen::KeyPair::generate().unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let raw = self.pair.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..65])})
    }

    /// A token with this key's signature and the given `kid`.
    fn sign_as(&self, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let now = jsonwebtoken::get_current_timestamp();
        encode(
            &header,
            &json!({"iss": "https://idp.test", "aud": "scimhub", "exp": now + 600,
                    "sub": "idp-client", "scope": "scim:read"}),
            &EncodingKey::from_ec_pem(self.pair.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn sign(&self) -> String {
        self.sign_as(&self.kid)
    }
}

/// The IdP's JWKS endpoint: serves the current set with `Cache-Control: max-age=1` and counts
/// requests.
struct Endpoint {
    url: String,
    set: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl Endpoint {
    fn start(set: Value) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let set = Arc::new(Mutex::new(set));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (set.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let body = s.lock().unwrap().to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Cache-Control: public, max-age=1\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Endpoint { url, set, hits }
    }

    fn serve(&self, set: Value) {
        *self.set.lock().unwrap() = set;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Polls until a GET with `token` answers `status`.
#[track_caller]
fn await_status(app: &TestApp, token: &str, status: u16, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = app.get("/Users").token(token).send().status;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: still {got}; log: {}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rotation(backend: Backend) {
    let a = EcKey::new("key-a");
    let b = EcKey::new("key-b");
    let idp = Endpoint::start(json!({"keys": [a.jwk()]}));
    let config = format!(
        "[rate_limit]\nfailed_auth_per_minute = 0\n\n[jwt]\nissuer = \"https://idp.test\"\n\
         audience = [\"scimhub\"]\njwks_url = \"{}\"\njwks_min_cache_secs = 1\n\
         jwks_max_cache_secs = 60\njwks_refresh_interval_secs = {REFRESH_INTERVAL_SECS}\n\
         jwks_timeout_ms = 5000\n\n[[jwt.keys]]\nalgorithm = \"HS256\"\nkid = \"static\"\n\
         secret = \"{STATIC_SECRET}\"\n",
        idp.url
    );
    let Some(app) = TestApp::builder(backend).config(&config).start() else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };

    // Key A from the set; the static key beside it without any fetch.
    app.get("/Users").token(&a.sign()).send().status(200);
    assert_eq!(idp.hits(), 1);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("static".into());
    let now = jsonwebtoken::get_current_timestamp();
    let static_token = encode(
        &header,
        &json!({"iss": "https://idp.test", "aud": "scimhub", "exp": now + 600, "scope": "scim:read"}),
        &EncodingKey::from_secret(STATIC_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    app.get("/Users").token(&static_token).send().status(200);
    assert_eq!(idp.hits(), 1, "a static key needs no fetch");

    // A flood of unknown kids: 401 each, at most one fetch per refresh interval.
    let before = idp.hits();
    let started = Instant::now();
    for i in 0..40 {
        app.get("/Users")
            .token(&a.sign_as(&format!("made-up-{i}")))
            .send()
            .scim_error(401, None);
    }
    let elapsed = started.elapsed().as_secs();
    let fetched = idp.hits() - before;
    assert!(
        fetched as u64 <= 1 + elapsed / REFRESH_INTERVAL_SECS,
        "{fetched} fetches in {elapsed} s"
    );

    // The IdP rotates to B: a token with kid B is accepted once the set is fetched again.
    idp.serve(json!({"keys": [b.jwk()]}));
    await_status(&app, &b.sign(), 200, "the new key B");
    // A is gone from the set: once the cached set expired and was fetched again, A is refused.
    await_status(&app, &a.sign(), 401, "the removed key A");
    app.get("/Users").token(&b.sign()).send().status(200);
    app.get("/Users").token(&static_token).send().status(200);
}

#[test]
fn jwks_rotation_sqlite() {
    rotation(Backend::Sqlite);
}

#[test]
fn jwks_rotation_postgres() {
    rotation(Backend::Postgres);
}
