//! The end-to-end harness: boots the real `scimhub` binary on a fresh database and talks HTTP.
//!
//! `TestApp::sqlite()` uses a file in a temporary directory; `TestApp::postgres()` creates a
//! uniquely named database on `SCIMHUB_TEST_POSTGRES_URL` and drops it afterwards. The
//! [`backends!`] macro turns one test body into one test per backend.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::Value;

pub const TOKEN: &str = "e2e-bootstrap-token-of-at-least-32-bytes";
pub const SCIM_JSON: &str = "application/scim+json";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

enum Db {
    Sqlite(PathBuf),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// A database the test owns (e.g. on its own PostgreSQL cluster): left as it is; only the
    /// server's directory (configuration, log) is removed.
    External(PathBuf),
}

impl Drop for Db {
    fn drop(&mut self) {
        match self {
            Db::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Db::Postgres { admin_url, name } => {
                if let Ok(mut c) = PgConnection::establish(admin_url) {
                    let _ = diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    ))
                    .execute(&mut c);
                }
            }
            Db::External(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The policy most engine tests start from, as a literal for `concat!`: one in-memory
/// connector, `chat`, and a profile granting everyone its `general` channel.
macro_rules! chat_for_everyone {
    () => {
        r#"
[[connector]]
name = "chat"
type = "memory"

[[profile]]
name = "everyone"
match = 'userName pr'
grants = [{ connector = "chat", kind = "channel", id = "general" }]
"#
    };
}
pub(crate) use chat_for_everyone;

/// Builder for a server with extra configuration.
pub struct Builder {
    backend: Backend,
    env: Vec<(String, String)>,
    config: Option<String>,
    policy: Option<String>,
    args: Vec<String>,
    database_url: Option<String>,
}

impl Builder {
    /// Runs on this database (created and dropped by the test) instead of a fresh one.
    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// An extra `scimhub serve` argument (e.g. `--policy FILE`).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// TOML configuration file contents.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Policy file contents: written to the app's directory and passed as `--policy FILE`
    /// ([`TestApp::policy_path`] names it, for `scimhub` subcommands that read it too).
    pub fn policy(mut self, toml: &str) -> Self {
        self.policy = Some(toml.into());
        self
    }

    /// `None` when the backend is PostgreSQL and `SCIMHUB_TEST_POSTGRES_URL` is not set.
    pub fn start(self) -> Option<TestApp> {
        let dir = std::env::temp_dir().join(unique("scimhub-e2e"));
        std::fs::create_dir_all(&dir).unwrap();
        let (db, url) = match (self.backend, self.database_url.clone()) {
            (_, Some(url)) => (Db::External(dir.clone()), url),
            (Backend::Sqlite, None) => {
                let url = format!("sqlite://{}", dir.join("hub.db").display());
                (Db::Sqlite(dir.clone()), url)
            }
            (Backend::Postgres, None) => {
                let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").ok()?;
                let name = unique("scimhub_e2e");
                let mut c = PgConnection::establish(&admin_url)
                    .expect("connect to SCIMHUB_TEST_POSTGRES_URL");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut c)
                    .unwrap();
                let mut u =
                    reqwest::Url::parse(&admin_url).expect("SCIMHUB_TEST_POSTGRES_URL is a URL");
                u.set_path(&format!("/{name}"));
                let url = u.to_string();
                (Db::Postgres { admin_url, name }, url)
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scimhub"));
        cmd.args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--log-format",
            "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SCIMHUB_BOOTSTRAP_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(toml) = &self.config {
            let path = dir.join("scimhub.toml");
            std::fs::write(&path, toml).unwrap();
            cmd.arg("--config").arg(path);
        }
        let policy_path = self.policy.as_ref().map(|toml| {
            let path = dir.join("policy.toml");
            std::fs::write(&path, toml).unwrap();
            path.to_str().expect("a UTF-8 temp path").to_owned()
        });
        if let Some(path) = &policy_path {
            cmd.arg("--policy").arg(path);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log_path = dir.join("server.log");
        let mut child = cmd.spawn().expect("spawn scimhub");
        let stderr = child.stderr.take().unwrap();
        let log_for_thread = log_path.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log_for_thread).unwrap();
            let _ = std::io::copy(&mut BufReader::new(stderr), &mut f);
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "scimhub exited before listening: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if let Some(a) = line.trim().strip_prefix("listening on ") {
                break a.to_string();
            }
        };
        std::thread::spawn(move || {
            let mut sink = std::io::sink();
            let _ = std::io::copy(&mut stdout, &mut sink);
        });
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Some(TestApp {
            child,
            db_url: url,
            addr,
            client,
            dir,
            log_path,
            policy_path,
            _db: db,
        })
    }
}

/// A running server.
pub struct TestApp {
    child: Child,
    /// The database the server runs on (for `scimhub` subcommands against it).
    pub db_url: String,
    pub addr: String,
    client: Client,
    pub dir: PathBuf,
    log_path: PathBuf,
    policy_path: Option<String>,
    _db: Db,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestApp {
    pub fn builder(backend: Backend) -> Builder {
        Builder {
            backend,
            env: Vec::new(),
            config: None,
            policy: None,
            args: Vec::new(),
            database_url: None,
        }
    }

    pub fn start(backend: Backend) -> Option<TestApp> {
        Self::builder(backend).start()
    }

    /// The policy file the server was started with ([`Builder::policy`]).
    pub fn policy_path(&self) -> &str {
        self.policy_path
            .as_deref()
            .expect("started with Builder::policy")
    }

    /// Runs `scimhub ARGS --database-url <this app's database>` to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_scimhub"))
            .args(args)
            .args(["--database-url", &self.db_url])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("run scimhub")
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') && !path.starts_with("/scim/") {
            if path == "/healthz"
                || path == "/readyz"
                || path == "/metrics"
                || path.starts_with("/admin/v1/")
            {
                return format!("http://{}{path}", self.addr);
            }
            return format!("http://{}/scim/v2{path}", self.addr);
        }
        format!("http://{}{path}", self.addr)
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the log holds `needle` within 10 s. The server writes a request's line before
    /// answering it, but a thread of this process copies the server's stderr into the log file,
    /// and under a loaded test run the copy can trail the answer.
    pub fn log_shows(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM and returns its exit status success.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn request(&self, method: Method, path: &str) -> Req {
        Req {
            rb: self.client.request(method, self.url(path)),
            token: Some(TOKEN.into()),
            url: self.url(path),
        }
    }

    pub fn get(&self, path: &str) -> Req {
        self.request(Method::GET, path)
    }
    pub fn delete(&self, path: &str) -> Req {
        self.request(Method::DELETE, path)
    }
    pub fn post(&self, path: &str, body: Value) -> Req {
        self.request(Method::POST, path).json(body)
    }
    pub fn put(&self, path: &str, body: Value) -> Req {
        self.request(Method::PUT, path).json(body)
    }
    pub fn patch(&self, path: &str, body: Value) -> Req {
        self.request(Method::PATCH, path).json(body)
    }

    /// Creates a user and returns its representation.
    pub fn create_user(&self, user_name: &str) -> Value {
        self.post(
            "/Users",
            serde_json::json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":user_name,
                "name":{"givenName":"Given","familyName":user_name},"active":true,
                "emails":[{"value":format!("{user_name}@example.com"),"type":"work","primary":true}]}),
        )
        .send()
        .status(201)
        .json()
    }

    /// Creates a group with the given member ids.
    pub fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members
            .iter()
            .map(|m| serde_json::json!({"value": m}))
            .collect();
        self.post(
            "/Groups",
            serde_json::json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":name,"members":members}),
        )
        .send()
        .status(201)
        .json()
    }
}

/// A request being built.
pub struct Req {
    rb: RequestBuilder,
    token: Option<String>,
    url: String,
}

impl Req {
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.rb = self.rb.header(k, v);
        self
    }
    /// Replaces the bearer token (an empty string sends no Authorization header).
    pub fn token(mut self, t: &str) -> Self {
        self.token = Some(t.to_string()).filter(|t| !t.is_empty());
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.rb = self
            .rb
            .header("content-type", SCIM_JSON)
            .body(body.to_string());
        self
    }
    pub fn raw_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.rb = self
            .rb
            .header("content-type", content_type)
            .body(body.into());
        self
    }
    pub fn send(self) -> Resp {
        let rb = match &self.token {
            Some(t) => self.rb.bearer_auth(t),
            None => self.rb,
        };
        let r = rb.send().unwrap_or_else(|e| panic!("{}: {e}", self.url));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap_or_default();
        Resp {
            status,
            headers,
            text,
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    #[track_caller]
    pub fn status(self, expected: u16) -> Self {
        assert_eq!(
            self.status, expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    /// Asserts a SCIM error with this status and scimType.
    #[track_caller]
    pub fn scim_error(self, status: u16, scim_type: Option<&str>) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with(SCIM_JSON)),
            "content type {:?}",
            self.header("content-type")
        );
        let body = self.json();
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{body}"
        );
        assert_eq!(body["status"], status.to_string(), "{body}");
        assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
        body
    }
}

/// `backends!(name, |app| { ... })` defines `name::sqlite` and `name::postgres`; the PostgreSQL
/// variant passes without running when `SCIMHUB_TEST_POSTGRES_URL` is not set.
#[macro_export]
macro_rules! backends {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($app: $crate::harness::TestApp) $body
            #[test]
            fn sqlite() {
                run($crate::harness::TestApp::start($crate::harness::Backend::Sqlite).expect("sqlite"));
            }
            #[test]
            fn postgres() {
                match $crate::harness::TestApp::start($crate::harness::Backend::Postgres) {
                    Some(app) => run(app),
                    None => eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run"),
                }
            }
        }
    };
}
