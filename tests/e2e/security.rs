//! Credentials over their whole life, against the real binary: what the request log may hold,
//! token expiry, revocation and `last_used` (`scimhub token issue --expires`, `token list`,
//! `token revoke`), short secrets refused at start, and rate limits per address (429 with
//! `Retry-After`).

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn cli_ok(app: &TestApp, args: &[&str]) -> String {
    let out = app.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn list(app: &TestApp) -> Vec<Value> {
    cli_ok(app, &["token", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn link_tokens_and_secret_query_parameters_stay_out_of_the_log() {
    let app = TestApp::start(Backend::Sqlite).expect("sqlite");
    let link_token = "eyJhY3Rpb24iOiJhY2tub3dsZWRnZSJ9.c2VjcmV0LWxpbmstc2lnbmF0dXJl";
    let query = "token=query-token-value&access_token=access-token-value&code=auth-code-value";
    let base = format!("http://{}", app.addr);
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let url = format!("{base}/admin/v1/links/{link_token}?{query}");
        let r = http().request(method, &url).send().unwrap();
        assert_ne!(r.status().as_u16(), 429);
    }
    // An authenticated route with a secret in its query, and a failed authentication.
    app.get(&format!("/Users?{query}")).send().status(200);
    app.get(&format!("/Users/x?{query}"))
        .token("shub_0123456789ab_not-a-real-token-value")
        .send()
        .status(401);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = app.log();
    assert!(log.contains("/admin/v1/links/[redacted]"), "{log}");
    for secret in [
        link_token,
        "c2VjcmV0LWxpbmstc2lnbmF0dXJl",
        "query-token-value",
        "access-token-value",
        "auth-code-value",
        "not-a-real-token-value",
        TOKEN,
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

crate::backends!(tokens_expire_are_revoked_and_record_their_use, |app| {
    let short = cli_ok(
        &app,
        &[
            "token",
            "issue",
            "--name",
            "short",
            "--scope",
            "scim:read",
            "--expires",
            "2s",
        ],
    )
    .trim()
    .to_string();
    let okta = cli_ok(
        &app,
        &["token", "issue", "--name", "okta", "--scope", "scim:read"],
    )
    .trim()
    .to_string();
    app.get("/Users").token(&short).send().status(200);
    app.get("/Users").token(&okta).send().status(200);
    // `last_used` is written in the background, once a minute at most.
    let mut used = Value::Null;
    for _ in 0..50 {
        let okta_row = list(&app)
            .into_iter()
            .find(|t| t["name"] == "okta")
            .unwrap();
        used = okta_row["last_used"].clone();
        if !used.is_null() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(used.is_string(), "last_used recorded");

    // Past its expiry the token is refused like an unknown one.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = app.get("/Users").token(&short).send();
    assert!(r.header("www-authenticate").is_some());
    r.scim_error(401, None);

    // Revoked by name (by another process: the CLI): refused once the server's cached copy of
    // the token row is older than a second (auth::token_cache), even right after a use filled it.
    app.get("/Users").token(&okta).send().status(200);
    let out = cli_ok(&app, &["token", "revoke", "okta"]);
    assert!(out.starts_with("revoked "), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let r = loop {
        let r = app.get("/Users").token(&okta).send();
        if r.status == 401 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(r.header("www-authenticate").is_some());
    r.scim_error(401, None);
    // An unknown name is an error, not a silent success.
    assert!(!app.cli(&["token", "revoke", "nobody"]).status.success());

    let rows = list(&app);
    let state = |name: &str| rows.iter().find(|t| t["name"] == name).unwrap()["state"].clone();
    assert_eq!(state("short"), "expired");
    assert_eq!(state("okta"), "revoked");
    let table = cli_ok(&app, &["token", "list"]);
    for secret in [&short, &okta] {
        let (_, rest) = secret
            .strip_prefix("shub_")
            .unwrap()
            .split_once('_')
            .unwrap();
        assert!(!table.contains(rest) && !rows.iter().any(|r| r.to_string().contains(rest)));
    }
    assert!(
        table.contains("revoked") && table.contains("expired"),
        "{table}"
    );
});

#[test]
fn short_secrets_are_refused_at_start_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            "sqlite://unused.db",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SCIMHUB_BOOTSTRAP_TOKEN", "too-short-bootstrap")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bootstrap_token is 19 bytes"), "{err}");
    assert!(!err.contains("too-short-bootstrap"), "{err}");
}

#[test]
fn failed_authentications_and_link_requests_are_rate_limited_per_address() {
    let app = TestApp::builder(Backend::Sqlite)
        .config("[rate_limit]\nfailed_auth_per_minute = 3\nlinks_per_minute = 2\n")
        .start()
        .expect("sqlite");
    for _ in 0..3 {
        app.get("/Users")
            .token("wrong-token")
            .send()
            .scim_error(401, None);
    }
    let r = app.get("/Users").token("wrong-token").send();
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let body = r.scim_error(429, None);
    assert_eq!(body["status"], "429");
    // The address is blocked, a valid token too, until the bucket refills; health checks are not.
    app.get("/Users").send().scim_error(429, None);
    app.get("/healthz").send().status(200);
    app.get("/readyz").send().status(200);

    let base = format!("http://{}", app.addr);
    let link = format!("{base}/admin/v1/links/some-link-token");
    for _ in 0..2 {
        assert_ne!(http().get(&link).send().unwrap().status().as_u16(), 429);
    }
    let r = http().get(&link).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let body: Value = r.json().unwrap();
    assert_eq!(body["status"], "429");
    assert!(app.log_shows("rate limited"));
    // The same route spelt with a percent-escape (actix decodes it before routing) spends the
    // same bucket, and its token stays out of the log.
    let escaped = format!("{base}/admin/v1/%6Cinks/escaped-link-token");
    assert_eq!(http().get(&escaped).send().unwrap().status().as_u16(), 429);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.log().matches("rate limited: one-click").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", app.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!app.log().contains("escaped-link-token"), "{}", app.log());
}
