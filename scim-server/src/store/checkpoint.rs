//! WAL checkpoints off the write path (SQLite files).
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so one write
//! in every few hundred paid for copying pages back into the database and two `fsync`s, while
//! every other writer waited. A thread of the store checkpoints instead (`PASSIVE`: it never
//! blocks writers or readers), on its own connection, every [`INTERVAL`]; the connections'
//! automatic checkpoint stays as a backstop at a much larger threshold (see `conn.rs`).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

/// How often the WAL is checkpointed; also how long a commit waits, at most, to reach the
/// database file itself (it is already durable in the WAL at `synchronous = NORMAL` only after
/// a checkpoint or a WAL sync).
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);

/// The running checkpointer; stops its thread when dropped (with the last clone of the store).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Checkpointer {
    /// Starts the thread for the database file at `path`.
    pub(crate) fn start(path: &Path) -> std::io::Result<Checkpointer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let path = path.to_string_lossy().into_owned();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("scimhub-wal-checkpoint".into())
            .spawn(move || run(&path, &thread_stop))?;
        Ok(Checkpointer { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }
}

fn run(path: &str, stop: &(Mutex<bool>, Condvar)) {
    let mut conn = match SqliteConnection::establish(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpointer cannot open the database; SQLite's automatic checkpoint remains");
            return;
        }
    };
    let _ = conn.batch_execute("PRAGMA busy_timeout = 1000;");
    let (lock, wake) = stop;
    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
    while !*stopped {
        let (guard, _) = wake
            .wait_timeout(stopped, INTERVAL)
            .unwrap_or_else(|e| e.into_inner());
        stopped = guard;
        if *stopped {
            break;
        }
        drop(stopped);
        // A failure (say, the file went away) leaves the automatic checkpoint as the backstop.
        if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::debug!(error = %e, "WAL checkpoint did not run");
        }
        stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_moves_wal_pages_into_the_database_and_stops_when_dropped() {
        let dir = std::env::temp_dir().join(format!("scimhub-ckpt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("hub.db");
        let url = format!("sqlite://{}", db.display());
        let store = crate::store::Store::open(&url).expect("store");
        let mut writer = SqliteConnection::establish(db.to_str().expect("utf-8")).expect("conn");
        writer
            .batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE ckpt_probe (x BLOB);
                 INSERT INTO ckpt_probe VALUES (zeroblob(200000));",
            )
            .expect("write");
        let wal = dir.join("hub.db-wal");
        let db_len = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let before = db_len();
        // The probe's pages reach the database file only through a checkpoint, and this
        // connection's own automatic checkpoint is off.
        let deadline = std::time::Instant::now() + INTERVAL * 20;
        while db_len() < before + 200_000 && std::time::Instant::now() < deadline {
            std::thread::sleep(INTERVAL / 5);
        }
        assert!(wal.exists());
        assert!(db_len() >= before + 200_000, "no checkpoint ran");
        assert!(store.checkpointer().is_some());
        drop(store);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
