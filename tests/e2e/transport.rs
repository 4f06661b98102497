//! Errors raised before any handler runs, sent as raw bytes where reqwest cannot: each one is an
//! RFC 7644 §3.12 error (`application/scim+json`, `status` a string), not actix-http's empty
//! 400/431; and request-targets with raw bytes `http::Uri` refuses (the Entra SCIM Validator's
//! unencoded double quotes) are served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// One response read off the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a SCIM error with this status and scimType and returns its body.
    #[track_caller]
    fn scim_error(&self, status: u16, scim_type: Option<&str>) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with(SCIM_JSON)),
            "{self:?}"
        );
        let body: Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(
            body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(body["status"], status.to_string());
        assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
        body
    }
}

/// Sends `bytes` on a new connection, closes the sending side, and reads every response until
/// the server closes the connection.
fn exchange(app: &TestApp, bytes: &[u8]) -> Vec<RawResponse> {
    let mut stream = TcpStream::connect(&app.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer and stop reading before everything is sent.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_responses(&raw)
}

fn parse_responses(mut raw: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..head_end]).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let body_start = head_end + 4;
        out.push(RawResponse {
            status,
            headers,
            body: raw[body_start..body_start + len].to_vec(),
        });
        raw = &raw[body_start + len..];
    }
    out
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: scim.test\r\nAuthorization: Bearer {TOKEN}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[track_caller]
fn one(responses: Vec<RawResponse>) -> RawResponse {
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses.into_iter().next().unwrap()
}

#[test]
fn transport_error_corpus() {
    let app = TestApp::start(Backend::Sqlite).expect("sqlite");
    let mut bodies = serde_json::Map::new();

    // A 100 KB filter in the URI: 414 (RFC 7644 defines no scimType for it).
    let filter = format!("userName%20eq%20%22{}%22", "a".repeat(100_000));
    let r = one(exchange(
        &app,
        &get(&format!("/scim/v2/Users?filter={filter}"), ""),
    ));
    bodies.insert("uri_too_long".into(), r.scim_error(414, None));

    // 200 header fields, and one header of 200 KB: 431.
    let many: String = (0..200).map(|i| format!("X-Field-{i}: v\r\n")).collect();
    let r = one(exchange(&app, &get("/scim/v2/Users", &many)));
    bodies.insert("too_many_headers".into(), r.scim_error(431, None));
    let big = format!("X-Big: {}\r\n", "v".repeat(200_000));
    let r = one(exchange(&app, &get("/scim/v2/Users", &big)));
    bodies.insert("header_too_large".into(), r.scim_error(431, None));

    // A malformed request line, a malformed header line, and HTTP/1.1 without Host: 400.
    let r = one(exchange(&app, b"THIS IS NOT HTTP\r\n\r\n"));
    bodies.insert(
        "malformed_request_line".into(),
        r.scim_error(400, Some("invalidSyntax")),
    );
    let r = one(exchange(
        &app,
        &get("/scim/v2/Users", "bad header line\r\n"),
    ));
    bodies.insert(
        "malformed_header_line".into(),
        r.scim_error(400, Some("invalidSyntax")),
    );
    let r = one(exchange(&app, b"GET /scim/v2/Users HTTP/1.1\r\n\r\n"));
    bodies.insert(
        "missing_host".into(),
        r.scim_error(400, Some("invalidSyntax")),
    );
    let r = one(exchange(
        &app,
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
    ));
    bodies.insert(
        "ambiguous_framing".into(),
        r.scim_error(400, Some("invalidSyntax")),
    );

    // Raw double quotes (as the Entra SCIM Validator sends them) are served.
    let created = app.create_user("a@b.com");
    let r = one(exchange(
        &app,
        &get(
            "/scim/v2/Users?filter=userName+eq+\"a%40b.com\"",
            "Connection: close\r\n",
        ),
    ));
    assert_eq!(r.status, 200, "{r:?}");
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], created["id"]);
    // HTTP/1.0 without Host: `meta.location` names the address the server is bound to, as it
    // did under actix-web's HttpServer.
    let id = created["id"].as_str().unwrap();
    let r = one(exchange(
        &app,
        format!("GET /scim/v2/Users/{id} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    ));
    assert_eq!(r.status, 200, "{r:?}");
    let user: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        user["meta"]["location"],
        format!("http://{}/scim/v2/Users/{id}", app.addr)
    );
    // And raw `<`, `>` and non-ASCII bytes in a filter value reach the filter.
    let r = one(exchange(
        &app,
        &get(
            "/scim/v2/Users?filter=displayName+eq+\"<\u{e9}>\"",
            "Connection: close\r\n",
        ),
    ));
    assert_eq!(r.status, 200, "{r:?}");
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["totalResults"], 0, "{list}");

    // Pipelined: the first request is answered normally, the malformed second with the error.
    let mut pair = get("/scim/v2/Users?filter=userName+eq+\"a%40b.com\"", "");
    pair.extend_from_slice(b"GET /scim/v2/Users HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n");
    let rs = exchange(&app, &pair);
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!(rs[0].status, 200, "{:?}", rs[0]);
    let list: Value = serde_json::from_slice(&rs[0].body).unwrap();
    assert_eq!(list["totalResults"], 1, "{list}");
    bodies.insert(
        "pipelined_second_malformed".into(),
        rs[1].scim_error(400, Some("invalidSyntax")),
    );
    assert_eq!(rs[1].header("connection"), Some("close"));

    // A chunked body with an extension and a trailer, then a pipelined request: both served.
    let body =
        "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"chunked\"}";
    let mut req = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\n\r\n\
         10;ext=\"x\"\r\n{}\r\n{:x}\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n",
        &body[..16],
        body.len() - 16,
        &body[16..]
    )
    .into_bytes();
    req.extend_from_slice(&get(
        "/scim/v2/Users?filter=userName+eq+\"chunked\"",
        "Connection: close\r\n",
    ));
    let rs = exchange(&app, &req);
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!(
        rs[0].status,
        201,
        "{:?}",
        String::from_utf8_lossy(&rs[0].body)
    );
    let list: Value = serde_json::from_slice(&rs[1].body).unwrap();
    assert_eq!(list["totalResults"], 1, "{list}");

    insta::assert_json_snapshot!("transport_error_bodies", Value::Object(bodies));
}

/// The policy and nice value of each of the server's threads called `name`, from `/proc`.
#[cfg(target_os = "linux")]
fn thread_scheduling(pid: u32, name: &str) -> Vec<(u32, i32)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        found.push(policy_and_nice(&dir.join("stat")));
    }
    found
}

/// Fields 41 (policy) and 19 (nice) of a `/proc/.../stat` file, counted after the command
/// name's last `)` (`actix-rt|system` holds no space, but a name may).
#[cfg(target_os = "linux")]
fn policy_and_nice(stat: &std::path::Path) -> (u32, i32) {
    let stat = std::fs::read_to_string(stat).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // `fields[0]` is field 3.
    (fields[38].parse().unwrap(), fields[16].parse().unwrap())
}

/// The HTTP workers and the group-commit writer run under `SCHED_BATCH` (3) at the process's nice
/// value, so a worker woken by a finished write does not preempt the writer mid-batch (and the
/// writer, woken by a write, does not preempt the worker); `sched_batch = false`
/// leaves both at the default policy (0).
#[cfg(target_os = "linux")]
#[test]
fn http_workers_run_under_sched_batch_unless_switched_off() {
    let (own_policy, own_nice) = policy_and_nice(std::path::Path::new("/proc/self/stat"));
    if own_policy != 0 {
        // The server inherits the test runner's policy (`chrt`), which it keeps.
        eprintln!("skipped: the test runs under policy {own_policy}");
        return;
    }
    // The default, then switched off.
    for (setting, policy) in [(None, 3), (Some("false"), 0)] {
        let mut app = TestApp::builder(Backend::Sqlite).env("SCIMHUB_WORKERS", "2");
        if let Some(value) = setting {
            app = app.env("SCIMHUB_SCHED_BATCH", value);
        }
        let app = app.start().unwrap();
        // A write starts the writer threads.
        app.create_user("sched");
        // A thread the writer starts (the WAL checkpointer, at the first commit) carries the
        // writer's name until it names itself, an instant later: read until that settles.
        let settled = |name: &str, want: Vec<(u32, i32)>| {
            let mut found = thread_scheduling(app.pid(), name);
            for _ in 0..100 {
                if found == want {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                found = thread_scheduling(app.pid(), name);
            }
            assert_eq!(found, want, "{name}: sched_batch = {setting:?}");
        };
        settled(
            "actix-rt|system",
            vec![(policy, own_nice), (policy, own_nice)],
        );
        settled("scimhub-writer", vec![(policy, own_nice)]);
    }
}
