//! The policy in force, and its reload on SIGHUP or file change.
//!
//! [`PolicyHandle`] holds an `Arc<Policy>` that readers clone cheaply; a reload parses the file
//! and swaps it in only when it is valid, so a bad edit leaves the last good policy in force
//! (and is logged with its line-precise errors).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::{Policy, PolicyError};

/// The current policy, shared by the engine, the workers and the admin API.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    inner: Arc<RwLock<State>>,
}

#[derive(Debug)]
struct State {
    policy: Arc<Policy>,
    path: Option<PathBuf>,
    mtime: Option<SystemTime>,
    generation: u64,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl PolicyHandle {
    /// A handle on a fixed policy (tests, simulations).
    pub fn fixed(policy: Policy) -> Self {
        PolicyHandle {
            inner: Arc::new(RwLock::new(State {
                policy: Arc::new(policy),
                path: None,
                mtime: None,
                generation: 1,
            })),
        }
    }

    /// Loads `path`; fails when the first load is invalid.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let policy = Policy::load(path)?;
        Ok(PolicyHandle {
            inner: Arc::new(RwLock::new(State {
                policy: Arc::new(policy),
                path: Some(path.to_path_buf()),
                mtime: mtime(path),
                generation: 1,
            })),
        })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .policy
            .clone()
    }

    /// The file the policy was loaded from (`None` for a fixed policy).
    pub fn path(&self) -> Option<PathBuf> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone()
    }

    /// Increments on every successful reload (the engine rebuilds connectors when it changes).
    pub fn generation(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// Replaces the policy (tests, admin).
    pub fn set(&self, policy: Policy) {
        let mut s = self.inner.write().unwrap_or_else(|p| p.into_inner());
        s.policy = Arc::new(policy);
        s.generation += 1;
    }

    /// Re-reads the file. On error the old policy stays in force and the error is returned.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let Some(path) = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone()
        else {
            return Ok(false);
        };
        let stamp = mtime(&path);
        let result = Policy::load(&path);
        let mut s = self.inner.write().unwrap_or_else(|p| p.into_inner());
        s.mtime = stamp;
        match result {
            Ok(p) => {
                s.policy = Arc::new(p);
                s.generation += 1;
                tracing::info!(path = %path.display(), generation = s.generation, "policy reloaded");
                Ok(true)
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload rejected; the previous policy stays in force");
                Err(e)
            }
        }
    }

    /// Reloads when the file's modification time changed since the last (attempted) load.
    pub fn reload_if_changed(&self) -> Result<bool, PolicyError> {
        let changed = {
            let s = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match &s.path {
                Some(p) => mtime(p) != s.mtime,
                None => false,
            }
        };
        if changed {
            self.reload()
        } else {
            Ok(false)
        }
    }

    /// Watches the file: polls its mtime every `every`, and reloads on SIGHUP (Unix). Runs on the
    /// current tokio runtime until the runtime stops.
    pub fn spawn_watcher(&self, every: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = me.reload_if_changed();
            }
        });
        #[cfg(unix)]
        {
            let me = self.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    tracing::warn!(
                        "cannot listen for SIGHUP; the policy reloads on file change only"
                    );
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the policy");
                    let _ = me.reload();
                }
            });
        }
    }
}
