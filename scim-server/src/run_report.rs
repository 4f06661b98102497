//! `scimhub report …`: termination, period and contractor reports (the work is in `report`;
//! this opens the database, picks the form and writes it to stdout or `--out`).

use std::io::Write;

use anyhow::Context;

use crate::cli::{DbArgs, ReportCommand, ReportOutput};
use crate::config::Config;
use crate::report::{self, Format};
use crate::store::{PgSession, Store, StoreOptions};

fn open(db: &DbArgs) -> anyhow::Result<Store> {
    let config =
        Config::load(db.config.as_deref(), &db.overrides()).context("invalid configuration")?;
    Store::open_with(
        config.database_url.as_str(),
        StoreOptions {
            pool_size: 2,
            min_idle: 0,
            // An operator's one-off command over the whole history runs until it is done.
            pg: PgSession::unlimited(),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))
}

/// Writes a report to `--out` or stdout.
pub(crate) fn write(output: &ReportOutput, text: &str) -> anyhow::Result<()> {
    match &output.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            Ok(())
        }
    }
}

fn json(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

pub fn report_command(cmd: ReportCommand) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let fail = |e: report::ReportError| anyhow::anyhow!("{e}");
    match cmd {
        ReportCommand::Termination {
            user,
            event,
            output,
            db,
        } => {
            let store = open(&db)?;
            let r = report::termination::build(&store, &user, event, now).map_err(fail)?;
            let text = match output.format {
                Format::Json => json(&r)?,
                Format::Html => report::html::termination(&r).map_err(fail)?,
            };
            write(&output, &text)
        }
        ReportCommand::Period {
            from,
            to,
            output,
            db,
        } => {
            let from = report::parse_bound(&from, false, "--from").map_err(fail)?;
            let to = report::parse_bound(&to, true, "--to").map_err(fail)?;
            let store = open(&db)?;
            let r = report::period::build(&store, from, to, now).map_err(fail)?;
            let text = match output.format {
                Format::Json => json(&r)?,
                Format::Html => report::html::period(&r).map_err(fail)?,
            };
            write(&output, &text)
        }
        ReportCommand::Contractor { user, output, db } => {
            let store = open(&db)?;
            let v = report::contractor::serve(&store, &user, now).map_err(fail)?;
            let text = match output.format {
                Format::Json => json(&v)?,
                Format::Html => report::html::contractor(&v).map_err(fail)?,
            };
            write(&output, &text)
        }
    }
}
