//! `/metrics`: the Prometheus exposition, its protection on the main listener, the separate
//! metrics listener, and what the counters and database gauges report.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::harness::{Backend, TestApp};

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A small parser of the text format's sample lines (`name{k="v",…} value`); comments skipped.
/// Label values here never hold `"`, `,` or `}` escaped, which the assertions below rely on.
fn parse(text: &str) -> Vec<Sample> {
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {text}"
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (head, value) = line.rsplit_once(' ').expect("a value");
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            Sample {
                name,
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("a number: {line}")),
            }
        })
        .collect()
}

/// The value of the sample named `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn scrape(app: &TestApp) -> Vec<Sample> {
    let r = app.get("/metrics").send().status(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        r.header("content-type")
    );
    parse(&r.text)
}

const REQUESTS: &str = "scimhub_http_requests_total";

fn issue(app: &TestApp, name: &str, scope: &str) -> String {
    let out = app.cli(&["token", "issue", "--name", name, "--scope", scope]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

crate::backends!(
    requests_are_counted_by_route_pattern_and_scraping_needs_the_scope,
    |app| {
        // Unauthenticated, or a SCIM token: refused.
        app.get("/metrics").token("").send().status(401);
        let reader = issue(&app, "reader", "scim:read");
        app.get("/metrics").token(&reader).send().status(403);
        let monitor = issue(&app, "monitor", "metrics:read");
        app.get("/Users").token(&monitor).send().status(403);

        let before = scrape(&app);
        let list = [
            ("route", "/scim/v2/{kind}"),
            ("method", "GET"),
            ("status", "200"),
        ];
        let listed_before = value(&before, REQUESTS, &list).unwrap_or(0.0);
        let user = app.create_user("metrics.ada");
        let id = user["id"].as_str().unwrap();
        for _ in 0..3 {
            app.get("/Users").send().status(200);
        }
        app.get(&format!("/Users/{id}")).send().status(200);
        app.get("/Users/no-such-id").send().status(404);

        let text = app.get("/metrics").token(&monitor).send().status(200).text;
        let after = parse(&text);
        // HEAD as GET; another method is 405 naming both.
        app.request(reqwest::Method::HEAD, "/metrics")
            .token(&monitor)
            .send()
            .status(200);
        let post = app
            .request(reqwest::Method::POST, "/metrics")
            .token(&monitor)
            .send();
        assert_eq!(post.header("allow").as_deref(), Some("GET, HEAD"));
        post.scim_error(405, None);
        assert_eq!(
            value(&after, REQUESTS, &list),
            Some(listed_before + 3.0),
            "{text}"
        );
        let by_id = [("route", "/scim/v2/{kind}/{id}"), ("method", "GET")];
        assert_eq!(
            value(&after, REQUESTS, &[by_id[0], by_id[1], ("status", "200")]),
            Some(1.0)
        );
        assert_eq!(
            value(&after, REQUESTS, &[by_id[0], by_id[1], ("status", "404")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &after,
                REQUESTS,
                &[
                    ("route", "/scim/v2/{kind}"),
                    ("method", "POST"),
                    ("status", "201")
                ]
            ),
            Some(1.0)
        );
        // The refusals are counted too, under the route, not the path.
        assert!(value(
            &after,
            REQUESTS,
            &[("route", "/metrics"), ("status", "401")]
        )
        .is_some());
        // Ids never become label values.
        assert!(
            !text.contains(id),
            "a resource id in the exposition: {text}"
        );
        assert!(
            !text.contains("no-such-id"),
            "a raw path in the exposition: {text}"
        );
        // The latency histogram: buckets, +Inf equal to the count.
        let h = "scimhub_http_request_duration_seconds";
        let buckets: Vec<&Sample> = after
            .iter()
            .filter(|s| {
                s.name == format!("{h}_bucket")
                    && s.labels.get("route").map(String::as_str) == Some("/scim/v2/{kind}")
                    && s.labels["method"] == "GET"
            })
            .collect();
        assert!(buckets.len() > 5, "{text}");
        let inf = buckets
            .iter()
            .find(|s| s.labels["le"] == "+Inf")
            .expect("+Inf bucket");
        assert_eq!(
            Some(inf.value),
            value(
                &after,
                &format!("{h}_count"),
                &[("route", "/scim/v2/{kind}"), ("method", "GET")]
            )
        );
        // Without the engine (no --policy) its tables' gauges are absent, not zero.
        assert!(!text.contains("scimhub_outbox_operations"), "{text}");
        assert!(!text.contains("scimhub_incidents_open"), "{text}");
    }
);

/// A free local port (bound and released; the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn separate_listener(backend: Backend) {
    let port = free_port();
    let Some(app) = TestApp::builder(backend)
        .config(&format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n"))
        .start()
    else {
        return;
    };
    app.get("/Users").send().status(200);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let r = reqwest::blocking::get(&url).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let samples = parse(&r.text().unwrap());
    assert!(value(
        &samples,
        REQUESTS,
        &[("route", "/scim/v2/{kind}"), ("status", "200")]
    )
    .is_some());
    // Only /metrics there; and no longer on the main listener.
    let other = reqwest::blocking::get(format!("http://127.0.0.1:{port}/scim/v2/Users")).unwrap();
    assert_eq!(other.status().as_u16(), 404);
    app.get("/metrics").send().status(404);
    drop(app);
    // Turned off: nowhere.
    let off = TestApp::builder(backend)
        .config("[metrics]\nenabled = false\n")
        .start()
        .expect("started");
    off.get("/metrics").send().status(404);
}

#[test]
fn separate_listener_sqlite() {
    separate_listener(Backend::Sqlite);
}

#[test]
fn separate_listener_postgres() {
    separate_listener(Backend::Postgres);
}

/// A webhook receiver that answers 400 to everything: its operations park at once.
fn refusing_receiver() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 65536];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    port
}

fn engine_gauges(backend: Backend) {
    let hook = refusing_receiver();
    // Nothing listens there: every call fails to connect (retryable), so its circuit opens.
    let down = free_port();
    let policy = format!(
        r#"
[[connector]]
name = "slow"
type = "memory"
settings = {{ delay_ms = 3000 }}

[[connector]]
name = "hook"
type = "webhook"
settings = {{ url = "http://127.0.0.1:{hook}/hook" }}
credentials = {{ signing_secret = {{ env = "HOOK_SECRET" }} }}

[[connector]]
name = "down"
type = "webhook"
settings = {{ url = "http://127.0.0.1:{down}/hook" }}
credentials = {{ signing_secret = {{ env = "HOOK_SECRET" }} }}
circuit_failures = 2
circuit_probe = "1h"

[[profile]]
name = "everyone"
match = 'userName pr'
grants = [
  {{ connector = "slow", kind = "group", id = "all" }},
  {{ connector = "hook", kind = "group", id = "all" }},
  {{ connector = "down", kind = "group", id = "all" }},
]
"#
    );
    let Some(app) = TestApp::builder(backend)
        .policy(&policy)
        .env("HOOK_SECRET", "a-webhook-signing-secret-of-32-bytes!")
        .start()
    else {
        return;
    };
    let initial = scrape(&app);
    assert_eq!(value(&initial, "scimhub_holds_pending", &[]), Some(0.0));
    assert!(
        value(&initial, "scimhub_incidents_open", &[]).is_none(),
        "no incident yet"
    );
    app.create_user("metrics.joiner");
    // The slow connector's operations are queued or running for seconds; the webhook's
    // operations park at once, each with an incident. Each gauge is its own query and the
    // outcome counter is counted after its transaction commits, so one scrape may see the
    // incident before the parked row or the counter: poll until one scrape shows them all.
    let parked_create = |s: &[Sample]| {
        value(
            s,
            "scimhub_outbox_operation_outcomes_total",
            &[
                ("connector", "hook"),
                ("kind", "create_or_adopt"),
                ("outcome", "parked"),
            ],
        )
    };
    let parked_rows = |s: &[Sample]| {
        value(
            s,
            "scimhub_outbox_operations",
            &[
                ("connector", "hook"),
                ("lane", "normal"),
                ("status", "failed"),
            ],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let s = scrape(&app);
        let queued = s
            .iter()
            .filter(|x| {
                x.name == "scimhub_outbox_operations"
                    && x.labels["connector"] == "slow"
                    && x.labels["status"] != "failed"
            })
            .map(|x| x.value)
            .sum::<f64>();
        let parked = value(
            &s,
            "scimhub_incidents_open",
            &[("kind", "operation_failed")],
        );
        if queued > 0.0
            && parked.is_some_and(|n| n >= 1.0)
            && parked_rows(&s).is_some_and(|n| n >= 1.0)
            && parked_create(&s).is_some()
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "queued {queued}, parked {parked:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Parked rows: the create, and the grant once it ran after it.
    assert!(
        parked_rows(&samples).is_some_and(|n| n >= 1.0),
        "{samples:?}"
    );
    assert_eq!(parked_create(&samples), Some(1.0));
    // A refusal (400) is an answer: the hook's circuit stays closed.
    assert_eq!(
        value(
            &samples,
            "scimhub_connector_circuit_state",
            &[("connector", "hook")]
        ),
        Some(0.0)
    );
    // The slow connector's grant waits behind its create: pending, with an age.
    let age = value(
        &samples,
        "scimhub_outbox_oldest_pending_age_seconds",
        &[("connector", "slow"), ("lane", "normal")],
    );
    assert!(age.is_some_and(|a| (0.0..60.0).contains(&a)), "{samples:?}");
    // The unreachable connector fails twice in a row: its circuit opens (2), one
    // connector_unhealthy incident is open, and its operations wait instead of parking.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(&app);
        let state = value(
            &s,
            "scimhub_connector_circuit_state",
            &[("connector", "down")],
        );
        let unhealthy = value(
            &s,
            "scimhub_incidents_open",
            &[("kind", "connector_unhealthy")],
        );
        if state == Some(2.0) && unhealthy == Some(1.0) {
            assert!(
                value(
                    &s,
                    "scimhub_outbox_operations",
                    &[("connector", "down"), ("status", "failed")]
                )
                .is_none(),
                "{s:?}"
            );
            assert!(value(
                &s,
                "scimhub_outbox_operation_outcomes_total",
                &[("connector", "down"), ("outcome", "waiting")]
            )
            .is_some_and(|n| n >= 1.0));
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once the slow operations finish, their outcomes are counted and the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(&app);
        let done = value(
            &s,
            "scimhub_outbox_operation_outcomes_total",
            &[("connector", "slow"), ("outcome", "done")],
        );
        let queued = s
            .iter()
            .any(|x| x.name == "scimhub_outbox_operations" && x.labels["connector"] == "slow");
        if done.is_some() && !queued {
            assert!(value(
                &s,
                "scimhub_outbox_oldest_pending_age_seconds",
                &[("connector", "slow")]
            )
            .is_none());
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn engine_gauges_sqlite() {
    engine_gauges(Backend::Sqlite);
}

#[test]
fn engine_gauges_postgres() {
    engine_gauges(Backend::Postgres);
}
