//! The audit chain at scale (issue 15's benchmark): appends N entries (default 1,000,000) to
//! a fresh SQLite database through `store::audit_chain::append`, in transactions of 10,000 as
//! a busy hub's group commits would, and reports the append cost per entry. The database is
//! left at the path given, for `scripts/bench-audit.sh` to time `scimhub audit verify` over it
//! (time and peak memory of that separate process).
//!
//!     bench_audit DB_FILE [N]
//!
//! Not a test: no assertion on the figures.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use chrono::{Duration, Utc};
use serde_json::json;

use scim_server::admin::in_tx;
use scim_server::store::{audit_chain, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: bench_audit DB_FILE [N]"))?;
    let n: i64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let store = Store::open(&format!("sqlite://{path}")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = Utc::now() - Duration::days(30);
    let batch = 10_000i64;
    let t = Instant::now();
    let mut written = 0i64;
    while written < n {
        let upto = (written + batch).min(n);
        in_tx(&store, |c| {
            for i in written..upto {
                let user = format!("user-{:07}", i % 50_000);
                let detail = json!({
                    "request_id": format!("req-{i}"),
                    "resource": "User",
                    "changed": ["active", "title"],
                    "client": "okta",
                });
                audit_chain::append(
                    c,
                    &audit_chain::NewEntry {
                        at: start + Duration::milliseconds(i * 50),
                        actor: "okta",
                        user_id: &user,
                        connector: (i % 3 == 0).then_some("github"),
                        action: if i % 2 == 0 {
                            "scim_write"
                        } else {
                            "operation"
                        },
                        outcome: "done",
                        detail: &detail,
                    },
                )?;
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        written = upto;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "appended {n} entries in {secs:.1} s: {:.1} µs per entry ({:.0} entries/s), transactions of {batch}",
        secs * 1e6 / n as f64,
        n as f64 / secs
    );
    Ok(())
}
