//! Id ranks on PostgreSQL: deep index pages (`startIndex=90001`) that seek to their first row
//! instead of stepping over every row before it, on a database other nodes write too.
//!
//! SQLite's [`super::ranks`] trust the process's own commit reports. Here the writes of other
//! nodes never reach this process, so each type's ranks carry a [`Marker`] of the population
//! they were read at, and a page built from them checks that marker in the same statement (so
//! in the same snapshot) as it reads its rows (migration `2026-12-08-000100_rank_markers`):
//!
//! - `folds`: the number of folds of the type's count deltas into its base. A trigger bumps it
//!   on every update of the base row, and a fold is the only thing that deletes deltas.
//! - `deltas`: the number of deltas not folded yet. Every create and delete appends one (a
//!   trigger on `resources`), whichever node or tool made it.
//!
//! Between two snapshots with the same `folds`, deltas were only appended, so the same number of
//! them means the same population: ranks whose marker matches the page's snapshot are exact for
//! it. A page whose check fails reads no rows (an exact seek always finds at least its first
//! id); the ranks then catch up and the page runs again. Catching up reads the deltas alone
//! when no fold happened since (each names its resource), and every id again when one did.
//!
//! Ranks never follow this process's own commit reports: they are a function of what was read
//! from the database, which keeps them correct whatever wrote. A write here moves the marker
//! like any other, and the next deep page catches up from the deltas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::RunQueryDsl;

use super::ranks::{key, slot, Seek, SortedIds};
use super::search::{fold_type_count, in_transaction, FOLD_AFTER};
use super::sql::Sql;
use super::{DbConnection, ResourceKind};
use crate::error::HubResult;

/// The population a type's ranks were read at: compared as (`folds`, `deltas`), which orders
/// the snapshots of one type (`folds` only grows; with it equal, `deltas` only grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Marker {
    folds: i64,
    deltas: i64,
}

/// Where a deep page starts, if the ranks were read at the page's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedSeek {
    /// The page is the rows from this id on (inclusive).
    pub(crate) first: String,
    /// What the page must find to trust `first` (see [`check_sql`]).
    pub(crate) marker: Marker,
    /// The type's number of resources at that marker: the page's `totalResults`.
    pub(crate) total: u64,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    NotLoaded,
    /// Some id is not in the form the store assigns: pages walk (`OFFSET`).
    Unusable,
    Loaded {
        ids: SortedIds,
        marker: Marker,
    },
}

#[derive(Debug, Default)]
pub(crate) struct PgIdRanks {
    kinds: [RwLock<State>; 2],
    /// Per type, whether a full read of its ids is under way: a second deep page meanwhile
    /// walks instead of reading every id again.
    loading: [AtomicBool; 2],
    /// How deep pages ran (`scimhub_pg_deep_pages` on /metrics): see [`DeepPage`].
    pages: [AtomicU64; 3],
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

/// `COALESCE(folds, -1)` and the deltas' count of `kind`, as SQL expressions over scalar
/// subqueries: uncorrelated, so PostgreSQL evaluates each once per statement.
fn marker_exprs(kind: ResourceKind) -> (String, String) {
    let lit = kind.sql_literal();
    (
        format!(
            "COALESCE((SELECT folds FROM resource_type_counts WHERE resource_type = {lit}), -1)"
        ),
        format!("(SELECT COUNT(*) FROM resource_type_count_deltas WHERE resource_type = {lit})"),
    )
}

/// The condition a page built from ranks at `marker` adds to its `WHERE`: true only in a
/// snapshot whose population is the one the ranks were read at.
pub(crate) fn check_sql(kind: ResourceKind, marker: Marker) -> Sql {
    let (folds, deltas) = marker_exprs(kind);
    let mut q = Sql::new(" AND ");
    q.push(&folds)
        .push(" = ")
        .int(marker.folds)
        .push(" AND ")
        .push(&deltas)
        .push(" = ")
        .int(marker.deltas);
    q
}

impl PgIdRanks {
    pub(crate) fn count(&self, how: DeepPage) {
        self.pages[how as usize].fetch_add(1, Ordering::Relaxed);
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
    /// from the ranks as they are, loading them first if they never were. `None`: the page
    /// walks (the offset is past the end, whose emptiness no seek can check; the type holds an
    /// id of another form; another request is reading every id).
    pub(crate) fn seek(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        offset: u64,
        descending: bool,
    ) -> HubResult<Option<CheckedSeek>> {
        if matches!(*self.read(kind), State::NotLoaded) {
            self.load(c, kind)?;
        }
        Ok(self.seek_loaded(kind, offset, descending))
    }

    fn read(&self, kind: ResourceKind) -> std::sync::RwLockReadGuard<'_, State> {
        self.kinds[slot(kind)]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn seek_loaded(
        &self,
        kind: ResourceKind,
        offset: u64,
        descending: bool,
    ) -> Option<CheckedSeek> {
        match &*self.read(kind) {
            State::Loaded { ids, marker } => match ids.seek(offset, descending) {
                Seek::From(first) => Some(CheckedSeek {
                    first,
                    marker: *marker,
                    total: ids.len() as u64,
                }),
                Seek::PastEnd | Seek::Unavailable => None,
            },
            State::NotLoaded | State::Unusable => None,
        }
    }

    /// After a page's check failed against `seen`: brings the ranks up to the database's
    /// present, from the deltas when no fold happened since, else by reading every id.
    pub(crate) fn catch_up(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        seen: Marker,
    ) -> HubResult<()> {
        let current = match &*self.read(kind) {
            State::Loaded { marker, .. } => *marker,
            State::NotLoaded => return self.load(c, kind),
            State::Unusable => return Ok(()),
        };
        if current != seen {
            // Another request caught up meanwhile.
            return Ok(());
        }
        let (now, deltas) = read_deltas(c, kind)?;
        if now.folds != current.folds {
            return self.load(c, kind);
        }
        // Deep pages take their totals from the ranks, so nothing else may be folding: fold
        // here rather than let the deltas, and each page's check counting them, grow.
        if deltas.len() as i64 > FOLD_AFTER && !in_transaction(c)? {
            fold_type_count(c, kind)?;
            return self.load(c, kind);
        }
        let mut state = self.kinds[slot(kind)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let State::Loaded { ids, marker } = &mut *state else {
            return Ok(());
        };
        // Only forward: a catch-up read from an older snapshot than another's, applied after
        // it, would bring back what the newer one removed.
        if marker.folds != now.folds || marker.deltas >= now.deltas {
            return Ok(());
        }
        match net_changes(&deltas) {
            Some(changes) => {
                for (k, created) in changes {
                    if created {
                        ids.insert(k);
                    } else {
                        ids.remove(k);
                    }
                }
                *marker = now;
            }
            None => *state = State::NotLoaded,
        }
        Ok(())
    }

    /// Reads every id of `kind` with the marker of the same snapshot, and keeps them unless
    /// ranks from a later snapshot got there first.
    fn load(&self, c: &mut DbConnection, kind: ResourceKind) -> HubResult<()> {
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
        let (folds, deltas) = marker_exprs(kind);
        let q = Sql::<(BigInt, BigInt, Nullable<Text>)>::new(&format!(
            "SELECT m.folds, m.deltas, r.id FROM (SELECT {folds} AS folds, {deltas} AS deltas) m \
             LEFT JOIN resources r ON r.resource_type = {}",
            kind.sql_literal()
        ));
        let rows: Vec<(i64, i64, Option<String>)> = q.load(c)?;
        let Some(&(folds, deltas, _)) = rows.first() else {
            return Ok(());
        };
        let marker = Marker { folds, deltas };
        let mut keys = Vec::with_capacity(rows.len());
        let mut usable = folds >= 0;
        for (_, _, id) in &rows {
            if let Some(id) = id {
                match key(id) {
                    Some(k) => keys.push(k),
                    None => usable = false,
                }
            }
        }
        let mut state = self.kinds[slot(kind)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match &*state {
            State::Loaded { marker: held, .. } if *held >= marker => {}
            State::Unusable => {}
            _ if !usable => *state = State::Unusable,
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

/// The marker now, and every delta not folded yet (resource id, +1 or −1), in one snapshot.
fn read_deltas(
    c: &mut DbConnection,
    kind: ResourceKind,
) -> HubResult<(Marker, Vec<(Option<String>, i64)>)> {
    let (folds, deltas) = marker_exprs(kind);
    let q = Sql::<(BigInt, BigInt, Nullable<Text>, Nullable<BigInt>)>::new(&format!(
        "SELECT m.folds, m.deltas, d.resource_id, d.delta \
         FROM (SELECT {folds} AS folds, {deltas} AS deltas) m \
         LEFT JOIN resource_type_count_deltas d ON d.resource_type = {}",
        kind.sql_literal()
    ));
    let rows: Vec<(i64, i64, Option<String>, Option<i64>)> = q.load(c)?;
    let marker = rows.first().map_or(
        Marker {
            folds: -1,
            deltas: 0,
        },
        |&(folds, deltas, _, _)| Marker { folds, deltas },
    );
    let deltas = rows
        .into_iter()
        .filter_map(|(_, _, id, delta)| delta.map(|d| (id, d)))
        .collect();
    Ok((marker, deltas))
}

/// What the deltas did to each id they name: created (`true`) or deleted. The store assigns
/// every id once (a new UUIDv7) and never again, so an id has at most a create and then a
/// delete among them, and a delete is the last word. `None` when that does not hold, or a
/// delta names no resource (appended before the migration that added the column): then only
/// reading every id again is exact.
fn net_changes(deltas: &[(Option<String>, i64)]) -> Option<Vec<(u128, bool)>> {
    let mut by_id: HashMap<u128, (u32, u32)> = HashMap::with_capacity(deltas.len());
    for (id, delta) in deltas {
        let k = key(id.as_deref()?)?;
        let seen = by_id.entry(k).or_default();
        match delta {
            1 => seen.0 += 1,
            -1 => seen.1 += 1,
            _ => return None,
        }
        if seen.0 > 1 || seen.1 > 1 {
            return None;
        }
    }
    Some(
        by_id
            .into_iter()
            .map(|(k, (_, deleted))| (k, deleted == 0))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ranks::text;

    #[test]
    fn pg_ranks_net_changes_end_with_the_delete() {
        let [a, b, c] = [
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
        ]
        .map(|u| u.as_u128());
        let deltas = vec![
            (Some(text(a)), 1),
            (Some(text(b)), -1),
            (Some(text(c)), 1),
            (Some(text(a)), -1),
        ];
        let mut changes = net_changes(&deltas).expect("exact");
        changes.sort();
        let mut want = vec![(a, false), (b, false), (c, true)];
        want.sort();
        assert_eq!(changes, want);
        // A delta from before the migration names no resource; an id created twice was not
        // assigned by the store; a delta that is not ±1 was not written by the trigger.
        assert_eq!(net_changes(&[(None, 1)]), None);
        assert_eq!(net_changes(&[(Some(text(a)), 1), (Some(text(a)), 1)]), None);
        assert_eq!(net_changes(&[(Some(text(a)), 2)]), None);
        assert_eq!(net_changes(&[(Some("bulk-1".into()), 1)]), None);
    }

    #[test]
    fn pg_ranks_markers_order_snapshots() {
        let m = |folds, deltas| Marker { folds, deltas };
        assert!(m(1, 0) > m(0, 500), "a fold is later whatever the deltas");
        assert!(m(1, 3) > m(1, 2));
        let check = check_sql(ResourceKind::User, m(4, 7));
        let (text, binds) = check.to_postgres();
        assert!(text.contains("folds FROM resource_type_counts"), "{text}");
        assert!(
            text.contains("COUNT(*) FROM resource_type_count_deltas"),
            "{text}"
        );
        assert_eq!(binds.len(), 2);
    }
}
