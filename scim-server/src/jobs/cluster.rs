//! What makes several nodes on one PostgreSQL behave as one hub (docs/deployment.md, "Several
//! nodes"):
//!
//! - **Wake-ups.** A listener thread keeps a dedicated connection `LISTEN`ing
//!   ([`crate::store::cluster::Listener`]): an outbox notification wakes this node's idle
//!   workers, a timer notification its timer loop, at once instead of at their next poll (the
//!   polls stay as the safety net). When the connection drops it reconnects on its own (backoff
//!   up to 5 s, a ping every 5 s finds a connection that died silently) and then wakes
//!   everything once, since notifications sent meanwhile were lost.
//! - **Policy.** Every node registers in `cluster_nodes` with the SHA-256 of the policy file it
//!   runs (a heartbeat every few seconds). When this node loads a policy whose hash differs from
//!   the one it ran (file change, SIGHUP, or an announcement), the new hash is announced through
//!   the database; every node that hears it and runs another hash re-reads its own file at once.
//!   A node whose file still differs keeps its own policy, logs it and shows it in
//!   `GET /admin/v1/cluster` (`matches_cluster: false`): divergence is reported, never silent,
//!   and never fixed by copying a policy between nodes (each file is the operator's).
//!
//! SQLite has one node: no listener; the heartbeat row still shows the policy hash.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::Utc;

use crate::engine::Engine;
use crate::store::cluster::{self, Notification, OUTBOX_CHANNEL, POLICY_CHANNEL, TIMERS_CHANNEL};
use crate::store::Store;

/// How often a node refreshes its `cluster_nodes` row (a node not seen for
/// [`cluster::ALIVE_SECS`] is no longer listed).
pub(crate) const HEARTBEAT: StdDuration = StdDuration::from_secs(5);
/// How often the listener reads what arrived on its socket (a local read, no round trip).
const CHECK_EVERY: StdDuration = StdDuration::from_millis(10);

/// The hash this node's policy runs with, shared by the heartbeat and the listener.
type Running = Arc<Mutex<Option<String>>>;

/// Whether a process left the cluster: set by [`Membership::leave`]; the heartbeat writes under
/// this lock and stops once it is set, so no beat in flight puts the row back after it went.
pub type Left = Arc<Mutex<bool>>;

/// This process's row in `cluster_nodes`: written by the heartbeat until [`Membership::leave`].
#[derive(Clone)]
pub struct Membership {
    store: Store,
    node_id: String,
    left: Left,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Membership {
    pub fn new(store: Store, node_id: String, left: Left) -> Self {
        Membership {
            store,
            node_id,
            left,
        }
    }

    /// The node stops (a graceful shutdown): its row goes at once, so a node started in its
    /// place with an edited policy file need not wait for this one to age out before the cluster
    /// re-plans under the new file. A node that dies unannounced still ages out after
    /// [`cluster::ALIVE_SECS`].
    pub fn leave(&self) {
        // Set under the lock the heartbeat writes under, so a beat in flight has finished and
        // none starts; released before the delete, so a database that does not answer holds
        // up this exit by its own pool timeout only, with no beat queued behind it.
        *self.left.lock().unwrap_or_else(|p| p.into_inner()) = true;
        match self.store.write_tx(|c, _| cluster::leave(c, &self.node_id)) {
            Ok(_) => tracing::info!(node = %self.node_id, "left the cluster"),
            Err(e) => {
                tracing::warn!(node = %self.node_id, error = %e, "cannot remove this node from cluster_nodes; it ages out")
            }
        }
    }
}

/// Starts the heartbeat (on the current runtime) and, on PostgreSQL, the listener thread.
pub fn spawn(engine: Arc<Engine>, membership: Membership) {
    let running: Running = Arc::default();
    let store = membership.store.clone();
    {
        let (engine, running) = (engine.clone(), running.clone());
        tokio::spawn(heartbeat(engine, membership, running));
    }
    if store.is_sqlite() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("scimhub-listen".into())
        .spawn(move || listen(&store, &engine, &running));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the notification listener; workers wake by their poll only");
    }
}

/// Keeps this node's row current and announces each new policy hash.
async fn heartbeat(engine: Arc<Engine>, membership: Membership, running: Running) {
    let node_id = membership.node_id.clone();
    let started = Utc::now();
    let mut generation = 0u64;
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(StdDuration::from_millis(100));
    loop {
        tick.tick().await;
        let due = last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if engine.policy.generation() == generation && !due {
            continue;
        }
        // The generation and the hash of the bytes it was parsed from, read together (the file
        // may have changed again since).
        let status = engine.policy.status();
        let g = status.generation;
        let sha = if g != generation {
            status.sha256
        } else {
            running.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let announce = {
            let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *r != sha || last_beat.is_none();
            *r = sha.clone();
            changed
        };
        let member = membership.clone();
        let sha_for_tx = sha.clone();
        let written = tokio::task::spawn_blocking(move || {
            let left = member.left.lock().unwrap_or_else(|p| p.into_inner());
            if *left {
                return None;
            }
            Some(member.store.write_tx(|c, _| {
                let now = Utc::now();
                let sha = sha_for_tx.as_deref();
                cluster::announce_node(c, &member.node_id, started, sha, announce, now)
            }))
        })
        .await;
        match written {
            Ok(None) => return,
            Ok(Some(Ok(()))) => {
                generation = g;
                last_beat = Some(tokio::time::Instant::now());
                if announce {
                    tracing::info!(node = %node_id, policy_sha256 = sha.as_deref().unwrap_or("none"),
                        "policy announced to the cluster");
                }
            }
            Ok(Some(Err(e))) => {
                // announced again at the next round (running is cleared so it counts as new)
                *running.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::warn!(error = %e, "cannot record this node in cluster_nodes");
                tokio::time::sleep(StdDuration::from_secs(1)).await;
            }
            Err(e) => tracing::warn!(error = %e, "cluster heartbeat task failed"),
        }
    }
}

/// The listener loop: connect, wait for notifications, reconnect when the connection fails.
fn listen(store: &Store, engine: &Engine, running: &Running) {
    let mut backoff = StdDuration::from_millis(250);
    loop {
        let mut listener = match store.listener() {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "notification listener cannot connect; workers wake by their poll meanwhile");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(StdDuration::from_secs(5));
                continue;
            }
        };
        backoff = StdDuration::from_millis(250);
        tracing::info!("notification listener connected");
        // whatever was announced while this node was not listening
        engine.wake_workers();
        engine.timer_wake.notify_waiters();
        catch_up_policy(store, engine, running);
        let err = loop {
            match listener.wait(HEARTBEAT, CHECK_EVERY) {
                Ok(got) if got.is_empty() => {
                    if let Err(e) = listener.ping() {
                        break e;
                    }
                }
                Ok(got) => dispatch(engine, running, &got),
                Err(e) => break e,
            }
        };
        tracing::warn!(error = %err, "notification listener lost its connection; reconnecting");
    }
}

/// Acts on a batch of notifications: each kind once however many arrived.
fn dispatch(engine: &Engine, running: &Running, got: &[Notification]) {
    if got.iter().any(|n| n.channel == OUTBOX_CHANNEL) {
        engine.wake_workers();
    }
    if got.iter().any(|n| n.channel == TIMERS_CHANNEL) {
        engine.timer_wake.notify_waiters();
    }
    if let Some(n) = got.iter().rev().find(|n| n.channel == POLICY_CHANNEL) {
        follow_policy(engine, running, &n.payload);
    }
}

/// Another node loaded the policy `announced`: when this node runs another one, re-read its own
/// file (it may have been deployed to every node); report when it still differs.
fn follow_policy(engine: &Engine, running: &Running, announced: &str) {
    let mine = running.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // None: this node has not recorded its own policy yet (its heartbeat announces it)
    if mine.is_none() || mine.as_deref() == Some(announced) || engine.policy.path().is_none() {
        return;
    }
    let on_disk = engine.policy.file_sha256();
    if on_disk != mine {
        tracing::info!(
            announced,
            "another node loaded a new policy; reloading this node's file"
        );
        let _ = engine.policy.reload();
    }
    if on_disk.as_deref() != Some(announced) {
        tracing::warn!(
            cluster_policy_sha256 = announced,
            node_policy_sha256 = on_disk.as_deref().unwrap_or("none"),
            "this node's policy file differs from the one the cluster loaded last; \
             it keeps its own (see GET /admin/v1/cluster)"
        );
    }
}

/// After (re)connecting: follow the newest policy announced while this node was not listening.
fn catch_up_policy(store: &Store, engine: &Engine, running: &Running) {
    let since = Utc::now() - chrono::Duration::seconds(cluster::ALIVE_SECS);
    match store.write_tx(|c, _| cluster::nodes(c, since)) {
        Ok(nodes) => {
            if let Some(sha) = nodes.into_iter().find_map(|n| n.policy_sha256) {
                follow_policy(engine, running, &sha);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the cluster's nodes"),
    }
}
