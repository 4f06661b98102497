//! The world of the end-to-end lifecycle test and the leaver benchmark: the real `scimhub`
//! binary with a policy using the SCIM, AWS IAM, Active Directory, LDAP, GitHub and webhook
//! connectors, and a real stand-in behind each:
//!
//! - SCIM: a second `scimhub` (no policy) as the downstream service provider;
//! - AWS IAM: moto_server with signature checking on, behind the connectors' recording proxy;
//! - Active Directory (`type = "ad"`): a throwaway Samba AD DC over LDAPS with a verified
//!   certificate; leavers are disabled (`userAccountControl` 514), taken out of their groups and
//!   moved to `OU=Leavers`. Samba listens on the fixed ports 389/636, so this world runs once per
//!   host at a time: `cargo test` runs test binaries one after another, so it never overlaps
//!   `connectors`' `ldap_samba_ad` (keep one test per binary that starts a `World`); when the
//!   ports are taken anyway (another session's run), the start fails saying so;
//! - generic LDAP (`type = "ldap"`): a throwaway slapd over StartTLS with a verified
//!   certificate, on free ports (cheap, and the only end-to-end use of the generic flavour);
//! - GitHub: emulate@0.12.2 behind prism validating every call against GitHub's OpenAPI;
//! - webhook: a receiver that verifies every delivery's HMAC signature and timestamp.
//!
//! Every read-back goes to the stand-in's own API, never through scimhub.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors::aws_iam::AwsIamConnector;
use connectors::secret::Secret;
use connectors::webhook;
use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use scim_server::store::outbox::OutboxStatus;
use serde_json::{json, Value};

use crate::support_standins::stacks::*;
use crate::support_standins::*;

pub const HUB_TOKEN: &str = "e2e-hub-token-of-at-least-32-bytes";
pub const DOWNSTREAM_TOKEN: &str = "e2e-downstream-token-of-at-least-32-bytes";
pub const WEBHOOK_SECRET: &str = "whsec_e2e_receiver";
pub const LDAP_ADMIN: &str = "cn=admin,dc=example,dc=com";
pub const LDAP_ADMIN_PW: &str = "adminpw";
pub const IAM_POLICY: &str = "scimhub-eng-readonly";
/// The AD OUs the `ad` connector uses (under [`AD_BASE`]).
pub const AD_PEOPLE: &str = "OU=People,DC=example,DC=com";
pub const AD_GROUPS: &str = "OU=Groups,DC=example,DC=com";
pub const AD_LEAVERS: &str = "OU=Leavers,DC=example,DC=com";

/// The scimhub binary: `SCIMHUB_BIN`, else the one cargo built for this test target.
pub fn hub_bin() -> PathBuf {
    if let Ok(b) = std::env::var("SCIMHUB_BIN") {
        return PathBuf::from(b);
    }
    match option_env!("CARGO_BIN_EXE_scimhub") {
        Some(b) => PathBuf::from(b),
        None => panic!("set SCIMHUB_BIN to a built scimhub binary (cargo build -p scim-server)"),
    }
}

/// A running scimhub (killed by its pid on drop, through [`Proc`]).
pub struct Hub {
    pub proc: Proc,
    pub base: String,
    pub db: PathBuf,
}

/// Spawns `cmd` (a `scimhub serve`, logging at its own `RUST_LOG`, else `E2E_HUB_LOG` or `warn`) with its output in
/// `log`, and waits for its `listening on ADDR` line (stdout goes to the log like stderr).
pub fn spawn_listening(
    name: &str,
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> (Proc, String) {
    // A caller's own RUST_LOG (a test reading a module's info lines) wins.
    if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
        cmd.env(
            "RUST_LOG",
            std::env::var("E2E_HUB_LOG").unwrap_or_else(|_| "warn".into()),
        );
    }
    let mut proc = Proc::spawn(name, cmd, log);
    let mut addr = None;
    proc.wait_ready(timeout, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        addr = text
            .lines()
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned));
        addr.is_some()
    });
    (proc, addr.expect("address"))
}

impl Hub {
    /// Starts `scimhub serve` with `args` and waits for `listening on ADDR`.
    pub fn start(
        dir: &Path,
        name: &str,
        token: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Hub {
        Hub::start_bound(dir, name, token, "127.0.0.1:0", extra, env)
    }

    /// [`Hub::start`] on `bind` (a port [`free_port`] reserved, when the hub's own URL must be
    /// known before it starts: the policy's `link_base_url`).
    pub fn start_bound(
        dir: &Path,
        name: &str,
        token: &str,
        bind: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Hub {
        let db = dir.join(format!("{name}.db"));
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(hub_bin());
        cmd.args(["serve", "--bind", bind, "--database-url"])
            .arg(format!("sqlite://{}", db.display()))
            .args(extra)
            .env("SCIMHUB_BOOTSTRAP_TOKEN", token);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (proc, addr) = spawn_listening(name, cmd, &log, Duration::from_secs(30));
        Hub {
            proc,
            base: format!("http://{addr}/scim/v2"),
            db,
        }
    }

    pub fn store(&self) -> scim_server::store::Store {
        scim_server::store::Store::open(&format!("sqlite://{}", self.db.display()))
            .expect("open the hub's database")
    }
}

/// A SCIM client for one hub.
#[derive(Clone)]
pub struct Scim {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Scim {
    pub fn new(base: &str, token: &str) -> Scim {
        Scim {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("SCIM request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert!(s == 201 || s == 200, "POST {path}: {s} {v}");
        v
    }

    pub async fn patch(&self, path: &str, ops: Value) -> Value {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops,
        });
        let (s, v) = self.send(reqwest::Method::PATCH, path, Some(body)).await;
        assert!(s == 200 || s == 204, "PATCH {path}: {s} {v}");
        v
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// The one user with `userName`, if any.
    pub async fn user_by_name(&self, user_name: &str) -> Option<Value> {
        let filter = format!("userName eq \"{user_name}\"");
        let url = format!("/Users?filter={}", urlencode(&filter));
        let (s, v) = self.get(&url).await;
        assert_eq!(s, 200, "{v}");
        v["Resources"].as_array().and_then(|r| r.first().cloned())
    }

    /// Member `display`/`value`s of the group named `name`.
    pub async fn group_member_ids(&self, name: &str) -> Vec<String> {
        let filter = format!("displayName eq \"{name}\"");
        let (s, v) = self
            .get(&format!("/Groups?filter={}", urlencode(&filter)))
            .await;
        assert_eq!(s, 200, "{v}");
        let mut ids: Vec<String> = v["Resources"][0]["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| x["value"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A SCIM User as the HRIS pushes it.
pub fn person(user_name: &str, given: &str, family: &str, department: &str) -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "userName": user_name,
        "externalId": format!("hr-{user_name}"),
        "name": { "givenName": given, "familyName": family },
        "displayName": format!("{given} {family}"),
        "emails": [{ "value": format!("{user_name}@example.com"), "type": "work", "primary": true }],
        "userType": "Employee",
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": department }
    })
}

/// One webhook delivery the receiver accepted (signature and timestamp verified).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_type: String,
    pub body: Value,
    pub at: Instant,
}

/// Everything started.
pub struct World {
    pub dir: Scratch,
    pub moto: Moto,
    pub samba: SambaAd,
    pub slapd: Slapd,
    pub github: Stack,
    pub downstream: Hub,
    pub receiver: Responder,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// Webhook requests refused (bad signature or stale).
    pub rejected: Arc<AtomicUsize>,
    pub hub: Hub,
    pub scim: Scim,
    pub down: Scim,
    /// Downstream group ids by name.
    pub down_groups: std::collections::BTreeMap<String, String>,
}

/// The policy: every connector type of the proof, one profile per department.
pub fn policy(w: &PolicyInputs) -> String {
    format!(
        r#"
[[connector]]
name = "apps"
type = "scim"
settings = {{ base_url = "{down}", groups_by = "display_name", timeout_ms = 10000 }}
credentials = {{ token = {{ env = "E2E_DOWNSTREAM_TOKEN" }} }}

[[connector]]
name = "aws"
type = "aws_iam"
credentials = {{ access_key_id = {{ env = "E2E_AWS_KEY_ID" }}, secret_access_key = {{ file = "{aws_secret}" }} }}
[connector.settings]
endpoint = "{iam}"
path = "/scimhub/"
tags = {{ ManagedBy = "scimhub" }}
timeout_ms = 10000

[[connector]]
name = "dir"
type = "ldap"
credentials = {{ bind_password = {{ env = "E2E_LDAP_PW" }} }}
[connector.settings]
url = "ldap://127.0.0.1:{ldap_port}"
tls = "starttls"
ca_file = "{ca}"
bind_dn = "{ldap_admin}"
search_base = "dc=example,dc=com"
users_dn = "ou=people,dc=example,dc=com"
groups_dn = "ou=groups,dc=example,dc=com"
disable = "move_to_ou"
disabled_ou = "ou=disabled,dc=example,dc=com"
placeholder_member = "cn=placeholder,ou=people,dc=example,dc=com"
timeout_ms = 10000

[[connector]]
name = "ad"
type = "ad"
# a leaver's account gets the connector's leave, which `leave` below makes disable (514), out of
# every group, moved to leavers_ou (the object is kept); on_leave = "disable" would only disable
on_leave = "delete"
credentials = {{ bind_password = {{ env = "E2E_AD_PW" }} }}
[connector.settings]
url = "{ad_url}"
tls = "ldaps"
ca_file = "{ad_ca}"
bind_dn = "{ad_admin}"
search_base = "{ad_base}"
users_dn = "{ad_people}"
groups_dn = "{ad_groups}"
upn_suffix = "example.com"
leavers_ou = "{ad_leavers}"
leave = "disable_and_move"
timeout_ms = 10000

[[connector]]
name = "github"
type = "github"
settings = {{ org = "acme", api_base = "{github}", teams = ["engineering", "oncall"], timeout_ms = 10000 }}
credentials = {{ token = {{ env = "E2E_GITHUB_TOKEN" }} }}

[[connector]]
name = "hook"
type = "webhook"
settings = {{ url = "{hook}", timeout_ms = 10000 }}
credentials = {{ signing_secret = {{ file = "{hook_secret}" }} }}

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [
  {{ connector = "apps" }},
  {{ connector = "aws" }},
  {{ connector = "ad" }},
  {{ connector = "dir" }},
  {{ connector = "github", kind = "org", id = "acme", role = "member" }},
  {{ connector = "hook", kind = "role", id = "staff" }},
]

[[profile]]
name = "engineering"
match = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Engineering"'
grants = [
  {{ connector = "apps", kind = "group", id = "engineering" }},
  {{ connector = "aws", kind = "group", id = "developers" }},
  {{ connector = "aws", kind = "policy", id = "{policy_arn}" }},
  {{ connector = "ad", kind = "group", id = "engineering" }},
  {{ connector = "dir", kind = "group", id = "engineering" }},
  {{ connector = "github", kind = "team", id = "engineering" }},
]

[[profile]]
name = "sales"
match = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Sales"'
grants = [
  {{ connector = "apps", kind = "group", id = "sales" }},
  {{ connector = "aws", kind = "group", id = "sales" }},
  {{ connector = "ad", kind = "group", id = "sales" }},
  {{ connector = "dir", kind = "group", id = "oncall" }},
  {{ connector = "github", kind = "team", id = "oncall" }},
]
"#,
        down = w.down,
        aws_secret = w.aws_secret_file.display(),
        iam = w.iam,
        ad_url = AD_LDAPS_URL,
        ad_ca = w.ad_ca.display(),
        ad_admin = AD_ADMIN_DN,
        ad_base = AD_BASE,
        ad_people = AD_PEOPLE,
        ad_groups = AD_GROUPS,
        ad_leavers = AD_LEAVERS,
        ldap_port = w.ldap_port,
        ca = w.ca.display(),
        ldap_admin = LDAP_ADMIN,
        github = w.github,
        hook = w.hook,
        hook_secret = w.hook_secret_file.display(),
        policy_arn = w.policy_arn,
    )
}

pub struct PolicyInputs {
    pub down: String,
    pub aws_secret_file: PathBuf,
    pub iam: String,
    pub ad_ca: PathBuf,
    pub ldap_port: u16,
    pub ca: PathBuf,
    pub github: String,
    pub hook: String,
    pub hook_secret_file: PathBuf,
    pub policy_arn: String,
}

impl World {
    /// Starts every stand-in and the hub. `seed`: the emulate seed (None: the connectors' one).
    pub async fn start(seed: Option<&Path>) -> World {
        let dir = Scratch::new("lifecycle-e2e");
        let t0 = Instant::now();
        // Samba AD provisions in the background (the slowest stand-in to start)
        let samba = tokio::spawn(SambaAd::start());

        // AWS IAM: the groups and the customer-managed policy the profiles grant
        let moto = start_moto().await;
        let iam = iam_client(&moto.proxy.url(), &moto.key_id, &moto.secret);
        for g in ["developers", "sales"] {
            iam.call("CreateGroup", &[("GroupName", g)])
                .await
                .expect("CreateGroup");
        }
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}]}"#;
        let created = iam
            .call(
                "CreatePolicy",
                &[("PolicyName", IAM_POLICY), ("PolicyDocument", doc)],
            )
            .await
            .expect("CreatePolicy");
        let policy_arn = xml_field(&created, "Arn");

        let slapd = tokio::task::spawn_blocking(Slapd::start)
            .await
            .expect("slapd");

        // Active Directory: the OUs and the security groups the profiles grant
        let samba = match samba.await {
            Ok(s) => s,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        samba.add_ous(&["People", "Groups", "Leavers"]).await;
        samba
            .add_groups(
                AD_GROUPS,
                &[("engineering", "engineering"), ("sales", "sales")],
            )
            .await;
        let github = match seed {
            Some(s) => Stack::start_with_seed(s).await,
            None => Stack::start().await,
        };

        // the downstream SCIM service provider: a second scimhub, with the groups
        let downstream = Hub::start(dir.path(), "downstream", DOWNSTREAM_TOKEN, &[], &[]);
        let down = Scim::new(&downstream.base, DOWNSTREAM_TOKEN);
        let mut down_groups = std::collections::BTreeMap::new();
        for g in ["engineering", "sales"] {
            let v = down
                .post(
                    "/Groups",
                    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": g}),
                )
                .await;
            down_groups.insert(g.to_string(), v["id"].as_str().expect("id").to_owned());
        }

        // the webhook receiver: verifies signature and freshness, records what it accepted
        let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let rec = deliveries.clone();
        let (receiver, rejected) = verifying_receiver(WEBHOOK_SECRET, move |req| {
            rec.lock().unwrap().push(Delivery {
                event_type: req
                    .header(webhook::EVENT_TYPE_HEADER)
                    .unwrap_or_default()
                    .to_owned(),
                body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
                at: Instant::now(),
            });
        })
        .await;

        // secrets: by env var and by file, never in the policy
        let aws_secret_file = dir.path().join("aws-secret");
        std::fs::write(&aws_secret_file, format!("{}\n", moto.secret)).expect("secret");
        let hook_secret_file = dir.path().join("hook-secret");
        std::fs::write(&hook_secret_file, WEBHOOK_SECRET).expect("secret");
        let inputs = PolicyInputs {
            down: downstream.base.clone(),
            aws_secret_file,
            iam: moto.proxy.url(),
            ad_ca: samba.ca(),
            ldap_port: slapd.port,
            ca: slapd.ca(),
            github: format!("http://{}", github.watcher.addr),
            hook: receiver.url(),
            hook_secret_file,
            policy_arn,
        };
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(&policy_path, policy(&inputs)).expect("policy");
        let check = Command::new(hub_bin())
            .args(["policy", "check"])
            .arg(&policy_path)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .expect("policy check");
        assert!(
            check.status.success(),
            "policy check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let policy_arg = policy_path.display().to_string();
        let hub = Hub::start(
            dir.path(),
            "hub",
            HUB_TOKEN,
            &["--policy", &policy_arg],
            &[
                ("E2E_DOWNSTREAM_TOKEN", DOWNSTREAM_TOKEN.to_string()),
                ("E2E_AWS_KEY_ID", moto.key_id.clone()),
                ("E2E_AD_PW", AD_ADMIN_PW.to_string()),
                ("E2E_LDAP_PW", LDAP_ADMIN_PW.to_string()),
                ("E2E_GITHUB_TOKEN", GITHUB_ADMIN_TOKEN.to_string()),
            ],
        );
        let scim = Scim::new(&hub.base, HUB_TOKEN);
        eprintln!("world ready in {:?}", t0.elapsed());
        World {
            dir,
            moto,
            samba,
            slapd,
            github,
            downstream,
            receiver,
            deliveries,
            rejected,
            hub,
            scim,
            down,
            down_groups,
        }
    }

    pub fn iam(&self) -> AwsIamConnector {
        iam_client(&self.moto.proxy.url(), &self.moto.key_id, &self.moto.secret)
    }

    /// Outbox rows of the hub by status.
    pub fn outbox(&self) -> Vec<scim_server::store::outbox::OutboxRow> {
        let store = self.hub.store();
        scim_server::admin::in_tx(&store, |c| {
            scim_server::store::outbox::list_ops(c, None, None, 1_000_000)
        })
        .expect("outbox")
    }

    /// Waits until no operation is pending or running; panics on any failed one.
    pub async fn settle(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let rows = self.outbox();
            let failed: Vec<String> = rows
                .iter()
                .filter(|r| r.status == OutboxStatus::Failed)
                .map(|r| format!("{} {} {}: {:?}", r.connector, r.event, r.op, r.last_error))
                .collect();
            assert!(
                failed.is_empty(),
                "failed operations:\n{}",
                failed.join("\n")
            );
            let open = rows
                .iter()
                .filter(|r| r.status == OutboxStatus::Pending || r.status == OutboxStatus::Running)
                .count();
            if open == 0 && !rows.is_empty() {
                return;
            }
            if start.elapsed() > timeout {
                let detail: Vec<String> = rows
                    .iter()
                    .filter(|r| r.status != OutboxStatus::Done)
                    .map(|r| {
                        format!(
                            "{} {} {} attempts={} {:?}",
                            r.status, r.connector, r.op, r.attempts, r.last_error
                        )
                    })
                    .collect();
                panic!(
                    "outbox not settled after {timeout:?}:\n{}",
                    detail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // ---- read-back through each system's own API ------------------------------------------

    /// IAM: (exists, groups, attached policy names, access keys, has login profile, tags).
    pub async fn iam_state(&self, user: &str) -> Option<IamState> {
        let iam = self.iam();
        let u = match iam.call("GetUser", &[("UserName", user)]).await {
            Ok(u) => u,
            Err(e) if e.message.contains("NoSuchEntity") => return None,
            Err(e) => panic!("GetUser {user}: {e}"),
        };
        let members = |xml: &str, tag: &str| -> Vec<String> {
            let mut out = Vec::new();
            let open = format!("<{tag}>");
            let mut rest = xml;
            while let Some(i) = rest.find(&open) {
                let from = i + open.len();
                let end = rest[from..].find("</").map(|j| from + j).unwrap_or(from);
                out.push(rest[from..end].to_owned());
                rest = &rest[end..];
            }
            out.sort();
            out
        };
        let groups = iam
            .call("ListGroupsForUser", &[("UserName", user)])
            .await
            .expect("ListGroupsForUser");
        let policies = iam
            .call("ListAttachedUserPolicies", &[("UserName", user)])
            .await
            .expect("ListAttachedUserPolicies");
        let keys = iam
            .call("ListAccessKeys", &[("UserName", user)])
            .await
            .expect("ListAccessKeys");
        let login = match iam.call("GetLoginProfile", &[("UserName", user)]).await {
            Ok(_) => true,
            Err(e) if e.message.contains("NoSuchEntity") => false,
            Err(e) => panic!("GetLoginProfile: {e}"),
        };
        let tags = iam
            .call("ListUserTags", &[("UserName", user)])
            .await
            .expect("ListUserTags");
        Some(IamState {
            path: xml_field(&u, "Path"),
            groups: members(&groups, "GroupName"),
            policies: members(&policies, "PolicyName"),
            access_keys: members(&keys, "AccessKeyId"),
            login_profile: login,
            tags: members(&tags, "Key"),
        })
    }

    /// LDAP: the user's DN (None: no entry) and the groups listing it as member.
    pub async fn ldap_state(&self, uid: &str) -> (Option<String>, Vec<String>) {
        ldap_user_state(self.slapd.port, uid).await
    }

    /// Active Directory, through Samba's own LDAP (LDAPS, bound as the domain Administrator):
    /// the user with this `sAMAccountName`, None when there is no such object.
    pub async fn ad_state(&self, sam: &str) -> Option<AdState> {
        let mut ldap = self.samba.admin().await;
        let (entries, _) = ldap
            .search(
                AD_BASE,
                Scope::Subtree,
                &format!("(&(objectClass=user)(sAMAccountName={}))", ldap_escape(sam)),
                vec![
                    "sAMAccountName",
                    "userPrincipalName",
                    "userAccountControl",
                    "memberOf",
                ],
            )
            .await
            .expect("AD search")
            .success()
            .expect("AD search ok");
        assert!(entries.len() <= 1, "{} objects for {sam}", entries.len());
        let e = SearchEntry::construct(entries.into_iter().next()?);
        let one = |a: &str| {
            e.attrs
                .get(a)
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_default()
        };
        // group CNs from the user's memberOf (computed by AD from the groups' member)
        let cn = |dn: &str| {
            dn.split(',')
                .next()
                .and_then(|rdn| rdn.split_once('='))
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default()
        };
        let mut member_of: Vec<String> = e
            .attrs
            .get("memberOf")
            .map(|v| v.iter().map(|dn| cn(dn)).collect())
            .unwrap_or_default();
        member_of.sort();
        // and the other side: the groups under OU=Groups whose member lists the user
        let (groups, _) = ldap
            .search(
                AD_GROUPS,
                Scope::Subtree,
                &format!("(member={})", ldap_escape(&e.dn)),
                vec!["cn"],
            )
            .await
            .expect("AD group search")
            .success()
            .expect("AD group search ok");
        let mut group_members: Vec<String> = groups
            .into_iter()
            .map(|g| SearchEntry::construct(g).attrs["cn"][0].clone())
            .collect();
        group_members.sort();
        let _ = ldap.unbind().await;
        let uac: u32 = one("userAccountControl")
            .parse()
            .expect("userAccountControl");
        let ou =
            e.dn.split_once(',')
                .map(|(_, parent)| parent.to_owned())
                .unwrap_or_default();
        Some(AdState {
            dn: e.dn.clone(),
            ou,
            sam_account_name: one("sAMAccountName"),
            user_principal_name: one("userPrincipalName"),
            user_account_control: uac,
            member_of,
            group_members,
        })
    }

    /// GitHub, straight at the emulator: (org role if a member, teams the login is in).
    pub async fn github_state(&self, login: &str) -> (Option<String>, Vec<String>) {
        let http = reqwest::Client::new();
        let get = |path: String| {
            http.get(format!(
                "http://127.0.0.1:{}{path}",
                self.github.emulate_port
            ))
            .bearer_auth(GITHUB_ADMIN_TOKEN)
            .header("accept", "application/vnd.github+json")
            .send()
        };
        let r = get(format!("/orgs/acme/memberships/{login}"))
            .await
            .expect("GET membership");
        let role = if r.status().is_success() {
            let v: Value = r.json().await.expect("json");
            (v["state"] == "active").then(|| v["role"].as_str().unwrap_or_default().to_owned())
        } else {
            None
        };
        let mut teams = Vec::new();
        for team in ["engineering", "oncall"] {
            let r = get(format!("/orgs/acme/teams/{team}/memberships/{login}"))
                .await
                .expect("GET team membership");
            if r.status().is_success() {
                let v: Value = r.json().await.expect("json");
                if v["state"] == "active" {
                    teams.push(team.to_owned());
                }
            }
        }
        (role, teams)
    }

    /// SCIM downstream: (active, group names) of the userName, None when absent.
    pub async fn scim_state(&self, user_name: &str) -> Option<(bool, Vec<String>)> {
        let u = self.down.user_by_name(user_name).await?;
        let id = u["id"].as_str().expect("id").to_owned();
        let mut groups = Vec::new();
        for name in self.down_groups.keys() {
            if self.down.group_member_ids(name).await.contains(&id) {
                groups.push(name.clone());
            }
        }
        Some((u["active"].as_bool().unwrap_or(true), groups))
    }

    /// Webhook deliveries about `key`, as `type` or `type:entitlement`.
    pub fn webhook_events(&self, key: &str) -> Vec<String> {
        self.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.body["account"]["key"] == key)
            .map(|d| match d.body["data"]["entitlement"]["id"].as_str() {
                Some(id) => format!("{}:{id}", d.event_type),
                None => d.event_type.clone(),
            })
            .collect()
    }
}

/// What IAM holds for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamState {
    pub path: String,
    pub groups: Vec<String>,
    pub policies: Vec<String>,
    pub access_keys: Vec<String>,
    pub login_profile: bool,
    pub tags: Vec<String>,
}

/// What Active Directory holds for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdState {
    pub dn: String,
    /// The DN of the OU holding the user.
    pub ou: String,
    pub sam_account_name: String,
    pub user_principal_name: String,
    pub user_account_control: u32,
    /// CNs of the groups in the user's `memberOf`, sorted.
    pub member_of: Vec<String>,
    /// CNs of the groups under `OU=Groups` whose `member` lists the user, sorted.
    pub group_members: Vec<String>,
}

impl AdState {
    /// `ACCOUNTDISABLE` (0x2) in `userAccountControl`.
    pub fn disabled(&self) -> bool {
        self.user_account_control & 0x2 != 0
    }
}

/// The DN of the entry with `uid` in the slapd on `port` (None: no entry), and the groups
/// listing it as member.
pub(crate) async fn ldap_user_state(port: u16, uid: &str) -> (Option<String>, Vec<String>) {
    let (conn, mut ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5)),
        &format!("ldap://127.0.0.1:{port}"),
    )
    .await
    .expect("ldap connect");
    ldap3::drive!(conn);
    ldap.simple_bind(LDAP_ADMIN, LDAP_ADMIN_PW)
        .await
        .expect("bind")
        .success()
        .expect("bind ok");
    let (entries, _) = ldap
        .search(
            "dc=example,dc=com",
            Scope::Subtree,
            &format!("(&(objectClass=inetOrgPerson)(uid={uid}))"),
            vec!["uid"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let dn = entries
        .into_iter()
        .next()
        .map(|e| SearchEntry::construct(e).dn);
    let mut groups = Vec::new();
    if let Some(dn) = &dn {
        let (entries, _) = ldap
            .search(
                "ou=groups,dc=example,dc=com",
                Scope::Subtree,
                &format!("(member={dn})"),
                vec!["cn"],
            )
            .await
            .expect("search groups")
            .success()
            .expect("groups ok");
        groups = entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).attrs["cn"][0].clone())
            .collect();
        groups.sort();
    }
    let _ = ldap.unbind().await;
    (dn, groups)
}

/// A webhook receiver that checks each request's signature and freshness with `secret` as
/// scimhub signs them: a verified request is answered 204 and handed to `record`, any other
/// is answered 401 and counted in the returned counter.
pub(crate) async fn verifying_receiver(
    secret: &str,
    record: impl Fn(&HttpRequest) + Send + Sync + 'static,
) -> (Responder, Arc<AtomicUsize>) {
    let rejected = Arc::new(AtomicUsize::new(0));
    let rej = rejected.clone();
    let secret = Secret::new(secret);
    let responder = Responder::start(Arc::new(move |req: &HttpRequest| {
        match webhook::verify(
            &secret,
            req.header(webhook::TIMESTAMP_HEADER),
            req.header(webhook::SIGNATURE_HEADER),
            &req.body,
            chrono::Utc::now().timestamp(),
            Duration::from_secs(300),
        ) {
            Ok(()) => {
                record(req);
                Reply::Respond(204, vec![], String::new())
            }
            Err(e) => {
                rej.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Reply::Respond(401, vec![], e.to_string())
            }
        }
    }))
    .await;
    (responder, rejected)
}
