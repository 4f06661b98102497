//! The nodes running on this database and the policy each runs (`GET /admin/v1/cluster`).

use serde_json::{json, Value};

use super::{in_tx, Admin, AdminResult};
use crate::store::cluster;

impl Admin {
    /// The live nodes, newest policy load first. The cluster's policy is the one loaded last;
    /// a node running another is `matches_cluster: false` and counted in `divergent`.
    pub fn cluster(&self) -> AdminResult<Value> {
        let since = chrono::Utc::now() - chrono::Duration::seconds(cluster::ALIVE_SECS);
        let nodes = in_tx(&self.store, |c| cluster::nodes(c, since))?;
        let reference = nodes.iter().find_map(|n| n.policy_sha256.clone());
        let divergent = nodes
            .iter()
            .filter(|n| n.policy_sha256 != reference)
            .count();
        let rows: Vec<Value> = nodes
            .iter()
            .map(|n| {
                let mut v = json!(n);
                v["matches_cluster"] = json!(n.policy_sha256 == reference);
                v
            })
            .collect();
        Ok(json!({
            "policy_sha256": reference,
            "divergent": divergent,
            "nodes": rows,
        }))
    }
}
