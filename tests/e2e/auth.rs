//! Authentication and the command line: JWTs (HS256 and ES256), opaque API tokens issued with
//! `scimhub token issue`, 401 and 403, `scimhub migrate`, `/readyz`, and per-client dialects.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::harness::*;

const HS_SECRET: &str = "e2e-shared-secret-with-enough-length";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt_config() -> String {
    let pem = include_str!("fixtures/es256-public.pem");
    format!(
        r#"
[jwt]
issuer = "https://idp.example"
audience = ["scimhub"]
scope_claim = "scope"
client_claim = "azp"

[[jwt.keys]]
algorithm = "HS256"
secret = "{HS_SECRET}"

[[jwt.keys]]
algorithm = "ES256"
public_key_pem = """
{pem}"""

[clients.rfc-client]
dialect = "rfc"

[clients.entra-by-config]
dialect = "entra"

[clients.lenient-client]
dialect = "lenient"
"#
    )
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn es256(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_ec_pem(include_bytes!("fixtures/es256-private.pem")).unwrap();
    encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
}

fn claims(scope: &str, client: &str) -> serde_json::Value {
    json!({"iss":"https://idp.example","aud":"scimhub","exp": now() + 600,
           "sub":"svc","azp": client,"scope": scope})
}

fn start(backend: Backend) -> Option<TestApp> {
    TestApp::builder(backend).config(&jwt_config()).start()
}

fn jwt_login_and_scopes(app: TestApp) {
    // HS256 with read and write.
    let rw = hs256(claims("scim:read scim:write", "hr"));
    app.post("/Users", json!({"userName":"jwt.user"}))
        .token(&rw)
        .send()
        .status(201);
    // ES256 with read only: reads pass, writes are 403.
    let ro = es256(claims("scim:read", "reporting"));
    let list = app
        .get("/Users?filter=userName%20eq%20%22jwt.user%22")
        .token(&ro)
        .send()
        .status(200)
        .json();
    assert_eq!(list["totalResults"], 1);
    app.post("/Users", json!({"userName":"denied"}))
        .token(&ro)
        .send()
        .scim_error(403, None);
    app.post(
        "/.search",
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter":"userName eq \"jwt.user\""}),
    )
    .token(&ro)
    .send()
    .status(200);
    // No scope at all: 403 even for reads.
    let none = hs256(claims("", "nobody"));
    app.get("/Users").token(&none).send().scim_error(403, None);
    // Expired, wrong audience, wrong issuer, wrong signature: 401.
    let mut expired = claims("admin", "x");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("admin", "x");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("admin", "x");
    wrong_iss["iss"] = json!("https://evil.example");
    for bad in [hs256(expired), hs256(wrong_aud), hs256(wrong_iss)] {
        app.get("/Users").token(&bad).send().scim_error(401, None);
    }
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims("admin", "x"),
        &EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx").unwrap(),
    )
    .unwrap();
    app.get("/Users")
        .token(&forged)
        .send()
        .scim_error(401, None);
    let log = app.log();
    assert!(
        !log.contains(&rw) && !log.contains(&forged),
        "tokens never logged"
    );
}

#[test]
fn jwt_login_and_scopes_sqlite() {
    jwt_login_and_scopes(start(Backend::Sqlite).expect("sqlite"));
}

#[test]
fn jwt_login_and_scopes_postgres() {
    if let Some(app) = start(Backend::Postgres) {
        jwt_login_and_scopes(app);
    }
}

fn issue(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let mut args = vec!["token", "issue", "--name", name];
    for s in scopes {
        args.push("--scope");
        args.push(s);
    }
    let out = app.cli(&args);
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim().to_string();
    assert_eq!(stdout.lines().count(), 1, "the token alone on stdout");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&token),
        "the token is not logged"
    );
    token
}

crate::backends!(opaque_tokens_from_the_cli, |app| {
    let writer = issue(&app, "okta", &["scim:read", "scim:write"]);
    let reader = issue(&app, "reporting", &["scim:read"]);
    let u = app
        .post("/Users", json!({"userName":"cli.user"}))
        .token(&writer)
        .send()
        .status(201)
        .json();
    let id = u["id"].as_str().unwrap();
    app.get(&format!("/Users/{id}"))
        .token(&reader)
        .send()
        .status(200);
    app.delete(&format!("/Users/{id}"))
        .token(&reader)
        .send()
        .scim_error(403, None);
    // A token with one character changed is 401.
    let mut bad = writer.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'a' { 'b' } else { 'a' });
    app.get("/Users").token(&bad).send().scim_error(401, None);
    // Unknown scope names are refused by the CLI.
    let out = app.cli(&["token", "issue", "--name", "x", "--scope", "root"]);
    assert!(!out.status.success());
    assert!(!app.log().contains(&writer));
});

crate::backends!(migrate_and_readiness, |app| {
    // The server migrated at start; `scimhub migrate` against the same database is a no-op.
    let out = app.cli(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = app.get("/readyz").send().status(200);
    assert_eq!(r.text, "ready");
    let h = app.get("/healthz").send().status(200);
    assert_eq!(h.text, "ok");
});

fn dialect_by_client_setting(app: TestApp) {
    // No telling User-Agent: the client's `dialect` setting decides.
    let entra = hs256(claims("scim:read scim:write", "entra-by-config"));
    let rfc = hs256(claims("scim:read scim:write", "rfc-client"));
    let u = app
        .post("/Users", json!({"userName":"dialect.user"}))
        .token(&entra)
        .send()
        .status(201)
        .json();
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let entra_patch = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"Replace","path":"active","value":"False"}]});
    let p = app
        .patch(&path, entra_patch.clone())
        .token(&entra)
        .send()
        .status(200)
        .json();
    assert_eq!(p["active"], false);
    // The same body from an RFC client is rejected, and even an Entra User-Agent does not
    // override the client's setting.
    app.patch(&path, entra_patch.clone())
        .token(&rfc)
        .send()
        .scim_error(400, Some("invalidSyntax"));
    app.patch(&path, entra_patch)
        .token(&rfc)
        .header("user-agent", "Azure AD SCIM Client")
        .send()
        .scim_error(400, Some("invalidSyntax"));
    // RFC 7643 §3: `schemas` is REQUIRED. A PATCH without it is refused in the default dialect
    // (and by Entra's and the RFC's), and accepted only from a client configured lenient.
    let bare = json!({"Operations":[{"op":"replace","path":"active","value":true}]});
    for token in [&entra, &rfc] {
        app.patch(&path, bare.clone())
            .token(token)
            .send()
            .scim_error(400, Some("invalidSyntax"));
    }
    app.patch(&path, bare.clone())
        .send()
        .scim_error(400, Some("invalidSyntax"));
    let lenient = hs256(claims("scim:read scim:write", "lenient-client"));
    let p = app
        .patch(&path, bare)
        .token(&lenient)
        .send()
        .status(200)
        .json();
    assert_eq!(p["active"], true);
}

#[test]
fn dialect_by_client_setting_sqlite() {
    dialect_by_client_setting(start(Backend::Sqlite).expect("sqlite"));
}

#[test]
fn dialect_by_client_setting_postgres() {
    if let Some(app) = start(Backend::Postgres) {
        dialect_by_client_setting(app);
    }
}
