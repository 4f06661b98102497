//! The audit chain for operators and auditors: verify, export (JSON Lines, CSV), pages for the
//! admin API, the head to anchor, retention. Free of HTTP; the CLI (`scimhub audit …`) and
//! `GET /admin/v1/audit` both call these. The chain itself is `store::audit_chain`.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Admin, AdminError, AdminResult};
use crate::error::HubError;
use crate::store::audit_chain::{self, ChainRow, Checkpoint, ExportFilter, Head, VerifyOptions};
use crate::store::Store;

pub use audit_chain::VerifyReport;

/// Rows per page while exporting.
const EXPORT_PAGE: i64 = 1000;
/// Most entries in one admin API page.
pub const MAX_PAGE: i64 = 1000;

/// Walks the chain (see `store::audit_chain::verify`), on a reader connection.
pub fn verify(store: &Store, o: &VerifyOptions) -> AdminResult<VerifyReport> {
    let mut c = store.read_conn()?;
    Ok(audit_chain::verify(&mut c, o)?)
}

/// The chain head as committed.
pub fn head(store: &Store) -> AdminResult<Head> {
    let mut c = store.read_conn()?;
    Ok(audit_chain::head(&mut c)?)
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, the chain columns included.
    Jsonl,
    /// RFC 4180 CSV with a header row; `detail` as its JSON text.
    Csv,
}

const CSV_HEADER: &str = "seq,at,actor,user_id,connector,action,outcome,detail,prev_hash,hash";

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// One entry as a CSV record (with its line end).
pub fn csv_record(r: &ChainRow) -> String {
    let mut out = String::new();
    let seq = r.seq.map(|s| s.to_string()).unwrap_or_default();
    let fields = [
        seq.as_str(),
        &r.at,
        &r.actor,
        &r.user_id,
        r.connector.as_deref().unwrap_or(""),
        &r.action,
        &r.outcome,
        &r.detail,
        r.prev_hash.as_deref().unwrap_or(""),
        r.hash.as_deref().unwrap_or(""),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, f);
    }
    out.push_str("\r\n");
    out
}

/// Writes every entry matching `f` to `out`, a page at a time (bounded memory); returns how
/// many it wrote.
pub fn export(
    store: &Store,
    f: &ExportFilter,
    format: Format,
    out: &mut dyn Write,
) -> AdminResult<u64> {
    let io = |e: std::io::Error| AdminError::Store(HubError::Backend(format!("write: {e}")));
    if format == Format::Csv {
        write!(out, "{CSV_HEADER}\r\n").map_err(io)?;
    }
    let mut filter = f.clone();
    let mut n = 0u64;
    loop {
        let rows = {
            let mut c = store.read_conn()?;
            audit_chain::export_page(&mut c, &filter, EXPORT_PAGE)?
        };
        for r in &rows {
            match format {
                Format::Jsonl => {
                    let line = serde_json::to_string(r)
                        .map_err(|e| AdminError::Store(HubError::Backend(e.to_string())))?;
                    writeln!(out, "{line}").map_err(io)?;
                }
                Format::Csv => out.write_all(csv_record(r).as_bytes()).map_err(io)?,
            }
            n += 1;
        }
        match rows.last().and_then(|r| r.seq) {
            Some(last) if rows.len() as i64 == EXPORT_PAGE => filter.after_seq = Some(last),
            _ => break,
        }
    }
    out.flush().map_err(io)?;
    Ok(n)
}

/// One page of the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub entries: Vec<ChainRow>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
    /// The chain head when the page was read (to anchor, or to quote in a report).
    pub head: Head,
}

/// Up to `limit` entries matching `f` after its cursor.
pub fn page(store: &Store, f: &ExportFilter, limit: i64) -> AdminResult<AuditPage> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AdminError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let mut c = store.read_conn()?;
    let head = audit_chain::head(&mut c)?;
    // One more than asked: whether there is a next page.
    let mut entries = audit_chain::export_page(&mut c, f, limit + 1)?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    Ok(AuditPage {
        next_cursor: if more {
            entries.last().and_then(|r| r.seq)
        } else {
            None
        },
        entries,
        head,
    })
}

/// Removes entries older than `before` (a prefix of the chain), leaving a checkpoint signed
/// with `key`; see `store::audit_chain::prune`.
pub fn prune(
    store: &Store,
    before: DateTime<Utc>,
    key: &[u8],
    actor: &str,
    now: DateTime<Utc>,
) -> AdminResult<Option<Checkpoint>> {
    Ok(super::in_tx(store, |c| {
        audit_chain::prune(c, before, key, actor, now)
    })?)
}

/// Reads anchors: `SEQ:HASH` lines, and lines carrying `seq=N hash=H` (the server's anchor log
/// line, so a log file can be passed as it is). Other lines (comments, other log lines) are
/// skipped; a line starting with a digit that is not an anchor is an error.
pub fn parse_anchors(text: &str) -> Result<Vec<audit_chain::Anchor>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let seq = field(line, "seq=");
        let hash = field(line, "hash=");
        let anchor = match (seq, hash) {
            (Some(s), Some(h)) => format!("{s}:{h}").parse()?,
            _ if line.starts_with(|c: char| c.is_ascii_digit()) => line.parse()?,
            _ => continue,
        };
        out.push(anchor);
    }
    Ok(out)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

impl Admin {
    /// A page of the audit chain (`GET /admin/v1/audit`).
    pub fn audit_page(&self, f: &ExportFilter, limit: i64) -> AdminResult<AuditPage> {
        page(&self.store, f, limit)
    }

    /// The chain head (`GET /admin/v1/audit/head`).
    pub fn audit_head(&self) -> AdminResult<Head> {
        head(&self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let r = ChainRow {
            id: 1,
            seq: Some(3),
            at: "t".into(),
            actor: "a,b".into(),
            user_id: "u".into(),
            connector: None,
            action: "x".into(),
            outcome: "ok".into(),
            detail: r#"{"k":"v"}"#.into(),
            prev_hash: Some("p".into()),
            hash: Some("h".into()),
        };
        assert_eq!(
            csv_record(&r),
            "3,t,\"a,b\",u,,x,ok,\"{\"\"k\"\":\"\"v\"\"}\",p,h\r\n"
        );
    }

    #[test]
    fn anchors_in_both_forms() {
        let h = "ab".repeat(32);
        let text = format!("# anchors\n5:{h}\n\naudit chain anchor seq=9 hash={h} at=x\n");
        let a = parse_anchors(&text).expect("anchors");
        assert_eq!(a.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![5, 9]);
        assert!(parse_anchors("INFO other log line")
            .expect("skipped")
            .is_empty());
        assert!(parse_anchors("12:zz").is_err());
    }
}
