//! The connector instances of the policy in force, rebuilt when the policy changes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use connectors::memory::MemoryConnector;
use connectors::{Capabilities, Connector};

use crate::policy::{ConnectorDef, Policy};

/// Builds a connector from its policy definition.
pub type Builder = Arc<dyn Fn(&ConnectorDef) -> Result<Arc<dyn Connector>, String> + Send + Sync>;

/// The connector types this binary can build today: `memory` (settings: `file` to mirror the
/// state to, `delay_ms` to slow every call). Other types are added here as their modules land.
pub fn default_builder() -> Builder {
    Arc::new(|def: &ConnectorDef| match def.kind.as_str() {
        "memory" => {
            let mut m = MemoryConnector::new(def.name.clone());
            if let Some(f) = def.settings.get("file").and_then(|v| v.as_str()) {
                m = m.with_file(f);
            }
            if let Some(ms) = def.settings.get("delay_ms").and_then(|v| v.as_u64()) {
                m = m.with_delay(Duration::from_millis(ms));
            }
            Ok(Arc::new(m) as Arc<dyn Connector>)
        }
        other => Err(format!(
            "connector type {other:?} is not built into this binary yet"
        )),
    })
}

/// The policy generation the instances were built for, and the instances.
type Built = (u64, BTreeMap<String, Arc<dyn Connector>>);

/// Connector instances by policy name.
#[derive(Clone)]
pub struct Registry {
    builder: Builder,
    /// Instances given by the caller (tests, demo); they win over the builder.
    preset: Arc<RwLock<BTreeMap<String, Arc<dyn Connector>>>>,
    built: Arc<RwLock<Built>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(builder: Builder) -> Self {
        Registry {
            builder,
            preset: Arc::default(),
            built: Arc::new(RwLock::new((0, BTreeMap::new()))),
        }
    }

    /// Uses `connector` for the policy connector `name`.
    pub fn insert(&self, name: &str, connector: Arc<dyn Connector>) {
        self.preset
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), connector);
    }

    /// Rebuilds the instances when `generation` changed.
    pub fn sync(&self, policy: &Policy, generation: u64) {
        if self.built.read().unwrap_or_else(|p| p.into_inner()).0 == generation {
            return;
        }
        let mut map = BTreeMap::new();
        for (name, def) in &policy.connectors {
            match (self.builder)(def) {
                Ok(c) => {
                    map.insert(name.clone(), c);
                }
                Err(e) => tracing::warn!(connector = %name, error = %e, "connector unavailable"),
            }
        }
        *self.built.write().unwrap_or_else(|p| p.into_inner()) = (generation, map);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        if let Some(c) = self
            .preset
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(c.clone());
        }
        self.built
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .get(name)
            .cloned()
    }

    /// Capabilities of the connectors that are available.
    pub fn capabilities(&self, policy: &Policy) -> BTreeMap<String, Capabilities> {
        policy
            .connectors
            .keys()
            .filter_map(|n| self.get(n).map(|c| (n.clone(), c.capabilities())))
            .collect()
    }
}
