//! Reader connections owned by the thread that reads (SQLite files): what lets an actix worker
//! answer a read without handing it to the blocking pool and back (a semaphore, an eventfd wake
//! and a futex per request, measured in `docs/performance.md`).
//!
//! A thread opts in for the length of a call ([`Store::read_here`](super::Store::read_here));
//! inside it, [`Store::read_conn`](super::Store::read_conn) lends the thread's own connection to
//! the store instead of taking one from the pool, opening it on first use. SQLite in WAL mode
//! lets readers and the one writer run side by side, so a worker's reader never waits for a
//! write. Threads that never opt in (the blocking pool, the writer, jobs) keep using the pool.
//! A connection still lent out (a read nested in another) sends the inner read to the pool.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::TransactionManager;
use diesel::Connection;

use super::DbConnection;

/// Stores whose readers one thread keeps; beyond it the oldest is closed. A server has one
/// store; tests open many on one thread.
const STORES_PER_THREAD: usize = 4;

thread_local! {
    static READERS: RefCell<Readers> = RefCell::new(Readers::default());
}

#[derive(Default)]
struct Readers {
    /// Above 0 while the thread runs inside [`opted_in`].
    depth: u32,
    /// Per store (by [`next_store_id`]): its reader, `None` while lent out.
    conns: Vec<(u64, Option<DbConnection>)>,
}

/// A process-unique id for a store's thread-local readers (never reused, unlike an address).
pub(crate) fn next_store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` with this thread's readers in use.
pub(crate) fn opted_in<T>(f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            READERS.with(|r| r.borrow_mut().depth -= 1);
        }
    }
    READERS.with(|r| r.borrow_mut().depth += 1);
    let _leave = Leave;
    f()
}

/// This thread's reader for store `id`, opened with `open` the first time. `None` outside
/// [`opted_in`], and while the reader is lent out already (the caller takes one from the pool).
pub(crate) fn lend<E>(
    id: u64,
    open: impl FnOnce() -> Result<DbConnection, E>,
) -> Option<Result<LocalConn, E>> {
    READERS.with(|r| {
        let mut r = r.borrow_mut();
        if r.depth == 0 {
            return None;
        }
        if let Some((_, slot)) = r.conns.iter_mut().find(|(k, _)| *k == id) {
            return slot.take().map(|conn| {
                Ok(LocalConn {
                    id,
                    conn: Some(conn),
                })
            });
        }
        let conn = match open() {
            Ok(conn) => conn,
            Err(e) => return Some(Err(e)),
        };
        if r.conns.len() >= STORES_PER_THREAD {
            r.conns.remove(0);
        }
        r.conns.push((id, None));
        Some(Ok(LocalConn {
            id,
            conn: Some(conn),
        }))
    })
}

/// A thread's reader, lent out; returned to the thread when dropped.
pub(crate) struct LocalConn {
    id: u64,
    conn: Option<DbConnection>,
}

impl std::ops::Deref for LocalConn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        self.conn
            .as_ref()
            .expect("a lent reader is present until dropped")
    }
}

impl std::ops::DerefMut for LocalConn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        self.conn
            .as_mut()
            .expect("a lent reader is present until dropped")
    }
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A connection left inside a transaction (a panic mid-read) would pin an old snapshot
        // for every later read on this thread: closed instead of kept.
        type Tm = <DbConnection as Connection>::TransactionManager;
        let idle = Tm::transaction_manager_status_mut(&mut conn)
            .transaction_depth()
            .is_ok_and(|d| d.is_none());
        if !idle || std::thread::panicking() {
            return;
        }
        let id = self.id;
        let _ = READERS.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                if let Some((_, slot @ None)) = r.conns.iter_mut().find(|(k, _)| *k == id) {
                    *slot = Some(conn);
                }
            }
        });
    }
}
