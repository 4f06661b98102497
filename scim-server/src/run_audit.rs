//! `scimhub audit …`: verify, export, head and prune of the audit chain (the work is in
//! `admin::audit`; this prints it). `verify` exits non-zero on a finding.

use std::io::Write;

use anyhow::Context;

use crate::admin::audit;
use crate::cli::{AuditCommand, DbArgs};
use crate::config::Config;
use crate::store::audit_chain::Finding;
use crate::store::audit_chain::{Anchor, ExportFilter, VerifyOptions};
use crate::store::{PgSession, Store, StoreOptions};

fn open(db: &DbArgs) -> anyhow::Result<(Config, Store)> {
    let config =
        Config::load(db.config.as_deref(), &db.overrides()).context("invalid configuration")?;
    let store = Store::open_with(
        config.database_url.as_str(),
        StoreOptions {
            pool_size: 2,
            min_idle: 0,
            // An operator's one-off command over the whole history runs until it is done.
            pg: PgSession::unlimited(),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
    Ok((config, store))
}

fn key(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    config
        .audit
        .checkpoint_key
        .as_ref()
        .map(|k| {
            k.load()
                .map(|s| s.expose().as_bytes().to_vec())
                .map_err(|e| anyhow::anyhow!("[audit] checkpoint_key: {e}"))
        })
        .transpose()
}

fn time(s: Option<&str>, what: &str) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    s.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .with_context(|| format!("--{what}: not an RFC 3339 time"))
    })
    .transpose()
}

pub fn audit_command(cmd: AuditCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        AuditCommand::Verify {
            db,
            from,
            to,
            anchors,
            anchors_file,
            json,
        } => {
            let (config, store) = open(&db)?;
            let mut all: Vec<Anchor> = anchors
                .iter()
                .map(|a| a.parse::<Anchor>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?;
            if let Some(f) = anchors_file {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                all.extend(audit::parse_anchors(&text).map_err(anyhow::Error::msg)?);
            }
            let o = VerifyOptions {
                from,
                to,
                anchors: all,
                checkpoint_key: key(&config)?,
            };
            let r = audit::verify(&store, &o).map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                let range = match (r.first, r.last) {
                    (Some(a), Some(b)) => format!("entries {a} to {b}"),
                    _ => "no entries".into(),
                };
                writeln!(out, "checked {} ({range}); head {}", r.checked, r.head)?;
                if let Some(cp) = &r.checkpoint {
                    writeln!(
                        out,
                        "retention checkpoint at entry {} ({} pruned on {}), signature {}",
                        cp.seq,
                        cp.pruned,
                        cp.at,
                        match (&r.finding, r.checkpoint_signature_checked) {
                            (Some(Finding::CheckpointForged { .. }), _) => "invalid",
                            (_, true) => "valid",
                            (_, false) => "not checked (no [audit] checkpoint_key)",
                        }
                    )?;
                }
                if r.anchors_checked > 0 {
                    writeln!(out, "anchors checked: {}", r.anchors_checked)?;
                }
                if r.anchors_pruned > 0 {
                    writeln!(
                        out,
                        "anchors of pruned entries (before the checkpoint, not checkable): {}",
                        r.anchors_pruned
                    )?;
                }
                if r.anchors_outside_range > 0 {
                    writeln!(
                        out,
                        "anchors outside --from/--to (not checked): {}",
                        r.anchors_outside_range
                    )?;
                }
            }
            match &r.finding {
                None => {
                    if !json {
                        writeln!(out, "ok: the audit chain verifies")?;
                    }
                    Ok(())
                }
                Some(f) => Err(anyhow::anyhow!("audit chain verification failed: {f}")),
            }
        }
        AuditCommand::Export {
            db,
            from,
            to,
            format,
        } => {
            let (_, store) = open(&db)?;
            let f = ExportFilter {
                from_time: time(from.as_deref(), "from")?,
                to_time: time(to.as_deref(), "to")?,
                ..Default::default()
            };
            audit::export(&store, &f, format, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
        AuditCommand::Head { db } => {
            let (_, store) = open(&db)?;
            let h = audit::head(&store).map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(out, "{h}")?;
            Ok(())
        }
        AuditCommand::Prune { db } => {
            let (config, store) = open(&db)?;
            let retain = config
                .audit
                .retain
                .as_deref()
                .context("[audit] retain is not set")?;
            let retain = crate::policy::parse_duration(retain)
                .map_err(|e| anyhow::anyhow!("[audit] retain: {e}"))?;
            let key = key(&config)?.context("[audit] retain needs [audit] checkpoint_key")?;
            let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let now = chrono::Utc::now();
            match audit::prune(&store, now - retain, &key, &format!("cli:{who}"), now)
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                Some(cp) => writeln!(
                    out,
                    "pruned {} entries through {}; checkpoint {}:{}",
                    cp.pruned, cp.seq, cp.seq, cp.hash
                )?,
                None => writeln!(out, "nothing older than {retain} to prune")?,
            }
            Ok(())
        }
    }
}
