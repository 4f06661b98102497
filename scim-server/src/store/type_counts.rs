//! The per-type resource count cache for unfiltered lists on SQLite ([`TypeCounts`]).

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
