//! `scimhub`: see [`scim_server::cli`].

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = scim_server::cli::Cli::parse();
    match scim_server::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `migrate --check` found pending migrations (listed on stdout): 2, as an error is 1.
        Err(e) if e.is::<scim_server::PendingMigrations>() => {
            eprintln!("scimhub: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("scimhub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
