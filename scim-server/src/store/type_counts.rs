//! The per-type resource count cache for unfiltered lists on SQLite ([`TypeCounts`]).

use super::sql::Sql;
use super::ResourceKind;

/// The number of resources of each type, cached for unfiltered lists: `COUNT(*)` over 100,000
/// Users costs milliseconds, which is most of a page's cost. Only for SQLite, where this
/// process owns the one writer, so every create or delete passes through [`Store::write_tx`].
///
/// A generation number guards against a count computed before a commit being cached after it:
/// a count is cached only if no create or delete committed since its query began.
#[derive(Debug, Default)]
pub(crate) struct TypeCounts {
    generation: std::sync::atomic::AtomicU64,
    /// Per kind (User, Group): the count and the generation it was taken at.
    cached: std::sync::Mutex<[Option<(u64, u64)>; 2]>,
}

impl TypeCounts {
    fn slot(kind: ResourceKind) -> usize {
        match kind {
            ResourceKind::User => 0,
            ResourceKind::Group => 1,
        }
    }

    /// The current generation; read it before counting.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn get(&self, kind: ResourceKind) -> Option<u64> {
        let now = self.generation();
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match cached[Self::slot(kind)] {
            Some((generation, n)) if generation == now => Some(n),
            _ => None,
        }
    }

    /// Caches `n`, counted after reading `generation`, unless a create or delete committed since.
    pub(crate) fn put(&self, kind: ResourceKind, generation: u64, n: u64) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() == generation {
            cached[Self::slot(kind)] = Some((generation, n));
        }
    }

    /// Called after a commit that created or deleted resources.
    pub(super) fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Creates and deletes committed by other processes on the same SQLite file (an import run
/// beside a server): [`TypeCounts`] and the id ranks rely on every change passing through this
/// process, so they are dropped when another process's count moved.
///
/// Each process counts its own creates and deletes in its row of `store_population` (one
/// upsert in the write's transaction, so a rolled-back write counts nothing); a reader sums the
/// other rows, a point read over a handful of rows, and compares it with the sum it saw last.
/// Its own commits never change that sum, so they never drop the caches.
#[derive(Debug)]
pub(crate) struct OtherWriters {
    me: String,
    /// The other processes' sum at the last check; `None` before the first.
    seen: std::sync::Mutex<Option<i64>>,
}

/// Records the other processes' sum `now` as seen; whether it moved on. The sum only grows
/// (every process adds its creates and deletes to its own row), so a smaller one was read from
/// an older snapshot (a worker's kept one, at most `db_reader_snapshot_ms` old) than the last
/// look's and is neither a change nor recorded: otherwise looks from older and newer snapshots
/// would flip it back and forth, each flip dropping the caches.
fn advance(seen: &mut Option<i64>, now: i64) -> bool {
    match *seen {
        Some(s) if now <= s => false,
        Some(_) => {
            *seen = Some(now);
            true
        }
        None => {
            *seen = Some(now);
            false
        }
    }
}

impl OtherWriters {
    pub(crate) fn new() -> OtherWriters {
        OtherWriters {
            me: uuid::Uuid::new_v4().simple().to_string(),
            seen: std::sync::Mutex::new(None),
        }
    }

    /// Counts `n` writes of this process that created or deleted resources (inside their
    /// transaction). Through [`Sql`], whose text diesel prepares once per connection.
    pub(crate) fn record(
        &self,
        c: &mut super::DbConnection,
        n: i64,
    ) -> crate::error::HubResult<()> {
        use diesel::RunQueryDsl;
        let mut q = Sql::<()>::new("INSERT INTO store_population (writer, generation) VALUES (");
        q.text(self.me.as_str())
            .push(", ")
            .int(n)
            .push(
                ") ON CONFLICT (writer) DO UPDATE SET generation = store_population.generation + ",
            )
            .int(n);
        q.execute(c)?;
        Ok(())
    }

    /// Whether another process created or deleted resources since the last call (`false` on
    /// the first: nothing was cached before it).
    pub(crate) fn changed(&self, c: &mut super::DbConnection) -> crate::error::HubResult<bool> {
        use diesel::RunQueryDsl;
        let mut q = Sql::<diesel::sql_types::BigInt>::new(
            "SELECT CAST(COALESCE(SUM(generation), 0) AS BIGINT) AS n FROM store_population \
             WHERE writer <> ",
        );
        q.text(self.me.as_str());
        let now = q.get_result::<i64>(c)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        Ok(advance(&mut seen, now))
    }
}

#[cfg(test)]
mod tests {
    use super::advance;

    /// The first look records; a larger sum is a change; a smaller one (an older snapshot)
    /// is neither a change nor recorded, so the next newer look is not one either.
    #[test]
    fn other_writers_sum_only_moves_forward() {
        let mut seen = None;
        assert!(!advance(&mut seen, 5));
        assert!(!advance(&mut seen, 5));
        assert!(advance(&mut seen, 7));
        assert!(!advance(&mut seen, 5), "an older snapshot");
        assert_eq!(seen, Some(7));
        assert!(!advance(&mut seen, 7), "no flip back");
        assert!(advance(&mut seen, 8));
    }
}
