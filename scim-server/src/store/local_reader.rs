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
//!
//! **Kept snapshots.** Each read outside a transaction is a transaction of its own, and SQLite
//! begins and ends one with a lock and an unlock of a WAL read mark: two `fcntl` system calls,
//! measured at 8 % of the server's CPU on a point read. So a reader keeps its read transaction
//! open between reads ([`ReaderOptions::snapshot_for`]), while both hold:
//!
//! * no statement has finished on any connection of this process to the file that can write
//!   ([`conn::StatementCount`], counted after each commit) since the snapshot began: a write
//!   acknowledged by this process is seen by every read that starts after it;
//! * the snapshot is younger than `snapshot_for` (a few milliseconds): what another process
//!   commits on the same file (an import beside the server) is seen that much later at most.
//!
//! A kept snapshot pins the WAL: SQLite cannot copy frames past it into the database file nor
//! start the WAL over. A thread that goes idle would keep it indefinitely, so a sweeper thread
//! ends the snapshots that are older than `snapshot_for` and not in use ([`Sweeper`]); and a
//! snapshot that a commit made stale while in use is ended when its read returns.
//! Caches filled from reads begin a fresh snapshot first ([`fresh_read`]).
//! Reader connections are opened read-only (`conn::establish_reader`): a write can never run
//! inside a kept transaction and hold the write lock.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use diesel::connection::TransactionManager;
use diesel::Connection;

use super::conn::{self, DbUrl};
use super::DbConnection;

type Tm = <DbConnection as Connection>::TransactionManager;

/// Stores whose readers one thread keeps; beyond it the oldest is closed. A server has one
/// store; tests open many on one thread.
const STORES_PER_THREAD: usize = 4;

/// How often the sweeper looks for snapshots to end.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

thread_local! {
    static READERS: RefCell<Readers> = RefCell::new(Readers::default());
}

#[derive(Default)]
struct Readers {
    /// Above 0 while the thread runs inside [`opted_in`].
    depth: u32,
    /// Per store (by [`LocalReaders::id`]): its reader's slot.
    slots: Vec<(u64, Arc<Slot>)>,
    /// The addresses of this thread's lent readers that hold a kept snapshot ([`fresh_read`]).
    lent_kept: Vec<usize>,
}

/// A thread's reader for one store. Shared with the store's sweeper.
#[derive(Default)]
pub(crate) struct Slot(Mutex<SlotState>);

#[derive(Default)]
enum SlotState {
    /// No connection (not opened yet, or closed after a failure): opened at the next lend.
    #[default]
    Empty,
    Idle(Box<Reader>),
    /// In use by its thread.
    Lent,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reader connection and the snapshot it keeps, if any.
pub(crate) struct Reader {
    conn: DbConnection,
    snapshot: Option<Snapshot>,
    /// The statement count of the reader's file.
    statements: Arc<conn::StatementCount>,
}

/// A read transaction kept open between reads.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    /// The file's [`conn::StatementCount`] read before it began.
    statements: u64,
    began: Instant,
}

impl Reader {
    /// Ends the kept read transaction, if any; `false` when that failed (close the connection).
    fn end_snapshot(&mut self) -> bool {
        if self.snapshot.take().is_none() {
            return true;
        }
        Tm::rollback_transaction(&mut self.conn).is_ok()
    }
}

/// A process-unique id for a store's thread-local readers (never reused, unlike an address).
pub(crate) fn next_store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How a store's thread-owned readers behave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderOptions {
    /// Keep a reader's read transaction open between reads for at most this long, while this
    /// process writes nothing (see the module docs); zero: each read its own transaction.
    pub snapshot_for: Duration,
}

/// A store's thread-owned readers: their id in each thread's list, and the slots the sweeper
/// looks at. Shared by the store's clones; dropping the last ends the sweeper.
pub(crate) struct LocalReaders {
    id: u64,
    url: DbUrl,
    options: ReaderOptions,
    /// The statement count of the store's file (`None` for other URLs: no snapshot is kept).
    statements: Option<Arc<conn::StatementCount>>,
    slots: Arc<Mutex<Vec<Weak<Slot>>>>,
    sweeper: Option<Sweeper>,
}

impl std::fmt::Debug for LocalReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReaders")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LocalReaders {
    pub(crate) fn new(url: DbUrl, options: ReaderOptions) -> LocalReaders {
        let slots: Arc<Mutex<Vec<Weak<Slot>>>> = Arc::default();
        let statements = match &url {
            DbUrl::SqliteFile(path) => Some(conn::statement_count(path)),
            _ => None,
        };
        let sweeper = (!options.snapshot_for.is_zero() && statements.is_some())
            .then(|| Sweeper::start(slots.clone(), options.snapshot_for))
            .flatten();
        // Without a sweeper no snapshot may be kept: an idle thread would pin the WAL.
        let options = ReaderOptions {
            snapshot_for: if sweeper.is_some() {
                options.snapshot_for
            } else {
                Duration::ZERO
            },
        };
        LocalReaders {
            id: next_store_id(),
            statements,
            url,
            options,
            slots,
            sweeper,
        }
    }

    /// This thread's reader, opened the first time. `None` outside [`opted_in`], and while the
    /// reader is lent out already (the caller takes one from the pool).
    pub(crate) fn lend(&self) -> Option<Result<LocalConn, diesel::r2d2::Error>> {
        let slot = READERS.with(|r| {
            let mut r = r.borrow_mut();
            if r.depth == 0 {
                return None;
            }
            if let Some((_, slot)) = r.slots.iter().find(|(k, _)| *k == self.id) {
                return Some((slot.clone(), false));
            }
            if r.slots.len() >= STORES_PER_THREAD {
                r.slots.remove(0);
            }
            let slot = Arc::new(Slot::default());
            r.slots.push((self.id, slot.clone()));
            Some((slot, true))
        });
        let (slot, new) = slot?;
        if new {
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Arc::downgrade(&slot));
        }
        let reader = match std::mem::replace(&mut *slot.lock(), SlotState::Lent) {
            SlotState::Idle(r) => Some(r),
            SlotState::Empty => None,
            SlotState::Lent => return None,
        };
        let mut reader = match reader {
            Some(r) => r,
            None => match conn::establish_reader(&self.url) {
                Ok(conn) => Box::new(Reader {
                    conn,
                    snapshot: None,
                    statements: self.statements.clone().unwrap_or_default(),
                }),
                Err(e) => {
                    *slot.lock() = SlotState::Empty;
                    return Some(Err(e));
                }
            },
        };
        if !self.options.snapshot_for.is_zero() {
            if let Err(e) = self.renew(&mut reader) {
                *slot.lock() = SlotState::Empty;
                return Some(Err(e));
            }
        }
        if reader.snapshot.is_some() {
            let addr = std::ptr::from_ref(&reader.conn) as usize;
            READERS.with(|r| r.borrow_mut().lent_kept.push(addr));
        }
        Some(Ok(LocalConn {
            slot,
            reader: Some(reader),
        }))
    }

    /// Keeps the reader's snapshot when it is still good, else begins another (see the module
    /// docs). The count is read before `BEGIN`, and SQLite takes the snapshot at the first read
    /// after it: a commit in between is in the snapshot and also ends it early, never missed.
    fn renew(&self, reader: &mut Reader) -> Result<(), diesel::r2d2::Error> {
        let statements = reader.statements.get();
        let now = Instant::now();
        if let Some(s) = reader.snapshot {
            if s.statements == statements && now.duration_since(s.began) < self.options.snapshot_for
            {
                return Ok(());
            }
            if !reader.end_snapshot() {
                reader.conn = conn::establish_reader(&self.url)?;
            }
        }
        // A reader that cannot begin one reads without (each read its own transaction).
        if Tm::begin_transaction(&mut reader.conn).is_ok() {
            reader.snapshot = Some(Snapshot {
                statements,
                began: now,
            });
        }
        Ok(())
    }
}

impl Drop for LocalReaders {
    fn drop(&mut self) {
        // Stop the sweeper (and wait for it), then end every idle snapshot: the store is gone.
        self.sweeper.take();
        sweep(&self.slots, Duration::ZERO, true);
    }
}

/// Makes `c`'s next reads see everything committed before this call, where that can be done
/// without breaking a transaction its caller opened; says whether they will. For a cache filled
/// from what `c` reads, after the caller has read the cache's generation or taken its lock
/// (`TypeCounts`, `IdRanks`, `OtherWriters`): a kept snapshot may predate commits that the
/// generation already counts. A connection outside any transaction reads fresh with each
/// statement; this thread's lent reader holding only its kept snapshot gets a new one; any
/// other transaction is the caller's own and is left alone (`false`).
pub(crate) fn fresh_read(c: &mut DbConnection) -> bool {
    let depth = match Tm::transaction_manager_status_mut(c).transaction_depth() {
        Ok(None) => return true,
        Ok(Some(d)) => d.get(),
        Err(_) => return false,
    };
    let addr = std::ptr::from_ref::<DbConnection>(c) as usize;
    let kept = READERS
        .try_with(|r| r.try_borrow().is_ok_and(|r| r.lent_kept.contains(&addr)))
        .unwrap_or(false);
    if !kept || depth != 1 || Tm::rollback_transaction(c).is_err() {
        return false;
    }
    // The reader's record still names the older snapshot: the next lend renews early, which
    // costs nothing wrong. Without a new transaction its reads are each fresh anyway; the
    // return to its slot then finds the depth unexpected and closes it.
    if Tm::begin_transaction(c).is_err() {
        // No kept snapshot any more: not to be restarted under a later caller's transaction.
        let _ = READERS.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.lent_kept.retain(|a| *a != addr);
            }
        });
    }
    true
}

/// Whether this thread runs inside [`opted_in`]: an HTTP worker answering a read itself.
pub(crate) fn in_place() -> bool {
    READERS
        .try_with(|r| r.try_borrow().is_ok_and(|r| r.depth > 0))
        .unwrap_or(false)
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

/// A thread's reader, lent out; returned to its slot when dropped.
pub(crate) struct LocalConn {
    slot: Arc<Slot>,
    /// Boxed: its connection's address identifies it while lent ([`fresh_read`]).
    reader: Option<Box<Reader>>,
}

impl std::ops::Deref for LocalConn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self
            .reader
            .as_ref()
            .expect("a lent reader is present until dropped")
            .conn
    }
}

impl std::ops::DerefMut for LocalConn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self
            .reader
            .as_mut()
            .expect("a lent reader is present until dropped")
            .conn
    }
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        let Some(mut reader) = self.reader.take() else {
            return;
        };
        let addr = std::ptr::from_ref(&reader.conn) as usize;
        let _ = READERS.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.lent_kept.retain(|a| *a != addr);
            }
        });
        // A snapshot that a commit of this process has made stale would be renewed by the next
        // lend anyway: ended now, it stops pinning the WAL at once (a busy worker otherwise
        // always holds a read mark, and SQLite can start the WAL over only when none is held).
        if reader
            .snapshot
            .is_some_and(|s| s.statements != reader.statements.get())
            && !reader.end_snapshot()
        {
            *self.slot.lock() = SlotState::Empty;
            return;
        }
        // A connection left inside a transaction other than its kept one (a panic mid-read)
        // would pin an old snapshot for every later read on this thread: closed instead.
        let expected = usize::from(reader.snapshot.is_some());
        let depth = Tm::transaction_manager_status_mut(&mut reader.conn)
            .transaction_depth()
            .map(|d| d.map_or(0, |d| d.get() as usize));
        *self.slot.lock() = if depth != Ok(expected) || std::thread::panicking() {
            SlotState::Empty
        } else {
            SlotState::Idle(reader)
        };
    }
}

/// Ends the kept snapshots older than `age` of readers that are not lent out, and forgets the
/// slots of threads that are gone. `wait`: for a slot its thread holds right now, wait for it
/// instead of leaving it to the next sweep.
fn sweep(slots: &Mutex<Vec<Weak<Slot>>>, age: Duration, wait: bool) {
    let live: Vec<Arc<Slot>> = {
        let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| s.strong_count() > 0);
        slots.iter().filter_map(Weak::upgrade).collect()
    };
    for slot in live {
        // A thread taking its reader right now wins; the next sweep comes soon.
        let mut guard = match slot.0.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => slot.lock(),
            Err(std::sync::TryLockError::WouldBlock) => continue,
        };
        if let SlotState::Idle(reader) = &mut *guard {
            let stale = reader.snapshot.is_some_and(|s| s.began.elapsed() >= age);
            if stale && !reader.end_snapshot() {
                *guard = SlotState::Empty;
            }
        }
    }
}

/// The thread that ends idle threads' kept snapshots ([`sweep`]) every [`SWEEP_EVERY`];
/// dropping the handle ends it.
struct Sweeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    fn start(slots: Arc<Mutex<Vec<Weak<Slot>>>>, age: Duration) -> Option<Sweeper> {
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let theirs = stop.clone();
        let started = std::thread::Builder::new()
            .name("scimhub-snapshots".into())
            .spawn(move || {
                let (lock, wake) = &*theirs;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    let (guard, _) = wake
                        .wait_timeout(stopped, SWEEP_EVERY)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if !*stopped {
                        sweep(&slots, age, false);
                    }
                }
            });
        match started {
            Ok(thread) => Some(Sweeper {
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no kept read snapshots: cannot start their sweeper");
                None
            }
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
