//! The policy in force, and its reload on SIGHUP or file change.
//!
//! [`PolicyHandle`] holds an `Arc<Policy>` that readers clone cheaply; a reload parses the file
//! and swaps it in only when it is valid, so a bad edit leaves the last good policy in force
//! (and is logged with its line-precise errors).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::diagnostics::Diagnostic;
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
    /// SHA-256 (hex) of the file's bytes the policy in force was parsed from.
    sha256: Option<String>,
    generation: u64,
}

/// What runs: the file, the hash of the bytes it was parsed from, and its generation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyStatus {
    pub path: Option<PathBuf>,
    pub sha256: Option<String>,
    pub generation: u64,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads and checks `path`, returning the policy and the hash of exactly the bytes it was
/// parsed from (a file replaced meanwhile cannot pair one file's hash with another's policy).
pub(super) fn read_policy(path: &Path) -> Result<(Policy, String), PolicyError> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| PolicyError {
        source: source.clone(),
        diagnostics: vec![Diagnostic {
            line: 1,
            column: 1,
            message: format!("cannot read the policy: {e}"),
        }],
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| PolicyError {
        source: source.clone(),
        diagnostics: vec![Diagnostic {
            line: 1,
            column: 1,
            message: format!("the policy is not UTF-8: {e}"),
        }],
    })?;
    let policy = Policy::parse(text, &source)?;
    for w in policy.warnings() {
        tracing::warn!(policy = %source, "{w}");
    }
    Ok((policy, sha256_hex(&bytes)))
}

impl PolicyHandle {
    /// A handle on a fixed policy (tests, simulations).
    pub fn fixed(policy: Policy) -> Self {
        PolicyHandle {
            inner: Arc::new(RwLock::new(State {
                policy: Arc::new(policy),
                path: None,
                mtime: None,
                sha256: None,
                generation: 1,
            })),
        }
    }

    /// Loads `path`; fails when the first load is invalid.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let stamp = mtime(path);
        let (policy, sha256) = read_policy(path)?;
        Ok(PolicyHandle {
            inner: Arc::new(RwLock::new(State {
                policy: Arc::new(policy),
                path: Some(path.to_path_buf()),
                mtime: stamp,
                sha256: Some(sha256),
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

    /// The policy in force with its status, read together (the hash is that policy's).
    pub fn snapshot(&self) -> (Arc<Policy>, PolicyStatus) {
        let s = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (
            s.policy.clone(),
            PolicyStatus {
                path: s.path.clone(),
                sha256: s.sha256.clone(),
                generation: s.generation,
            },
        )
    }

    /// The file, the hash of what runs, and the generation, read together.
    pub fn status(&self) -> PolicyStatus {
        self.snapshot().1
    }

    /// The SHA-256 of the policy file as it is on disk now, which may differ from the one in
    /// force (`None`: a fixed policy, no file; `unreadable: …` when it cannot be read).
    pub fn file_sha256(&self) -> Option<String> {
        let path = self.path()?;
        Some(match std::fs::read(&path) {
            Ok(bytes) => sha256_hex(&bytes),
            Err(e) => format!("unreadable: {e}"),
        })
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
        s.sha256 = None;
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
        let result = read_policy(&path);
        let mut s = self.inner.write().unwrap_or_else(|p| p.into_inner());
        s.mtime = stamp;
        match result {
            Ok((p, sha256)) => {
                s.policy = Arc::new(p);
                s.sha256 = Some(sha256);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const V1: &str = "[[connector]]\nname = \"chat\"\ntype = \"memory\"\n";
    const V2: &str = "[[connector]]\nname = \"chat\"\ntype = \"memory\"\n\n[[connector]]\nname = \"wiki\"\ntype = \"memory\"\n";
    const BAD: &str = "[[connector]]\nname = \"chat\"\ntype = \"no-such-type\"\n";

    fn file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "scimhub-policy-{}.toml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn status_carries_the_hash_of_the_bytes_in_force_through_reloads_and_rejections() {
        let path = file(V1);
        let handle = PolicyHandle::load(&path).unwrap();
        let st = handle.status();
        assert_eq!(st.path.as_deref(), Some(path.as_path()));
        assert_eq!(
            st.sha256.as_deref(),
            Some(sha256_hex(V1.as_bytes()).as_str())
        );
        assert_eq!(st.generation, 1);

        // A rejected edit changes nothing that runs.
        std::fs::write(&path, BAD).unwrap();
        let e = handle.reload().expect_err("rejected");
        assert!(e.to_string().contains(":3:"), "{e}");
        assert_eq!(handle.status(), st);
        assert_eq!(handle.current().connectors.len(), 1);

        std::fs::write(&path, V2).unwrap();
        assert!(handle.reload().unwrap());
        let st2 = handle.status();
        assert_eq!(
            st2.sha256.as_deref(),
            Some(sha256_hex(V2.as_bytes()).as_str())
        );
        assert_eq!(st2.generation, 2);
        assert_eq!(handle.current().connectors.len(), 2);

        // A policy set in memory has no file hash.
        handle.set(Policy::parse(V1, "<inline>").unwrap());
        assert_eq!(handle.status().sha256, None);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_file_that_is_not_utf8_is_rejected_at_line_one() {
        let path = file(V1);
        let handle = PolicyHandle::load(&path).unwrap();
        std::fs::write(&path, [0x5b, 0xff, 0xfe, 0x5d]).unwrap();
        let e = handle.reload().expect_err("rejected");
        assert!(
            e.to_string().contains(":1:1: the policy is not UTF-8"),
            "{e}"
        );
        assert_eq!(handle.status().generation, 1);
        let _ = std::fs::remove_file(path);
    }
}
