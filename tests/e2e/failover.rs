//! PostgreSQL restarted under load, with the real binary: the test runs its own PostgreSQL
//! cluster (initdb + pg_ctl in a temporary directory, on a free port; never the machine's shared
//! one), puts a hub with the lifecycle engine on it, drives concurrent SCIM creates and PATCHes,
//! and stops PostgreSQL (`-m fast`, then `-m immediate`, a crash) and starts it again mid-load.
//!
//! Asserts: while PostgreSQL is down clients get SCIM `503` errors with `Retry-After`, never a
//! 500; `/readyz` says so; every write acknowledged with a 2xx is present afterwards; a create
//! answered 503 is either absent or whole; the hub recovers by itself (same process, new writes
//! succeed, its outbox workers drain) and its audit chain verifies.
//!
//! Runs when `SCIMHUB_TEST_POSTGRES_URL` is set (the switch for PostgreSQL tests); the cluster's
//! binaries come from `SCIMHUB_TEST_PG_BIN`, `/usr/local/bin` or `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Backend, TestApp, TOKEN};

const POLICY: &str = concat!(
    crate::harness::chat_for_everyone!(),
    r#"
[certification]
schedule = "off"
"#
);

/// A throw-away PostgreSQL cluster owned by the test.
struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run the binaries as `postgres` (initdb refuses root).
    as_postgres: bool,
}

impl PgCluster {
    fn start() -> PgCluster {
        let bin = pg_bin_dir().expect(
            "initdb and pg_ctl not found: set SCIMHUB_TEST_PG_BIN, or install PostgreSQL \
             (/usr/lib/postgresql/*/bin)",
        );
        let dir = std::env::temp_dir().join(format!(
            "scimhub-failover-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of {} to postgres failed", dir.display());
        }
        let port = free_port();
        let cluster = PgCluster {
            bin,
            dir,
            port,
            as_postgres,
        };
        // Locale C: PostgreSQL's messages in English whatever the machine's locale.
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m MODE`: `fast` ends every session and shuts down cleanly; `immediate`
    /// kills the server as a crash would (recovery from WAL at the next start).
    fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"],
        );
    }
}

impl PgCluster {
    /// Takes TCP connections with TLS only (`hostssl`, a self-signed certificate), as a server
    /// behind a tunnel on this machine may: restarts the cluster so.
    fn require_tls(&self) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let data = self.dir.join("data");
        std::fs::write(data.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).unwrap();
        for f in ["server.crt", "server.key", "pg_hba.conf", "postgresql.conf"] {
            let path = data.join(f);
            if self.as_postgres {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "chown of {}", path.display());
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        self.stop("fast");
        self.pg_ctl_start();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn pg_bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
    if let Ok(d) = std::env::var("SCIMHUB_TEST_PG_BIN") {
        return Some(PathBuf::from(d)).filter(|d| has(d));
    }
    let local = PathBuf::from("/usr/local/bin");
    if has(&local) {
        return Some(local);
    }
    // Debian's layout, the newest major version first.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One write the load sent and what it was answered.
#[derive(Debug, Clone)]
struct Sent {
    /// `create` or `patch`.
    op: &'static str,
    /// The userName created, or the PATCH target's id.
    target: String,
    /// The title a PATCH set (empty for creates).
    value: String,
    status: u16,
    retry_after: Option<String>,
    body: String,
}

/// Waits (bounded) until `cond` holds; panics naming `what` otherwise.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgres_restart_mid_load_loses_no_acknowledged_write() {
    if std::env::var("SCIMHUB_TEST_POSTGRES_URL").is_err() {
        return;
    }
    let pg = PgCluster::start();
    // A short pool wait, so requests during the outage are answered quickly.
    let app = TestApp::builder(Backend::Postgres)
        .database_url(&pg.url())
        .config("db_pool_size = 4\n[database]\npool_timeout_ms = 1000\n")
        .policy(POLICY)
        .start()
        .unwrap();
    let pid = app.pid();

    const THREADS: usize = 4;
    let targets: Vec<String> = (0..THREADS)
        .map(|t| {
            app.create_user(&format!("target-{t}"))["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let base = format!("http://{}/scim/v2", app.addr);
    let load: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, acked, unavailable, sent) =
                (stop.clone(), acked.clone(), unavailable.clone(), sent.clone());
            let (base, target) = (base.clone(), targets[t].clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let name = format!("fo-{t}-{k}");
                    let title = format!("title-{t}-{k}");
                    let writes = [
                        (
                            "create",
                            name.clone(),
                            String::new(),
                            client.post(format!("{base}/Users")).body(
                                json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
                                    "userName": name, "active": true,
                                    "name": {"givenName": "Fail", "familyName": name},
                                    "emails": [{"value": format!("{name}@example.com"), "primary": true}]})
                                .to_string(),
                            ),
                        ),
                        (
                            "patch",
                            target.clone(),
                            title.clone(),
                            client.patch(format!("{base}/Users/{target}")).body(
                                json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                    "Operations":[{"op":"replace","path":"title","value": title}]})
                                .to_string(),
                            ),
                        ),
                    ];
                    for (op, target, value, rb) in writes {
                        let r = rb
                            .bearer_auth(TOKEN)
                            .header("content-type", "application/scim+json")
                            .send()
                            .expect("the hub answers while PostgreSQL is down");
                        let status = r.status().as_u16();
                        let retry_after = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = r.text().unwrap_or_default();
                        if (200..300).contains(&status) {
                            acked.fetch_add(1, Ordering::Relaxed);
                        } else if status == 503 {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        sent.lock().unwrap().push(Sent {
                            op,
                            target,
                            value,
                            status,
                            retry_after,
                            body,
                        });
                    }
                }
            })
        })
        .collect();

    let readyz = |app: &TestApp| app.get("/readyz").token("").send().status;
    for mode in ["fast", "immediate"] {
        let before = acked.load(Ordering::Relaxed);
        wait_for("writes acknowledged before the stop", || {
            acked.load(Ordering::Relaxed) >= before + 20
        });
        let refused = unavailable.load(Ordering::Relaxed);
        pg.stop(mode);
        wait_for("503 answers while PostgreSQL is down", || {
            unavailable.load(Ordering::Relaxed) >= refused + 2 * THREADS
        });
        assert_eq!(readyz(&app), 503, "/readyz while PostgreSQL is down");
        pg.pg_ctl_start();
        wait_for("/readyz after PostgreSQL is back", || readyz(&app) == 200);
        let back = acked.load(Ordering::Relaxed);
        wait_for("writes acknowledged after the restart", || {
            acked.load(Ordering::Relaxed) >= back + 20
        });
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    eprintln!(
        "failover load: {} writes sent, {} acknowledged, {} answered 503",
        sent.len(),
        acked.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed)
    );

    // Never a 500: a write is acknowledged, or refused as retryable with a SCIM error body.
    for s in &sent {
        match s.status {
            200 | 201 => {}
            503 => {
                assert!(s.retry_after.is_some(), "503 without Retry-After: {s:?}");
                let body: Value = serde_json::from_str(&s.body).unwrap();
                assert_eq!(
                    body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
                    "{s:?}"
                );
                assert_eq!(body["status"], "503", "{s:?}");
            }
            _ => panic!("unexpected answer during the failover: {s:?}"),
        }
    }
    assert!(sent.iter().any(|s| s.status == 503));

    // Every acknowledged create is present, whole; an unacknowledged one is absent or whole.
    for s in sent.iter().filter(|s| s.op == "create") {
        let filter = format!("userName eq \"{}\"", s.target);
        let found = app
            .get(&format!(
                "/Users?filter={}",
                form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            ))
            .send()
            .status(200)
            .json();
        let n = found["totalResults"].as_u64().unwrap();
        if (200..300).contains(&s.status) {
            assert_eq!(n, 1, "acknowledged create lost: {s:?}");
        }
        assert!(n <= 1, "{s:?}: {found}");
        if n == 1 {
            let u = &found["Resources"][0];
            assert_eq!(u["name"]["familyName"], s.target.as_str(), "{u}");
            assert_eq!(
                u["emails"][0]["value"],
                format!("{}@example.com", s.target),
                "{u}"
            );
        }
    }
    // No user appears that the load did not send.
    let all = app
        .get("/Users?filter=userName%20sw%20%22fo-%22&count=1")
        .send()
        .status(200)
        .json();
    let attempted = sent.iter().filter(|s| s.op == "create").count() as u64;
    assert!(all["totalResults"].as_u64().unwrap() <= attempted);

    // Each target's title is its last acknowledged PATCH or one sent after it (whose outcome the
    // client was told is unknown): an acknowledged PATCH is never undone.
    for target in &targets {
        let patches: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.op == "patch" && &s.target == target)
            .collect();
        let last_ack = patches
            .iter()
            .rposition(|s| (200..300).contains(&s.status))
            .expect("a PATCH acknowledged");
        let user = app
            .get(&format!("/Users/{target}"))
            .send()
            .status(200)
            .json();
        let title = user["title"].as_str().unwrap_or_default();
        assert!(
            patches[last_ack..].iter().any(|s| s.value == title),
            "{target}: title {title:?} is not the last acknowledged PATCH's {:?} or a later one",
            patches[last_ack].value
        );
    }

    // Recovered by itself: the same process serves, writes succeed, the engine's workers drain
    // the outbox the load filled, and the audit chain over all of it verifies.
    assert_eq!(app.pid(), pid);
    app.create_user("after-failover");
    wait_for("the outbox to drain", || {
        ["pending", "running"].iter().all(|s| {
            app.get(&format!("/admin/v1/outbox?status={s}"))
                .send()
                .status(200)
                .json()["Resources"]
                .as_array()
                .is_none_or(Vec::is_empty)
        })
    });
    let out = app.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = app.log();
    eprintln!(
        "failover log: {} writes re-run, {} COMMITs with an unknown outcome",
        log.matches("running it again").count(),
        log.matches("connection lost during COMMIT").count()
    );
    assert!(
        !log.contains("\"internal error\""),
        "the hub logged an internal error during the failover"
    );
    drop(app);
    drop(pg);
}

/// Asserts a SCIM 503 with `Retry-After` and a generic detail.
#[track_caller]
fn assert_503(r: crate::harness::Resp) {
    assert!(r.header("retry-after").is_some(), "no Retry-After: {r:?}");
    let body = r.scim_error(503, None);
    assert_eq!(
        body["detail"],
        "The service is temporarily unavailable; retry later."
    );
}

/// A hub with one database connection, whose one request (a list, which reads through the pool)
/// is stuck behind a lock another session holds: the next request waits `pool_timeout_ms` for a
/// slot and is answered 503 with Retry-After (not held until the client gives up); the stuck one
/// is cancelled by the statement timeout and answered 503 too (not 500). A GET by id stuck on the
/// worker's own connection (`store::pg_reader`, not the pool) is cancelled by the same statement
/// timeout, 503 too. Once the lock goes, all work again.
#[test]
fn postgres_exhausted_pool_and_statement_timeout_answer_503() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let Some(app) = TestApp::builder(Backend::Postgres)
        .config(
            "db_pool_size = 1\nworkers = 1\n[database]\npool_timeout_ms = 300\nstatement_timeout_ms = 5000\n",
        )
        .start()
    else {
        return;
    };
    let id = app.create_user("ada")["id"].as_str().unwrap().to_string();
    // The one worker's own connection is open before the lock: both stuck requests reach the
    // lock well within the statement timeout, however busy the machine.
    app.get(&format!("/Users/{id}")).send().status(200);
    let mut locker = diesel::PgConnection::establish(&app.db_url).unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let stuck = |path: String| {
        let url = app.url(&path);
        std::thread::spawn(move || {
            let r = reqwest::blocking::Client::new()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .unwrap();
            let retry_after = r.headers().get("retry-after").is_some();
            (
                r.status().as_u16(),
                retry_after,
                r.text().unwrap_or_default(),
            )
        })
    };
    let stuck_list = stuck("/Users?count=1".into());
    let stuck_get = stuck(format!("/Users/{id}"));
    // The hub's one pooled connection and the worker's own are waiting for the lock.
    wait_for("the hub's queries to wait on the lock", || {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel::RunQueryDsl;
        let mut c = diesel::PgConnection::establish(&app.db_url).unwrap();
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
        )
        .get_result::<N>(&mut c)
        .unwrap()
        .n >= 2
    });
    assert_503(app.get("/Users?count=1").send());
    assert_eq!(app.get("/readyz").token("").send().status, 503);
    for stuck in [stuck_list, stuck_get] {
        let (status, retry_after, body) = stuck.join().unwrap();
        assert_eq!((status, retry_after), (503, true), "{body}");
    }
    locker.batch_execute("ROLLBACK").unwrap();
    app.get(&format!("/Users/{id}")).send().status(200);
    app.get("/Users?count=1").send().status(200);
    assert_eq!(app.get("/readyz").token("").send().status, 200);
}

/// A PostgreSQL on this machine that takes only TLS connections (a `hostssl` rule, as behind a
/// tunnel): the hub tries loopback without TLS first, so its pool (libpq `sslmode=allow`) and
/// its worker readers (which have no `allow` and turn TLS on after the refusal) fall back to
/// TLS, and every request is served.
#[test]
fn postgres_on_this_machine_that_demands_tls_is_still_reached() {
    use diesel::{Connection, RunQueryDsl};
    if std::env::var("SCIMHUB_TEST_POSTGRES_URL").is_err() {
        return;
    }
    let pg = PgCluster::start();
    pg.require_tls();
    let app = TestApp::builder(Backend::Postgres)
        .database_url(&pg.url())
        .policy(POLICY)
        .start()
        .unwrap();
    let user = app.create_user("tls-only");
    let id = user["id"].as_str().unwrap();
    for _ in 0..20 {
        app.get(&format!("/Users/{id}")).send().status(200);
    }
    app.get("/Users?filter=userName%20eq%20%22tls-only%22")
        .send()
        .status(200);
    assert!(
        app.log_shows("the readers use TLS"),
        "the readers fell back to TLS:\n{}",
        app.log()
    );
    assert!(
        !app.log_shows("refused a worker reader's connection"),
        "the readers stayed on:\n{}",
        app.log()
    );
    #[derive(diesel::QueryableByName)]
    struct Sessions {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        plain: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tls: i64,
    }
    let mut observer =
        diesel::PgConnection::establish(&format!("{}?sslmode=require", pg.url())).unwrap();
    let sessions = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE NOT s.ssl) AS plain, count(*) FILTER (WHERE s.ssl) AS tls \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
    )
    .get_result::<Sessions>(&mut observer)
    .unwrap();
    assert_eq!(sessions.plain, 0);
    // The pool's connections and at least one worker reader.
    assert!(sessions.tls >= 2, "{} sessions with TLS", sessions.tls);
}
