//! `scimhub`: see [`scim_server::cli`].

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = scim_server::cli::Cli::parse();
    match scim_server::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scimhub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
