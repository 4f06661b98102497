//! Background WAL checkpoints for SQLite files.
//!
//! SQLite copies the WAL back into the database file (a checkpoint: the pages, then two fsyncs)
//! inside whichever commit pushes the WAL past `wal_autocheckpoint` pages. That commit's request
//! then takes milliseconds instead of a fraction of one: one single-member add in two hundred
//! paid 5–20 ms. Here a thread with its own connection runs passive checkpoints shortly after
//! commits instead, so commits find little or nothing to copy.
//!
//! A passive checkpoint never blocks writers, and under sustained writes it never quite catches
//! up, so the WAL cannot restart from its beginning and keeps growing. The connection setting
//! `wal_autocheckpoint` (see `conn::SQLITE_SETUP`) stays as the bound: past it a commit
//! checkpoints itself as before, finds almost everything already copied, and the WAL restarts.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use diesel::sql_types::Integer;
use diesel::RunQueryDsl;

use super::conn::{establish_uncounted, DbUrl};
use super::sql::Sql;
use crate::error::{HubError, HubResult};

/// At most one checkpoint per interval: each costs two fsyncs, and copying a few more pages at
/// once is cheaper than copying them one commit at a time.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Signal {
    /// A commit happened since the last checkpoint began.
    dirty: bool,
    /// The store is gone: end the thread.
    stop: bool,
}

/// Handle to the checkpoint thread; dropping it ends the thread.
pub(crate) struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
}

impl Checkpointer {
    pub(crate) fn start(url: DbUrl) -> HubResult<Checkpointer> {
        let mut conn =
            establish_uncounted(&url).map_err(|e| HubError::Unavailable(e.to_string()))?;
        let signal: Arc<(Mutex<Signal>, Condvar)> = Arc::default();
        let theirs = signal.clone();
        std::thread::Builder::new()
            .name("scimhub-checkpoint".into())
            .spawn(move || {
                while wait_for_commit(&theirs) {
                    match checkpoint(&mut conn) {
                        Ok((wal, copied)) => tracing::trace!(wal, copied, "WAL checkpoint"),
                        // Busy or locked: the next commit asks again.
                        Err(e) => tracing::debug!(error = %e, "WAL checkpoint skipped"),
                    }
                    std::thread::sleep(MIN_INTERVAL);
                }
            })
            .map_err(|e| HubError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { signal })
    }

    /// Called after a commit.
    pub(crate) fn poke(&self) {
        let (lock, wake) = &*self.signal;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !s.dirty {
            s.dirty = true;
            wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.signal;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        wake.notify_one();
    }
}

/// Waits for a commit; `false` once the store is gone.
fn wait_for_commit(signal: &(Mutex<Signal>, Condvar)) -> bool {
    let (lock, wake) = signal;
    let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
    while !s.dirty && !s.stop {
        s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
    }
    s.dirty = false;
    !s.stop
}

/// The row `PRAGMA wal_checkpoint` returns.
#[derive(diesel::Queryable)]
struct CheckpointResult {
    /// 1 when a writer or reader kept the checkpoint from finishing (a passive one just stops).
    _busy: i32,
    wal_pages: i32,
    checkpointed_pages: i32,
}

/// One passive checkpoint: the WAL's size and how much of it is now in the database file, in
/// pages.
fn checkpoint(conn: &mut super::DbConnection) -> HubResult<(i32, i32)> {
    let q = Sql::<(Integer, Integer, Integer)>::new("PRAGMA wal_checkpoint(PASSIVE)");
    let r = q.get_result::<CheckpointResult>(conn)?;
    Ok((r.wal_pages, r.checkpointed_pages))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::super::{ResourceKind, Store};

    /// Commits far below `wal_autocheckpoint` reach the database file only through the
    /// background checkpoint.
    #[test]
    fn commits_are_copied_into_the_database_file_in_the_background() {
        let path = std::env::temp_dir().join(format!("scimhub-ckpt-{}.db", uuid::Uuid::new_v4()));
        let store = Store::open(&format!("sqlite://{}", path.display())).unwrap();
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        for i in 0..50 {
            let doc = json!({"userName": format!("ckpt-{i}"), "title": "x".repeat(2000)});
            store
                .create(ResourceKind::User, doc.as_object().cloned().unwrap(), None)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while size() <= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let after = size();
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        // 50 rows of 2 KB are far more than the freshly migrated file had room for.
        assert!(after > before + 50 * 2000, "before {before}, after {after}");
    }
}
