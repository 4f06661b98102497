//! Behind a reverse proxy: forwarded headers set `meta.location` and the rate limiter's client
//! address only when the peer is a trusted proxy (`[http] trusted_proxies`); anybody else's are
//! ignored.

use crate::harness::{Backend, TestApp};

fn forwarded_location(app: &TestApp, user: &str) -> String {
    let created = app
        .post(
            "/Users",
            serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user}),
        )
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "scim.example.com")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .status(201);
    let body = created.json();
    let location = body["meta"]["location"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("location").as_deref(),
        Some(location.as_str())
    );
    location
}

crate::backends!(
    forwarded_headers_from_an_untrusted_peer_are_ignored,
    |app| {
        // The default trusts nobody: the headers are ignored.
        let location = forwarded_location(&app, "untrusted.proxy");
        assert!(
            location.starts_with(&format!("http://{}/scim/v2/Users/", app.addr)),
            "{location}"
        );
    }
);

#[test]
fn a_trusted_proxy_sets_scheme_host_and_client_address() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::builder(backend)
            .config(
                "[http]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n[rate_limit]\nfailed_auth_per_minute = 2\n",
            )
            .start()
        else {
            eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
            continue;
        };
        let location = forwarded_location(&app, "trusted.proxy");
        assert!(
            location.starts_with("https://scim.example.com/scim/v2/Users/"),
            "{location}"
        );
        let id = location.rsplit('/').next().unwrap();
        let read = app
            .get(&format!("/Users/{id}"))
            .header(
                "forwarded",
                "for=198.51.100.7;proto=https;host=id.example.org",
            )
            .send()
            .status(200)
            .json();
        assert_eq!(
            read["meta"]["location"],
            format!("https://id.example.org/scim/v2/Users/{id}")
        );
        // The rate limiter counts the forwarded client, not the proxy.
        for _ in 0..2 {
            app.get("/Users")
                .token("wrong-token")
                .header("x-forwarded-for", "203.0.113.5")
                .send()
                .scim_error(401, None);
        }
        app.get("/Users")
            .token("wrong-token")
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .scim_error(429, None);
        app.get("/Users")
            .header("x-forwarded-for", "203.0.113.6")
            .send()
            .status(200);
        assert!(app.log_shows("203.0.113.5"), "the log names the client");
    }
}
