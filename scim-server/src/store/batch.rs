//! Group commit: SCIM writes that arrive together share one transaction.
//!
//! A SQLite commit appends every page the transaction touched to the WAL as a whole page: a
//! created User is a row plus an entry in each of a dozen indexes, so its commit (and the
//! checkpoint that later copies those pages back) cost more than the inserts themselves. On
//! PostgreSQL every SCIM write holds the audit chain's head row from its append through its
//! commit and WAL flush, so writes take turns there too, and each paid its own `BEGIN`, chain
//! append and `COMMIT` round trips and flush, while the others waited on the head's row lock. When
//! writes arrive faster than they commit, they share one transaction instead.
//!
//! Single-resource SCIM writes (`Store::submit_write`) are sent to a writer thread (one on
//! SQLite; two on PostgreSQL, so that one runs its batch while the other waits for its
//! commit). It takes every write waiting in the queue, opens one transaction on a writer
//! connection and runs them one after another. Then one chain append and one commit make them all durable, and only then
//! are the callers answered: nobody sees a write acknowledged that a failed commit later lost.
//! If the commit fails, every write in it reports that failure; if PostgreSQL's connection was
//! lost during the COMMIT, every write in it is answered "outcome unknown" (never a success).
//!
//! # A failing write rolls back alone
//!
//! A write that fails must leave nothing behind, exactly as its own transaction would have,
//! while the others in its batch commit. A savepoint around each write does that, but it is not
//! free: SQLite copies every page a savepoint touches into its sub-journal before the first
//! change, and a create touches a dozen pages (the row, each index, the audit chain), so the
//! savepoints cost about a sixth of a create's instructions (measured with callgrind, see
//! docs/benchmarks.md); on PostgreSQL each is two more round trips. Writes rarely fail, so
//! batches run *optimistically*, without savepoints:
//! if any write in one fails, the whole transaction is rolled back and the batch runs again
//! from its first write, *guarded* by a savepoint per write. Writes can run twice for this
//! (`Store::submit_write` takes `FnMut`): only what they do in the transaction counts, and a
//! rolled-back attempt left nothing. After a batch with a failure the writer stays guarded
//! until a guarded batch runs without one, so a stream of conflicts (a client re-sending
//! existing users) costs one extra run, not one per batch.
//!
//! # PostgreSQL: round trips
//!
//! Every statement is a round trip, whose system calls and wake-ups cost the hub more than the
//! statement's own work. A batch of User PATCHes and PUTs reads and locks all their rows in one
//! statement before its first write (see [`LockedAhead`]), and its audit entries go in one
//! statement at its end; a PATCH then costs its `UPDATE` and a share of the batch's `BEGIN`,
//! row read, audit append and `COMMIT`. Consecutive SCIM creates on a store without a hook
//! insert their rows together, in one statement (see [`Deferred`]).
//!
//! # PostgreSQL: conflicts and lost connections
//!
//! Where a write in its own transaction would be run again (`Store::write_tx_retry`), a batch
//! is too, up to `write_attempts` runs: a batch whose connection was lost, or whose chain append
//! or commit conflicted with a concurrent transaction (SQLSTATE 40001, 40P01: another node's
//! writer, a background job), certainly did not commit and runs again on another connection. A
//! write that conflicts on its own in a guarded run (its savepoint undid it) runs again in the
//! next batch, up to `write_attempts` batches, and is answered only then.
//!
//! The thread keeps its queue hot: while writes keep coming it never sleeps between them, which
//! also saves the blocking-pool hand-off each write paid before. On PostgreSQL it holds one
//! connection of the pool per batch, returned between batches.
//!
//! What it does not batch: anything that reads through a reader connection after writing
//! (Bulk, the whole-group PATCH fallback) still runs on the blocking pool with its own
//! transactions, because a reader cannot see a shared transaction before it commits.
//!
//! A panic inside a write transaction discards the writer connection (the open transaction
//! rolls back with it): the write that panicked is answered with an internal error and the
//! others of its batch run again, guarded, on a new connection, since nothing of theirs
//! committed. A write that panics after its transaction (outside it) fails alone; the batch
//! commits without it.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use diesel::connection::{Connection, TransactionManager};

use super::conn::DbConnection;
use super::{Pool, PooledConn, Store};
use crate::error::{HubError, HubResult};

/// At most this many writes share a commit, so that one commit's latency stays bounded.
const MAX_BATCH: usize = 64;

/// A queued write.
trait Job: Send {
    /// Runs it on the writer thread inside the shared transaction, keeping its result for
    /// [`Job::answer`]. Runs again (replacing the result) when its batch runs again.
    fn run(&mut self);
    /// After its batch committed: whether it failed alone on a conflict with a concurrent
    /// transaction (PostgreSQL's 40001 or 40P01, which its savepoint undid) and has tries
    /// left, so that it runs again in the next batch instead of being answered.
    fn conflicted_again(&mut self) -> bool;
    /// Answers after the batch ended: `failed` is `None` when it committed, else why not.
    fn answer(self: Box<Self>, failed: Option<&HubError>);
    /// Answers without running it: no batch could be opened.
    fn fail(self: Box<Self>, error: HubError);
    /// The User whose row it reads to change first (a SCIM PATCH or PUT of a User), which the
    /// batch may read and lock for it ahead (see [`LockedAhead`]).
    fn user_to_change(&self) -> Option<&str>;
    /// Whether it only creates a resource, so that its rows may wait to be inserted with the
    /// next creates' (see [`Deferred`]).
    fn only_creates(&self) -> bool;
}

/// What a queued write does, as far as its batch may act ahead of it.
#[derive(Debug, Clone)]
pub(crate) enum Submitted {
    /// Anything: it runs as it is.
    Write,
    /// A SCIM PATCH or PUT of this User, whose first read for change is the user's row.
    ChangesUser(String),
    /// A SCIM create, which reads nothing before it inserts its rows.
    Creates,
}

struct Pending<T, F> {
    write: F,
    out: Option<HubResult<T>>,
    answer: tokio::sync::oneshot::Sender<HubResult<T>>,
    /// Batches it may run in for conflicts of its own (`write_attempts` on PostgreSQL, 1 on
    /// SQLite, whose one writer has no concurrent transactions to conflict with).
    tries_left: u32,
    /// See [`Job::user_to_change`] and [`Job::only_creates`].
    what: Submitted,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnMut() -> HubResult<T> + Send + 'static,
{
    fn run(&mut self) {
        self.out = None;
        self.out = Some((self.write)());
    }

    fn conflicted_again(&mut self) -> bool {
        if self.tries_left > 1 && matches!(self.out, Some(Err(HubError::TxConflict(_)))) {
            self.tries_left -= 1;
            return true;
        }
        false
    }

    fn answer(self: Box<Self>, failed: Option<&HubError>) {
        let out = match (self.out, failed) {
            // Nothing of the batch committed: whatever this write met in it (a conflict with
            // another write of the batch, say) is no answer.
            (Some(_), Some(why)) => Err(same_failure(why)),
            (Some(out), None) => out,
            // It panicked: its batch says why it ended, or (committed without it) it failed.
            (None, Some(why)) => Err(same_failure(why)),
            (None, None) => Err(HubError::Backend(
                "the write failed with an internal error".into(),
            )),
        };
        let _ = self.answer.send(out);
    }

    fn fail(self: Box<Self>, error: HubError) {
        let _ = self.answer.send(Err(error));
    }

    fn user_to_change(&self) -> Option<&str> {
        match &self.what {
            Submitted::ChangesUser(id) => Some(id),
            _ => None,
        }
    }

    fn only_creates(&self) -> bool {
        matches!(self.what, Submitted::Creates)
    }
}

/// What a committed write still has to do outside the transaction (see `Store::report_population`
/// and `Store::after_commit`).
pub(crate) struct Effect {
    pub(crate) store: Store,
    pub(crate) population: Vec<(super::ResourceKind, String, bool)>,
    pub(crate) changed: bool,
    /// The write's own audit entries, appended after the batch's last write.
    pub(crate) audit: Vec<super::audit_chain::PendingEntry>,
}

/// The writer connection and the effects of the writes run so far, while a batch is open on
/// this thread.
pub(crate) struct Open {
    pub(crate) conn: PooledConn,
    pub(crate) effects: Vec<Effect>,
    /// Each write in a savepoint (see the module docs); otherwise a failure spoils the batch.
    pub(crate) guarded: bool,
    /// Writes (`Store::write_tx` bodies) that failed in this run of the batch.
    pub(crate) failed_writes: usize,
    /// A write failed because the connection was lost (PostgreSQL): nothing of this run can
    /// commit, so the batch runs again on another connection.
    pub(crate) lost_connection: bool,
}

impl Open {
    /// An unguarded write failed: its partial changes are in the transaction.
    fn spoiled(&self) -> bool {
        !self.guarded && self.failed_writes > 0
    }
}

thread_local! {
    /// Set only on the writer thread, while a batch runs.
    static OPEN: RefCell<Option<Open>> = const { RefCell::new(None) };
    /// Set only on the writer thread, while an optimistic batch runs on PostgreSQL.
    static DEFERRED: RefCell<Deferred> = RefCell::new(Deferred::default());
    /// Set only on the writer thread, while a batch runs on PostgreSQL.
    static LOCKED_AHEAD: RefCell<LockedAhead> = RefCell::new(LockedAhead::default());
}

/// Rows of creates waiting to be inserted together (PostgreSQL, optimistic batches).
///
/// Each create's rows were one statement: a round trip, and an executor start-up in a
/// PostgreSQL backend. Creates that follow each other in an optimistic batch, on a store
/// without a hook (nothing reads the directory in their transaction), leave their rows here
/// instead, and they are inserted in one statement before the next write that is not such a
/// create runs, and before the batch's audit append and commit. A constraint that statement
/// breaks (a userName taken, by another create of the batch or by a write committed meanwhile)
/// fails it as a whole, like an unguarded write that fails: the batch rolls back and runs
/// again guarded, where each create inserts its own rows in its savepoint and fails alone.
#[derive(Default)]
struct Deferred {
    /// Whether the write running now may leave its rows here.
    open: bool,
    rows: Vec<super::resources::NewRows>,
    /// The bind parameters `rows` take.
    binds: usize,
}

/// Leaves a create's rows for its batch to insert, or hands them back (`Some`) when the
/// running write cannot leave them (outside an optimistic PostgreSQL batch, or not a create).
pub(super) fn defer_rows(rows: super::resources::NewRows) -> Option<super::resources::NewRows> {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        // PostgreSQL takes at most 65,535 bind parameters in a statement (a create with
        // thousands of emails could fill it): beyond a safe share, a create inserts alone.
        let binds = rows.binds();
        if !d.open || d.binds + binds > MAX_DEFERRED_BINDS {
            return Some(rows);
        }
        d.binds += binds;
        d.rows.push(rows);
        None
    })
}

/// The most bind parameters the rows waiting in [`Deferred`] may take together.
const MAX_DEFERRED_BINDS: usize = 30_000;

fn deferring(open: bool) {
    DEFERRED.with(|d| d.borrow_mut().open = open);
}

fn forget_deferred() {
    DEFERRED.with(|d| *d.borrow_mut() = Deferred::default());
}

/// Inserts the rows waiting in [`Deferred`] on the open batch's connection. `false` when that
/// failed: the batch is spoiled (its connection marked lost if it was).
fn insert_deferred() -> bool {
    let rows = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        d.binds = 0;
        std::mem::take(&mut d.rows)
    });
    if rows.is_empty() {
        return true;
    }
    let Some(mut open) = take_open() else {
        // The connection went with a panic: the batch's transaction is gone, rows and all,
        // and the batch ends or runs again without them.
        return true;
    };
    let out = super::resources::insert_rows(&mut open.conn, &rows);
    let ok = match out {
        Ok(()) => true,
        Err(e) => {
            open.failed_writes += 1;
            open.lost_connection |= matches!(e, HubError::Unavailable(_));
            false
        }
    };
    restore(open);
    ok
}

/// User rows a PostgreSQL batch read and locked before its writes ran.
///
/// A User PATCH or PUT first reads its user's row and locks it (`users::user_for_write`): one
/// round trip per write, about a third of a batched PATCH's round trips (docs/benchmarks.md).
/// So a batch whose first writes each change one User reads all their rows in one statement
/// (in id order, which also keeps two batches of the same users from deadlocking), and each of
/// those writes takes its own row from here instead of reading it.
///
/// A row read ahead is what the write would have read itself only while no other write of the
/// batch changed it or the user's group memberships. So a row is handed only to the write that
/// asked for it, only once, and every row left is dropped when a write runs that did not ask
/// for one (a create, a Group write: it could add the user to a group). A write of one User
/// changes no other user's row or memberships.
#[derive(Default)]
struct LockedAhead {
    rows: std::collections::HashMap<String, super::users::UserRowWithMembership>,
    /// The user of the write running now, while a row read ahead for it may be here.
    running_for: Option<String>,
}

/// The row the running write's batch read and locked ahead for it, the first time the write
/// reads it (`None` outside a batch, for another user, or after another write may have
/// changed it).
pub(super) fn take_user_locked_ahead(id: &str) -> Option<super::users::UserRowWithMembership> {
    LOCKED_AHEAD.with(|l| {
        let mut l = l.borrow_mut();
        if l.running_for.as_deref() != Some(id) {
            return None;
        }
        l.running_for = None;
        l.rows.remove(id)
    })
}

/// Before the write `job` runs: its row (if read ahead) becomes takeable; a write that asked
/// for none drops every row left.
fn before_write(job: &dyn Job) {
    LOCKED_AHEAD.with(|l| {
        let mut l = l.borrow_mut();
        match job.user_to_change() {
            Some(id) if !l.rows.is_empty() => l.running_for = Some(id.to_string()),
            _ => {
                l.rows.clear();
                l.running_for = None;
            }
        }
    })
}

fn forget_locked_ahead() {
    LOCKED_AHEAD.with(|l| *l.borrow_mut() = LockedAhead::default());
}

/// PostgreSQL: reads and locks the rows of the users the batch's first writes change (up to
/// the first write that names none, after which they could not be used).
fn lock_ahead(c: &mut DbConnection, jobs: &[Box<dyn Job>]) -> HubResult<()> {
    forget_locked_ahead();
    if !matches!(c, DbConnection::Postgresql(_)) {
        return Ok(());
    }
    let mut ids: Vec<&str> = jobs.iter().map_while(|j| j.user_to_change()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    let rows = super::users::lock_users_ahead(c, &ids)?;
    LOCKED_AHEAD.with(|l| {
        l.borrow_mut().rows = rows.into_iter().map(|u| (u.row.id.clone(), u)).collect();
    });
    Ok(())
}

/// The open batch of this thread, taken out for the duration of one `write_tx` (and put back
/// with [`restore`]). `None` outside the writer thread.
pub(crate) fn take_open() -> Option<Open> {
    OPEN.with(|o| o.borrow_mut().take())
}

pub(crate) fn restore(open: Open) {
    OPEN.with(|o| *o.borrow_mut() = Some(open));
}

/// How the writer's batches ran (`scimhub_write_batches` on /metrics).
#[derive(Debug, Default)]
pub(crate) struct BatchStats {
    /// Batches committed without savepoints.
    pub(crate) optimistic: AtomicU64,
    /// Batches run with a savepoint per write.
    pub(crate) guarded: AtomicU64,
    /// Optimistic runs a failing write spoiled, run again guarded.
    pub(crate) rerun: AtomicU64,
}

impl BatchStats {
    pub(crate) fn counts(&self) -> [(&'static str, u64); 3] {
        [
            ("optimistic", self.optimistic.load(Ordering::Relaxed)),
            ("guarded", self.guarded.load(Ordering::Relaxed)),
            ("rerun", self.rerun.load(Ordering::Relaxed)),
        ]
    }
}

/// The queue to the writer threads.
pub(crate) struct WriteQueue {
    jobs: Sender<Box<dyn Job>>,
    pub(crate) stats: Arc<BatchStats>,
    /// How often a write or a batch is tried in all (see [`Job::conflicted_again`]).
    attempts: u32,
}

impl WriteQueue {
    /// Starts `writers` writer threads over `pool` (SQLite: one, on the one-connection writer
    /// pool; PostgreSQL: the pool, of which each batch takes one connection). A write or a batch
    /// that did not commit for a passing reason (a conflict, a lost connection) is tried up to
    /// `attempts` times in all. The threads end when the queue is dropped.
    pub(crate) fn start(pool: Pool, attempts: u32, writers: usize) -> HubResult<WriteQueue> {
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(BatchStats::default());
        let attempts = attempts.max(1);
        for _ in 0..writers.max(1) {
            let (pool, rx, thread_stats) = (pool.clone(), rx.clone(), stats.clone());
            std::thread::Builder::new()
                .name("scimhub-writer".into())
                .spawn(move || {
                    crate::scheduling::settle_request_thread();
                    run(pool, &rx, &thread_stats, attempts)
                })
                .map_err(|e| HubError::Backend(format!("cannot start the writer thread: {e}")))?;
        }
        Ok(WriteQueue {
            jobs,
            stats,
            attempts,
        })
    }

    /// Queues `f`; the receiver yields its result once the batch holding it has committed.
    /// `f` may run more than once (see the module docs).
    pub(crate) fn submit<T, F>(
        &self,
        what: Submitted,
        f: F,
    ) -> tokio::sync::oneshot::Receiver<HubResult<T>>
    where
        T: Send + 'static,
        F: FnMut() -> HubResult<T> + Send + 'static,
    {
        let (answer, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(Pending {
            write: f,
            out: None,
            answer,
            tries_left: self.attempts,
            what,
        });
        // A send fails only once the thread is gone; dropping the job drops its sender, and
        // the caller sees the channel closed.
        let _ = self.jobs.send(job);
        rx
    }
}

fn run(pool: Pool, rx: &Mutex<Receiver<Box<dyn Job>>>, stats: &BatchStats, attempts: u32) {
    // Start optimistic; after a failure, guarded until a guarded batch has none.
    let mut guarded = false;
    // Writes that conflicted with a concurrent transaction run first in the next batch.
    let mut again: Vec<Box<dyn Job>> = Vec::new();
    loop {
        let mut jobs = std::mem::take(&mut again);
        // One writer takes the queue at a time: it waits for the first write and takes whatever
        // else is waiting, then leaves the queue to the next writer. With writes of its own to
        // run again, a writer does not wait for the queue: another writer waiting there holds
        // it until a new write arrives.
        let queue = if jobs.is_empty() {
            rx.lock().ok()
        } else {
            rx.try_lock().ok()
        };
        if let Some(rx) = queue {
            if jobs.is_empty() {
                match rx.recv() {
                    Ok(first) => jobs.push(first),
                    Err(_) => return,
                }
            }
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        } else if jobs.is_empty() {
            // Poisoned: a writer panicked while holding the queue, which `catch_unwind` rules out.
            return;
        }
        // Writes run under their own catch_unwind; this keeps the thread (and every later
        // write) alive should the batch's own bookkeeping ever panic. A connection it left open
        // goes back to the pool mid-transaction, which discards it; the jobs it held are
        // dropped unanswered (their callers see the channel closed).
        match catch_unwind(AssertUnwindSafe(|| {
            run_batch(&pool, jobs, guarded, stats, attempts)
        })) {
            Ok((failures, conflicted)) => {
                guarded = failures;
                again = conflicted;
            }
            Err(_) => {
                tracing::error!("a write batch panicked outside its writes");
                drop(take_open());
            }
        }
    }
}

fn begin(conn: &mut PooledConn) -> HubResult<()> {
    let c: &mut DbConnection = conn;
    // SQLite: `BEGIN IMMEDIATE`, so a writer in another process is waited for, not failed on.
    if super::conn::begin_immediate(c)? {
        return Ok(());
    }
    <DbConnection as Connection>::TransactionManager::begin_transaction(c).map_err(Into::into)
}

fn rollback(c: &mut DbConnection) {
    // If the rollback fails too, the connection is left in a transaction and the pool discards
    // it on return.
    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(c);
}

/// Runs `jobs` in one transaction and answers them: again, guarded, when an optimistic run is
/// spoiled, and again on another connection (up to `attempts` runs) when the connection was
/// lost or the batch conflicted with a concurrent transaction before its commit. Returns
/// whether any write failed, so that the next batch runs guarded, and the writes that failed
/// alone on a conflict and are to run in the next batch (see [`Job::conflicted_again`]).
fn run_batch(
    pool: &Pool,
    mut jobs: Vec<Box<dyn Job>>,
    guarded: bool,
    stats: &BatchStats,
    attempts: u32,
) -> (bool, Vec<Box<dyn Job>>) {
    let mut guarded = guarded;
    let mut runs = 0;
    // Whether this run reads its users' rows ahead (see [`LockedAhead`]).
    let mut read_ahead = true;
    loop {
        runs += 1;
        let mut conn = match pool.get() {
            Ok(conn) => conn,
            Err(e) => {
                fail_unrun(jobs, HubError::from(e));
                return (guarded, Vec::new());
            }
        };
        if let Err(e) = begin(&mut conn) {
            // A pooled connection found dead at BEGIN (after a failover, the pool may hold
            // several): nothing ran, so the batch runs again on another, as a single write
            // would.
            drop(conn);
            if super::rerunnable(&e) && runs < attempts {
                stats.rerun.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            fail_unrun(jobs, e);
            return (guarded, Vec::new());
        }
        if read_ahead {
            if let Err(e) = lock_ahead(&mut conn, &jobs) {
                // Nothing of the batch ran. The read ahead only saves round trips, and one
                // write's user (a row another transaction holds past the statement timeout, an
                // id PostgreSQL cannot take) must not fail the others: the batch runs again
                // without it, each write reading its own row and failing alone if it must.
                tracing::info!(error = %e, "a batch's read ahead failed; running it again without");
                rollback(&mut conn);
                drop(conn);
                read_ahead = false;
                runs -= 1;
                stats.rerun.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        // Creates may leave their rows to be inserted together (see [`Deferred`]).
        let may_defer = !guarded && matches!(&*conn, DbConnection::Postgresql(_));
        forget_deferred();
        restore(Open {
            conn,
            effects: Vec::new(),
            guarded,
            failed_writes: 0,
            lost_connection: false,
        });
        let mut spoiled = false;
        // Which writes left effects in this run: only one that left none may run again in the
        // next batch (a body of several `write_tx`s may have committed some before failing).
        let mut wrote = vec![false; jobs.len()];
        let effects = || OPEN.with(|o| o.borrow().as_ref().map(|open| open.effects.len()));
        let mut panicked = None;
        for (n, (job, wrote)) in jobs.iter_mut().zip(wrote.iter_mut()).enumerate() {
            let defers = may_defer && job.only_creates();
            if !defers && !insert_deferred() {
                spoiled = true;
                break;
            }
            let before = effects();
            before_write(job.as_ref());
            deferring(defers);
            if catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
                tracing::error!("a write panicked");
                panicked = Some(n);
            }
            deferring(false);
            *wrote = effects() != before;
            // A panic inside a write transaction lost the connection (dropped while unwinding,
            // which discards it and rolls back): the rest cannot run.
            let stop = OPEN.with(|o| {
                o.borrow()
                    .as_ref()
                    .map(|open| open.spoiled() || open.lost_connection)
            });
            match stop {
                None => break,
                Some(true) => {
                    spoiled = true;
                    break;
                }
                Some(false) => {}
            }
        }
        if !spoiled && !insert_deferred() {
            spoiled = true;
        }
        forget_deferred();
        forget_locked_ahead();
        let Some(mut open) = take_open() else {
            // A panic inside a write transaction dropped the connection, and the batch's
            // transaction rolled back with it: the write that panicked fails alone, the
            // others (none of which committed) run again, guarded, on a new connection.
            if let Some(n) = panicked {
                finish_all(
                    [jobs.remove(n)],
                    Some(&HubError::Backend(
                        "the write failed with an internal error".into(),
                    )),
                );
                if jobs.is_empty() {
                    return (true, Vec::new());
                }
                stats.rerun.fetch_add(1, Ordering::Relaxed);
                guarded = true;
                continue;
            }
            let why = HubError::Backend("the write batch was aborted by an internal error".into());
            finish_all(jobs, Some(&why));
            return (true, Vec::new());
        };
        if spoiled {
            // An unguarded write failed part-way, or the connection is gone: undo everything
            // and run every write again, each in its own savepoint (on a new connection: a
            // lost one fails its rollback, and the pool discards it).
            let lost = open.lost_connection;
            rollback(&mut open.conn);
            drop(open);
            if lost && runs >= attempts {
                let why = HubError::Unavailable("the database connection was lost".into());
                finish_all(jobs, Some(&why));
                return (true, Vec::new());
            }
            stats.rerun.fetch_add(1, Ordering::Relaxed);
            guarded = true;
            continue;
        }
        let failures = open.failed_writes > 0;
        let c: &mut DbConnection = &mut open.conn;
        if let Err(e) = Store::before_batch_commit(c, &open.effects) {
            // Not committed: the chain append failed (a lost connection, a deadlock on its
            // head with another node's writer).
            rollback(&mut open.conn);
            drop(open);
            if super::rerunnable(&e) && runs < attempts {
                stats.rerun.fetch_add(1, Ordering::Relaxed);
                guarded = true;
                continue;
            }
            finish_all(jobs, Some(&e));
            return (true, Vec::new());
        }
        let postgres = matches!(c, DbConnection::Postgresql(_));
        match <DbConnection as Connection>::TransactionManager::commit_transaction(c) {
            Ok(()) => {
                let counter = if guarded {
                    &stats.guarded
                } else {
                    &stats.optimistic
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let effects = std::mem::take(&mut open.effects);
                for e in &effects {
                    e.store.report_population(&e.population);
                }
                drop(open);
                for e in effects {
                    e.store.after_commit(e.changed);
                }
                let (again, done): (Vec<_>, Vec<_>) = jobs
                    .into_iter()
                    .zip(wrote)
                    .map(|(mut job, wrote)| (!wrote && job.conflicted_again(), job))
                    .partition(|(again, _)| *again);
                finish_all(done.into_iter().map(|(_, job)| job), None);
                return (failures, again.into_iter().map(|(_, job)| job).collect());
            }
            Err(e) => {
                let e = HubError::from(e);
                rollback(&mut open.conn);
                drop(open);
                // PostgreSQL answered COMMIT with an error: nothing committed. No answer (the
                // connection was lost in flight): nobody knows, and no write is acknowledged.
                // (A SQLite commit that failed did not commit.)
                let why = match e {
                    HubError::Unavailable(m) if postgres => {
                        tracing::error!(error = %m, "connection lost during a batch's COMMIT: its writes may or may not be committed");
                        HubError::OutcomeUnknown(m)
                    }
                    e if super::rerunnable(&e) && runs < attempts => {
                        stats.rerun.fetch_add(1, Ordering::Relaxed);
                        guarded = true;
                        continue;
                    }
                    e => e,
                };
                finish_all(jobs, Some(&why));
                return (true, Vec::new());
            }
        }
    }
}

fn finish_all(jobs: impl IntoIterator<Item = Box<dyn Job>>, failed: Option<&HubError>) {
    for job in jobs {
        job.answer(failed);
    }
}

/// The error a write is answered with when its batch failed with `e`: the same kind (so the
/// same status, `503` for the passing ones), with `e`'s description.
fn same_failure(e: &HubError) -> HubError {
    match e {
        HubError::Unavailable(m) => HubError::Unavailable(m.clone()),
        HubError::TxConflict(m) => HubError::TxConflict(m.clone()),
        HubError::StatementTimeout(m) => HubError::StatementTimeout(m.clone()),
        HubError::OutcomeUnknown(m) => HubError::OutcomeUnknown(m.clone()),
        HubError::Backend(m) => HubError::Backend(m.clone()),
        other => HubError::Backend(other.to_string()),
    }
}

/// Answers jobs that never ran with the error that stopped the batch (the first gets the error
/// itself, the others its description with the same status).
fn fail_unrun(jobs: Vec<Box<dyn Job>>, error: HubError) {
    tracing::error!(error = %error, "the write batch could not start");
    let mut jobs = jobs.into_iter();
    let first = jobs.next();
    finish_all(jobs, Some(&error));
    if let Some(first) = first {
        first.fail(error);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::mpsc;
    use std::sync::Arc;

    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;
    use serde_json::json;

    use super::super::{Change, ResourceKind, Store, WriteHook};
    use super::*;

    /// A queued write that only names the user it changes, for the read-ahead rules.
    struct Names(Option<&'static str>);

    impl Job for Names {
        fn run(&mut self) {}
        fn conflicted_again(&mut self) -> bool {
            false
        }
        fn answer(self: Box<Self>, _: Option<&HubError>) {}
        fn fail(self: Box<Self>, _: HubError) {}
        fn only_creates(&self) -> bool {
            false
        }
        fn user_to_change(&self) -> Option<&str> {
            self.0
        }
    }

    fn read_ahead(ids: &[&str]) {
        let rows = ids
            .iter()
            .map(|id| {
                let row = super::super::assemble::ResourceRow {
                    id: id.to_string(),
                    doc: "{}".into(),
                    created: String::new(),
                    last_modified: String::new(),
                    version: 1,
                };
                let user = super::super::users::UserRowWithMembership {
                    row,
                    is_member: false,
                };
                (id.to_string(), user)
            })
            .collect();
        LOCKED_AHEAD.with(|l| {
            *l.borrow_mut() = LockedAhead {
                rows,
                running_for: None,
            }
        });
    }

    #[test]
    fn a_row_read_ahead_goes_once_to_the_write_that_named_it_until_another_kind_of_write_runs() {
        read_ahead(&["ann", "bea", "cy"]);
        // Outside any write, nothing is handed out.
        assert!(take_user_locked_ahead("ann").is_none());
        before_write(&Names(Some("ann")));
        assert!(take_user_locked_ahead("bea").is_none(), "not ann's write");
        assert!(take_user_locked_ahead("ann").is_some());
        assert!(take_user_locked_ahead("ann").is_none(), "once");
        // A second write of ann reads the row itself (the first changed it).
        before_write(&Names(Some("ann")));
        assert!(take_user_locked_ahead("ann").is_none());
        before_write(&Names(Some("bea")));
        assert!(take_user_locked_ahead("bea").is_some());
        // A write that names no user (a Group write could add cy to a group) ends the rest.
        before_write(&Names(None));
        before_write(&Names(Some("cy")));
        assert!(take_user_locked_ahead("cy").is_none());
        forget_locked_ahead();
    }

    struct TempStore {
        store: Store,
        path: std::path::PathBuf,
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
        }
    }

    fn temp_store() -> TempStore {
        let path = std::env::temp_dir().join(format!("scimhub-batch-{}.db", uuid::Uuid::new_v4()));
        let store = Store::open(&format!("sqlite://{}", path.display())).expect("open");
        assert!(store.batches_writes());
        TempStore { store, path }
    }

    fn user(name: &str) -> super::super::Doc {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
            .as_object()
            .cloned()
            .unwrap()
    }

    fn count(store: &Store, kind: ResourceKind) -> i64 {
        let mut c = store.read_conn().unwrap();
        let mut q = super::super::sql::Sql::<diesel::sql_types::BigInt>::new(
            "SELECT COUNT(*) FROM resources WHERE resource_type = ",
        );
        q.push(kind.sql_literal());
        q.get_result(&mut *c).unwrap()
    }

    type Answer<T> = tokio::sync::oneshot::Receiver<HubResult<T>>;

    /// Submits a write that holds the writer thread until the returned sender is dropped or
    /// sent to, so that the writes submitted meanwhile form the next batch together.
    fn hold_writer(store: &Store) -> (mpsc::Sender<()>, Answer<()>) {
        let (release, wait) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let held = store
            .submit_write(move |_| {
                started.send(()).unwrap();
                let _ = wait.recv();
                Ok(())
            })
            .unwrap();
        // Its batch was formed before it ran: whatever is submitted from now on waits for the
        // next one.
        running.recv().unwrap();
        (release, held)
    }

    fn create(store: &Store, name: &str) -> Answer<String> {
        let doc = user(name);
        store
            .submit_write(move |s| Ok(s.create(ResourceKind::User, doc.clone(), None)?.id))
            .unwrap()
    }

    /// The batch appends its writes' audit entries after the last write: one that failed in
    /// between leaves none, the others are chained in write order and the head row follows.
    #[test]
    fn a_batch_chains_its_committed_writes_in_order_after_the_last() {
        use super::super::audit_chain;
        let t = temp_store();
        let (release, held) = hold_writer(&t.store);
        let first = create(&t.store, "alice");
        let duplicate = create(&t.store, "ALICE");
        let last = create(&t.store, "bob");
        drop(release);
        held.blocking_recv().unwrap().unwrap();
        let alice = first.blocking_recv().unwrap().unwrap();
        assert!(duplicate.blocking_recv().unwrap().is_err());
        let bob = last.blocking_recv().unwrap().unwrap();
        let mut c = t.store.read_conn().unwrap();
        let report = audit_chain::verify(&mut c, &audit_chain::VerifyOptions::default()).unwrap();
        assert!(report.ok, "{:?}", report.finding);
        assert_eq!(report.checked, 2);
        let head = audit_chain::head(&mut c).unwrap();
        assert_eq!(head.seq, 2);
        let rows =
            audit_chain::export_page(&mut c, &audit_chain::ExportFilter::default(), 10).unwrap();
        let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(users, vec![alice.as_str(), bob.as_str()]);
        assert_eq!(rows[1].hash.as_deref(), Some(head.hash.as_str()));
    }

    /// Defers foreign keys and breaks one when it sees the user "poison": the commit fails.
    #[derive(Debug)]
    struct PoisonAtCommit;

    impl WriteHook for PoisonAtCommit {
        fn on_write(&self, conn: &mut DbConnection, change: &Change) -> HubResult<()> {
            let poisoned = change
                .after
                .as_ref()
                .and_then(|d| d.get("userName"))
                .is_some_and(|v| v == "poison");
            if poisoned {
                conn.batch_execute(
                    "PRAGMA defer_foreign_keys = ON; INSERT INTO group_members \
                     (group_id, member_id, member_type) VALUES ('no-group', 'no-user', 'User')",
                )?;
            }
            Ok(())
        }
    }

    #[test]
    fn a_failed_commit_fails_every_write_in_it_and_keeps_none() {
        let t = temp_store();
        let poisoned = t.store.clone().with_hook(Arc::new(PoisonAtCommit));
        let (release, held) = hold_writer(&t.store);
        let innocent = create(&poisoned, "innocent");
        let poison = create(&poisoned, "poison");
        drop(release);
        held.blocking_recv().unwrap().unwrap();
        assert!(innocent.blocking_recv().unwrap().is_err());
        assert!(poison.blocking_recv().unwrap().is_err());
        assert_eq!(count(&t.store, ResourceKind::User), 0);
        // The writer recovers: the next batch commits.
        let after = create(&t.store, "after");
        assert!(after.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&t.store, ResourceKind::User), 1);
    }

    /// A write that panics inside its transaction loses the batch's connection and
    /// transaction: it fails alone (500), and the writes around it, none of which committed,
    /// run again and commit. One that panics after its transaction fails alone too, and the
    /// batch commits without it.
    #[test]
    fn a_panicking_write_fails_alone_and_its_batch_runs_again() {
        let t = temp_store();
        let (release, held) = hold_writer(&t.store);
        let before = create(&t.store, "before");
        let panicking: Answer<()> = t
            .store
            .submit_write(|s| {
                s.write_tx(|_, _| -> HubResult<()> { panic!("boom inside a transaction") })
            })
            .unwrap();
        let after = create(&t.store, "after");
        let panicking_later: Answer<()> = t
            .store
            .submit_write(|_| -> HubResult<()> { panic!("boom outside a transaction") })
            .unwrap();
        let last = create(&t.store, "last");
        let (_, _, reruns_before) = stats(&t.store);
        drop(release);
        held.blocking_recv().unwrap().unwrap();
        assert!(matches!(
            panicking.blocking_recv().unwrap(),
            Err(HubError::Backend(_))
        ));
        assert!(matches!(
            panicking_later.blocking_recv().unwrap(),
            Err(HubError::Backend(_))
        ));
        for (name, answer) in [("before", before), ("after", after), ("last", last)] {
            assert!(answer.blocking_recv().unwrap().is_ok(), "{name}");
        }
        assert_eq!(count(&t.store, ResourceKind::User), 3);
        let (_, _, reruns_after) = stats(&t.store);
        assert_eq!(
            reruns_after,
            reruns_before + 1,
            "one rerun, after the first panic"
        );
        let next = create(&t.store, "next");
        assert!(next.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&t.store, ResourceKind::User), 4);
    }

    fn stats(store: &Store) -> (u64, u64, u64) {
        let [(_, optimistic), (_, guarded), (_, rerun)] = store.write_batch_counts().unwrap();
        (optimistic, guarded, rerun)
    }

    /// A group naming an unknown member: its row is inserted before the members are checked,
    /// so the write fails after changing the database.
    fn group_with_unknown_member(store: &Store) -> Answer<super::super::StoredResource> {
        store
            .submit_write(|s| {
                let doc = json!({"displayName": "g", "members": [{"value": "nobody"}]})
                    .as_object()
                    .cloned()
                    .unwrap();
                s.create(ResourceKind::Group, doc, None)
            })
            .unwrap()
    }

    /// Batches run without savepoints until a write fails: that run is rolled back and the
    /// batch runs again with a savepoint per write; the writer stays guarded until a guarded
    /// batch has no failure, then goes back to optimistic.
    #[test]
    fn a_failure_reruns_its_batch_guarded_and_a_clean_batch_ends_the_guard() {
        let t = temp_store();
        let (release, held) = hold_writer(&t.store);
        let alice = create(&t.store, "alice");
        // Fails after inserting its row, in the optimistic run: the whole run is undone.
        let group = group_with_unknown_member(&t.store);
        let bob = create(&t.store, "bob");
        drop(release);
        held.blocking_recv().unwrap().unwrap();
        let alice = alice.blocking_recv().unwrap().unwrap();
        assert!(matches!(
            group.blocking_recv().unwrap(),
            Err(HubError::UnknownMembers(_))
        ));
        let bob = bob.blocking_recv().unwrap().unwrap();
        // The holder's batch was optimistic; the next ran twice.
        assert_eq!(stats(&t.store), (1, 1, 1));
        // Each write's effects exist once: the ids answered are the ones stored, the group's
        // row is gone, and the chain holds one entry per committed write.
        assert!(t.store.get(ResourceKind::User, &alice, false).is_ok());
        assert!(t.store.get(ResourceKind::User, &bob, false).is_ok());
        assert_eq!(count(&t.store, ResourceKind::User), 2);
        assert_eq!(count(&t.store, ResourceKind::Group), 0);
        let mut c = t.store.read_conn().unwrap();
        let report = super::super::audit_chain::verify(
            &mut c,
            &super::super::audit_chain::VerifyOptions::default(),
        )
        .unwrap();
        assert!(report.ok, "{:?}", report.finding);
        assert_eq!(report.checked, 2);
        drop(c);
        // Still guarded: a clean batch ends the guard, the one after is optimistic.
        create(&t.store, "carol").blocking_recv().unwrap().unwrap();
        assert_eq!(stats(&t.store), (1, 2, 1));
        create(&t.store, "dave").blocking_recv().unwrap().unwrap();
        assert_eq!(stats(&t.store), (2, 2, 1));
        // A failing write alone in its batch: the optimistic run rolls back, the guarded one
        // answers the same error, and nothing is left.
        assert!(matches!(
            group_with_unknown_member(&t.store).blocking_recv().unwrap(),
            Err(HubError::UnknownMembers(_))
        ));
        assert_eq!(stats(&t.store), (2, 3, 2));
        assert_eq!(count(&t.store, ResourceKind::Group), 0);
        assert_eq!(count(&t.store, ResourceKind::User), 4);
    }

    /// In a stream of failures the writer stays guarded: only the first runs twice.
    #[test]
    fn repeated_failures_keep_the_writer_guarded() {
        let t = temp_store();
        create(&t.store, "alice").blocking_recv().unwrap().unwrap();
        assert_eq!(stats(&t.store), (1, 0, 0));
        for _ in 0..3 {
            assert!(matches!(
                create(&t.store, "ALICE").blocking_recv().unwrap(),
                Err(HubError::Uniqueness(_))
            ));
        }
        assert_eq!(stats(&t.store), (1, 3, 1));
        create(&t.store, "bob").blocking_recv().unwrap().unwrap();
        assert_eq!(stats(&t.store), (1, 4, 1));
        create(&t.store, "carol").blocking_recv().unwrap().unwrap();
        assert_eq!(stats(&t.store), (2, 4, 1));
        assert_eq!(count(&t.store, ResourceKind::User), 3);
    }
}
