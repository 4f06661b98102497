//! The errors corpus: each bad request gets the right status and scimType, never a 500, and a
//! rejected write changes nothing.

use serde_json::json;

use crate::backends;
use crate::harness::*;

backends!(error_corpus, |app| {
    let before = app.get("/Users").send().status(200).json()["totalResults"].clone();
    let mut bodies = serde_json::Map::new();
    let mut snap = |name: &str, v: serde_json::Value| {
        bodies.insert(name.into(), v);
    };
    snap(
        "malformed_json",
        app.request(reqwest::Method::POST, "/Users")
            .raw_body(SCIM_JSON, "{\"userName\":")
            .send()
            .scim_error(400, Some("invalidSyntax")),
    );
    snap(
        "bad_utf8",
        app.request(reqwest::Method::POST, "/Users")
            .raw_body(SCIM_JSON, b"{\"userName\":\"\xff\"}".to_vec())
            .send()
            .scim_error(400, Some("invalidSyntax")),
    );
    snap(
        "wrong_type",
        app.post("/Users", json!({"userName": 42}))
            .send()
            .scim_error(400, Some("invalidValue")),
    );
    snap(
        "missing_required",
        app.post("/Users", json!({"displayName": "x"}))
            .send()
            .scim_error(400, Some("invalidValue")),
    );
    snap(
        "unknown_schema",
        app.post(
            "/Users",
            json!({"schemas":["urn:example:nope"],"userName":"x"}),
        )
        .send()
        .scim_error(400, Some("invalidValue")),
    );
    snap(
        "wrong_content_type",
        app.request(reqwest::Method::POST, "/Users")
            .raw_body("text/plain", "userName=x")
            .send()
            .scim_error(415, None),
    );
    let big = "x".repeat(2 * 1024 * 1024);
    snap(
        "oversized",
        app.post("/Users", json!({"userName": big}))
            .send()
            .scim_error(413, Some("tooMany")),
    );
    snap(
        "invalid_filter",
        app.get("/Users?filter=userName%20eq")
            .send()
            .scim_error(400, Some("invalidFilter")),
    );
    snap(
        "non_numeric_count",
        app.get("/Users?count=ten")
            .send()
            .scim_error(400, Some("invalidValue")),
    );
    snap(
        "unknown_path",
        app.get("/Nope").send().scim_error(404, None),
    );
    snap(
        "wrong_method",
        app.request(reqwest::Method::DELETE, "/Users")
            .send()
            .scim_error(405, None),
    );
    snap(
        "bad_patch_op",
        app.post("/Users", json!({"userName":"patchme"}))
            .send()
            .status(201)
            .json(),
    );
    let id = bodies["bad_patch_op"]["id"].as_str().unwrap().to_string();
    bodies.remove("bad_patch_op");
    bodies.insert(
        "bad_patch_op".into(),
        app.patch(
            &format!("/Users/{id}"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"explode","path":"title"}]}),
        )
        .send()
        .scim_error(400, Some("invalidSyntax")),
    );
    app.delete(&format!("/Users/{id}")).send().status(204);
    // huge count and negative startIndex are clamped, not errors
    let page = app
        .get("/Users?count=100000000&startIndex=-3")
        .send()
        .status(200)
        .json();
    assert_eq!(page["startIndex"], 1);
    // nothing was written
    assert_eq!(
        app.get("/Users").send().status(200).json()["totalResults"],
        before
    );
    let bodies = serde_json::Value::Object(bodies);
    insta::assert_json_snapshot!("error_bodies", bodies);
});

// A write's body is looked at before validation (does preparing it need the blocking pool: a
// password to hash, thousands of members?). Multi-byte text where that look cuts a `path` is
// answered like any other body: once it panicked the worker and dropped the connection.
backends!(multibyte_paths_are_answered, |app| {
    let user = app
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "mb"}),
        )
        .send()
        .status(201)
        .json();
    let id = user["id"].as_str().expect("id").to_string();
    let post = app
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": "mb2", "path": "€€€"}),
        )
        .send();
    assert!(
        matches!(post.status, 201 | 400),
        "{} {}",
        post.status,
        post.text
    );
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "title€€€", "value": "x"}]}),
    )
    .send()
    .scim_error(400, Some("invalidPath"));
    app.get(&format!("/Users/{id}")).send().status(200);
});

// The route table tries the hot paths (a resource by id, an endpoint) first, with constrained
// patterns: each path still reaches the handler, status and error it reached before.
#[test]
fn routes_keep_their_meaning() {
    let app = TestApp::start(Backend::Sqlite).expect("sqlite");
    let id = app.create_user("route.check")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Endpoint names are matched case-insensitively, on the fast routes and the general ones.
    assert_eq!(
        app.get(&format!("/users/{id}")).send().status(200).json()["id"],
        id.as_str()
    );
    assert_eq!(
        app.get("/GROUPS").send().status(200).json()["totalResults"],
        0
    );
    // An id is percent-decoded whichever route reads it.
    let encoded_id = format!("%{:02X}{}", id.as_bytes()[0], &id[1..]);
    for path in [
        format!("/Users/{encoded_id}"),
        format!("/users/{encoded_id}"),
    ] {
        assert_eq!(app.get(&path).send().status(200).json()["id"], id.as_str());
    }
    // `.search` is not an id, spelled plainly or percent-encoded (decoded before routing).
    for path in ["/Users/.search", "/Users/%2Esearch"] {
        let found = app
            .post(
                path,
                json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                       "filter":"userName eq \"route.check\""}),
            )
            .send()
            .status(200)
            .json();
        assert_eq!(found["totalResults"], 1, "{path}");
    }
    app.get("/Users/.search").send().scim_error(405, None);
    // A misspelt member would list everyone, and a Bulk without its schema may be another
    // message: both are refused before anything is read or written.
    app.post(
        "/Users/.search",
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "filtr":"userName eq \"route.check\""}),
    )
    .send()
    .scim_error(400, Some("invalidSyntax"));
    app.post(
        "/Bulk",
        json!({"Operations":[{"method":"POST","path":"/Users","bulkId":"x",
               "data":{"userName":"bulk.unchecked"}}]}),
    )
    .send()
    .scim_error(400, Some("invalidSyntax"));
    assert_eq!(
        app.get("/Users?filter=userName%20eq%20%22bulk.unchecked%22")
            .send()
            .status(200)
            .json()["totalResults"],
        0
    );
    assert_eq!(
        app.get("/%55sers").send().status(200).json()["totalResults"],
        1
    );
    // Only ASCII case-folding names an endpoint (`ſ` is not `s`).
    app.get("/u%C5%BFers").send().scim_error(404, None);
    app.get("/Me/x").send().scim_error(501, None);
    // An id the fast route leaves alone still gets the general route's answer.
    app.get("/Users/.hidden").send().scim_error(404, None);
    app.delete("/Users/.hidden").send().scim_error(404, None);
    // Methods a path does not serve, and paths nobody serves.
    app.request(reqwest::Method::POST, &format!("/Users/{id}"))
        .send()
        .scim_error(405, None);
    app.request(reqwest::Method::PUT, "/Groups")
        .send()
        .scim_error(405, None);
    app.get("/Nope/123").send().scim_error(404, None);
    app.get("/Users/a/b").send().scim_error(404, None);
    // The discovery routes with a segment, after the fast ones.
    app.get("/ResourceTypes/User").send().status(200);
    app.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .send()
        .status(200);
    // The admin API, now registered after the SCIM scope, is still reached.
    // (The link page answers in HTML, here that the admin API needs the engine; an unrouted
    // path would get the SCIM 404.)
    let link = app.get("/admin/v1/links/not-a-link").token("").send();
    assert!(
        link.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{link:?}"
    );
}

// U+0000 cannot be stored by PostgreSQL (`text` and `jsonb` refuse it). A body that holds it is
// refused on every backend before anything is written; an id or a filter value that holds it
// finds nothing (SQLite) or is refused (PostgreSQL): never a 500.
backends!(nul_characters_get_a_scim_error, |app| {
    let user = app.create_user("nul.check");
    let id = user["id"].as_str().expect("id").to_string();
    app.post(
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a\u{0}b"}),
    )
    .send()
    .scim_error(400, Some("invalidValue"));
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "title", "value": "x\u{0}"}]}),
    )
    .send()
    .scim_error(400, Some("invalidValue"));
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "path": "title", "value": "x"}]});
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "z"});
    for (what, resp) in [
        ("GET", app.get("/Users/a%00b").send()),
        ("PATCH", app.patch("/Users/a%00b", patch).send()),
        ("PUT", app.put("/Users/a%00b", put).send()),
        ("DELETE", app.delete("/Users/a%00b").send()),
    ] {
        assert!(
            matches!(resp.status, 400 | 404),
            "{what}: {} {}",
            resp.status,
            resp.text
        );
        // 404 where the id is simply not found, 400 where the database refused it.
        let (status, scim_type) = (resp.status, (resp.status == 400).then_some("invalidValue"));
        resp.scim_error(status, scim_type);
    }
    let found = app
        .get("/Users?filter=userName%20eq%20%22a%5Cu0000b%22")
        .send();
    match found.status {
        200 => assert_eq!(found.json()["totalResults"], 0, "{}", found.text),
        _ => drop(found.scim_error(400, Some("invalidValue"))),
    }
    let stored = app.get(&format!("/Users/{id}")).send().status(200).json();
    assert_eq!(
        stored["meta"]["version"], user["meta"]["version"],
        "{stored}"
    );
    assert_eq!(
        app.get("/Users").send().status(200).json()["totalResults"],
        1
    );
});

// A member named twice in a body is refused, at any depth and on every write, and nothing is
// written: the JSON parser used to keep the last silently, so the client's first value vanished.
backends!(repeated_members_are_refused, |app| {
    let user = app.create_user("twice");
    let id = user["id"].as_str().unwrap();
    let send = |method: reqwest::Method, path: &str, body: &str| {
        let e = app
            .request(method, path)
            .raw_body(SCIM_JSON, body.to_string())
            .send()
            .scim_error(400, Some("invalidSyntax"));
        e["detail"].as_str().unwrap_or_default().to_string()
    };
    let d = send(
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"first"}],"Operations":[{"op":"replace","path":"title","value":"second"}]}"#,
    );
    assert!(
        d.contains("member 'Operations' is given more than once"),
        "{d}"
    );
    let d = send(
        reqwest::Method::POST,
        "/Users",
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","userName":"b"}"#,
    );
    assert!(
        d.contains("member 'userName' is given more than once"),
        "{d}"
    );
    let d = send(
        reqwest::Method::PUT,
        &format!("/Users/{id}"),
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"twice","name":{"givenName":"a","givenName":"b"}}"#,
    );
    assert!(
        d.contains("member 'givenName' is given more than once"),
        "{d}"
    );
    let d = send(
        reqwest::Method::POST,
        "/Bulk",
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[{"method":"POST","path":"/Users","bulkId":"1","data":{"userName":"c","userName":"d"}}]}"#,
    );
    assert!(
        d.contains("member 'userName' is given more than once"),
        "{d}"
    );
    let stored = app.get(&format!("/Users/{id}")).send().status(200).json();
    assert_eq!(
        stored["meta"]["version"], user["meta"]["version"],
        "{stored}"
    );
    assert!(stored.get("title").is_none(), "{stored}");
    assert_eq!(
        app.get("/Users").send().status(200).json()["totalResults"],
        1
    );
});

// A PATCH error names the operation as the client numbered it, even where the server split one
// operation (Entra's dotted keys) or set some aside (Group members).
backends!(patch_errors_name_the_request_operation, |app| {
    let user = app.create_user("indexed");
    let id = user["id"].as_str().unwrap();
    let op = |ops: serde_json::Value| json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations": ops});
    let e = app
        .patch(
            &format!("/Users/{id}"),
            op(json!([
                {"op":"replace","value":{"name.givenName":"x","name.familyName":"y","displayName":"z"}},
                {"op":"replace","path":"nope","value":1}
            ])),
        )
        .send()
        .scim_error(400, Some("invalidPath"));
    assert_eq!(
        e["detail"], "Operations[1]: unknown attribute 'nope'",
        "{e}"
    );
    let group = app.create_group("Indexed", &[]);
    let gid = group["id"].as_str().unwrap();
    let e = app
        .patch(
            &format!("/Groups/{gid}"),
            op(json!([
                {"op":"add","path":"members","value":[{"value": id}]},
                {"op":"replace","path":"displayName","value":"Renamed"},
                {"op":"replace","path":"nope","value":1}
            ])),
        )
        .send()
        .scim_error(400, Some("invalidPath"));
    assert_eq!(
        e["detail"], "Operations[2]: unknown attribute 'nope'",
        "{e}"
    );
    let stored = app.get(&format!("/Groups/{gid}")).send().status(200).json();
    assert_eq!(stored["displayName"], "Indexed", "{stored}");
});

// HEAD answers what GET would, without a body or Content-Length (RFC 9110 §9.3.2: a server
// MUST support it wherever it serves GET), also when pipelined behind or before other requests; a method a route does not serve is 405 with its `Allow`
// (§15.5.6); a GET whose `If-Match` names another version is 412 (§13.1.1), as a write is.
backends!(head_allow_and_if_match_on_reads, |app| {
    use reqwest::Method;
    let u = app.create_user("head.check");
    let id = u["id"].as_str().unwrap().to_string();
    let version = u["meta"]["version"].as_str().unwrap().to_string();
    for path in [
        format!("/Users/{id}"),
        format!("/users/{id}"),
        "/Users".to_string(),
        "/Users?filter=userName%20eq%20%22head.check%22".to_string(),
        "/ServiceProviderConfig".to_string(),
        "/Schemas".to_string(),
        "/ResourceTypes/User".to_string(),
    ] {
        let get = app.get(&path).send().status(200);
        let head = app.request(Method::HEAD, &path).send().status(200);
        assert!(head.text.is_empty(), "{path}: {}", head.text);
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        assert_eq!(head.header("etag"), get.header("etag"), "{path}");
        assert!(get.header("content-length").is_some(), "{path}");
    }
    // On the wire: no body after HEAD's head, so the next response on the connection is read
    // where it starts (reqwest never reads a HEAD body, so the loop above cannot tell).
    {
        use std::io::{Read, Write};
        let addr = app.url("/healthz");
        let addr = addr
            .trim_start_matches("http://")
            .trim_end_matches("/healthz");
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        write!(
            tcp,
            "HEAD /scim/v2/Users/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n\
             GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        tcp.read_to_string(&mut raw).unwrap();
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
        assert!(
            rest.starts_with("HTTP/1.1 200"),
            "a body followed HEAD's head: {raw}"
        );
        assert!(rest.ends_with("ok"), "{raw}");
    }
    // HEAD needs a token like GET does, and honours If-None-Match.
    app.request(Method::HEAD, &format!("/Users/{id}"))
        .token("")
        .send()
        .status(401);
    let head = app
        .request(Method::HEAD, &format!("/Users/{id}"))
        .header("If-None-Match", &version)
        .send()
        .status(304);
    assert_eq!(head.header("etag").as_deref(), Some(version.as_str()));

    for (method, path, allow) in [
        (
            Method::POST,
            format!("/Users/{id}"),
            "GET, HEAD, PUT, PATCH, DELETE",
        ),
        (Method::DELETE, "/Users".to_string(), "GET, HEAD, POST"),
        (
            Method::PUT,
            "/ServiceProviderConfig".to_string(),
            "GET, HEAD",
        ),
        (Method::GET, "/Bulk".to_string(), "POST"),
        (Method::GET, "/.search".to_string(), "POST"),
    ] {
        let resp = app.request(method.clone(), &path).send();
        assert_eq!(
            resp.header("allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
        resp.scim_error(405, None);
    }

    // If-Match on a read: the current version (or `*`) reads, another is 412.
    app.get(&format!("/Users/{id}"))
        .header("If-Match", &version)
        .send()
        .status(200);
    app.get(&format!("/Users/{id}"))
        .header("If-Match", "*")
        .send()
        .status(200);
    app.get(&format!("/Users/{id}"))
        .header("If-Match", "W/\"999999\"")
        .send()
        .scim_error(412, None);
    app.request(Method::HEAD, &format!("/Users/{id}"))
        .header("If-Match", "W/\"999999\"")
        .send()
        .status(412);
});
