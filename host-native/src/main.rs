//! `byok`: the byok server (`byok serve`) and its CLI client (every other command).

use std::process::ExitCode;

use byok_server::cli::{
    self, AuditCmd, ClientArgs, DataKeyCmd, Io, JobCmd, KeyCmd, OrgCmd, ScopeCmd, TokenCmd,
};
use byok_server::config::{Config, ServeArgs};
use clap::{Parser, Subcommand};

/// byok: bring-your-own-key envelope encryption.
#[derive(Parser)]
#[command(name = "byok", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the server refused (code and message printed); 2 bad usage; 3 server unreachable; 4 audit chain broken.";

#[derive(Subcommand)]
enum Command {
    /// Run the server (SQLite in ./byok-data and a generated managed key by default).
    Serve(ServeArgs),
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Print the API's error codes as the Markdown table in docs/server.md.
    ErrorCodes,
    /// Organizations.
    Org {
        #[command(subcommand)]
        cmd: OrgCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The scope tree and its actions.
    Scope {
        #[command(subcommand)]
        cmd: ScopeCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Customer master keys: policy, validate, add, default, disable, health.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Data keys: fresh ones, and ones byok stores (service token).
    Datakey {
        #[command(subcommand)]
        cmd: DataKeyCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-encryption jobs.
    Job {
        #[command(subcommand)]
        cmd: JobCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypt a file or standard input under a scope's key.
    Encrypt {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        #[arg(long)]
        scope: String,
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Decrypt a file or standard input.
    Decrypt {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
}

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
        other => runtime().block_on(client(other)),
    }
}

async fn client(command: Command) -> ExitCode {
    async fn run<C>(
        client: ClientArgs,
        cmd: C,
        f: impl AsyncFnOnce(&cli::Client, C) -> Result<(), cli::Failure>,
    ) -> Result<(), cli::Failure> {
        let c = cli::Client::new(client)?;
        f(&c, cmd).await
    }
    let result = match command {
        Command::Encrypt {
            org,
            scope,
            io,
            client,
        } => {
            run(client, (), async |c, ()| {
                cli::encrypt(c, &org, &scope, &io).await
            })
            .await
        }
        Command::Decrypt { org, io, client } => {
            run(client, (), async |c, ()| cli::decrypt(c, &org, &io).await).await
        }
        Command::Org { cmd, client } => run(client, cmd, cli::org).await,
        Command::Token { cmd, client } => run(client, cmd, cli::token).await,
        Command::Scope { cmd, client } => run(client, cmd, cli::scope).await,
        Command::Audit { cmd, client } => run(client, cmd, cli::audit).await,
        Command::Key { cmd, client } => run(client, cmd, cli::key).await,
        Command::Job { cmd, client } => run(client, cmd, cli::job).await,
        Command::Datakey { cmd, client } => run(client, cmd, cli::datakey).await,
        Command::Serve(_) | Command::Openapi | Command::ErrorCodes => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => cli::report(f),
    }
}
