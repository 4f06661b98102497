//! Post-change verification of many leavers across the stand-ins (issue 14's benchmark): the
//! scimhub binary with four connectors — AWS IAM (moto_server behind the recording proxy,
//! signature checking on), LDAP (slapd over StartTLS), SCIM (python scim2-server) and the
//! in-process memory connector — and `[verification] delay = "1s"`. N joiners are provisioned
//! everywhere, then N leavers are sent (16 SCIM requests in flight); every leaver's plan is
//! then read back on all four systems. Reported, from the hub's own tables:
//!
//! * total: from the first leaver request to the last verification recorded;
//! * the verification phase: from the last leaver operation done to the last verification;
//! * per leaver: the time from its plan's last operation done to its last system verified
//!   (p50/p90/p99/max; it includes the 1 s delay), and the phase's time per leaver;
//! * per system: verifications, outcomes, and the span of their `checked_at`.
//!
//! Not a test: no assertion on the figures (it fails only when something is not verified).
//! Run by `scripts/bench-verify.sh` (LEAVERS, default 1000).

#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

#[path = "../../connectors/tests/support/scim2_standin.rs"]
mod scim2_standin;
#[path = "../../connectors/tests/support_standins/mod.rs"]
mod support_standins;
#[path = "../../tests/lifecycle_e2e/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scim_server::admin::in_tx;
use scim_server::store::outbox::OutboxStatus;
use scim_server::store::{outbox, verifications};
use serde_json::json;
use support_standins::stacks::{start_moto, Slapd};
use world::*;

const IN_FLIGHT: usize = 16;

/// Per system: outcomes counted, first and last `checked_at`.
type SystemChecks<'a> = (BTreeMap<&'a str, usize>, DateTime<Utc>, DateTime<Utc>);

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn policy(iam: &str, ldap_port: u16, ca: &str, scim2: &str) -> String {
    format!(
        r#"
[[connector]]
name = "aws"
type = "aws_iam"
credentials = {{ access_key_id = {{ env = "B_AWS_KEY_ID" }}, secret_access_key = {{ env = "B_AWS_SECRET" }} }}
[connector.settings]
endpoint = "{iam}"
path = "/scimhub/"
timeout_ms = 30000

[[connector]]
name = "dir"
type = "ldap"
credentials = {{ bind_password = {{ env = "B_LDAP_PW" }} }}
[connector.settings]
url = "ldap://127.0.0.1:{ldap_port}"
tls = "starttls"
ca_file = "{ca}"
bind_dn = "{LDAP_ADMIN}"
search_base = "dc=example,dc=com"
users_dn = "ou=people,dc=example,dc=com"
groups_dn = "ou=groups,dc=example,dc=com"
disable = "move_to_ou"
disabled_ou = "ou=disabled,dc=example,dc=com"
placeholder_member = "cn=placeholder,ou=people,dc=example,dc=com"
timeout_ms = 30000

[[connector]]
name = "apps"
type = "scim"
settings = {{ base_url = "{scim2}", timeout_ms = 30000 }}
credentials = {{ token = {{ env = "B_SCIM2_TOKEN" }} }}

[[connector]]
name = "mem"
type = "memory"

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [
  {{ connector = "aws" }},
  {{ connector = "dir" }},
  {{ connector = "dir", kind = "group", id = "engineering" }},
  {{ connector = "apps" }},
  {{ connector = "mem" }},
  {{ connector = "mem", kind = "role", id = "staff" }},
]

[verification]
delay = "1s"
"#
    )
}

/// Sends `f(i)` for every i in 0..n, `IN_FLIGHT` at a time.
async fn fan_out<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        if set.len() >= IN_FLIGHT {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(f(i));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// Waits until no operation is pending or running; panics on a failed one.
async fn settle(store: &scim_server::store::Store, timeout: Duration) {
    let start = Instant::now();
    loop {
        let rows = in_tx(store, |c| outbox::list_ops(c, None, None, 10_000_000)).unwrap();
        if let Some(f) = rows.iter().find(|r| r.status == OutboxStatus::Failed) {
            panic!("failed: {} {} {:?}", f.connector, f.op, f.last_error);
        }
        let open = rows
            .iter()
            .filter(|r| matches!(r.status, OutboxStatus::Pending | OutboxStatus::Running))
            .count();
        if open == 0 && !rows.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{open} operations open after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n: usize = std::env::var("LEAVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = support_standins::Scratch::new("bench-verify");
    let moto = start_moto().await;
    let slapd = tokio::task::spawn_blocking(Slapd::start).await.unwrap();
    let scim2 = scim2_standin::start("bench-scim2-token").await;
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        policy(
            &moto.proxy.url(),
            slapd.port,
            &slapd.ca().display().to_string(),
            &scim2.base_url,
        ),
    )
    .unwrap();
    let policy_arg = policy_path.display().to_string();
    let hub = Hub::start(
        dir.path(),
        "hub",
        HUB_TOKEN,
        &["--policy", &policy_arg],
        &[
            ("B_AWS_KEY_ID", moto.key_id.clone()),
            ("B_AWS_SECRET", moto.secret.clone()),
            ("B_LDAP_PW", LDAP_ADMIN_PW.to_string()),
            ("B_SCIM2_TOKEN", scim2.token.clone()),
        ],
    );
    let scim = Scim::new(&hub.base, HUB_TOKEN);
    let store = hub.store();

    // ---- joiners, provisioned everywhere ---------------------------------------------------
    let t = Instant::now();
    let ids = std::sync::Arc::new(std::sync::Mutex::new(vec![String::new(); n]));
    {
        let ids = ids.clone();
        let scim = scim.clone();
        fan_out(n, move |i| {
            let (scim, ids) = (scim.clone(), ids.clone());
            async move {
                let name = format!("vf{i:05}");
                let u = scim
                    .post("/Users", person(&name, "Verify", &name, "Engineering"))
                    .await;
                ids.lock().unwrap()[i] = u["id"].as_str().unwrap().to_owned();
            }
        })
        .await;
    }
    settle(&store, Duration::from_secs(3600)).await;
    println!(
        "{n} joiners provisioned on 4 systems in {:.1?}",
        t.elapsed()
    );

    // ---- leavers ---------------------------------------------------------------------------
    let ids: Vec<String> = ids.lock().unwrap().clone();
    let first_request: DateTime<Utc> = Utc::now();
    let t = Instant::now();
    {
        let scim = scim.clone();
        let ids = ids.clone();
        fan_out(n, move |i| {
            let (scim, id) = (scim.clone(), ids[i].clone());
            async move {
                scim.patch(
                    &format!("/Users/{id}"),
                    json!([{ "op": "replace", "path": "active", "value": false }]),
                )
                .await;
            }
        })
        .await;
    }
    println!("{n} leaver requests answered in {:.1?}", t.elapsed());

    // ---- until every leaver plan is verified on every system --------------------------------
    let systems = 4usize;
    let checks = loop {
        let rows = in_tx(&store, |c| verifications::list(c, None)).unwrap();
        let leaver: Vec<_> = rows.into_iter().filter(|v| v.event == "leaver").collect();
        if leaver.len() >= n * systems {
            break leaver;
        }
        assert!(
            t.elapsed() < Duration::from_secs(7200),
            "{} of {} verifications after {:?}",
            leaver.len(),
            n * systems,
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ops: Vec<_> = in_tx(&store, |c| outbox::list_ops(c, None, None, 10_000_000))
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "leaver")
        .collect();
    let ts =
        |s: &str| -> DateTime<Utc> { DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc) };
    let last_check = checks.iter().map(|v| ts(&v.checked_at)).max().unwrap();
    let last_op = ops.iter().filter_map(|r| r.finished).max().unwrap();
    let total = (last_check - first_request).num_milliseconds() as f64 / 1000.0;
    let phase = (last_check - last_op).num_milliseconds() as f64 / 1000.0;

    // per leaver: its plan's last op done -> its last system verified
    let mut done_by_plan: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for r in &ops {
        if let Some(f) = r.finished {
            let e = done_by_plan.entry(&r.plan_id).or_insert(f);
            *e = (*e).max(f);
        }
    }
    let mut checked_by_plan: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    let mut per_system: BTreeMap<&str, SystemChecks> = BTreeMap::new();
    for v in &checks {
        let at = ts(&v.checked_at);
        let e = checked_by_plan.entry(&v.plan_id).or_insert(at);
        *e = (*e).max(at);
        let s = per_system
            .entry(&v.connector)
            .or_insert((BTreeMap::new(), at, at));
        *s.0.entry(&v.outcome).or_default() += 1;
        s.1 = s.1.min(at);
        s.2 = s.2.max(at);
    }
    let mut lat: Vec<f64> = checked_by_plan
        .iter()
        .filter_map(|(p, c)| {
            done_by_plan
                .get(p)
                .map(|d| (*c - *d).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "verification of {n} leavers on {systems} systems ({} checks):",
        checks.len()
    );
    println!(
        "  total, first leaver request -> last verification: {total:.1} s ({:.1} ms per leaver)",
        total * 1000.0 / n as f64
    );
    println!(
        "  verification phase, last leaver operation done -> last verification: {phase:.1} s ({:.1} ms per leaver)",
        phase * 1000.0 / n as f64
    );
    println!(
        "  per leaver, its last operation done -> last system verified (incl. the 1 s delay): \
         p50 {:.1} s  p90 {:.1} s  p99 {:.1} s  max {:.1} s",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );
    let mut all_verified = true;
    for (sys, (outcomes, first, last)) in &per_system {
        let span = (*last - *first).num_milliseconds() as f64 / 1000.0;
        println!(
            "  {sys:<5} {outcomes:?}, checked over {span:.1} s ({:.1} ms per check)",
            span * 1000.0 / outcomes.values().sum::<usize>().max(1) as f64
        );
        all_verified &= outcomes.keys().all(|o| *o == "verified");
    }
    assert!(all_verified, "some system was not verified");
}
