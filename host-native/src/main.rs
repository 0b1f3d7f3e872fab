//! `byok`: the byok server and CLI.
//!
//! The server (REST API, storage, KMS calls) arrives with the server issue. Until then `byok
//! serve` states what it will run with, so the README's first command already works.

use std::process::ExitCode;

const USAGE: &str = "\
byok: bring-your-own-key envelope encryption

Usage: byok <COMMAND>

Commands:
  serve    Run the server with the embedded defaults (not yet implemented: prints the plan)
  version  Print the version

Options:
  -h, --help     Print help
  -V, --version  Print version
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.iter().any(|a| a == "-h" || a == "--help") => {
            println!("Run the byok server with the embedded defaults\n\nUsage: byok serve");
            ExitCode::SUCCESS
        }
        Some("serve") => {
            println!("byok {} (format v1)", env!("CARGO_PKG_VERSION"));
            println!(
                "planned defaults: listen 127.0.0.1:8080, store sqlite ./byok-data, managed root key"
            );
            println!("the server itself is not implemented yet; see the README");
            ExitCode::SUCCESS
        }
        Some("version" | "-V" | "--version") => {
            println!("byok {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("-h" | "--help") | None => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("error: unknown command '{other}'\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
