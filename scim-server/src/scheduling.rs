//! How the threads that serve SCIM requests are scheduled (Linux `SCHED_BATCH`).
//!
//! Every SCIM write a worker takes waits on a writer thread: the writer commits a batch of
//! writes and answers each one, and each answer wakes the worker that waits for it. Under
//! Linux's default policy a woken thread preempts the one running on its core at once. Where the
//! worker and the writer share a core (a server given one core, a container with one CPU, any
//! saturated host), the worker then preempts the writer for every answer: it runs that one
//! answer, sleeps again and hands the core back. That is two context switches per write, and the
//! writer, woken by each write a worker hands it, likewise starts a batch of one while the
//! worker still has requests to read. Measured: 0.4 preemptions of the writer per create, about
//! a tenth of the server's CPU (docs/performance.md, "Session 24").
//!
//! Under `SCHED_BATCH` a woken thread does not preempt the running one; it runs when that one
//! blocks or its time slice ends. So the writer answers its whole batch and blocks, and the
//! worker then takes every answer in one turn and reads every request waiting before the writer
//! runs again. `serve` switches it on ([`configure`], the `sched_batch` setting); the HTTP
//! workers and the group-commit writers then put themselves under it as they start
//! ([`settle_request_thread`]), and threads they start inherit it (the blocking pool's, and the
//! SQLite checkpointer when a writer's commit starts it). The nice value stays as it was. Only a
//! thread under the default policy changes: a server an operator started under another one
//! (`chrt -r`, `chrt -i`) keeps it everywhere. A system that refuses the change (a seccomp
//! profile, a non-Linux build) keeps the default policy, and the refusal is logged once. CLI
//! commands and tests never configure it and run as before.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether request threads go under `SCHED_BATCH` (set once by `serve`).
static BATCH: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's policy was settled (set, or found impossible to set): once per thread,
    /// however many listeners' services a worker builds.
    static SETTLED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the threads serving requests run under `SCHED_BATCH` from now on; `serve` calls it
/// before any of them starts.
pub fn configure(batch: bool) {
    BATCH.store(batch, Ordering::Relaxed);
}

/// Puts the calling thread (an HTTP worker, a writer) under `SCHED_BATCH` when [`configure`]d
/// so; once per thread.
pub fn settle_request_thread() {
    if !BATCH.load(Ordering::Relaxed) || SETTLED.with(|s| s.replace(true)) {
        return;
    }
    if let Err(why) = use_batch_policy() {
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| {
            tracing::warn!(
                reason = %why,
                "request threads are not put under SCHED_BATCH (sched_batch)"
            );
        });
    }
}

#[cfg(target_os = "linux")]
fn use_batch_policy() -> Result<(), String> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityValue};

    let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    let own = own_scheduling()?;
    if own.policy != 0 {
        // An operator's choice (real-time, idle, batch already): not ours to replace.
        return Err(format!("the thread runs under policy {}, kept", own.policy));
    }
    let nice = own.nice;
    // The crate sets a normal policy's priority as a nice value, mapped from 0..=99; the value
    // its own mapping turns into this thread's nice value keeps the nice value unchanged.
    let keeping_nice = (0..=99u8)
        .filter_map(|p| ThreadPriorityValue::try_from(p).ok())
        .map(ThreadPriority::Crossplatform)
        .find(|p| p.to_posix(batch).ok() == Some(nice))
        .ok_or_else(|| format!("no priority keeps the nice value {nice}"))?;
    set_thread_priority_and_policy(thread_native_id(), keeping_nice, batch)
        .map_err(|e| format!("{e:?}"))
}

#[cfg(not(target_os = "linux"))]
fn use_batch_policy() -> Result<(), String> {
    Err("SCHED_BATCH is Linux's".into())
}

/// A thread's scheduling as `/proc` reports it.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scheduling {
    /// The nice value (`stat` field 19).
    pub nice: i32,
    /// The policy (`stat` field 41): 0 normal, 3 batch, 5 idle.
    pub policy: u32,
}

/// The calling thread's scheduling, read from `/proc/thread-self/stat`.
#[cfg(target_os = "linux")]
pub(crate) fn own_scheduling() -> Result<Scheduling, String> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .map_err(|e| format!("cannot read /proc/thread-self/stat: {e}"))?;
    parse_stat(&stat).ok_or_else(|| "unreadable /proc/thread-self/stat".to_string())
}

/// Fields of a `/proc/.../stat` line; the command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from its last `)`.
#[cfg(target_os = "linux")]
pub(crate) fn parse_stat(stat: &str) -> Option<Scheduling> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (the state).
    Some(Scheduling {
        nice: fields.get(19 - 3)?.parse().ok()?,
        policy: fields.get(41 - 3)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_stat_line_gives_nice_and_policy_whatever_the_thread_is_called() {
        let line = "4242 (actix-rt|sys) tem) S 1 4242 4242 0 -1 4194560 0 0 0 0 5 3 0 0 20 7 \
                    12 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 3 0 0 0";
        assert_eq!(parse_stat(line), Some(Scheduling { nice: 7, policy: 3 }));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
    }

    /// Switches the process-wide setting back off however the test ends.
    #[cfg(target_os = "linux")]
    struct Configured;
    #[cfg(target_os = "linux")]
    impl Drop for Configured {
        fn drop(&mut self) {
            configure(false);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_settled_thread_runs_batch_at_its_nice_value_once_configured() {
        let before = std::thread::spawn(|| own_scheduling().unwrap())
            .join()
            .unwrap();
        if before.policy != 0 {
            // The test runner itself runs under another policy (`chrt`): nothing here changes.
            eprintln!("skipped: the test runs under policy {}", before.policy);
            return;
        }
        // Not configured (a CLI command, another test): nothing changes. Unit tests share one
        // process, so this is the only test that configures it, on threads of its own.
        let unconfigured = std::thread::spawn(|| {
            settle_request_thread();
            own_scheduling().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(unconfigured, before);
        let configured = Configured;
        configure(true);
        let (settled, child) = std::thread::spawn(|| {
            settle_request_thread();
            let settled = own_scheduling().unwrap();
            let child = std::thread::spawn(|| own_scheduling().unwrap())
                .join()
                .unwrap();
            (settled, child)
        })
        .join()
        .unwrap();
        drop(configured);
        assert_eq!(
            settled,
            Scheduling {
                nice: before.nice,
                policy: 3
            }
        );
        assert_eq!(child, settled, "a thread it starts inherits the policy");
        assert_eq!(
            own_scheduling().unwrap().policy,
            0,
            "the test's own thread is untouched"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_under_another_policy_keeps_it() {
        // SCHED_BATCH already is "another policy" for this check: what `chrt -b` left is kept as
        // it is, and so would be a real-time or idle policy.
        if own_scheduling().unwrap().policy != 0 {
            eprintln!("skipped: the test runs under another policy");
            return;
        }
        let kept = std::thread::spawn(|| {
            use_batch_policy().unwrap();
            let first = own_scheduling().unwrap();
            (first, use_batch_policy())
        })
        .join()
        .unwrap();
        assert_eq!(kept.0.policy, 3);
        assert_eq!(
            kept.1,
            Err("the thread runs under policy 3, kept".to_string())
        );
    }
}
