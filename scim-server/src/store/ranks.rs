//! Ranks of resource ids in the default list order (by `id`), kept in memory so that an index
//! page at any depth (`startIndex=90001&count=100`) seeks to its first row instead of stepping
//! over 90,000 rows: SQLite and PostgreSQL both implement `OFFSET` by walking.
//!
//! SQLite only, for the reason [`super::TypeCounts`] gives: this process owns the one writer,
//! so every create and delete passes through [`super::Store::write_tx`], which reports them here
//! after commit. On PostgreSQL other nodes write too, and pages at depth use `OFFSET` (cursors,
//! RFC 9865, are the cheap way to walk there).
//!
//! # Consistency with the database
//!
//! A type's ranks load lazily, on the first page that needs them. The load marks the type
//! `Loading` under its lock, then reads every id *without* the lock (a scan of the whole type:
//! holding the lock through it would stall the writer, whose commit reports take it). Commits
//! reported meanwhile are kept in the mark and replayed, in order, on what the load read. A
//! commit either happened before the load's snapshot began (the load sees the row; a replayed
//! report is then a no-op, inserts and removals being idempotent) or after the mark was set
//! (its report, made after its commit, lands in the mark or on the loaded ids). A reset during
//! the load (another process wrote) discards it.
//!
//! # Shape
//!
//! Ids are UUIDs (the store assigns v7), held as `u128` — their numeric order is the text order
//! of the lowercase hyphenated form the store writes. A type holding any other id is marked
//! unusable and pages fall back to `OFFSET`. The ids sit in sorted blocks of at most
//! [`MAX_BLOCK`]: an insert moves at most one block, and finding the k-th id walks the block
//! lengths (about 200 blocks at 100,000 ids).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use diesel::sql_types::Text;
use diesel::RunQueryDsl;

use super::{DbConnection, ResourceKind};
use crate::error::HubResult;

/// Blocks split when they grow past this.
const MAX_BLOCK: usize = 1024;

/// Where an index page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seek {
    /// The id at the requested offset: the page is the rows from it on (inclusive).
    From(String),
    /// The offset is at or past the end: the page is empty.
    PastEnd,
    /// Ranks cannot be used for this type: use `OFFSET`.
    Unavailable,
}

#[derive(Debug, Default)]
pub(crate) struct IdRanks {
    kinds: [RwLock<State>; 2],
    /// Numbers loads, so that one finishing after a reset knows it is stale.
    loads: AtomicU64,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    NotLoaded,
    /// Load number `load` is reading the ids; the commits reported meanwhile (`true`: created),
    /// and whether one of them had an id of another form.
    Loading {
        load: u64,
        reported: Vec<(u128, bool)>,
        unusable: bool,
    },
    Unusable,
    Loaded(SortedIds),
}

pub(super) fn slot(kind: ResourceKind) -> usize {
    match kind {
        ResourceKind::User => 0,
        ResourceKind::Group => 1,
    }
}

/// The `u128` of an id if it is in the exact form the store writes; else `None`.
pub(super) fn key(id: &str) -> Option<u128> {
    let u = uuid::Uuid::parse_str(id).ok()?;
    let mut buf = uuid::Uuid::encode_buffer();
    (u.hyphenated().encode_lower(&mut buf) == id).then(|| u.as_u128())
}

pub(super) fn text(k: u128) -> String {
    uuid::Uuid::from_u128(k).hyphenated().to_string()
}

impl IdRanks {
    /// The start of the page that skips `offset` rows in id order (descending when asked).
    /// Loads the ranks first when they are not loaded and `may_load` (not on an HTTP worker:
    /// the load scans every id of the type).
    pub(crate) fn seek(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        offset: u64,
        descending: bool,
        may_load: bool,
    ) -> HubResult<Seek> {
        {
            let state = self.kinds[slot(kind)]
                .read()
                .unwrap_or_else(|e| e.into_inner());
            match &*state {
                State::Loaded(ids) => return Ok(ids.seek(offset, descending)),
                // Another request is loading them: this page walks.
                State::Unusable | State::Loading { .. } => return Ok(Seek::Unavailable),
                State::NotLoaded => {}
            }
        }
        if !may_load {
            return Ok(Seek::Unavailable);
        }
        // Read by a snapshot that begins after the mark is set: every commit reported before
        // the mark is in it. A kept snapshot (or the caller's own transaction) may be older.
        let Some(load) = self.begin_load(kind, || super::local_reader::fresh_read(c)) else {
            return Ok(self.seek_settled(kind, offset, descending));
        };
        // A panic while reading would leave the mark behind: deep pages would walk, and
        // reports pile up in the mark, until the next reset. Disarmed once the read returned.
        struct Unmark<'a>(&'a IdRanks, ResourceKind, u64, bool);
        impl Drop for Unmark<'_> {
            fn drop(&mut self) {
                if self.3 {
                    let gone = crate::error::HubError::Backend("the load panicked".into());
                    let _ = self.0.finish_load(self.1, self.2, Err(gone));
                }
            }
        }
        let mut unmark = Unmark(self, kind, load, true);
        let read = load_ids(c, kind);
        unmark.3 = false;
        drop(unmark);
        self.finish_load(kind, load, read)?;
        Ok(self.seek_settled(kind, offset, descending))
    }

    /// Marks `kind` as loading when it is not loaded and `fresh()` (which makes the caller's
    /// next read begin a new snapshot) says yes; the load's number.
    fn begin_load(&self, kind: ResourceKind, fresh: impl FnOnce() -> bool) -> Option<u64> {
        let mut state = self.kinds[slot(kind)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if !matches!(&*state, State::NotLoaded) || !fresh() {
            return None;
        }
        let load = self.loads.fetch_add(1, Ordering::Relaxed);
        *state = State::Loading {
            load,
            reported: Vec::new(),
            unusable: false,
        };
        Some(load)
    }

    /// Settles load number `load` with what it `read`, replaying the commits reported while it
    /// read; a load that a reset overtook settles nothing.
    fn finish_load(
        &self,
        kind: ResourceKind,
        load: u64,
        read: HubResult<Option<SortedIds>>,
    ) -> HubResult<()> {
        let mut state = self.kinds[slot(kind)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match std::mem::take(&mut *state) {
            State::Loading {
                load: current,
                reported,
                unusable,
            } if current == load => {
                *state = match read {
                    // Left not loaded: the next deep page tries again.
                    Err(e) => return Err(e),
                    Ok(Some(mut ids)) if !unusable => {
                        for (k, created) in reported {
                            if created {
                                ids.insert(k);
                            } else {
                                ids.remove(k);
                            }
                        }
                        State::Loaded(ids)
                    }
                    Ok(_) => State::Unusable,
                };
            }
            other => *state = other,
        }
        Ok(())
    }

    /// The seek once the ranks are settled (or not: then `Unavailable`).
    fn seek_settled(&self, kind: ResourceKind, offset: u64, descending: bool) -> Seek {
        match &*self.kinds[slot(kind)]
            .read()
            .unwrap_or_else(|e| e.into_inner())
        {
            State::Loaded(ids) => ids.seek(offset, descending),
            _ => Seek::Unavailable,
        }
    }

    /// Whether `kind`'s ranks are loaded and usable, so that a page at any depth seeks without
    /// reading the table. Not before their first load (a scan of every id, which the first
    /// deep page does on the blocking pool) nor for a type holding an id of another form
    /// (`OFFSET` walks).
    pub(crate) fn ready(&self, kind: ResourceKind) -> bool {
        matches!(
            &*self.kinds[slot(kind)]
                .read()
                .unwrap_or_else(|e| e.into_inner()),
            State::Loaded(_)
        )
    }

    /// Forgets every type's ranks (another process changed the resources); the next page that
    /// needs them loads them again.
    pub(crate) fn reset(&self) {
        for lock in &self.kinds {
            *lock.write().unwrap_or_else(|e| e.into_inner()) = State::NotLoaded;
        }
    }

    /// Reports committed creates (`created = true`) and deletes.
    pub(crate) fn apply(&self, kind: ResourceKind, id: &str, created: bool) {
        let mut state = self.kinds[slot(kind)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match (&mut *state, key(id), created) {
            (State::Loaded(ids), Some(k), true) => ids.insert(k),
            (State::Loaded(ids), Some(k), false) => ids.remove(k),
            (State::Loading { reported, .. }, Some(k), created) => reported.push((k, created)),
            // An id in another form: ranks can no longer answer for this type.
            (State::Loaded(_), None, true) => *state = State::Unusable,
            (State::Loading { unusable, .. }, None, true) => *unusable = true,
            _ => {}
        }
    }
}

/// Every id of `kind`, or `None` when one is not in the form the store writes.
fn load_ids(c: &mut DbConnection, kind: ResourceKind) -> HubResult<Option<SortedIds>> {
    #[derive(diesel::QueryableByName)]
    struct IdRow {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let rows: Vec<IdRow> = diesel::sql_query(format!(
        "SELECT id FROM resources WHERE resource_type = {}",
        kind.sql_literal()
    ))
    .load(c)?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        match key(&row.id) {
            Some(k) => keys.push(k),
            None => return Ok(None),
        }
    }
    Ok(Some(SortedIds::from_unsorted(keys)))
}

/// A sorted set of `u128` in blocks, with the k-th element found by walking block lengths.
#[derive(Debug, Default, Clone)]
pub(super) struct SortedIds {
    blocks: Vec<Vec<u128>>,
    len: usize,
}

impl SortedIds {
    pub(super) fn from_unsorted(mut keys: Vec<u128>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        let len = keys.len();
        let blocks = keys.chunks(MAX_BLOCK / 2).map(<[u128]>::to_vec).collect();
        SortedIds { blocks, len }
    }

    /// The block that holds `k` or would: the first whose last element is `>= k`, else the last.
    fn block_of(&self, k: u128) -> usize {
        let i = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|&last| last < k));
        i.min(self.blocks.len().saturating_sub(1))
    }

    pub(super) fn insert(&mut self, k: u128) {
        if self.blocks.is_empty() {
            self.blocks.push(vec![k]);
            self.len = 1;
            return;
        }
        let b = self.block_of(k);
        let block = &mut self.blocks[b];
        let Err(at) = block.binary_search(&k) else {
            return;
        };
        block.insert(at, k);
        self.len += 1;
        if block.len() > MAX_BLOCK {
            let tail = block.split_off(block.len() / 2);
            self.blocks.insert(b + 1, tail);
        }
    }

    pub(super) fn remove(&mut self, k: u128) {
        if self.blocks.is_empty() {
            return;
        }
        let b = self.block_of(k);
        let block = &mut self.blocks[b];
        if let Ok(at) = block.binary_search(&k) {
            block.remove(at);
            self.len -= 1;
            if block.is_empty() {
                self.blocks.remove(b);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The element of rank `n` (0-based, ascending).
    fn nth(&self, mut n: usize) -> Option<u128> {
        for block in &self.blocks {
            if n < block.len() {
                return Some(block[n]);
            }
            n -= block.len();
        }
        None
    }

    pub(super) fn seek(&self, offset: u64, descending: bool) -> Seek {
        let Ok(offset) = usize::try_from(offset) else {
            return Seek::PastEnd;
        };
        if offset >= self.len {
            return Seek::PastEnd;
        }
        let rank = if descending {
            self.len - 1 - offset
        } else {
            offset
        };
        self.nth(rank)
            .map_or(Seek::PastEnd, |k| Seek::From(text(k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn ranks_keys_only_for_the_stored_form() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(key(&id).map(text), Some(id.clone()));
        assert_eq!(key(&id.to_uppercase()), None);
        assert_eq!(key(&id.replace('-', "")), None);
        assert_eq!(key("bulk-user-1"), None);
    }

    #[test]
    fn ranks_text_order_is_key_order() {
        let mut ids: Vec<String> = (0..500).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let mut keys: Vec<u128> = ids.iter().map(|i| key(i).expect("uuid")).collect();
        ids.sort();
        keys.sort();
        assert_eq!(ids, keys.into_iter().map(text).collect::<Vec<_>>());
    }

    fn ids(keys: &[u128]) -> HubResult<Option<SortedIds>> {
        Ok(Some(SortedIds::from_unsorted(keys.to_vec())))
    }

    fn all(ranks: &IdRanks) -> Vec<Seek> {
        (0..5)
            .map(|i| ranks.seek_settled(ResourceKind::User, i, false))
            .collect()
    }

    /// Commits reported while a load reads (without the lock) are replayed on what it read,
    /// in order; they are neither lost (created after its snapshot began) nor doubled (before).
    #[test]
    fn ranks_replay_commits_reported_during_their_load() {
        let [a, b, c, d] = [10u128, 20, 30, 40];
        let ranks = IdRanks::default();
        let load = ranks
            .begin_load(ResourceKind::User, || true)
            .expect("begins");
        assert!(!ranks.ready(ResourceKind::User));
        assert_eq!(
            ranks.begin_load(ResourceKind::User, || true),
            None,
            "one load at a time"
        );
        ranks.apply(ResourceKind::User, &text(c), true); // after the snapshot began: not read
        ranks.apply(ResourceKind::User, &text(b), true); // before it: read as well
        ranks.apply(ResourceKind::User, &text(a), false);
        ranks.apply(ResourceKind::User, &text(d), true);
        ranks.apply(ResourceKind::User, &text(d), false);
        ranks.apply(ResourceKind::Group, &text(d), true); // another type's ranks
        ranks
            .finish_load(ResourceKind::User, load, ids(&[a, b]))
            .expect("settles");
        assert!(ranks.ready(ResourceKind::User));
        assert_eq!(
            all(&ranks),
            [
                Seek::From(text(b)),
                Seek::From(text(c)),
                Seek::PastEnd,
                Seek::PastEnd,
                Seek::PastEnd
            ]
        );
        assert!(!ranks.ready(ResourceKind::Group));
    }

    /// A load that a reset overtook settles nothing; an id of another form reported during a
    /// load makes the type unusable; a failed read leaves the type to load again.
    #[test]
    fn ranks_loads_overtaken_or_spoiled_settle_accordingly() {
        let ranks = IdRanks::default();
        assert_eq!(
            ranks.begin_load(ResourceKind::User, || false),
            None,
            "not fresh"
        );
        let load = ranks
            .begin_load(ResourceKind::User, || true)
            .expect("begins");
        ranks.reset();
        let again = ranks
            .begin_load(ResourceKind::User, || true)
            .expect("after the reset");
        ranks
            .finish_load(ResourceKind::User, load, ids(&[1]))
            .expect("settles");
        assert!(!ranks.ready(ResourceKind::User), "the overtaken load");
        ranks
            .finish_load(ResourceKind::User, again, ids(&[1, 2]))
            .expect("settles");
        assert_eq!(all(&ranks)[1], Seek::From(text(2)));

        ranks.reset();
        let load = ranks
            .begin_load(ResourceKind::User, || true)
            .expect("begins");
        ranks.apply(ResourceKind::User, "legacy-1", true);
        ranks
            .finish_load(ResourceKind::User, load, ids(&[1]))
            .expect("settles");
        assert_eq!(all(&ranks)[0], Seek::Unavailable);
        assert!(!ranks.ready(ResourceKind::User));

        ranks.reset();
        let load = ranks
            .begin_load(ResourceKind::User, || true)
            .expect("begins");
        let failed = ranks.finish_load(
            ResourceKind::User,
            load,
            Err(crate::error::HubError::Unavailable("gone".into())),
        );
        assert!(failed.is_err());
        assert!(
            ranks.begin_load(ResourceKind::User, || true).is_some(),
            "loads again"
        );
    }

    proptest! {
        /// The blocks behave as a sorted set under any mix of inserts and removes, across splits.
        #[test]
        fn ranks_match_a_sorted_set(
            initial in proptest::collection::vec(0u128..5000, 0..3000),
            ops in proptest::collection::vec((any::<bool>(), 0u128..5000), 0..3000),
            probes in proptest::collection::vec(0u64..6000, 1..20),
        ) {
            let mut ids = SortedIds::from_unsorted(initial.clone());
            let mut model: BTreeSet<u128> = initial.into_iter().collect();
            for (add, k) in ops {
                if add { ids.insert(k); model.insert(k); } else { ids.remove(k); model.remove(&k); }
            }
            prop_assert_eq!(ids.len, model.len());
            prop_assert!(ids.blocks.iter().all(|b| !b.is_empty() && b.len() <= MAX_BLOCK));
            let flat: Vec<u128> = ids.blocks.iter().flatten().copied().collect();
            let sorted: Vec<u128> = model.iter().copied().collect();
            prop_assert_eq!(&flat, &sorted);
            for p in probes {
                let expect_asc = sorted.get(p as usize).map(|&k| Seek::From(text(k))).unwrap_or(Seek::PastEnd);
                let expect_desc = sorted.iter().rev().nth(p as usize).map(|&k| Seek::From(text(k))).unwrap_or(Seek::PastEnd);
                prop_assert_eq!(ids.seek(p, false), expect_asc);
                prop_assert_eq!(ids.seek(p, true), expect_desc);
            }
        }
    }
}
