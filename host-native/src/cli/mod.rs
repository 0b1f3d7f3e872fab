//! The CLI client: one subcommand per API call, human output by default, `--json` for the
//! server's JSON as is. Exit codes: 0 success; 1 the server refused (the error's code and
//! message are printed); 2 bad usage; 3 the server could not be reached; 4 `audit verify` found
//! a broken chain.
//!
//! [`args`] is the command tree and the flags several commands share; [`client`] the HTTP
//! client; `output` the human printing; `sink`, `atomic_file` and `spool` where encrypt and
//! decrypt write (an output file appears whole or not at all, mode 0600; `--buffer` holds
//! stdout); `stream` the streaming format, under a lease that `lease` renews while the stream
//! runs; then one file per command group.

pub mod args;
mod atomic_file;
mod audit;
mod audit_log;
pub mod client;
mod data;
mod datakeys;
mod issuer;
mod jobs;
mod keys;
mod lease;
mod orgs;
mod output;
mod scopes;
mod sink;
mod spool;
mod stream;
mod tokens;

use std::process::ExitCode;

pub use args::{Cli, ClientArgs, Command, Io, KmsKeyArgs, OrgArg, ScopeArg, ScopeFlag};
pub use audit::{AuditCmd, audit};
pub use client::{Client, Failure, report};
pub use data::{decrypt, encrypt};
pub use datakeys::{DataKeyCmd, datakey};
pub use issuer::{IssuerCmd, issuer};
pub use jobs::{JobCmd, job};
pub use keys::{KeyCmd, key};
pub use orgs::{OrgCmd, org};
pub use scopes::{ScopeCmd, scope};
pub use tokens::{TokenCmd, token};

/// Ends the CLI on SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 or SIGALRM as the
/// default action would (exit 128 + the signal), after removing the temporary output files
/// being written
/// ([`atomic_file::remove_pending`]): without it, Ctrl-C during `decrypt -o` left the
/// authenticated plaintext so far in a `.byok-tmp` file. A signal the process inherited as
/// ignored stays ignored (`nohup` ignores SIGHUP; a non-interactive shell ignores SIGINT for a
/// background job): installing a handler would undo that. On a thread of its own with its own
/// runtime: the command's blocking reads may hold every worker of the main one.
fn watch_signals() {
    let spawned = std::thread::Builder::new()
        .name("byok-signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (tx, mut rx) = tokio::sync::mpsc::channel::<i32>(1);
                let ignored = ignored_signals();
                // Every signal whose default action ends the process and that a user or a
                // supervisor sends (Ctrl-\ is SIGQUIT: handled, it writes no core either).
                for (kind, number) in [
                    (SignalKind::hangup(), 1),
                    (SignalKind::interrupt(), 2),
                    (SignalKind::quit(), 3),
                    (SignalKind::user_defined1(), 10),
                    (SignalKind::user_defined2(), 12),
                    (SignalKind::alarm(), 14),
                    (SignalKind::terminate(), 15),
                ] {
                    if ignored & (1 << (number - 1)) != 0 {
                        continue;
                    }
                    let Ok(mut caught) = signal(kind) else {
                        continue;
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if caught.recv().await.is_some() {
                            let _ = tx.send(128 + number).await;
                        }
                    });
                }
                drop(tx);
                if let Some(code) = rx.recv().await {
                    let _held = atomic_file::remove_pending();
                    std::process::exit(code);
                }
            });
        });
    if let Err(e) = spawned {
        eprintln!(
            "warning: cannot watch for Ctrl-C ({e}): an interrupted output file may stay behind"
        );
    }
}

/// The signals this process inherited as ignored, as Linux's `/proc/self/status` gives them
/// (`SigIgn`, bit n - 1 for signal n); none known elsewhere.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Runs a client command (any but `serve` and `openapi`) and returns the exit code.
pub async fn run(command: Command) -> ExitCode {
    watch_signals();
    async fn with<C>(
        client: ClientArgs,
        cmd: C,
        f: impl AsyncFnOnce(&Client, C) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let c = Client::new(client)?;
        f(&c, cmd).await
    }
    let result = match command {
        Command::Encrypt {
            org: OrgArg { org },
            scope: ScopeFlag { scope },
            io,
            client,
        } => {
            with(client, (), async |c, ()| {
                encrypt(c, &org, &scope, &io).await
            })
            .await
        }
        Command::Decrypt {
            org: OrgArg { org },
            io,
            buffer,
            client,
        } => {
            with(client, (), async |c, ()| {
                decrypt(c, &org, &io, buffer).await
            })
            .await
        }
        Command::Org { cmd, client } => with(client, cmd, org).await,
        Command::Token { cmd, client } => with(client, cmd, token).await,
        Command::Scope { cmd, client } => with(client, cmd, scope).await,
        Command::Audit { cmd, client } => with(client, cmd, audit).await,
        Command::Key { cmd, client } => with(client, cmd, key).await,
        Command::Job { cmd, client } => with(client, cmd, job).await,
        Command::Datakey { cmd, client } => with(client, cmd, datakey).await,
        Command::Issuer { cmd, client } => with(client, cmd, issuer).await,
        Command::Serve(_) | Command::Openapi | Command::ErrorCodes => Ok(()),
    };
    match result {
        Ok(()) if output::lost() => report(Failure::new(
            2,
            "the output's reader went away before it was all written",
        )),
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(f),
    }
}
