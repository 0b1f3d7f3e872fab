//! Server configuration. Precedence, highest first: command-line flags, `BYOK_*` environment
//! variables, the TOML file (`--config` / `BYOK_CONFIG`), built-in defaults. With nothing
//! given, `byok serve` listens on 127.0.0.1:8080 and keeps its data in `./byok-data`.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/byok"
//! log_format = "json"          # or "text"
//! unwrap_cache_ttl_ms = 300000 # default for new orgs; 0 = ask the key holder every time
//! key_health_interval_ms = 300000
//! outage_retry_ms = 5000       # how often a KMS is retried while an org serves in outage grace
//! aws_principal_arn = "arn:aws:iam::111122223333:role/byok"
//! ```
//!
//! The vendor's AWS credentials come only from the environment (`BYOK_AWS_ACCESS_KEY_ID`,
//! `BYOK_AWS_SECRET_ACCESS_KEY`), never from a flag (visible in process lists) or the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Data directory (SQLite database, managed key).
    pub data_dir: Option<PathBuf>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Default unwrap cache TTL for new orgs, ms.
    pub unwrap_cache_ttl_ms: Option<u64>,
    /// How often attached keys are described for health, ms.
    pub key_health_interval_ms: Option<u64>,
    /// How often an unreachable KMS is asked again while an org serves in outage grace, ms.
    pub outage_retry_ms: Option<u64>,
    /// The vendor's AWS principal, for generated policies.
    pub aws_principal_arn: Option<String>,
}

/// Settings from flags and environment (clap fills both; `None` when neither is given).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "BYOK_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory: SQLite database and managed key [default: ./byok-data].
    #[arg(long, env = "BYOK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML settings file (lower precedence than flags and environment).
    #[arg(long, env = "BYOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "BYOK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// How long unwrapped keys stay in memory for new orgs, in ms; 0 asks the key holder on
    /// every use [default: 300000].
    #[arg(long, env = "BYOK_UNWRAP_CACHE_TTL_MS")]
    pub unwrap_cache_ttl_ms: Option<u64>,
    /// How often attached keys are described for health, in ms [default: 300000].
    #[arg(long, env = "BYOK_KEY_HEALTH_INTERVAL_MS")]
    pub key_health_interval_ms: Option<u64>,
    /// While an org serves cached keys in outage grace (its KMS unreachable), how often its KMS
    /// is asked again, in ms, at least 100 [default: 5000].
    #[arg(long, env = "BYOK_OUTAGE_RETRY_MS")]
    pub outage_retry_ms: Option<u64>,
    /// The vendor's AWS principal ARN, named in the policies byok generates.
    #[arg(long, env = "BYOK_AWS_PRINCIPAL_ARN")]
    pub aws_principal_arn: Option<String>,
    /// TESTS ONLY: send every AWS call to this URL (a local KMS emulator) instead of the
    /// endpoint the key's ARN names.
    #[arg(long, env = "BYOK_DANGER_AWS_ENDPOINT", hide = true)]
    pub danger_aws_endpoint: Option<String>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Default unwrap cache TTL for new orgs.
    pub unwrap_cache_ttl: Duration,
    /// Key health check interval.
    pub key_health_interval: Duration,
    /// How often an unreachable KMS is asked again while an org serves in outage grace.
    pub outage_retry: Duration,
    /// The vendor's AWS principal ARN.
    pub aws_principal_arn: String,
    /// Test-only AWS endpoint override.
    pub danger_aws_endpoint: Option<String>,
}

impl Config {
    /// Resolves flags and environment over the file over the defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("byok-data")),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            unwrap_cache_ttl: Duration::from_millis(
                args.unwrap_cache_ttl_ms
                    .or(file.unwrap_cache_ttl_ms)
                    .unwrap_or(300_000),
            ),
            key_health_interval: Duration::from_millis(
                args.key_health_interval_ms
                    .or(file.key_health_interval_ms)
                    .unwrap_or(300_000)
                    .max(1000),
            ),
            outage_retry: args
                .outage_retry_ms
                .or(file.outage_retry_ms)
                .map_or(byok_core::grace::DEFAULT_RETRY_EVERY, |ms| {
                    Duration::from_millis(ms.max(100))
                }),
            aws_principal_arn: args
                .aws_principal_arn
                .clone()
                .or(file.aws_principal_arn)
                .unwrap_or_else(|| "arn:aws:iam::111122223333:role/byok".into()),
            danger_aws_endpoint: args.danger_aws_endpoint.clone(),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("byok-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("byok.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nunwrap_cache_ttl_ms = 5\noutage_retry_ms = 50\n",
        )
        .unwrap();
        let defaults = Config::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(defaults.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(defaults.data_dir, PathBuf::from("byok-data"));
        let from_file = Config::resolve(&ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_file.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(from_file.unwrap_cache_ttl, Duration::from_millis(5));
        assert_eq!(defaults.outage_retry, Duration::from_secs(5));
        assert_eq!(
            from_file.outage_retry,
            Duration::from_millis(100),
            "at least 100 ms"
        );
        let flags = Config::resolve(&ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flags.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(flags.data_dir, PathBuf::from("/tmp/x"));
        std::fs::write(&path, "listen = 1\n").unwrap();
        assert!(
            Config::resolve(&ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
            .is_err()
        );
        std::fs::write(&path, "unknown = 1\n").unwrap();
        let err = Config::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("unknown"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
