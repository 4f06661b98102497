//! Group commit for SQLite's one writer.
//!
//! A SQLite commit appends every page the transaction touched to the WAL as a whole page: a
//! created User is a row plus an entry in each of a dozen indexes, so its commit (and the
//! checkpoint that later copies those pages back) cost more than the inserts themselves. When
//! writes arrive faster than they commit, they share one transaction instead.
//!
//! Single-resource SCIM writes (`Store::submit_write`) are sent to one writer thread. It takes
//! every write waiting in its queue, opens one transaction on the writer connection and runs them
//! one after another. Each `Store::write_tx` inside a write becomes a savepoint of that shared
//! transaction, so a failing write rolls back alone, exactly as its own transaction would have.
//! Then one commit makes them all durable, and only then are the callers answered: nobody sees a
//! write acknowledged that a failed commit later lost. If the commit fails, every write in it
//! reports that failure.
//!
//! The thread keeps its queue hot: while writes keep coming it never sleeps between them, which
//! also saves the blocking-pool hand-off each write paid before.
//!
//! What it does not batch: anything that reads through a reader connection after writing
//! (Bulk, the whole-group PATCH fallback) still runs on the blocking pool with its own
//! transactions, because a reader cannot see a shared transaction before it commits.
//!
//! A panic inside a write discards the writer connection (the open transaction rolls back with
//! it) and fails every write of that batch; the next batch opens a new connection.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};

use diesel::connection::{Connection, TransactionManager};

use super::conn::DbConnection;
use super::{Pool, PooledConn, Store};
use crate::error::{HubError, HubResult};

/// At most this many writes share a commit, so that one commit's latency stays bounded.
const MAX_BATCH: usize = 64;

/// Answers a write after its batch ended: `None` when the batch committed, else why not.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

/// A queued write.
trait Job: Send {
    /// Runs it on the writer thread inside the shared transaction; the answer waits for the
    /// commit.
    fn run(self: Box<Self>) -> Finish;
    /// Answers without running it: no batch could be opened.
    fn fail(self: Box<Self>, error: HubError);
}

struct Pending<T, F> {
    write: F,
    answer: tokio::sync::oneshot::Sender<HubResult<T>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> HubResult<T> + Send + 'static,
{
    fn run(self: Box<Self>) -> Finish {
        let Pending { write, answer } = *self;
        let out = write();
        Box::new(move |failed: Option<&str>| {
            let out = match (out, failed) {
                (Ok(_), Some(why)) => Err(HubError::Backend(why.to_string())),
                (out, _) => out,
            };
            let _ = answer.send(out);
        })
    }

    fn fail(self: Box<Self>, error: HubError) {
        let _ = self.answer.send(Err(error));
    }
}

/// What a committed write still has to do outside the transaction (see `Store::after_commit`).
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
}

thread_local! {
    /// Set only on the writer thread, while a batch runs.
    static OPEN: RefCell<Option<Open>> = const { RefCell::new(None) };
}

/// The open batch of this thread, taken out for the duration of one `write_tx` (and put back
/// with [`restore`]). `None` outside the writer thread.
pub(crate) fn take_open() -> Option<Open> {
    OPEN.with(|o| o.borrow_mut().take())
}

pub(crate) fn restore(open: Open) {
    OPEN.with(|o| *o.borrow_mut() = Some(open));
}

/// The queue to the writer thread.
pub(crate) struct WriteQueue {
    jobs: Sender<Box<dyn Job>>,
}

impl WriteQueue {
    /// Starts the writer thread over `pool` (the one-connection writer pool). The thread ends
    /// when the queue is dropped.
    pub(crate) fn start(pool: Pool) -> HubResult<WriteQueue> {
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("scimhub-writer".into())
            .spawn(move || run(pool, rx))
            .map_err(|e| HubError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(WriteQueue { jobs })
    }

    /// Queues `f`; the receiver yields its result once the batch holding it has committed.
    pub(crate) fn submit<T, F>(&self, f: F) -> tokio::sync::oneshot::Receiver<HubResult<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> HubResult<T> + Send + 'static,
    {
        let (answer, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(Pending { write: f, answer });
        // A send fails only once the thread is gone; dropping the job drops its sender, and
        // the caller sees the channel closed.
        let _ = self.jobs.send(job);
        rx
    }
}

fn run(pool: Pool, rx: Receiver<Box<dyn Job>>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Writes run under their own catch_unwind; this keeps the thread (and every later
        // write) alive should the batch's own bookkeeping ever panic. A connection it left open
        // goes back to the pool mid-transaction, which discards it.
        if catch_unwind(AssertUnwindSafe(|| run_batch(&pool, jobs))).is_err() {
            tracing::error!("a write batch panicked outside its writes");
            drop(take_open());
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

fn run_batch(pool: &Pool, jobs: Vec<Box<dyn Job>>) {
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => return fail_unrun(jobs, HubError::from(e)),
    };
    if let Err(e) = begin(&mut conn) {
        return fail_unrun(jobs, e);
    }
    restore(Open {
        conn,
        effects: Vec::new(),
    });
    let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
    for job in jobs {
        match catch_unwind(AssertUnwindSafe(|| job.run())) {
            Ok(finish) => finishes.push(finish),
            Err(_) => tracing::error!("a write panicked; its batch shares its outcome"),
        }
        // A panic inside a write transaction lost the connection (dropped while unwinding,
        // which discards it and rolls back): the rest cannot run.
        if OPEN.with(|o| o.borrow().is_none()) {
            break;
        }
    }
    // Jobs not run because of a panic were dropped above with the loop: their callers see the
    // channel closed.
    let Some(mut open) = take_open() else {
        return finish_all(
            finishes,
            Some("the write batch was aborted by an internal error"),
        );
    };
    let c: &mut DbConnection = &mut open.conn;
    let committed = Store::before_batch_commit(c, &open.effects).and_then(|()| {
        <DbConnection as Connection>::TransactionManager::commit_transaction(c)
            .map_err(HubError::from)
    });
    match committed {
        Ok(()) => {
            let effects = std::mem::take(&mut open.effects);
            drop(open);
            for e in effects {
                e.store.after_commit(e.population, e.changed);
            }
            finish_all(finishes, None);
        }
        Err(e) => {
            let why = e.to_string();
            let c: &mut DbConnection = &mut open.conn;
            // If the rollback fails too, the connection is left in a transaction and the pool
            // discards it on return.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(c);
            drop(open);
            finish_all(finishes, Some(&why));
        }
    }
}

fn finish_all(finishes: Vec<Finish>, failed: Option<&str>) {
    for f in finishes {
        f(failed);
    }
}

/// Answers jobs that never ran with the error that stopped the batch (the first gets the error
/// itself, the others its description with the same status).
fn fail_unrun(jobs: Vec<Box<dyn Job>>, error: HubError) {
    tracing::error!(error = %error, "the write batch could not start");
    let unavailable = matches!(error, HubError::Unavailable(_));
    let why = error.to_string();
    let mut first = Some(error);
    for job in jobs {
        let e = first.take().unwrap_or_else(|| {
            if unavailable {
                HubError::Unavailable(why.clone())
            } else {
                HubError::Backend(why.clone())
            }
        });
        job.fail(e);
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
            .submit_write(move |s| Ok(s.create(ResourceKind::User, doc, None)?.id))
            .unwrap()
    }

    #[test]
    fn waiting_writes_share_one_commit_and_are_answered_after_it() {
        let t = temp_store();
        let (release, held) = hold_writer(&t.store);
        // Each write reports whether a reader connection saw the previous one's user while it
        // ran: within one shared transaction it cannot (it has not committed yet).
        let answers: Vec<Answer<bool>> = (0..20)
            .map(|i| {
                let doc = user(&format!("u{i}"));
                t.store
                    .submit_write(move |s| {
                        let previous_visible =
                            i > 0 && s.find_user_id(&format!("u{}", i - 1))?.is_some();
                        s.create(ResourceKind::User, doc, None)?;
                        Ok(previous_visible)
                    })
                    .unwrap()
            })
            .collect();
        release.send(()).unwrap();
        held.blocking_recv().unwrap().unwrap();
        for (i, a) in answers.into_iter().enumerate() {
            let previous_visible = a.blocking_recv().unwrap().unwrap();
            assert!(
                !previous_visible,
                "write {i} saw the previous write before the commit"
            );
        }
        // Answered only after the commit: every user is visible to readers now.
        for i in 0..20 {
            assert!(
                t.store.find_user_id(&format!("u{i}")).unwrap().is_some(),
                "u{i}"
            );
        }
        assert_eq!(count(&t.store, ResourceKind::User), 20);
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

    #[test]
    fn a_failing_write_rolls_back_alone() {
        let t = temp_store();
        let (release, held) = hold_writer(&t.store);
        let first = create(&t.store, "alice");
        let duplicate = create(&t.store, "ALICE");
        // Inserts the group row, then fails on its unknown member: the savepoint undoes the row.
        let group = t
            .store
            .submit_write(|s| {
                let doc = json!({"displayName": "g", "members": [{"value": "nobody"}]})
                    .as_object()
                    .cloned()
                    .unwrap();
                s.create(ResourceKind::Group, doc, None)
            })
            .unwrap();
        let last = create(&t.store, "bob");
        drop(release);
        held.blocking_recv().unwrap().unwrap();
        let alice = first.blocking_recv().unwrap().unwrap();
        assert!(matches!(
            duplicate.blocking_recv().unwrap(),
            Err(HubError::Uniqueness(_))
        ));
        assert!(matches!(
            group.blocking_recv().unwrap(),
            Err(HubError::UnknownMembers(_))
        ));
        let bob = last.blocking_recv().unwrap().unwrap();
        assert!(t.store.get(ResourceKind::User, &alice, false).is_ok());
        assert!(t.store.get(ResourceKind::User, &bob, false).is_ok());
        assert_eq!(count(&t.store, ResourceKind::Group), 0);
        assert_eq!(count(&t.store, ResourceKind::User), 2);
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

    #[test]
    fn a_panicking_write_fails_its_batch_and_the_writer_recovers() {
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
        drop(release);
        held.blocking_recv().unwrap().unwrap();
        // The one that ran before the panic shared its transaction, which is gone.
        assert!(before.blocking_recv().unwrap().is_err());
        // The panicking write and the one queued behind it are dropped unanswered.
        assert!(panicking.blocking_recv().is_err());
        assert!(after.blocking_recv().is_err());
        assert_eq!(count(&t.store, ResourceKind::User), 0);
        let next = create(&t.store, "next");
        assert!(next.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&t.store, ResourceKind::User), 1);
    }
}
