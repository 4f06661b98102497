//! `scimhub demo`: the whole lifecycle in a minute with nothing installed.
//!
//! It starts a real hub (HTTP server, engine, workers) on a free local port with the demo policy
//! (`examples/demo-policy.toml`, compiled in), a throw-away SQLite database in a temporary
//! directory and in-memory downstream apps ([`connectors::memory`]), then drives the
//! [`simulator`]'s HRIS story against it over SCIM. After each step it waits until the outbox is
//! drained and prints every app's accounts as a table, plus the notifications queued by the
//! step (subject and recipients; bodies carry signed links and stay in the database).
//!
//! The HRIS pushes with a token named `workday`, the source of truth the demo policy names for
//! `active`, title, department and manager. Approvals are decided over the admin API by the
//! person the policy names for each request, with a token issued to act as them; the manager's
//! one-click link is opened (`GET`: a confirmation page) and confirmed (`POST`).

pub mod simulator;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use connectors::memory::MemoryConnector;

use crate::admin::{in_tx, Admin};
use crate::auth::{token, Authenticator};
use crate::cli::DemoArgs;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::engine::connector_set::{default_builder, ConnectorSet};
use crate::engine::Engine;
use crate::http::AppState;
use crate::policy::reload::PolicyHandle;
use crate::policy::Policy;
use crate::store::approvals::{ApprovalKind, ApprovalRow};
use crate::store::{approvals, notifications, Store};
use simulator::{Hris, Step};

/// The demo policy, as shipped in `examples/`.
pub const DEMO_POLICY: &str = include_str!("../../../examples/demo-policy.toml");
/// The SCIM schema of the demo HRIS's extension (contract end date, sponsor, ...).
pub const DEMO_EXTENSION: &str = include_str!("../../../examples/demo-extension.schema.json");

/// The server's schema registry plus the demo extension on User.
pub fn demo_registry() -> anyhow::Result<scim_schema::schema::SchemaRegistry> {
    let mut reg = crate::service::schemas::registry();
    crate::service::schemas::add_extension_json(&mut reg, DEMO_EXTENSION, "User", false)
        .map_err(|e| anyhow::anyhow!("demo extension schema: {e}"))?;
    Ok(reg)
}

/// The apps of the policy, in policy order, with their in-memory state.
type Apps = Vec<(String, MemoryConnector)>;

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Runs `scimhub demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Warnings only (RUST_LOG overrides): the tables are the output.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("scimhub-demo-{}", random_hex(6)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(&args, &dir, started);
    if !args.keep_running || result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(args: &DemoArgs, dir: &std::path::Path, started: Instant) -> anyhow::Result<()> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let token = format!("demo-{}", random_hex(16));

    // The policy, with one-click links pointing at this hub and a fresh link key.
    let text = match &args.policy {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => DEMO_POLICY.to_string(),
    };
    let text = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("link_base_url") {
                format!("link_base_url = \"{url}\"")
            } else if l.trim_start().starts_with("link_secret") {
                let key = dir.join("link.key");
                format!("link_secret = {{ file = {:?} }}", key.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("link.key"), random_hex(32))?;
    let policy = Policy::parse(&text, "demo-policy.toml")
        .map_err(|e| anyhow::anyhow!("demo policy rejected:\n{e}"))?;

    // In-memory apps, one per connector of the policy.
    let connectors = ConnectorSet::new(default_builder());
    let mut apps: Apps = Vec::new();
    for name in policy.connectors.keys() {
        let m = MemoryConnector::new(name.clone());
        connectors.insert(name, Arc::new(m.clone()));
        apps.push((name.clone(), m));
    }
    let engine = Arc::new(Engine::new(
        PolicyHandle::fixed(policy),
        Arc::new(SystemClock),
        connectors,
    ));
    let database_url = format!("sqlite://{}", dir.join("hub.db").display());
    let store = crate::engine::hook::install(
        Store::open(&database_url).map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?,
        engine.clone(),
    );

    // The workers and timers (no SMTP: notifications stay queued and are listed below).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("scimhub-demo")
        .build()?;
    {
        let _guard = rt.enter();
        let mut workers = crate::jobs::Workers::new(store.clone(), engine.clone());
        workers.config.idle_poll = Duration::from_millis(50);
        workers.spawn();
    }

    // The HTTP server, on its own thread.
    let config = Config {
        bind: format!("127.0.0.1:{port}"),
        database_url: database_url.into(),
        bootstrap_token: Some(crate::config::SecretSetting::Value(token.clone())),
        ..Config::default()
    };
    let auth = Authenticator::new(Some(connectors::secret::Secret::new(token.clone())), None);
    let admin = Admin::new(store.clone(), engine.clone());
    let state =
        AppState::new(config, demo_registry()?, store.clone(), auth)?.with_admin(admin.clone());
    let server = std::thread::Builder::new()
        .name("scimhub-demo-http".into())
        .spawn(move || actix_web::rt::System::new().block_on(crate::http::serve(state)))?;

    // Not locked: the server thread prints its `listening on` line too.
    let mut out = std::io::stdout();
    rt.block_on(wait_healthy(&url))?;
    writeln!(out, "scimhub demo: hub at {url}/scim/v2")?;
    writeln!(out, "bootstrap token: {token}")?;
    writeln!(
        out,
        "policy: examples/demo-policy.toml ({} apps, in memory); database: {}",
        apps.len(),
        dir.join("hub.db").display()
    )?;

    // The HRIS's own token: its name makes it the source of truth of the policy's [[source]].
    let hris_token = issue_token(&store, "workday", &["scim:read", "scim:write"], None)?;
    writeln!(
        out,
        "HRIS token (client \"workday\", the source of truth): {hris_token}"
    )?;
    let mut hris = Hris::new(&url, &hris_token)?;
    let mut approvers = Approvers::default();
    let steps = simulator::scenario(chrono::Utc::now().date_naive());
    let mut seen_notifications = 0usize;
    let hub = Hub {
        admin: &admin,
        store: &store,
        rt: &rt,
        url: &url,
    };
    let mut before = snapshot(&apps);
    for (i, step) in steps.iter().enumerate() {
        writeln!(
            out,
            "\n== step {}/{}: {}",
            i + 1,
            steps.len(),
            step.describe()
        )?;
        write!(out, "{}", wrap(step.why(), "   ", 96))?;
        let pushed = rt.block_on(hris.apply(step))?;
        if !pushed {
            hub.act(step, &mut approvers, &mut out)?;
        }
        drain(&store)?;
        let after = snapshot(&apps);
        let names = user_names(&hris.ids);
        write!(out, "{}", changes(&before, &after, &names))?;
        before = after;
        if let Step::Joiner(simulator::Person { user_name, .. }) | Step::Mover { user_name, .. } =
            step
        {
            write!(out, "{}", hub.kept_access(user_name)?)?;
            write!(out, "{}", hub.why_no_account(user_name, &apps, &names)?)?;
        }
        seen_notifications = print_notifications(&store, seen_notifications, &hris.ids, &mut out)?;
        let pending = admin
            .approvals(Some("pending"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for a in &pending {
            let by = match hub.approver_for(a)? {
                Some(name) => format!("{name} ({})", a.level),
                None => format!("the {} level", a.level),
            };
            let subject = names.get(a.user_id.as_str()).copied().unwrap_or("?");
            let what = match a.kind {
                ApprovalKind::Entitlement | ApprovalKind::Grant => format!(
                    "{} on {}",
                    a.entitlement
                        .as_deref()
                        .map(crate::engine::notices::entitlement_label)
                        .unwrap_or_default(),
                    a.connector.as_deref().unwrap_or("")
                ),
                ApprovalKind::Sod => format!(
                    "an exception to the separation-of-duties rule {}",
                    a.entitlement.as_deref().unwrap_or("")
                ),
                ApprovalKind::Extension => "a contract extension".to_string(),
            };
            writeln!(out, "  ? waiting for {by} to approve {what} for {subject}")?;
        }
        if let Step::Joiner(p) = step {
            if let (Some(_), Some(id)) = (&p.contract_end, hris.ids.get(&p.user_name)) {
                let timers = in_tx(&store, |c| crate::store::timers::list(c, Some(id)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for t in timers.iter().filter(|t| t.status == "pending") {
                    writeln!(
                        out,
                        "  timer: {} at {}",
                        t.kind,
                        t.due.format("%Y-%m-%d %H:%M")
                    )?;
                }
            }
        }
    }
    writeln!(out, "\n== final state")?;
    write!(out, "{}", table(&apps, &hris.ids))?;
    writeln!(
        out,
        "\n  (· no account, `disabled` a disabled account, `(account)` an account without \
         entitlements)"
    )?;
    writeln!(
        out,
        "\ndone in {:.1}s: every step above went over SCIM to a real hub; \
         the apps are in memory.",
        started.elapsed().as_secs_f64()
    )?;
    out.flush()?;
    if args.keep_running {
        writeln!(
            out,
            "the hub keeps running at {url}/scim/v2 (token {token}); Ctrl-C stops it"
        )?;
        out.flush()?;
        server
            .join()
            .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    }
    Ok(())
}

async fn wait_healthy(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the hub did not start at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issues an API token (as `scimhub token issue` does) and returns it.
fn issue_token(
    store: &Store,
    name: &str,
    scopes: &[&str],
    user_id: Option<&str>,
) -> anyhow::Result<String> {
    let new = token::generate();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    store
        .insert_token(name, &new.hash, &new.prefix, &scopes, user_id)
        .map_err(|e| anyhow::anyhow!("cannot issue the {name} token: {e}"))?;
    Ok(new.token)
}

/// Tokens issued to approvers so far (userName -> token), `approvals` scope, acting as them.
#[derive(Debug, Default)]
struct Approvers(BTreeMap<String, String>);

/// The running hub, for the steps SCIM cannot express.
struct Hub<'a> {
    admin: &'a Admin,
    store: &'a Store,
    rt: &'a tokio::runtime::Runtime,
    url: &'a str,
}

/// What the admin API answered.
struct Answer {
    status: u16,
    body: serde_json::Value,
}

impl Hub<'_> {
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
    ) -> anyhow::Result<Answer> {
        self.rt.block_on(async {
            let mut req = reqwest::Client::new()
                .request(method, format!("{}{path}", self.url))
                .header("Accept", "application/json");
            if let Some(t) = bearer {
                req = req.bearer_auth(t).json(&serde_json::json!({}));
            }
            let resp = req.send().await.context("the hub did not answer")?;
            let status = resp.status().as_u16();
            let body = resp.json().await.unwrap_or(serde_json::Value::Null);
            Ok(Answer { status, body })
        })
    }

    /// The userName of the person the policy names to decide `row` (the subject's manager, the
    /// first owner of the entitlement, the first security approver), if the directory has one.
    fn approver_for(&self, row: &ApprovalRow) -> anyhow::Result<Option<String>> {
        let policy = self.admin.engine.policy.current();
        let err = |e: crate::admin::AdminError| anyhow::anyhow!("{e}");
        let name = match row.level.as_str() {
            "manager" => {
                let (_, doc) = self.admin.find_user(&row.user_id).map_err(err)?;
                match crate::engine::manager_id(&doc) {
                    Some(m) => self.admin.find_user(&m).ok().and_then(|(_, d)| {
                        crate::engine::desired::attr_str(&d, "userName").map(str::to_string)
                    }),
                    None => None,
                }
            }
            "owner" => row
                .entitlement
                .as_deref()
                .and_then(|e| serde_json::from_str::<connectors::Entitlement>(e).ok())
                .and_then(|e| {
                    policy
                        .entitlement_owners(row.connector.as_deref().unwrap_or(""), &e)
                        .into_iter()
                        .next()
                }),
            _ => policy.approvals.security.first().cloned(),
        };
        Ok(name.filter(|n| self.admin.find_user(n).is_ok()))
    }

    /// The legacy access kept for `user_name` by overrides (a mover's overlap window): `=`
    /// lines, with when it goes.
    fn kept_access(&self, user_name: &str) -> anyhow::Result<String> {
        let (id, _) = self
            .admin
            .find_user(user_name)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let kept = in_tx(self.store, |c| approvals::overrides(c, &id))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out = String::new();
        for k in kept {
            let _ = writeln!(
                out,
                "  = {:<10} {user_name:<6} {} kept until {} UTC (overlap of the old role)",
                k.connector,
                crate::engine::notices::entitlement_label(&k.entitlement),
                k.until.format("%Y-%m-%d %H:%M")
            );
        }
        Ok(out)
    }

    /// Why `user_name` has no account on some apps: the profiles they match grant none there
    /// (or the policy's notes say why a grant did not apply).
    fn why_no_account(
        &self,
        user_name: &str,
        apps: &Apps,
        names: &BTreeMap<&str, &str>,
    ) -> anyhow::Result<String> {
        let err = |e: crate::admin::AdminError| anyhow::anyhow!("{e}");
        let (id, doc) = self.admin.find_user(user_name).map_err(err)?;
        let outcome = self.admin.simulate(&id, Some(&doc)).map_err(err)?;
        let desired = &outcome.desired;
        let without: Vec<&str> = apps
            .iter()
            .filter(|(app, _)| {
                !desired
                    .accounts
                    .get(app)
                    .is_some_and(|a| a.exists && a.enabled)
            })
            .filter(|(_, m)| {
                !m.state().accounts.keys().any(|k| {
                    k == user_name || names.get(k.as_str()).is_some_and(|n| *n == user_name)
                })
            })
            .map(|(app, _)| app.as_str())
            .collect();
        let mut out = String::new();
        if !without.is_empty() {
            let profiles = desired.profile_names();
            let _ = writeln!(
                out,
                "  · no account on {}: none of {user_name}'s profiles ({}) grants access there",
                without.join(", "),
                if profiles.is_empty() {
                    "none matched".to_string()
                } else {
                    profiles.join(", ")
                }
            );
        }
        let policy = self.admin.engine.policy.current();
        for app in &without {
            if policy
                .connectors
                .get(*app)
                .is_some_and(|c| c.owners.iter().any(|o| o == user_name))
            {
                let _ = writeln!(
                    out,
                    "  · {user_name} owns {app} in the policy: they decide its owner-level \
                     approvals, which needs no account there"
                );
            }
        }
        for note in &desired.notes {
            let _ = writeln!(out, "  · {note}");
        }
        Ok(out)
    }

    /// A token with the `approvals` scope acting as `user_name` (issued once).
    fn approver_token(&self, approvers: &mut Approvers, user_name: &str) -> anyhow::Result<String> {
        if let Some(t) = approvers.0.get(user_name) {
            return Ok(t.clone());
        }
        let (id, _) = self
            .admin
            .find_user(user_name)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = issue_token(
            self.store,
            &format!("{user_name}-approvals"),
            &["approvals"],
            Some(&id),
        )?;
        approvers.0.insert(user_name.to_string(), t.clone());
        Ok(t)
    }

    /// Steps SCIM cannot express, done through the hub's admin API.
    fn act(
        &self,
        step: &Step,
        approvers: &mut Approvers,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<()> {
        let err = |e: crate::admin::AdminError| anyhow::anyhow!("{e}");
        match step {
            Step::Approve => {
                for a in self.admin.approvals(Some("pending")).map_err(err)? {
                    let what = format!(
                        "{} on {}",
                        a.entitlement
                            .as_deref()
                            .map(crate::engine::notices::entitlement_label)
                            .unwrap_or_else(|| a.kind.to_string()),
                        a.connector.as_deref().unwrap_or("")
                    );
                    let path = format!("/admin/v1/approvals/{}/approve", a.id);
                    // Nobody approves their own access: the requester's own token is refused.
                    let (_, doc) = self.admin.find_user(&a.user_id).map_err(err)?;
                    if let Some(me) = crate::engine::desired::attr_str(&doc, "userName") {
                        let t = self.approver_token(approvers, me)?;
                        let answer = self.request(reqwest::Method::POST, &path, Some(&t))?;
                        writeln!(
                            out,
                            "  {me} tries to approve their own request: {} {}",
                            answer.status,
                            answer.body["detail"].as_str().unwrap_or("")
                        )?;
                    }
                    let Some(by) = self.approver_for(&a)? else {
                        writeln!(out, "  nobody in the directory may decide {what}")?;
                        continue;
                    };
                    let t = self.approver_token(approvers, &by)?;
                    let answer = self.request(reqwest::Method::POST, &path, Some(&t))?;
                    anyhow::ensure!(
                        answer.status == 200,
                        "approving as {by} failed: {} {}",
                        answer.status,
                        answer.body
                    );
                    writeln!(
                        out,
                        "  approved by {by} (as {}, token {}): {what}",
                        answer.body["decided_as"].as_str().unwrap_or("?"),
                        answer.body["decided_by_credential"].as_str().unwrap_or("?"),
                    )?;
                }
            }
            Step::Acknowledge { user_name } => {
                // The manager's copy of the newest mover summary (each recipient gets links
                // addressed to them; security's copy is the other one).
                let policy = self.admin.engine.policy.current();
                let (id, _) = self.admin.find_user(user_name).map_err(err)?;
                let notes = in_tx(self.store, |c| notifications::list(c, Some(&id)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let link = notes
                    .iter()
                    .rev()
                    .filter(|n| n.kind == "mover_summary")
                    .filter(|n| {
                        !n.recipients
                            .iter()
                            .any(|r| policy.notify.security.contains(r))
                    })
                    .find_map(|n| {
                        n.body.lines().find_map(|l| {
                            l.strip_prefix("Acknowledge (remove legacy access now): ")
                                .map(str::to_string)
                        })
                    })
                    .context("no one-click link in the manager's mover summary")?;
                let path = link
                    .find("/admin/v1/links/")
                    .map(|i| link[i..].to_string())
                    .context("malformed link")?;
                // Opening the link changes nothing: it shows what confirming will do.
                let page = self.request(reqwest::Method::GET, &path, None)?;
                writeln!(
                    out,
                    "  the manager opens the signed link: {} (confirm page, nothing done yet)",
                    page.body["message"].as_str().unwrap_or("?")
                )?;
                let done = self.request(reqwest::Method::POST, &path, None)?;
                anyhow::ensure!(
                    done.status == 200,
                    "following the link failed: {}",
                    done.body
                );
                writeln!(
                    out,
                    "  and confirms: {}",
                    done.body["message"].as_str().unwrap_or("?")
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Waits until no operation is pending or running.
fn drain(store: &Store) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    // Give the workers a moment to see the new rows, then poll.
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let counts = crate::jobs::op_counts(store, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let open = counts.get("pending").copied().unwrap_or(0)
            + counts.get("running").copied().unwrap_or(0);
        if open == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the outbox did not drain: {counts:?}"
        );
    }
}

/// Notifications queued since the last step: kind, subject, recipients.
fn print_notifications(
    store: &Store,
    seen: usize,
    ids: &BTreeMap<String, String>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<usize> {
    let all = in_tx(store, |c| notifications::list(c, None)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let names: BTreeMap<&str, &str> = ids.iter().map(|(n, i)| (i.as_str(), n.as_str())).collect();
    for n in all.iter().skip(seen) {
        let to: Vec<&str> = n
            .recipients
            .iter()
            .map(|r| names.get(r.as_str()).copied().unwrap_or(r.as_str()))
            .collect();
        writeln!(
            out,
            "  notification queued: {:?} -> {}",
            n.subject,
            to.join(", ")
        )?;
    }
    Ok(all.len())
}

/// `text` wrapped at `width` columns, each line starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// userName by SCIM id.
fn user_names(ids: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    ids.iter().map(|(n, i)| (i.as_str(), n.as_str())).collect()
}

/// One account as the demo shows it: enabled or not, and its entitlements as people read them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccountView {
    enabled: bool,
    entitlements: std::collections::BTreeSet<String>,
}

/// Every account of every app, by (app, account key).
type Snapshot = BTreeMap<(String, String), AccountView>;

fn snapshot(apps: &Apps) -> Snapshot {
    let mut out = Snapshot::new();
    for (name, app) in apps {
        for (key, a) in &app.state().accounts {
            let entitlements = a
                .entitlements
                .iter()
                .map(|e| match &e.role {
                    Some(r) => format!("{}:{} (role {r})", e.kind, e.id),
                    None => format!("{}:{}", e.kind, e.id),
                })
                .collect();
            out.insert(
                (name.clone(), key.clone()),
                AccountView {
                    enabled: a.enabled,
                    entitlements,
                },
            );
        }
    }
    out
}

/// What a step changed in the apps: `+` granted, `-` revoked, one line per app and person.
fn changes(before: &Snapshot, after: &Snapshot, names: &BTreeMap<&str, &str>) -> String {
    let who = |key: &str| names.get(key).copied().unwrap_or(key).to_string();
    let mut lines = Vec::new();
    let keys: std::collections::BTreeSet<&(String, String)> =
        before.keys().chain(after.keys()).collect();
    for key in keys {
        let (app, account) = key;
        let person = who(account);
        let old = before.get(key);
        let new = after.get(key);
        let mut plus: Vec<String> = Vec::new();
        let mut minus: Vec<String> = Vec::new();
        match (old, new) {
            (None, Some(n)) => {
                plus.push("account".into());
                plus.extend(n.entitlements.iter().cloned());
            }
            (Some(o), None) => {
                minus.push("account (deleted)".into());
                minus.extend(o.entitlements.iter().cloned());
            }
            (Some(o), Some(n)) => {
                if o.enabled && !n.enabled {
                    minus.push("account (disabled)".into());
                } else if !o.enabled && n.enabled {
                    plus.push("account (enabled again)".into());
                }
                plus.extend(n.entitlements.difference(&o.entitlements).cloned());
                minus.extend(o.entitlements.difference(&n.entitlements).cloned());
            }
            (None, None) => {}
        }
        if !plus.is_empty() {
            lines.push(format!("  + {app:<10} {person:<6} {}", plus.join(", ")));
        }
        if !minus.is_empty() {
            lines.push(format!("  - {app:<10} {person:<6} {}", minus.join(", ")));
        }
    }
    if lines.is_empty() {
        return "  (no access changed)\n".into();
    }
    lines.join("\n") + "\n"
}

/// One row per app, one column per person: the entitlements they hold (`·` no account,
/// `disabled` for a disabled account).
pub fn table(apps: &Apps, ids: &BTreeMap<String, String>) -> String {
    // Every person the HRIS pushed, even one without any account, then any other account.
    let mut people: Vec<String> = ids.keys().cloned().collect();
    for (_, app) in apps {
        for key in app.state().accounts.keys() {
            if !people.contains(key) {
                people.push(key.clone());
            }
        }
    }
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("app".to_string())
        .chain(people.iter().cloned())
        .collect()];
    for (name, app) in apps {
        let state = app.state();
        let mut row = vec![name.clone()];
        for p in &people {
            row.push(match state.accounts.get(p) {
                None => "·".into(),
                Some(a) if !a.enabled => "disabled".into(),
                Some(a) if a.entitlements.is_empty() => "(account)".into(),
                Some(a) => a
                    .entitlements
                    .iter()
                    .map(|e| match &e.role {
                        Some(r) => format!("{}:{}", e.id, r),
                        None => e.id.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in &rows {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
