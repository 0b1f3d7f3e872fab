//! The command line: the command tree, and each flag that several commands share defined once
//! here, as a struct the commands flatten in (so `--org` has one definition, one help text and
//! one environment variable).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::{AuditCmd, DataKeyCmd, IssuerCmd, JobCmd, KeyCmd, OrgCmd, ScopeCmd, TokenCmd};
use crate::config::ServeArgs;

/// byok: bring-your-own-key envelope encryption.
#[derive(Parser)]
#[command(name = "byok", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the server refused (code and message printed); 2 bad usage; 3 server unreachable; 4 audit chain broken.";

/// The commands, one per group.
#[derive(Subcommand)]
pub enum Command {
    /// Run the server (SQLite in ./byok-data and a generated managed key by default).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Print the API's error codes as the Markdown table in docs/server.md.
    ErrorCodes,
    /// Organizations.
    Org {
        /// The org command.
        #[command(subcommand)]
        cmd: OrgCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tokens.
    Token {
        /// The token command.
        #[command(subcommand)]
        cmd: TokenCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The scope tree and its actions.
    Scope {
        /// The scope command.
        #[command(subcommand)]
        cmd: ScopeCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Customer master keys: policy, validate, add, default, disable, health.
    Key {
        /// The key command.
        #[command(subcommand)]
        cmd: KeyCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Data keys: fresh ones, and ones byok stores (service token).
    Datakey {
        /// The data key command.
        #[command(subcommand)]
        cmd: DataKeyCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-encryption jobs.
    Job {
        /// The job command.
        #[command(subcommand)]
        cmd: JobCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypt a file or standard input under a scope's key.
    Encrypt {
        /// The org.
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeFlag,
        /// Input, output and context.
        #[command(flatten)]
        io: Io,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Decrypt a file or standard input.
    ///
    /// A streamed ciphertext (`encrypt --stream`) opens frame by frame, in constant memory. To
    /// standard output, each frame is written as soon as it authenticates: a truncated or
    /// tampered stream fails (exit 1) only at the bad frame or at its end, and whoever reads
    /// standard output may by then have read a prefix of the plaintext. `--buffer` writes
    /// nothing until the whole stream authenticated. With `-o`, the file appears only once
    /// everything authenticated (a temporary file beside it is renamed; mode 0600), with or
    /// without `--buffer`. The text format (`byok:v1:`) opens in one API call and writes
    /// nothing unless it authenticated.
    Decrypt {
        /// The org.
        #[command(flatten)]
        org: OrgArg,
        /// Input, output and context.
        #[command(flatten)]
        io: Io,
        /// Standard output: write nothing until the whole stream authenticated (held in memory
        /// up to 64 MiB, beyond that sealed under a throwaway key in an unnamed 0600 temporary
        /// file in $TMPDIR).
        #[arg(long)]
        buffer: bool,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit log.
    Audit {
        /// The audit command.
        #[command(subcommand)]
        cmd: AuditCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// byok's OIDC issuer: list its signing keys, or replace them at once (operator token).
    Issuer {
        /// The issuer command.
        #[command(subcommand)]
        cmd: IssuerCmd,
        /// The server and credentials.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Where and as whom the client talks.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "BYOK_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Bearer token (prefer the environment variable or --token-file: flags show up in
    /// process lists).
    #[arg(long, env = "BYOK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<Token>,
    /// Read the bearer token from this file (its first line), which only its owner (and
    /// group) may read: kept out of process lists, the environment and shell history.
    #[arg(long, env = "BYOK_TOKEN_FILE", value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,
    /// Talk plain HTTP to a server that is not on this machine: the token, and any keys a
    /// lease carries, then cross the network in the clear. Refused without it.
    #[arg(long, env = "BYOK_INSECURE_HTTP", global = true)]
    pub insecure_http: bool,
    /// Print the server's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A bearer token: wiped when dropped, never shown by `Debug`.
#[derive(Clone)]
pub struct Token(zeroize::Zeroizing<String>);

impl Token {
    /// The token in `path`: its first line, without surrounding whitespace. Refused if every
    /// user of the machine may read the file, or if it holds no token.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the file (never its content).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = crate::private_file::read(path, "a bearer token")?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(format!(
                "{} holds no token: put the token on its first line",
                path.display()
            ));
        }
        Ok(Self(zeroize::Zeroizing::new(token.to_owned())))
    }

    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    /// The token as given (`--token`, `BYOK_TOKEN`), without surrounding whitespace, as
    /// `--token-file` reads it (`BYOK_TOKEN=$(cat token.txt)` of a file with CRLF line ends
    /// keeps a `\r`). Never an error here: clap would print the value it refused, token and
    /// all; [`Token::check`] refuses one that cannot be sent, naming no part of it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(zeroize::Zeroizing::new(s.trim().to_owned())))
    }
}

impl Token {
    /// Refuses a token with a control character in it (a second line of a file given whole):
    /// it could not go in a header, and was reported as the server being unreachable. The
    /// message names no part of it.
    ///
    /// # Errors
    ///
    /// What is wrong, for a usage error (exit 2).
    pub fn check(self) -> Result<Self, String> {
        if self.0.chars().any(char::is_control) {
            return Err("the token has a control character in it: give the token alone".into());
        }
        Ok(self)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// `--org`: the org a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct OrgArg {
    /// Org id.
    #[arg(long, env = "BYOK_ORG")]
    pub org: String,
}

/// The scope a command acts on, as its positional argument.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArg {
    /// Scope id.
    pub scope: String,
}

/// `--scope`: the scope a command acts on, as a flag.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeFlag {
    /// Scope id.
    #[arg(long)]
    pub scope: String,
}

/// `--provider`, `--key`, `--role`, `--role-trust` and `--audience`: a customer's key and how
/// byok reaches it.
#[derive(Debug, Clone, clap::Args)]
pub struct KmsKeyArgs {
    /// The key's KMS.
    #[arg(long, value_parser = ["aws", "gcp", "azure"], default_value = "aws")]
    pub provider: String,
    /// The key: an AWS key or alias ARN, a GCP key name
    /// (projects/P/locations/L/keyRings/R/cryptoKeys/K), or an Azure key URL
    /// (VAULT.vault.azure.net/keys/KEY over HTTPS, or .managedhsm.azure.net).
    #[arg(long, visible_alias = "key-arn")]
    pub key: String,
    /// Your principal for byok to become: an AWS role ARN, a GCP service account email
    /// (impersonated through workload identity federation), or your Azure app's client id
    /// (with a federated credential that trusts byok's issuer).
    #[arg(long, visible_alias = "role-arn")]
    pub role: Option<String>,
    /// How byok assumes an AWS role: with its own OIDC token (no vendor secret; the server's
    /// default when it is an OIDC issuer) or with the org's external id.
    #[arg(long, value_parser = ["oidc", "external_id"], requires = "role")]
    pub role_trust: Option<String>,
    /// GCP: your workload identity pool provider that trusts byok's issuer
    /// (//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER).
    /// Azure: your tenant id (without it, byok learns it from the vault's challenge).
    #[arg(long)]
    pub audience: Option<String>,
}

impl KmsKeyArgs {
    /// The key as the API's request fields.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider, "key": self.key, "role": self.role,
            "role_trust": self.role_trust, "audience": self.audience,
        })
    }
}

/// Input and output files for encrypt and decrypt.
#[derive(Debug, Clone, clap::Args)]
pub struct Io {
    /// Input file (`-` or nothing: standard input).
    pub input: Option<PathBuf>,
    /// Output file, mode 0600, appearing only once complete (standard output if omitted).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Encryption context entry `key=value` (repeatable); decrypt needs the same entries.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Encrypt: use the binary streaming format, for input of any size in constant memory
    /// (the CLI leases the scope's keys and encrypts locally). Decrypt detects the format.
    #[arg(long)]
    pub stream: bool,
}

#[cfg(test)]
mod tests {
    use super::Token;

    /// A token given in the environment or on the command line loses surrounding whitespace
    /// (a CRLF file read by `$(cat ...)` keeps a `\r`), as `--token-file` reads it; one with a
    /// control character inside is refused as bad usage, naming no part of it.
    #[test]
    fn a_token_given_is_trimmed_and_one_with_control_characters_refused() {
        let t: Token = " byok_s3cret\r\n".parse().unwrap();
        assert_eq!(t.check().unwrap().expose(), "byok_s3cret");
        let t: Token = "byok_s3\u{7}cret".parse().unwrap();
        let e = t.check().err().unwrap();
        assert_eq!(
            e,
            "the token has a control character in it: give the token alone"
        );
        assert!(!e.contains("s3"), "{e}");
    }
}
