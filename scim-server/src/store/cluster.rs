//! Several nodes on one PostgreSQL: the wake-up listener, the node registry with the policy
//! each node runs, once-per-period schedules, and the blast-radius guard's lock.
//!
//! Wake-ups travel as PostgreSQL notifications. The outbox and timer triggers of the
//! `cluster` migration send them from the transaction that queues work; a policy load is
//! announced with [`announce_node`]. A [`Listener`] is a dedicated connection (outside the pool,
//! so a pool under load never delays a wake-up and a listener never holds a pooled connection)
//! that `LISTEN`s on [`CHANNELS`].
//!
//! Why diesel's own `PgConnection::notifications_iter` rather than another client: it is the
//! libpq connection the store already uses (same URL, TLS, `sslmode`, no second PostgreSQL
//! stack), and reading notifications through it is `PQconsumeInput` + `PQnotifies`, a local read
//! of what already arrived on the socket, no round trip. It does not block until one arrives, so
//! [`Listener::wait`] checks every few milliseconds (a syscall, not a query); waiting on the
//! socket itself would need its file descriptor, which diesel does not expose (and `unsafe` FFI
//! into libpq is not allowed here). tokio-postgres would wait on the socket but brings a second
//! PostgreSQL client with its own TLS set-up for one connection.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{Nullable, Text};
use diesel::{Connection, PgConnection, Queryable, RunQueryDsl};
use serde::Serialize;

use super::conn::DbUrl;
use super::sql::Sql;
use super::{fmt_ts, parse_ts, DbConnection, Store};
use crate::error::{HubError, HubResult};

/// Operations became runnable (new, released, or due earlier).
pub const OUTBOX_CHANNEL: &str = "scimhub_outbox";
/// A timer was queued already due.
pub const TIMERS_CHANNEL: &str = "scimhub_timers";
/// A node loaded a policy; the payload is its SHA-256.
pub const POLICY_CHANNEL: &str = "scimhub_policy";
/// A node whose row was not refreshed for this long is gone (three missed heartbeats).
pub const ALIVE_SECS: i64 = 15;
/// Every channel a node listens on.
pub const CHANNELS: [&str; 3] = [OUTBOX_CHANNEL, TIMERS_CHANNEL, POLICY_CHANNEL];

/// A notification received: channel and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

/// A dedicated PostgreSQL connection listening on [`CHANNELS`].
pub struct Listener {
    conn: PgConnection,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

impl Store {
    /// A new listener on this store's database; `None` on SQLite (one process: wake-ups stay in
    /// memory).
    pub fn listener(&self) -> HubResult<Option<Listener>> {
        let DbUrl::Postgres(url) = &self.inner.url else {
            return Ok(None);
        };
        // The pool's client settings: a connect timeout, keepalives, no TLS on loopback.
        let mut conn = PgConnection::establish(&self.inner.pg.url_with_client_settings(url))
            .map_err(|e| HubError::Backend(format!("listener connection: {e}")))?;
        let listen: String = CHANNELS.iter().map(|c| format!("LISTEN {c};")).collect();
        conn.batch_execute(&listen)?;
        Ok(Some(Listener { conn }))
    }
}

impl Listener {
    /// The notifications that arrived so far (none: an empty list); an error when the
    /// connection is gone.
    pub fn drain(&mut self) -> HubResult<Vec<Notification>> {
        let mut out = Vec::new();
        for n in self.conn.notifications_iter() {
            let n = n?;
            out.push(Notification {
                channel: n.channel,
                payload: n.payload,
            });
        }
        Ok(out)
    }

    /// Waits up to `timeout` for notifications, checking every `every`; returns what arrived
    /// (empty at the timeout).
    pub fn wait(&mut self, timeout: Duration, every: Duration) -> HubResult<Vec<Notification>> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.drain()?;
            if !got.is_empty() || Instant::now() >= end {
                return Ok(got);
            }
            std::thread::sleep(every);
        }
    }

    /// A round trip, so a connection that died silently (no FIN: a failover, a dropped NAT
    /// entry) is found out.
    pub fn ping(&mut self) -> HubResult<()> {
        self.conn.batch_execute("SELECT 1")?;
        Ok(())
    }
}

/// A node as registered in `cluster_nodes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub node_id: String,
    pub started: DateTime<Utc>,
    /// Its last heartbeat.
    pub seen: DateTime<Utc>,
    /// The SHA-256 of the policy file it runs (`None`: no policy).
    pub policy_sha256: Option<String>,
    /// When it loaded that policy.
    pub policy_loaded: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
struct NodeRecord {
    node_id: String,
    started: String,
    seen: String,
    policy_sha256: Option<String>,
    policy_loaded: Option<String>,
}

/// Records this node's heartbeat and the policy it runs. With `announce` (it loaded a policy
/// whose hash differs from the one it ran), `policy_loaded` moves to `now` and, on PostgreSQL,
/// the hash is announced to every node in the same transaction.
pub fn announce_node(
    c: &mut DbConnection,
    node_id: &str,
    started: DateTime<Utc>,
    policy_sha256: Option<&str>,
    announce: bool,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let sha = policy_sha256.map(str::to_string);
    let mut q = Sql::<()>::new(
        "INSERT INTO cluster_nodes (node_id, started, seen, policy_sha256, policy_loaded) VALUES (",
    );
    q.text(node_id)
        .push(", ")
        .text(fmt_ts(started))
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .bind(super::sql::Bind::OptText(sha.clone()))
        .push(", ")
        .text(fmt_ts(now))
        .push(") ON CONFLICT (node_id) DO UPDATE SET seen = excluded.seen, policy_sha256 = excluded.policy_sha256");
    if announce {
        q.push(", policy_loaded = excluded.policy_loaded");
    }
    q.execute(c)?;
    if let (true, Some(sha), DbConnection::Postgresql(_)) = (announce, sha, &*c) {
        let mut n = Sql::<()>::new("SELECT pg_notify(");
        n.text(POLICY_CHANNEL).push(", ").text(sha).push(")");
        // pg_notify returns void: read as a statement, not rows
        n.execute(c)?;
    }
    Ok(())
}

/// Node `node_id` stops: its row goes, so the others stop counting it as alive at once (a policy
/// change waits for every live node to run the new file) rather than after [`ALIVE_SECS`].
pub fn leave(c: &mut DbConnection, node_id: &str) -> HubResult<usize> {
    let mut q = Sql::<()>::new("DELETE FROM cluster_nodes WHERE node_id = ");
    q.text(node_id);
    Ok(q.execute(c)?)
}

/// Every registered node, newest policy load first; nodes not seen since `alive_since` are left
/// out (and their rows deleted once a day old).
pub fn nodes(c: &mut DbConnection, alive_since: DateTime<Utc>) -> HubResult<Vec<Node>> {
    let mut d = Sql::<()>::new("DELETE FROM cluster_nodes WHERE seen < ");
    d.text(fmt_ts(alive_since - chrono::Duration::days(1)));
    d.execute(c)?;
    let mut q = Sql::<(Text, Text, Text, Nullable<Text>, Nullable<Text>)>::new(
        "SELECT node_id, started, seen, policy_sha256, policy_loaded FROM cluster_nodes WHERE seen >= ",
    );
    q.text(fmt_ts(alive_since))
        .push(" ORDER BY policy_loaded IS NULL, policy_loaded DESC, node_id");
    let ts = |s: &str| {
        parse_ts(s).ok_or_else(|| HubError::Backend(format!("bad timestamp in cluster_nodes: {s}")))
    };
    q.load::<NodeRecord>(c)?
        .into_iter()
        .map(|r| {
            Ok(Node {
                started: ts(&r.started)?,
                seen: ts(&r.seen)?,
                policy_loaded: r.policy_loaded.as_deref().map(ts).transpose()?,
                node_id: r.node_id,
                policy_sha256: r.policy_sha256,
            })
        })
        .collect()
}

/// Whether this node takes the period of schedule `name` that is due at `now`: true for exactly
/// one caller across nodes per period (compare-and-set of `next_at` to `next`); the first call
/// ever takes it.
pub fn take_period(
    c: &mut DbConnection,
    name: &str,
    owner: &str,
    now: DateTime<Utc>,
    next: DateTime<Utc>,
) -> HubResult<bool> {
    let mut ins = Sql::<()>::new("INSERT INTO cluster_schedules (name, next_at, owner) VALUES (");
    ins.text(name)
        .push(", ")
        .text(fmt_ts(now))
        .push(", NULL) ON CONFLICT (name) DO NOTHING");
    ins.execute(c)?;
    let mut q = Sql::<()>::new("UPDATE cluster_schedules SET next_at = ");
    q.text(fmt_ts(next))
        .push(", owner = ")
        .text(owner)
        .push(" WHERE name = ")
        .text(name)
        .push(" AND next_at <= ")
        .text(fmt_ts(now));
    Ok(q.execute(c)? > 0)
}

/// Serializes the blast-radius guard across nodes for the rest of the transaction (PostgreSQL:
/// a transaction-level advisory lock; SQLite has one writer). Without it two nodes (or two
/// connections of one node) planning leavers at once each count the losers committed before
/// either, and together take more access away than the guard allows, or open two holds.
pub fn lock_blast_guard(c: &mut DbConnection) -> HubResult<()> {
    if let DbConnection::Postgresql(_) = c {
        // a fixed key of this lock's own (ASCII "scimblst")
        Sql::<()>::new("SELECT pg_advisory_xact_lock(8314050736735678324)").execute(c)?;
    }
    Ok(())
}

/// Serializes the opening of `client`'s window burst (onboarding) for the rest of the
/// transaction: a PostgreSQL transaction-level advisory lock on a hash of the client, in a key
/// space of its own (the two-key form, class 1935895921); SQLite has one writer. Unlike a
/// /Bulk's or an import's burst, a window burst has no key a unique index could hold (a client
/// may have an older one still open beside the current one), so without it two nodes' joiners
/// of one client, neither seeing the other's uncommitted burst, each opened one, and the
/// confirmation came as two mails.
pub fn lock_client_window(c: &mut DbConnection, client: &str) -> HubResult<()> {
    advisory_xact_lock_on(c, 1935895921, client)
}

/// Serializes plans of the user `user_id` for the rest of the transaction where no row can be
/// locked (the user is deleted): a PostgreSQL transaction-level advisory lock on a hash of the
/// id, in a key space of its own (the two-key form, class "scimplan"); SQLite has one writer.
pub fn lock_user_plans(c: &mut DbConnection, user_id: &str) -> HubResult<()> {
    advisory_xact_lock_on(c, 1935895920, user_id)
}

/// A PostgreSQL transaction-level advisory lock on `key`'s hash in the key space `class` (the
/// two-key form); nothing on SQLite, whose one writer already serializes.
fn advisory_xact_lock_on(c: &mut DbConnection, class: i32, key: &str) -> HubResult<()> {
    if let DbConnection::Postgresql(_) = c {
        let mut q = Sql::<()>::new("SELECT pg_advisory_xact_lock(");
        q.push(&class.to_string()).push(", hashtext(");
        q.text(key).push("))");
        q.execute(c)?;
    }
    Ok(())
}
