//! `byok`: the byok server (`byok serve`) and its CLI client (every other command).

use std::process::ExitCode;

use byok_server::cli::{Cli, Command};
use byok_server::config::Config;
use clap::Parser;

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> ExitCode {
    // A token given as a flag is in the process list (`ps`, /proc) for every user of the
    // machine, and in the shell's history. It still works; the user is told.
    if std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == "--token" || a.starts_with("--token=")
    }) {
        eprintln!(
            "warning: --token shows the token to other users of this machine (ps) and keeps it in your shell history; use --token-file or set BYOK_TOKEN instead"
        );
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::resolve(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            byok_server::serve::init_logs(config.log_format);
            match runtime().block_on(byok_server::serve::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server stopped");
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Openapi => {
            print!("{}", byok_server::api::openapi_json());
            ExitCode::SUCCESS
        }
        Command::ErrorCodes => {
            print!("{}", byok_core::ApiCode::markdown_table());
            ExitCode::SUCCESS
        }
        other => runtime().block_on(byok_server::cli::run(other)),
    }
}
