//! Group commit for SQLite's one writer.
//!
//! SQLite has one writer, and a commit costs about as much as the write itself: every page the
//! transaction touched (a row and an entry in each of a dozen indexes) is appended to the WAL as a
//! whole page. When several writes are waiting, they share one transaction instead: each runs in
//! its own savepoint on the thread that asked for it (so a failing write rolls back alone, and its
//! closure never leaves its thread), and the last of the batch commits for all. Every caller
//! returns only after the commit that holds its write, with that commit's result, exactly as if
//! it had committed alone. With one write at a time nothing changes: it commits at once.
//!
//! The protocol, around one mutex:
//! 1. wait until no other thread is running a write (`busy`), counting as `waiting` meanwhile;
//! 2. continue the open transaction, or open one on the writer connection;
//! 3. run the write in a savepoint;
//! 4. if others are waiting and the batch is not full, hand the open transaction on and wait for
//!    the batch's outcome; otherwise commit, publish the outcome to the batch, and release.
//!
//! A write that leaves the connection's transaction state broken (a failed savepoint rollback)
//! ends the batch: it is rolled back, and every write in it fails. A panic while a thread holds
//! the batch does the same, so no caller waits forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use diesel::connection::{Connection, TransactionManager};

use super::{DbConnection, PooledConn, StoreError, StoreResult};

/// Writes per transaction at most: bounds how long the first write of a batch waits to commit.
const MAX_BATCH: usize = 32;

type TxManager = <DbConnection as Connection>::TransactionManager;

/// The outcome of a batch's commit, shared by its writes.
#[derive(Debug, Default)]
struct Outcome {
    result: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl Outcome {
    fn publish(&self, result: Result<(), String>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<(), String> {
        let mut result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = result.as_ref() {
                return r.clone();
            }
            result = self.done.wait(result).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// An open transaction on the writer connection, and the writes it holds so far.
struct Batch {
    conn: PooledConn,
    writes: usize,
    outcome: Arc<Outcome>,
}

#[derive(Default)]
struct State {
    busy: bool,
    waiting: usize,
    open: Option<Batch>,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    turn: Condvar,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `write` in a savepoint of a shared transaction on a connection from `connect`, and
    /// returns once that transaction has committed (or failed). `write` gets the connection.
    pub(crate) fn run<T>(
        &self,
        connect: impl FnOnce() -> StoreResult<PooledConn>,
        write: impl FnOnce(&mut DbConnection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let open = {
            let mut state = self.lock();
            state.waiting += 1;
            while state.busy {
                state = self.turn.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.waiting -= 1;
            state.busy = true;
            state.open.take()
        };
        let batch = match open {
            Some(batch) => batch,
            None => match connect().and_then(|mut conn| {
                TxManager::begin_transaction(&mut conn)?;
                Ok(conn)
            }) {
                Ok(conn) => Batch {
                    conn,
                    writes: 0,
                    outcome: Arc::default(),
                },
                Err(e) => {
                    let mut state = self.lock();
                    state.busy = false;
                    self.turn.notify_one();
                    return Err(e);
                }
            },
        };
        let mut batch = batch;
        // A panic in `write` must not leave the batch's other writes waiting forever: roll the
        // batch back, fail them, release the writer, then let the panic go on.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch.conn.transaction::<T, StoreError, _>(|c| write(c))
        }));
        let result = match ran {
            Ok(result) => result,
            Err(panic) => {
                let _ = TxManager::rollback_transaction(&mut batch.conn);
                batch
                    .outcome
                    .publish(Err("a write in this transaction panicked".into()));
                drop(batch);
                let mut state = self.lock();
                state.busy = false;
                self.turn.notify_one();
                drop(state);
                std::panic::resume_unwind(panic);
            }
        };
        let intact = matches!(
            TxManager::transaction_manager_status_mut(&mut batch.conn).transaction_depth(),
            Ok(Some(depth)) if depth.get() == 1
        );
        if result.is_ok() {
            batch.writes += 1;
        }
        let outcome = batch.outcome.clone();
        let mut state = self.lock();
        if intact && state.waiting > 0 && batch.writes < MAX_BATCH {
            // Hand the open transaction on; this write's fate is the batch's commit.
            state.open = Some(batch);
            state.busy = false;
            self.turn.notify_one();
            drop(state);
            return match result {
                Ok(value) => outcome.wait().map(|()| value).map_err(StoreError::Backend),
                Err(e) => Err(e),
            };
        }
        drop(state);
        let committed = if intact {
            TxManager::commit_transaction(&mut batch.conn).map_err(|e| e.to_string())
        } else {
            let _ = TxManager::rollback_transaction(&mut batch.conn);
            Err(
                "a write left the transaction in an unknown state; its batch was rolled back"
                    .into(),
            )
        };
        batch.outcome.publish(committed.clone());
        drop(batch);
        {
            let mut state = self.lock();
            state.busy = false;
            self.turn.notify_one();
        }
        match (result, committed) {
            (Ok(value), Ok(())) => Ok(value),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(StoreError::Backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;
    use std::time::{Duration, Instant};

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn count(c: &mut DbConnection, x: &str) -> i64 {
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM gc_probe WHERE x = '{x}'"
        ))
        .get_result::<Count>(c)
        .map(|r| r.n)
        .unwrap_or(-1)
    }

    fn insert(c: &mut DbConnection, x: &str) -> StoreResult<()> {
        c.batch_execute(&format!("INSERT INTO gc_probe VALUES ('{x}')"))?;
        Ok(())
    }

    struct Db {
        store: Store,
        path: std::path::PathBuf,
    }

    impl Drop for Db {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
        }
    }

    fn db() -> Db {
        let path = std::env::temp_dir().join(format!("scimhub-gc-{}.db", uuid::Uuid::new_v4()));
        let store = Store::open(&format!("sqlite://{}", path.display())).expect("store");
        store
            .inner
            .write
            .get()
            .expect("writer")
            .batch_execute("CREATE TABLE gc_probe (x TEXT NOT NULL)")
            .expect("table");
        Db { store, path }
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A write that finds another waiting hands it the open transaction: the second write sees
    /// the first one's row before anything is committed, a reader outside sees neither until the
    /// one commit, and the first write returns only after that commit.
    #[test]
    fn group_commit_shares_one_transaction_with_a_waiting_write() {
        let db = db();
        let store = &db.store;
        let group = GroupCommit::default();
        let connect = || Ok(store.inner.write.get()?);
        let reader_sees = |x: &str| {
            let mut r = store.read_conn().expect("reader");
            count(&mut r, x)
        };
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                group.run(connect, |c| {
                    insert(c, "first")?;
                    // Hold the writer until the second write queues behind it.
                    wait_for("the second write to wait", || group.lock().waiting == 1);
                    Ok("first done")
                })
            });
            wait_for("the first write to run", || group.lock().busy);
            let second = s.spawn(|| {
                group.run(connect, |c| {
                    let in_tx = count(c, "first");
                    let outside = reader_sees("first");
                    insert(c, "second")?;
                    Ok((in_tx, outside))
                })
            });
            let (in_tx, outside) = second.join().expect("second").expect("second write");
            assert_eq!((in_tx, outside), (1, 0), "shared and not yet committed");
            assert_eq!(
                first.join().expect("first").expect("first write"),
                "first done"
            );
        });
        assert_eq!((reader_sees("first"), reader_sees("second")), (1, 1));
        assert!(!group.lock().busy && group.lock().open.is_none());
    }

    /// A failing write rolls back alone; the batch's other writes commit.
    #[test]
    fn group_commit_a_failed_write_rolls_back_alone() {
        let db = db();
        let store = &db.store;
        let group = GroupCommit::default();
        let connect = || Ok(store.inner.write.get()?);
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                group.run(connect, |c| {
                    insert(c, "kept")?;
                    wait_for("the failing write to wait", || group.lock().waiting == 1);
                    Ok(())
                })
            });
            wait_for("the first write to run", || group.lock().busy);
            let failing = s.spawn(|| {
                group.run(connect, |c| -> StoreResult<()> {
                    insert(c, "dropped")?;
                    Err(StoreError::NotFound)
                })
            });
            assert!(matches!(
                failing.join().expect("failing"),
                Err(StoreError::NotFound)
            ));
            first.join().expect("first").expect("first write");
        });
        let mut r = store.read_conn().expect("reader");
        assert_eq!((count(&mut r, "kept"), count(&mut r, "dropped")), (1, 0));
    }

    /// Many threads writing at once: every write lands exactly once, whatever the batching.
    #[test]
    fn group_commit_many_writers_every_write_lands_once() {
        let db = db();
        let store = &db.store;
        let group = GroupCommit::default();
        std::thread::scope(|s| {
            for t in 0..8 {
                let group = &group;
                s.spawn(move || {
                    for i in 0..50 {
                        group
                            .run(
                                || Ok(store.inner.write.get()?),
                                |c| insert(c, &format!("w{t}-{i}")),
                            )
                            .expect("write");
                    }
                });
            }
        });
        let mut r = store.read_conn().expect("reader");
        let total: i64 = diesel::sql_query("SELECT COUNT(DISTINCT x) AS n FROM gc_probe")
            .get_result::<Count>(&mut r)
            .expect("count")
            .n;
        assert_eq!(total, 400);
    }

    /// A panic inside a write releases the writer: the next write runs and commits.
    #[test]
    fn group_commit_survives_a_panicking_write() {
        let db = db();
        let store = &db.store;
        let group = GroupCommit::default();
        let connect = || Ok(store.inner.write.get()?);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.run(connect, |c| -> StoreResult<()> {
                insert(c, "before-panic")?;
                panic!("write panicked")
            })
        }));
        assert!(panicked.is_err());
        group
            .run(connect, |c| insert(c, "after"))
            .expect("next write");
        let mut r = store.read_conn().expect("reader");
        assert_eq!(
            (count(&mut r, "before-panic"), count(&mut r, "after")),
            (0, 1)
        );
    }
}
