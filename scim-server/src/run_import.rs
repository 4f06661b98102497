//! `scimhub import`: opens the store and the engine, runs [`crate::import::run`], prints the
//! report on stdout and progress on stderr.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::ImportArgs;
use crate::import::mapping::Mapping;
use crate::import::progress::Progress;
use crate::import::{Options, Outcome};

pub(crate) fn import_command(args: ImportArgs) -> anyhow::Result<()> {
    let config = crate::run::load_engine(&args.engine)?;
    let registry = crate::service::schemas::configured_registry(&config.schema_extensions)
        .map_err(anyhow::Error::msg)?;
    let schemas =
        crate::service::Schemas::new(registry, config.strict).map_err(anyhow::Error::msg)?;
    let mapping = match &args.mapping {
        Some(p) => Mapping::load(p)?,
        None => Mapping::default(),
    };
    let open = || {
        csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))
    };
    // Counting first gives the bar its length; a file that fails here fails before any write.
    let total = open()?.records().count() as u64;
    let (store, engine) = crate::run::open_engine_applied(&config, &args.engine.policy)?;
    let opts = Options {
        client: args.client.clone(),
        mapping,
        dry_run: args.dry_run,
        full: args.full,
        window: 256,
    };
    let mut progress = Progress::new(total, Duration::from_secs(2));
    let mut counts = [0u64; 5];
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_err = None;
    crate::import::run(
        &store,
        &engine,
        Arc::new(schemas),
        open()?,
        &opts,
        &mut |r| {
            let i = match r.outcome {
                Outcome::Created { .. } => 0,
                Outcome::Updated { .. } => 1,
                Outcome::Unchanged { .. } => 2,
                Outcome::Deactivated { .. } => 3,
                Outcome::Refused { .. } => 4,
            };
            counts[i] += 1;
            if let Err(e) = writeln!(out, "{r}") {
                write_err.get_or_insert(e);
            }
        },
        &mut |n| progress.set(n),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    progress.finish();
    if let Some(e) = write_err {
        return Err(e.into());
    }
    writeln!(
        out,
        "{}: {} created, {} updated, {} unchanged, {} deactivated, {} refused ({} rows in {:.1}s)",
        if args.dry_run {
            "dry run, nothing written"
        } else {
            "summary"
        },
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        total,
        started.elapsed().as_secs_f64()
    )?;
    out.flush()?;
    Ok(())
}
