//! The Users a roster import matches against: every User's id, document and the client whose
//! `externalId` it carries, in one read (`scimhub import`, see `crate::import`).

use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

use super::schema::resources::dsl;
use super::{ResourceKind, Store};
use crate::error::HubResult;

/// A stored User as a roster import sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterUser {
    pub id: String,
    /// The stored document (JSON text, without `id` and `meta`).
    pub doc: String,
    /// The client that set the user's `externalId` (the scope of its uniqueness); empty when none.
    pub external_id_client: String,
}

impl Store {
    /// Every User, oldest first.
    pub fn roster_users(&self) -> HubResult<Vec<RosterUser>> {
        let mut c = self.read_conn()?;
        let rows: Vec<(String, String, String)> = dsl::resources
            .filter(dsl::resource_type.eq(ResourceKind::User.as_str()))
            .select((dsl::id, dsl::doc, dsl::external_id_client))
            .order(dsl::id.asc())
            .load(&mut *c)?;
        Ok(rows
            .into_iter()
            .map(|(id, doc, external_id_client)| RosterUser {
                id,
                doc,
                external_id_client,
            })
            .collect())
    }
}
