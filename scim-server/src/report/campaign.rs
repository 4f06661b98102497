//! A certification campaign's completion report: the data of `engine::certification::report`
//! (the campaign, counts by decision, by source and by reviewer, the revocations with whether
//! they were carried out and verified) with the audit chain head, read in one snapshot; JSON,
//! or a page (`html::campaign`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{snapshot, AuditHead, ReportError, ReportResult};
use crate::store::Store;

/// The `schema` of a campaign report.
pub const SCHEMA: &str = "scimhub/report/campaign/v1";

/// A campaign's completion report.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub audit_head: AuditHead,
    /// `campaign`, `counts`, `by_source`, `by_reviewer`, `revocations` (as the admin API's
    /// `GET /campaigns/{id}/report`).
    #[serde(flatten)]
    pub data: Value,
}

/// The report of campaign `id`.
pub fn build(store: &Store, id: &str, now: DateTime<Utc>) -> ReportResult<CampaignReport> {
    snapshot(store, |c| {
        let audit_head = AuditHead::read(c)?;
        match crate::engine::certification::report(c, id)? {
            Some(data) => Ok(CampaignReport {
                schema: SCHEMA,
                generated_at: now,
                audit_head,
                data,
            }),
            None => Err(ReportError::NotFound(format!("campaign {id}"))),
        }
    })
}
