//! Id ranks on PostgreSQL: deep index pages (`startIndex=90001`) that seek to their first row
//! instead of stepping over every row before it, on a database other nodes write too.
//!
//! SQLite's [`super::ranks`] trust the process's own commit reports. Here the writes of other
//! nodes never reach this process, so each type's ranks carry a [`Marker`] of the population
//! they were read at, and a page built from them checks that marker in the same statement (so
//! in the same snapshot) as it reads its rows (migration `2026-12-08-000100_rank_markers`):
//!
//! - a stamp of the type's row in `resource_type_counts`: its `folds` (bumped by a trigger on
//!   every fold of the deltas into the base, the only thing that deletes deltas) and its row
//!   version (`xmin`, new after a fold or a restore), and the server's start time (a failover
//!   or a crash may lose commits, after which counts could come back to values seen before);
//! - the number of deltas not folded yet. Every create and delete appends one, and so does a
//!   change of a resource's id or type (triggers on `resources`), whichever node or tool made it.
//!
//! Between two snapshots with the same stamp, deltas were only appended, so the same number of
//! them means the same population: ranks whose marker matches the page's snapshot are exact for
//! it. A page whose check fails reads no rows (an exact seek always finds at least its first
//! id); the ranks then catch up and the page runs once more, and walks (`OFFSET`) if it fails
//! again. Catching up reads the deltas with whether each named resource exists now (one
//! snapshot), when the stamp is unchanged, and every id again when it is not. A page past the
//! end of the ranks checks the marker on its own before answering empty.
//!
//! Ranks never follow this process's own commit reports: they are a function of what was read
//! from the database, which keeps them correct whatever wrote. A write here moves the marker
//! like any other, and the next deep page catches up from the deltas. Writes that bypass the
//! triggers (`TRUNCATE`, a load with triggers disabled) are invisible to counts and ranks
//! alike: docs/postgresql.md says what to do after one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::RunQueryDsl;

use super::ranks::{key, slot, Seek, SortedIds};
use super::search::{fold_type_count, in_transaction, FOLD_AFTER};
use super::sql::Sql;
use super::{DbConnection, ResourceKind};
use crate::error::HubResult;

/// Pages this many rows deep or deeper seek through the ranks; shallower ones step over the
/// rows before them, which costs less than the ranks' first read of every id.
pub(crate) const RANKED_FROM_OFFSET: u64 = 100;

/// How long a type whose ranks cannot be used (an id of a form scimhub does not assign, or no
/// counts row) walks before its ids are read again.
const UNUSABLE_FOR: Duration = Duration::from_secs(60);

/// The population a type's ranks were read at (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    stamp: String,
    deltas: i64,
}

/// Where a deep page starts according to the ranks, and what must hold for that to be true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedSeek {
    pub(crate) start: Start,
    /// What the page's snapshot must show to trust `start` (see [`check_sql`]).
    pub(crate) marker: Marker,
    /// The type's number of resources at that marker: the page's `totalResults`.
    pub(crate) total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// The page is the rows from this id on (inclusive).
    From(String),
    /// The offset is at or past the end: the page is empty.
    PastEnd,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    NotLoaded,
    /// Pages walk (`OFFSET`) until then, when the ids are read again.
    Unusable {
        until: Instant,
    },
    Loaded {
        ids: SortedIds,
        marker: Marker,
    },
}

#[derive(Debug, Default)]
pub(crate) struct PgIdRanks {
    kinds: [RwLock<State>; 2],
    /// Per type, whether a read of every id is under way: a second deep page meanwhile walks
    /// instead of reading every id again.
    loading: [AtomicBool; 2],
    /// How deep pages ran (`scimhub_pg_deep_pages` on /metrics): see [`DeepPage`].
    pages: [AtomicU64; 3],
    /// Reads of every id, all types together (tests tell a catch-up from the deltas from one).
    full_reads: AtomicU64,
}

/// How a deep index page on PostgreSQL found its first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeepPage {
    /// Sought through ranks whose marker held.
    Seek,
    /// Sought after the ranks caught up with writes made since they were read.
    CaughtUp,
    /// Stepped over the rows before it (`OFFSET`).
    Walk,
}

impl DeepPage {
    pub(crate) const ALL: [DeepPage; 3] = [DeepPage::Seek, DeepPage::CaughtUp, DeepPage::Walk];

    pub(crate) fn label(self) -> &'static str {
        match self {
            DeepPage::Seek => "seek",
            DeepPage::CaughtUp => "caught_up",
            DeepPage::Walk => "walk",
        }
    }
}

/// The marker's two parts as SQL expressions over scalar subqueries: uncorrelated, so
/// PostgreSQL evaluates each once per statement. The stamp of a type without a counts row
/// starts with `@` (see [`usable_stamp`]).
fn marker_exprs(kind: ResourceKind) -> (String, String) {
    let lit = kind.sql_literal();
    (
        format!(
            "(COALESCE((SELECT folds::text || '.' || xmin::text FROM resource_type_counts \
             WHERE resource_type = {lit}), '') || '@' \
             || extract(epoch FROM pg_postmaster_start_time())::text)"
        ),
        format!("(SELECT COUNT(*) FROM resource_type_count_deltas WHERE resource_type = {lit})"),
    )
}

fn usable_stamp(stamp: &str) -> bool {
    !stamp.starts_with('@')
}

/// The condition a page built from ranks at `marker` adds to its `WHERE`: true only in a
/// snapshot whose population is the one the ranks were read at.
pub(crate) fn check_sql(kind: ResourceKind, marker: &Marker) -> Sql {
    let (stamp, deltas) = marker_exprs(kind);
    let mut q = Sql::new(" AND ");
    q.push(&stamp)
        .push(" = ")
        .text(marker.stamp.as_str())
        .push(" AND ")
        .push(&deltas)
        .push(" = ")
        .int(marker.deltas);
    q
}

/// The marker of `kind` now.
pub(crate) fn marker_now(c: &mut DbConnection, kind: ResourceKind) -> HubResult<Marker> {
    let (stamp, deltas) = marker_exprs(kind);
    let q = Sql::<(Text, BigInt)>::new(&format!("SELECT {stamp}, {deltas}"));
    let (stamp, deltas) = q.get_result::<(String, i64)>(c)?;
    Ok(Marker { stamp, deltas })
}

impl PgIdRanks {
    pub(crate) fn count(&self, how: DeepPage) {
        self.pages[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn full_reads(&self) -> u64 {
        self.full_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn counts(&self) -> [(&'static str, u64); 3] {
        DeepPage::ALL.map(|how| {
            (
                how.label(),
                self.pages[how as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Where the page that skips `offset` rows in id order (descending when asked) starts,
    /// from the ranks as they are, reading them first if they never were (not inside a
    /// transaction, nor while another request reads them). `None`: the page walks (no ranks, or
    /// the type holds an id of another form).
    pub(crate) fn seek(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        offset: u64,
        descending: bool,
    ) -> HubResult<Option<CheckedSeek>> {
        if self.needs_load(kind) {
            self.load(c, kind)?;
        }
        Ok(self.seek_loaded(kind, offset, descending))
    }

    fn read(&self, kind: ResourceKind) -> std::sync::RwLockReadGuard<'_, State> {
        self.kinds[slot(kind)]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, kind: ResourceKind) -> std::sync::RwLockWriteGuard<'_, State> {
        self.kinds[slot(kind)]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn needs_load(&self, kind: ResourceKind) -> bool {
        match &*self.read(kind) {
            State::NotLoaded => true,
            State::Unusable { until } => Instant::now() >= *until,
            State::Loaded { .. } => false,
        }
    }

    fn seek_loaded(
        &self,
        kind: ResourceKind,
        offset: u64,
        descending: bool,
    ) -> Option<CheckedSeek> {
        let state = self.read(kind);
        let State::Loaded { ids, marker } = &*state else {
            return None;
        };
        let start = match ids.seek(offset, descending) {
            Seek::From(first) => Start::From(first),
            Seek::PastEnd => Start::PastEnd,
            Seek::Unavailable => return None,
        };
        Some(CheckedSeek {
            start,
            marker: marker.clone(),
            total: ids.len() as u64,
        })
    }

    /// After a page's check failed against `seen`: brings the ranks up to the database's
    /// present, from the deltas when the stamp is unchanged, else by reading every id.
    pub(crate) fn catch_up(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        seen: &Marker,
    ) -> HubResult<()> {
        // The guard is released before anything below reads the database or takes the lock
        // again (a read guard held into `load`'s write would wait for itself).
        let current = match &*self.read(kind) {
            State::Loaded { marker, .. } => Some(marker.clone()),
            State::NotLoaded => None,
            State::Unusable { .. } => return Ok(()),
        };
        let Some(current) = current else {
            return self.load(c, kind);
        };
        if current != *seen {
            // Another request caught up meanwhile.
            return Ok(());
        }
        // Inside a transaction the connection may see its own uncommitted writes' deltas.
        if in_transaction(c)? {
            return Ok(());
        }
        let (now, deltas) = read_deltas(c, kind)?;
        if now.stamp != current.stamp {
            return self.load(c, kind);
        }
        // Deep pages take their totals from the ranks rather than counting (which folds now
        // and then): with only deep pages listing, the deltas would pile up, and each page's
        // check count them.
        if deltas.len() as i64 > FOLD_AFTER {
            fold_type_count(c, kind)?;
            return self.load(c, kind);
        }
        let Some(changes) = net_changes(&deltas) else {
            return self.load(c, kind);
        };
        let mut state = self.write(kind);
        let State::Loaded { ids, marker } = &mut *state else {
            return Ok(());
        };
        // Only forward: a catch-up read from an older snapshot than another's, applied after
        // it, would bring back what the newer one removed.
        if marker.stamp != now.stamp || marker.deltas >= now.deltas {
            return Ok(());
        }
        for (k, present) in changes {
            if present {
                ids.insert(k);
            } else {
                ids.remove(k);
            }
        }
        *marker = now;
        Ok(())
    }

    /// Reads every id of `kind` with the marker of the same snapshot, and keeps them unless
    /// ranks caught up past that snapshot got there first.
    fn load(&self, c: &mut DbConnection, kind: ResourceKind) -> HubResult<()> {
        if in_transaction(c)? {
            return Ok(());
        }
        let flag = &self.loading[slot(kind)];
        if flag.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        struct Clear<'a>(&'a AtomicBool);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _clear = Clear(flag);
        self.full_reads.fetch_add(1, Ordering::Relaxed);
        let (stamp, deltas) = marker_exprs(kind);
        let q = Sql::<(Text, BigInt, Nullable<Text>)>::new(&format!(
            "SELECT m.stamp, m.deltas, r.id FROM (SELECT {stamp} AS stamp, {deltas} AS deltas) m \
             LEFT JOIN resources r ON r.resource_type = {}",
            kind.sql_literal()
        ));
        let rows: Vec<(String, i64, Option<String>)> = q.load(c)?;
        let Some((stamp, deltas, _)) = rows.first() else {
            return Ok(());
        };
        let marker = Marker {
            stamp: stamp.clone(),
            deltas: *deltas,
        };
        let mut usable = usable_stamp(&marker.stamp);
        let mut keys = Vec::with_capacity(rows.len());
        for (_, _, id) in &rows {
            if let Some(id) = id {
                match key(id) {
                    Some(k) => keys.push(k),
                    None => usable = false,
                }
            }
        }
        drop(rows);
        let mut state = self.write(kind);
        match &*state {
            State::Loaded { marker: held, .. }
                if held.stamp == marker.stamp && held.deltas > marker.deltas => {}
            _ if !usable => {
                *state = State::Unusable {
                    until: Instant::now() + UNUSABLE_FOR,
                }
            }
            _ => {
                *state = State::Loaded {
                    ids: SortedIds::from_unsorted(keys),
                    marker,
                }
            }
        }
        Ok(())
    }
}

/// An id a delta names (`None`: appended before the column existed) and whether a resource of
/// the type has it now.
type NamedId = (Option<String>, bool);

/// The marker now and, in the same snapshot, each id the deltas not folded yet name, with
/// whether a resource of `kind` has that id now (`None`: a delta that names no resource,
/// appended before the migration that added the column).
fn read_deltas(c: &mut DbConnection, kind: ResourceKind) -> HubResult<(Marker, Vec<NamedId>)> {
    let (stamp, deltas) = marker_exprs(kind);
    let lit = kind.sql_literal();
    let q = Sql::<(Text, BigInt, Nullable<Text>, Nullable<Bool>)>::new(&format!(
        "SELECT m.stamp, m.deltas, d.resource_id, \
         CASE WHEN d.resource_type IS NULL THEN NULL ELSE r.id IS NOT NULL END \
         FROM (SELECT {stamp} AS stamp, {deltas} AS deltas) m \
         LEFT JOIN resource_type_count_deltas d ON d.resource_type = {lit} \
         LEFT JOIN resources r ON r.id = d.resource_id AND r.resource_type = {lit}"
    ));
    let rows: Vec<(String, i64, Option<String>, Option<bool>)> = q.load(c)?;
    let mut marker = None;
    let mut named = Vec::with_capacity(rows.len());
    for (stamp, deltas, id, present) in rows {
        marker.get_or_insert(Marker { stamp, deltas });
        // With no delta at all, the one row has neither.
        if let Some(present) = present {
            named.push((id, present));
        }
    }
    let marker = marker.ok_or_else(|| {
        crate::error::HubError::Backend("the marker query returned no row".into())
    })?;
    Ok((marker, named))
}

/// What to do to each id the deltas name: keep it (`true`: a resource has it now) or drop it.
/// Exact whatever order the deltas were appended in, and for ids used more than once, since
/// it asks the table. `None` when a delta names no resource, or a present id is not of the
/// form the ranks hold: only reading every id again is exact then.
fn net_changes(named: &[NamedId]) -> Option<Vec<(u128, bool)>> {
    let mut by_id: HashMap<u128, bool> = HashMap::with_capacity(named.len());
    for (id, present) in named {
        match key(id.as_deref()?) {
            Some(k) => {
                by_id.insert(k, *present);
            }
            // A foreign id that is gone again changes nothing the ranks hold.
            None if !present => {}
            None => return None,
        }
    }
    Some(by_id.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ranks::text;

    #[test]
    fn pg_ranks_net_changes_follow_what_the_table_holds() {
        let [a, b, c] = [
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
        ]
        .map(|u| u.as_u128());
        let named = vec![
            (Some(text(a)), false),
            (Some(text(b)), false),
            (Some(text(c)), true),
            (Some(text(a)), false),
            (Some("bulk-1".into()), false),
        ];
        let mut changes = net_changes(&named).expect("exact");
        changes.sort();
        let mut want = vec![(a, false), (b, false), (c, true)];
        want.sort();
        assert_eq!(changes, want);
        // A delta from before the migration names no resource; a present id of another form
        // cannot be ranked.
        assert_eq!(net_changes(&[(None, true)]), None);
        assert_eq!(net_changes(&[(Some("bulk-1".into()), true)]), None);
    }

    #[test]
    fn pg_ranks_check_binds_the_marker() {
        let marker = Marker {
            stamp: "4.1234@1700000000.5".into(),
            deltas: 7,
        };
        let check = check_sql(ResourceKind::User, &marker);
        let (text, binds) = check.to_postgres();
        assert!(text.contains("FROM resource_type_counts"), "{text}");
        assert!(text.contains("pg_postmaster_start_time()"), "{text}");
        assert!(
            text.contains("COUNT(*) FROM resource_type_count_deltas"),
            "{text}"
        );
        assert_eq!(binds.len(), 2);
        assert!(usable_stamp(&marker.stamp));
        assert!(!usable_stamp("@1700000000.5"), "no counts row");
    }
}
