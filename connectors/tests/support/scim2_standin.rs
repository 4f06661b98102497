//! Starts python `scim2-server` (PyPI, pinned) on 127.0.0.1 with a free port, in a venv it
//! installs on first use under `$SCIM2_SERVER_VENV` or `~/.cache/scimhub-standins/scim2-venv`
//! (an atomic `mkdir` lock keeps parallel test binaries from installing twice). Stopped on drop.
//!
//! Known gaps (../shared/standins/README.md §5): `User.groups` is never filled in (the connector
//! falls back to a `members.value` filter on Groups), and deleting a user leaves a dangling member.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SCIM2_SERVER_VERSION: &str = "0.8.3";

pub struct Scim2Server {
    child: Child,
    /// e.g. `http://127.0.0.1:40123/v2`
    pub base_url: String,
    pub token: String,
    log: PathBuf,
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Scim2Server {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn venv_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SCIM2_SERVER_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache/scimhub-standins/scim2-venv")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs scim2-server into the venv once; returns the venv.
fn ensure_installed() -> PathBuf {
    let venv = venv_dir();
    let ready = venv.join(".ready");
    if ready.exists() {
        return venv;
    }
    let parent = venv.parent().unwrap_or(Path::new("/tmp")).to_owned();
    std::fs::create_dir_all(&parent).expect("create cache dir");
    let lock = venv.with_extension("lock");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if ready.exists() {
            return venv;
        }
        if std::fs::create_dir(&lock).is_ok() {
            break;
        }
        // A lock older than 10 minutes belongs to a dead installer.
        let stale = std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if stale {
            let _ = std::fs::remove_dir(&lock);
        }
        assert!(Instant::now() < deadline, "timed out waiting for {lock:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let result = (|| {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("scim2-server=={SCIM2_SERVER_VERSION}")))?;
        std::fs::write(&ready, SCIM2_SERVER_VERSION).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir(&lock);
    if let Err(e) = result {
        panic!("installing scim2-server into {venv:?} failed: {e}");
    }
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts a fresh scim2-server (empty state) with bearer `token`.
pub async fn start(token: &str) -> Scim2Server {
    let venv = ensure_installed();
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("scim2-server-{}-{port}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("log file");
        // Run the console script through the venv's python so a moved venv still works.
        let child = Command::new(venv.join("bin/python"))
            .arg(venv.join("bin/scim2-server"))
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", token])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn scim2-server");
        let mut server = Scim2Server {
            child,
            base_url: format!("http://127.0.0.1:{port}/v2"),
            token: token.to_owned(),
            log,
        };
        match wait_ready(&mut server).await {
            Ok(()) => return server,
            Err(e) => last_err = format!("{e}\n{}", server.log()),
        }
    }
    panic!("scim2-server did not start: {last_err}");
}

/// Ready when *our* child is alive and answers a SCIM ServiceProviderConfig (not just any
/// listener on the port: another process may have taken it).
async fn wait_ready(server: &mut Scim2Server) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("{}/ServiceProviderConfig", server.base_url);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("scim2-server exited: {status}"));
        }
        if let Ok(resp) = client
            .get(&url)
            .bearer_auth(&server.token)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            if resp.status().is_success() {
                if let Ok(text) = resp.text().await {
                    if text.contains("ServiceProviderConfig") {
                        return Ok(());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("scim2-server not ready after 20 s".into())
}

/// Creates a Group directly on the stand-in (groups are not provisioned by the connector).
pub async fn create_group(base: &str, token: &str, display_name: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/Groups"))
        .bearer_auth(token)
        .header("Content-Type", "application/scim+json")
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": display_name
        }))
        .send()
        .await
        .expect("create group");
    assert!(
        resp.status().is_success(),
        "create group: {}",
        resp.status()
    );
    let v: serde_json::Value = resp.json().await.expect("group json");
    v["id"].as_str().expect("group id").to_owned()
}

/// The member ids of a Group, read straight from the stand-in.
pub async fn group_members(base: &str, token: &str, group_id: &str) -> Vec<String> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/Groups/{group_id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get group")
        .json()
        .await
        .expect("group json");
    v["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A User read straight from the stand-in, `None` on 404.
pub async fn get_user(base: &str, token: &str, id: &str) -> Option<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/Users/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get user");
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    Some(resp.json().await.expect("user json"))
}

/// Creates a User directly on the stand-in (to test adopting an existing account).
pub async fn create_user(base: &str, token: &str, user: serde_json::Value) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/Users"))
        .bearer_auth(token)
        .header("Content-Type", "application/scim+json")
        .json(&user)
        .send()
        .await
        .expect("create user");
    assert!(resp.status().is_success(), "create user: {}", resp.status());
    let v: serde_json::Value = resp.json().await.expect("user json");
    v["id"].as_str().expect("user id").to_owned()
}
