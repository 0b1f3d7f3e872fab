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
//! public_url = "https://byok.example.com"  # byok's OIDC issuer: the clouds fetch its keys here
//! gcp_service_account_file = "/etc/byok/gcp-key.json"  # development only: prefer federation
//! azure_client_id = "11111111-2222-3333-4444-555555555555"  # the vendor's own Entra app
//! azure_certificate_file = "/etc/byok/azure-app.pem"        # its certificate and key
//! tls_cert = "/etc/byok/tls/chain.pem"   # with tls_key: HTTPS; reloaded on SIGHUP
//! tls_key = "/etc/byok/tls/key.pem"
//! insecure_http = false        # plain HTTP beyond loopback is refused unless true
//! header_timeout_ms = 10000    # request head (and TLS handshake)
//! idle_timeout_ms = 60000      # no byte moving on a connection
//! request_timeout_ms = 30000   # one request in all, body included
//! max_connections = 1024
//! org_rate_limit = 5000        # requests per second per org (0 = none)
//! token_rate_limit = 2500      # requests per second per token (0 = none)
//! metrics_listen = "10.0.0.5:9090"  # /metrics here, without a token, and not on `listen`
//! log_name = "byok.example.com"  # the audit log key's name (set once: at the first start)
//! checkpoint_interval_ms = 60000 # how often grown audit logs get a signed checkpoint
//! job_lease_ms = 30000         # a dead replica's job is resumed by another after this
//! max_stored_keys = 10000000   # stored data keys one org keeps (0 = no limit)
//! database_max_connections = 8 # with database_url: connections per replica
//! ```
//!
//! The vendor's AWS credentials come only from the environment (`BYOK_AWS_ACCESS_KEY_ID`,
//! `BYOK_AWS_SECRET_ACCESS_KEY`), never from a flag (visible in process lists) or the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiOptions;
use crate::api::rate_limit::RateLimitConfig;
use crate::serve::ConnLimits;

/// The most connections `max_connections` may allow: far more than a process holds open, and
/// well within what the connection cap's semaphore can count.
const MAX_CONNECTIONS: usize = 1 << 20;

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `byok serve`'s audit log settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuditLogArgs {
    /// The audit log key's name, in every checkpoint: a name for this deployment (a host
    /// name), used at the first start only, when the key is made [default: byok].
    #[arg(long, env = "BYOK_LOG_NAME")]
    pub log_name: Option<String>,
    /// How often grown audit logs get a signed checkpoint, in ms, at least 1000 [default: 60000].
    #[arg(long, env = "BYOK_CHECKPOINT_INTERVAL_MS")]
    pub checkpoint_interval_ms: Option<u64>,
}

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Data directory (SQLite database, managed key).
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL instead of the SQLite database in the data directory.
    pub database_url: Option<DatabaseUrl>,
    /// With PostgreSQL, how often every org's version is read, ms.
    pub replica_poll_ms: Option<u64>,
    /// How long a job lease lasts without its heartbeat, ms.
    pub job_lease_ms: Option<u64>,
    /// The most stored data keys one org keeps (0: no limit).
    pub max_stored_keys: Option<u64>,
    /// With PostgreSQL, connections per replica.
    pub database_max_connections: Option<u32>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Default unwrap cache TTL for new orgs, ms.
    pub unwrap_cache_ttl_ms: Option<u64>,
    /// How often attached keys are described for health, ms.
    pub key_health_interval_ms: Option<u64>,
    /// How often an unreachable KMS is asked again while an org serves in outage grace, ms.
    pub outage_retry_ms: Option<u64>,
    /// The audit log key's name (at its creation).
    pub log_name: Option<String>,
    /// How often grown audit logs get a signed checkpoint, ms.
    pub checkpoint_interval_ms: Option<u64>,
    /// The vendor's AWS principal, for generated policies.
    pub aws_principal_arn: Option<String>,
    /// byok's public URL: the OIDC issuer.
    pub public_url: Option<String>,
    /// The vendor's GCP service account key file (development).
    pub gcp_service_account_file: Option<PathBuf>,
    /// The vendor's Entra app (client id).
    pub azure_client_id: Option<String>,
    /// Its certificate and key (PEM).
    pub azure_certificate_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP beyond loopback.
    pub insecure_http: Option<bool>,
    /// Request head timeout, ms.
    pub header_timeout_ms: Option<u64>,
    /// Idle connection timeout, ms.
    pub idle_timeout_ms: Option<u64>,
    /// Whole-request deadline, ms.
    pub request_timeout_ms: Option<u64>,
    /// Open connections at most.
    pub max_connections: Option<usize>,
    /// Requests per second per org.
    pub org_rate_limit: Option<u32>,
    /// Requests per second per token.
    pub token_rate_limit: Option<u32>,
    /// Separate metrics address.
    pub metrics_listen: Option<SocketAddr>,
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
    /// PostgreSQL for several replicas (`postgres://user@host/db`) instead of SQLite in the
    /// data directory (which still holds the managed key, unless BYOK_MANAGED_KEY). Prefer the
    /// environment or the settings file: a flag is visible to other users in `ps`.
    #[arg(long, env = "BYOK_DATABASE_URL", hide_env_values = true, value_parser = DatabaseUrl::given)]
    pub database_url: Option<DatabaseUrl>,
    /// With PostgreSQL: how often every org's version is read, in ms, at least 100 [default:
    /// 1000]. Changes reach other replicas by NOTIFY at once; this is the bound when a
    /// notification is lost.
    #[arg(long, env = "BYOK_REPLICA_POLL_MS")]
    pub replica_poll_ms: Option<u64>,
    /// How long a replica's claim on an org's job (a rewrap, a retirement) lasts without its
    /// heartbeat, in ms, at least 1000 [default: 30000]: when a replica dies mid-job, another
    /// resumes the job after this.
    #[arg(long, env = "BYOK_JOB_LEASE_MS")]
    pub job_lease_ms: Option<u64>,
    /// The most stored data keys one org keeps, 0 for no limit [default: 10000000]: rows stay
    /// until their scope is revoked, so one tenant could otherwise fill the database. Past it,
    /// creating keys answers `stored_key_quota` (409).
    #[arg(long, env = "BYOK_MAX_STORED_KEYS")]
    pub max_stored_keys: Option<u64>,
    /// With PostgreSQL: connections this replica opens, 1 to 1000 [default: 8]. Calls wait
    /// at most 3 s for one and statements run at most 10 s; past that a call answers
    /// `database_unavailable` (503) and may be retried.
    #[arg(long, env = "BYOK_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
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
    /// The audit log's key name and signing interval.
    #[command(flatten)]
    pub audit_log: AuditLogArgs,
    /// The vendor's AWS principal ARN, named in the policies byok generates (none are generated
    /// without it).
    #[arg(long, env = "BYOK_AWS_PRINCIPAL_ARN")]
    pub aws_principal_arn: Option<String>,
    /// byok's public URL (https, no port; http only on loopback): the issuer of the OIDC tokens
    /// byok presents to the clouds instead of a stored secret. The clouds fetch
    /// /.well-known/openid-configuration and the keys from it. Without it byok is no issuer.
    #[arg(long, env = "BYOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The vendor's own GCP service account key file (JSON), for development: byok signs its
    /// JWT grants to reach keys that grant that account. Production needs none: customers
    /// trust byok's OIDC issuer through workload identity federation.
    #[arg(long, env = "BYOK_GCP_SERVICE_ACCOUNT_FILE")]
    pub gcp_service_account_file: Option<PathBuf>,
    /// The vendor's own multi-tenant Entra app (client id), for customers who grant it instead
    /// of trusting byok's OIDC issuer with a federated credential. With
    /// --azure-certificate-file, or for development the secret in BYOK_AZURE_CLIENT_SECRET
    /// (environment only: never a flag).
    #[arg(long, env = "BYOK_AZURE_CLIENT_ID")]
    pub azure_client_id: Option<String>,
    /// The vendor app's certificate and RSA key in one PEM file: byok signs its Entra client
    /// assertions with it (PS256, x5t#S256).
    #[arg(
        long,
        env = "BYOK_AZURE_CERTIFICATE_FILE",
        requires = "azure_client_id"
    )]
    pub azure_certificate_file: Option<PathBuf>,
    /// TLS certificate chain, PEM, leaf first (with --tls-key: serve HTTPS; SIGHUP reloads both).
    #[arg(long, env = "BYOK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BYOK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (refused otherwise): only behind a proxy or
    /// mesh that terminates TLS. `--insecure-http=false` (or `BYOK_INSECURE_HTTP=false`) overrides
    /// the file's `true`.
    #[arg(
        long,
        env = "BYOK_INSECURE_HTTP",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_http: Option<bool>,
    /// Record the check value of every root key version stored without one (by a byok older
    /// than them), unwrapping each through its org's key holder now, then exit without
    /// serving. Run it once, right after upgrading, with the server's configuration: until
    /// then such versions are refused. It trusts those versions as they are stored now.
    #[arg(long)]
    pub record_root_checks: bool,
    /// Time for a request's head once a connection waits for one, and for a TLS handshake, in
    /// ms, 100 to 300000 [default: 10000].
    #[arg(long, env = "BYOK_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Close a connection on which no byte moved for this long, in ms, 100 to 7200000 [default:
    /// 60000].
    #[arg(long, env = "BYOK_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Deadline for one request in all, body included, in ms, 100 to 3600000; then 408
    /// [default: 30000].
    #[arg(long, env = "BYOK_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Open connections at most; more wait in the kernel's backlog [default: 1024].
    #[arg(long, env = "BYOK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Requests per second per org, all its tokens together; 0 = no limit [default: 5000].
    #[arg(long, env = "BYOK_ORG_RATE_LIMIT")]
    pub org_rate_limit: Option<u32>,
    /// Requests per second per token; 0 = no limit [default: 2500].
    #[arg(long, env = "BYOK_TOKEN_RATE_LIMIT")]
    pub token_rate_limit: Option<u32>,
    /// Serve /metrics on this address, without a token, instead of on --listen (where only the
    /// operator token may read them).
    #[arg(long, env = "BYOK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// TESTS ONLY: send every AWS call to this URL (a local KMS emulator) instead of the
    /// endpoint the key's ARN names.
    #[arg(long, env = "BYOK_DANGER_AWS_ENDPOINT", hide = true)]
    pub danger_aws_endpoint: Option<String>,
    /// TESTS ONLY: send every GCP call (Cloud KMS, OAuth, STS, IAM credentials) to this URL (a
    /// local Cloud KMS) instead of Google's hosts.
    #[arg(long, env = "BYOK_DANGER_GCP_ENDPOINT", hide = true)]
    pub danger_gcp_endpoint: Option<String>,
    /// TESTS ONLY: send every Azure call (Key Vault and Entra's token endpoint) to this URL (a
    /// local Key Vault) instead of the key's vault and the cloud's login host.
    #[arg(long, env = "BYOK_DANGER_AZURE_ENDPOINT", hide = true)]
    pub danger_azure_endpoint: Option<String>,
}

/// A PostgreSQL URL. Its password never reaches `Debug`, a log line or an error, whether given in
/// the URL's user part or as a `password` query parameter (sqlx reads both).
///
/// Flags and the settings file hold it unchecked ([`DatabaseUrl::given`]), so that neither
/// clap's nor the file's error message ever echoes it; [`DatabaseUrl::checked`] checks it when
/// the settings are resolved.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as given (a flag, the environment or the file), not checked yet.
    pub fn given(url: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Self(url.to_owned()))
    }

    /// Checks that `url` names PostgreSQL (SQLite is the data directory's, not a URL).
    pub fn parse(url: String) -> Result<Self, String> {
        Self(url).checked()
    }

    /// Checks that the URL names PostgreSQL (SQLite is the data directory's, not a URL).
    pub fn checked(self) -> Result<Self, String> {
        if self.0.starts_with("postgres://") || self.0.starts_with("postgresql://") {
            Ok(self)
        } else {
            Err("--database-url must be a postgres:// or postgresql:// URL (SQLite is the default, in --data-dir)".into())
        }
    }

    /// The URL itself, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`, for logs: the user part's, and the value of
    /// any query parameter whose name holds `password`. A URL that does not parse is not shown
    /// at all (it may hold a password where no rule finds it).
    pub fn redacted(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return "(a database URL that does not parse; not shown)".into();
        };
        if url.password().is_some() && url.set_password(Some("***")).is_err() {
            return "(a database URL with a password byok cannot mask; not shown)".into();
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let secret = k.to_ascii_lowercase().contains("password");
                    let v = if secret { "***".into() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.into()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// PostgreSQL, when given; SQLite in the data directory otherwise.
    pub database_url: Option<DatabaseUrl>,
    /// With PostgreSQL, how often every org's version is read (the bound on a lost
    /// notification).
    pub replica_poll: Duration,
    /// How long a job lease lasts without its heartbeat.
    pub job_lease: Duration,
    /// The most stored data keys one org keeps (`None`: no limit).
    pub max_stored_keys: Option<u64>,
    /// The database's pool limits.
    pub database_pool: crate::store::PoolLimits,
    /// Log format.
    pub log_format: LogFormat,
    /// Default unwrap cache TTL for new orgs.
    pub unwrap_cache_ttl: Duration,
    /// Key health check interval.
    pub key_health_interval: Duration,
    /// How often an unreachable KMS is asked again while an org serves in outage grace.
    pub outage_retry: Duration,
    /// Record the missing root check values, then exit (`--record-root-checks`).
    pub record_root_checks: bool,
    /// The audit log key's name (at its creation).
    pub log_name: String,
    /// How often grown audit logs get a signed checkpoint.
    pub checkpoint_interval: Duration,
    /// The vendor's AWS principal ARN; without it no policy is generated.
    pub aws_principal_arn: Option<String>,
    /// byok's OIDC issuer (`--public-url`), if it is one.
    pub public_url: Option<byok_core::kms::oidc::IssuerUrl>,
    /// Test-only AWS endpoint override.
    pub danger_aws_endpoint: Option<String>,
    /// The vendor's GCP service account key file, if any.
    pub gcp_service_account_file: Option<PathBuf>,
    /// Test-only GCP endpoint override.
    pub danger_gcp_endpoint: Option<String>,
    /// The vendor's Entra app, if any.
    pub azure_client_id: Option<String>,
    /// Its certificate file.
    pub azure_certificate_file: Option<PathBuf>,
    /// Test-only Azure endpoint override.
    pub danger_azure_endpoint: Option<String>,
    /// TLS certificate chain and key, if HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Connection limits.
    pub conn: ConnLimits,
    /// Request deadline, rate limits, where metrics are.
    pub api: ApiOptions,
    /// The separate metrics address, if any.
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// Resolves flags and environment over the file over the defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let ms = |flag: Option<u64>, file: Option<u64>, default: u64| {
            Duration::from_millis(flag.or(file).unwrap_or(default))
        };
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("give both tls_cert and tls_key, or neither".into()),
        };
        let conn = ConnLimits {
            header_timeout: ms(args.header_timeout_ms, file.header_timeout_ms, 10_000),
            idle_timeout: ms(args.idle_timeout_ms, file.idle_timeout_ms, 60_000),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(1024),
        };
        let metrics_listen = args.metrics_listen.or(file.metrics_listen);
        let api = ApiOptions {
            request_timeout: ms(args.request_timeout_ms, file.request_timeout_ms, 30_000),
            rate: RateLimitConfig {
                per_org: args.org_rate_limit.or(file.org_rate_limit).unwrap_or(5000),
                per_token: args
                    .token_rate_limit
                    .or(file.token_rate_limit)
                    .unwrap_or(2500),
            },
            metrics_here: metrics_listen.is_none(),
        };
        // Above the upper bounds, a client that trickles (or never sends) its bytes holds one of
        // the capped connections for as long: a few such clients would lock everyone out.
        for (name, d, most) in [
            ("header_timeout_ms", conn.header_timeout, 300_000),
            ("idle_timeout_ms", conn.idle_timeout, 7_200_000),
            ("request_timeout_ms", api.request_timeout, 3_600_000),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_millis(most) {
                return Err(format!(
                    "{name} must be between 100 and {most} (a longer wait lets slow clients hold connections)"
                ));
            }
        }
        if conn.idle_timeout <= api.request_timeout {
            // A handler at work moves no bytes; it must answer (or time out) before the
            // connection is closed under it.
            return Err(format!(
                "idle_timeout_ms ({}) must be longer than request_timeout_ms ({})",
                conn.idle_timeout.as_millis(),
                api.request_timeout.as_millis()
            ));
        }
        if conn.max_connections == 0 || conn.max_connections > MAX_CONNECTIONS {
            return Err(format!(
                "max_connections must be between 1 and {MAX_CONNECTIONS} (more than a process holds open)"
            ));
        }
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        // Flags and environment over the file, as for every setting: `false` given overrides
        // the file's `true`.
        let insecure_http = args.insecure_http.or(file.insecure_http).unwrap_or(false);
        // The default for new orgs is their withdrawal bound: the API refuses more than a day
        // for one org, and the operator's default is held to the same.
        if args
            .unwrap_cache_ttl_ms
            .or(file.unwrap_cache_ttl_ms)
            .is_some_and(|ms| ms > 86_400_000)
        {
            return Err("unwrap_cache_ttl_ms is at most one day (86400000): it is how long a customer's withdrawal may take to reach cached keys".into());
        }
        if tls.is_none() && !listen.ip().is_loopback() && !insecure_http {
            return Err(format!(
                "refusing to serve plain HTTP on {listen}, beyond loopback: tokens and key material would cross the network in the clear. Give --tls-cert and --tls-key, or --insecure-http if a proxy or mesh in front terminates TLS"
            ));
        }
        Ok(Self {
            tls,
            conn,
            api,
            metrics_listen,
            listen,
            replica_poll: {
                let ms = args
                    .replica_poll_ms
                    .or(file.replica_poll_ms)
                    .unwrap_or(1000);
                if ms < 100 {
                    return Err("--replica-poll-ms must be at least 100".into());
                }
                Duration::from_millis(ms)
            },
            job_lease: {
                let ms = args
                    .job_lease_ms
                    .or(file.job_lease_ms)
                    .unwrap_or(crate::service::DEFAULT_JOB_LEASE.as_millis() as u64);
                if ms < 1000 {
                    return Err("--job-lease-ms must be at least 1000".into());
                }
                Duration::from_millis(ms)
            },
            max_stored_keys: match args
                .max_stored_keys
                .or(file.max_stored_keys)
                .unwrap_or(crate::service::DEFAULT_MAX_STORED_KEYS)
            {
                0 => None,
                n => Some(n),
            },
            database_pool: {
                let n = args
                    .database_max_connections
                    .or(file.database_max_connections)
                    .unwrap_or(crate::store::PoolLimits::default().max_connections);
                if !(1..=1000).contains(&n) {
                    return Err("--database-max-connections must be 1 to 1000".into());
                }
                crate::store::PoolLimits {
                    max_connections: n,
                    ..Default::default()
                }
            },
            database_url: args
                .database_url
                .clone()
                .or(file.database_url)
                .map(DatabaseUrl::checked)
                .transpose()?,
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
            // Below their floors these are refused, not raised: 0 means "off" elsewhere (the
            // cache TTL, rate limits), and an operator meaning that here would get the most
            // frequent setting instead.
            key_health_interval: at_least(
                "--key-health-interval-ms",
                args.key_health_interval_ms
                    .or(file.key_health_interval_ms)
                    .unwrap_or(300_000),
                1000,
            )?,
            outage_retry: match args.outage_retry_ms.or(file.outage_retry_ms) {
                None => byok_core::grace::DEFAULT_RETRY_EVERY,
                Some(ms) => at_least("--outage-retry-ms", ms, 100)?,
            },
            record_root_checks: args.record_root_checks,
            log_name: args
                .audit_log
                .log_name
                .clone()
                .or(file.log_name)
                .unwrap_or_else(|| "byok".into()),
            checkpoint_interval: at_least(
                "--checkpoint-interval-ms",
                args.audit_log
                    .checkpoint_interval_ms
                    .or(file.checkpoint_interval_ms)
                    .unwrap_or(60_000),
                1000,
            )?,
            aws_principal_arn: args.aws_principal_arn.clone().or(file.aws_principal_arn),
            public_url: args
                .public_url
                .clone()
                .or(file.public_url)
                .map(|u| byok_core::kms::oidc::IssuerUrl::parse(&u).map_err(|e| e.to_string()))
                .transpose()?,
            danger_aws_endpoint: args.danger_aws_endpoint.clone(),
            gcp_service_account_file: args
                .gcp_service_account_file
                .clone()
                .or(file.gcp_service_account_file),
            danger_gcp_endpoint: args.danger_gcp_endpoint.clone(),
            azure_client_id: args.azure_client_id.clone().or(file.azure_client_id),
            azure_certificate_file: args
                .azure_certificate_file
                .clone()
                .or(file.azure_certificate_file),
            danger_azure_endpoint: args.danger_azure_endpoint.clone(),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?,
    );
    toml::from_str(&text).map_err(|e| config_error(path, &text, &e))
}

/// A config file's parse error, naming the line and column and what is wrong, never quoting
/// the file: toml's own message prints the offending line, and the line may hold the
/// database URL's password (a typo in its key, a missing quote).
fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = text.get(..span.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let start = before.rsplit('\n').next().unwrap_or_default();
        let column = start.chars().count() + 1;
        // The key the value belongs to, if the error is in a value: a bare key is a name, not
        // a secret.
        let key = start
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(|k| format!(", key {k}"))
            .unwrap_or_default();
        format!(" (line {line}, column {column}{key})")
    });
    format!(
        "config {}{}: {}",
        path.display(),
        at.unwrap_or_default(),
        e.message()
    )
}

/// `ms` as a duration, refused below `floor` (naming `flag`).
fn at_least(flag: &str, ms: u64, floor: u64) -> Result<Duration, String> {
    if ms < floor {
        return Err(format!("{flag} must be at least {floor} (ms)"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    /// A config file's error names where and what, and never quotes the file: the line at
    /// fault may hold the database's password.
    #[test]
    fn a_config_error_quotes_no_line_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("byok.toml");
        for text in [
            "databse_url = \"postgres://byok:s3cret@db/byok\"\n",
            "listen = \"127.0.0.1:8080\"\ndatabase_url = \"postgres://byok:s3cret@db/byok\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let Err(e) = read_file(&path) else {
                panic!("accepted");
            };
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("line "), "{e}");
        }
    }

    #[test]
    fn a_database_url_shows_no_password() {
        let url =
            DatabaseUrl::parse("postgres://byok:s3cret@db.internal:5432/byok".into()).unwrap();
        assert_eq!(url.redacted(), "postgres://byok:***@db.internal:5432/byok");
        assert!(!format!("{url:?}").contains("s3cret"));
        let bare = DatabaseUrl::parse("postgresql://db/byok".into()).unwrap();
        assert_eq!(bare.redacted(), "postgresql://db/byok");
        let user = DatabaseUrl::parse("postgres://byok@db/byok".into()).unwrap();
        assert_eq!(user.redacted(), "postgres://byok@db/byok");
        let err = DatabaseUrl::parse("mysql://db/byok".into()).unwrap_err();
        assert!(err.contains("postgres://"), "{err}");
    }

    /// sqlx also takes the password as a query parameter (`?password=`, the key percent-decoded):
    /// masked there too, and a URL that does not parse is not shown at all.
    #[test]
    fn a_database_url_shows_no_password_in_its_query() {
        for (given, shown) in [
            (
                "postgres://byok@db/byok?password=s3cret&sslmode=require",
                "postgres://byok@db/byok?password=***&sslmode=require",
            ),
            (
                "postgres://db/byok?user=byok&pass%77ord=s3cret",
                "postgres://db/byok?user=byok&password=***",
            ),
            (
                "postgresql://a:s3cret@db/byok?Password=s3cret",
                "postgresql://a:***@db/byok?Password=***",
            ),
            (
                "postgres://u:s3cret@db:99999/byok",
                "(a database URL that does not parse; not shown)",
            ),
        ] {
            let url = DatabaseUrl::parse(given.into()).unwrap();
            assert_eq!(url.redacted(), shown);
            assert!(!format!("{url:?}").contains("s3cret"), "{given}");
        }
    }

    /// Neither clap nor the settings' check echoes a URL it refuses (it may hold a password).
    #[test]
    fn a_refused_database_url_is_not_echoed() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = Cli::try_parse_from(["byok", "--database-url", "mysql://u:s3cret@db/byok"])
            .expect("clap takes any URL");
        let err = Config::resolve(&cli.serve).unwrap_err();
        assert!(
            err.contains("postgres://") && !err.contains("s3cret"),
            "{err}"
        );
        assert!(!format!("{:?}", cli.serve).contains("s3cret"));
    }

    use super::*;

    #[test]
    fn flags_over_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("byok-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("byok.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nunwrap_cache_ttl_ms = 5\noutage_retry_ms = 150\n",
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
        assert_eq!(from_file.outage_retry, Duration::from_millis(150));
        let flags = Config::resolve(&ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flags.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(flags.data_dir, PathBuf::from("/tmp/x"));
        std::fs::write(&path, "listen = 1\n").unwrap();
        let err = Config::resolve(&ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("listen"), "{err}");
        std::fs::write(&path, "unknown = 1\n").unwrap();
        let err = Config::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("unknown"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn resolve(args: ServeArgs) -> Result<Config, String> {
        Config::resolve(&args)
    }

    /// A connection cap of none or of more than a process can hold is refused at start, not a
    /// panic in the listener.
    #[test]
    fn max_connections_is_bounded() {
        for bad in [0, MAX_CONNECTIONS + 1, 1 << 62] {
            let err = resolve(ServeArgs {
                max_connections: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(
                err.starts_with("max_connections must be between 1 and"),
                "{err}"
            );
        }
        assert!(
            resolve(ServeArgs {
                max_connections: Some(MAX_CONNECTIONS),
                ..Default::default()
            })
            .is_ok()
        );
    }

    /// The default TTL for new orgs is held to the API's bound for one org: a day.
    #[test]
    fn the_default_cache_ttl_is_at_most_a_day() {
        let day = resolve(ServeArgs {
            unwrap_cache_ttl_ms: Some(86_400_000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(day.unwrap_cache_ttl, Duration::from_secs(86_400));
        let err = resolve(ServeArgs {
            unwrap_cache_ttl_ms: Some(86_400_001),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with("unwrap_cache_ttl_ms is at most one day"),
            "{err}"
        );
    }

    /// An interval below its floor is refused, naming the flag, not raised to the floor.
    #[test]
    fn intervals_below_their_floor_are_refused() {
        let err = resolve(ServeArgs {
            key_health_interval_ms: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err, "--key-health-interval-ms must be at least 1000 (ms)");
        let err = resolve(ServeArgs {
            outage_retry_ms: Some(99),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err, "--outage-retry-ms must be at least 100 (ms)");
        let mut args = ServeArgs::default();
        args.audit_log.checkpoint_interval_ms = Some(999);
        assert_eq!(
            resolve(args).unwrap_err(),
            "--checkpoint-interval-ms must be at least 1000 (ms)"
        );
        let floors = resolve(ServeArgs {
            key_health_interval_ms: Some(1000),
            outage_retry_ms: Some(100),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (floors.key_health_interval, floors.outage_retry),
            (Duration::from_secs(1), Duration::from_millis(100))
        );
    }

    /// `--insecure-http` alone is true; `=false`, or the environment's `false`, overrides the
    /// file's `true` (flags and environment over the file, as everywhere).
    #[test]
    fn insecure_http_given_false_overrides_the_file() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let parse = |argv: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .serve
                .insecure_http
        };
        assert_eq!(parse(&["byok", "--insecure-http"]), Some(true));
        assert_eq!(parse(&["byok", "--insecure-http=false"]), Some(false));
        assert_eq!(parse(&["byok"]), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("byok.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:8080\"\ninsecure_http = true\n").unwrap();
        let with = |insecure_http| ServeArgs {
            config: Some(file.clone()),
            insecure_http,
            ..Default::default()
        };
        assert!(resolve(with(None)).is_ok());
        let err = resolve(with(Some(false))).unwrap_err();
        assert!(err.contains("refusing to serve plain HTTP"), "{err}");
    }

    #[test]
    fn plain_http_beyond_loopback_needs_insecure_http() {
        let anywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = resolve(ServeArgs {
            listen: Some(anywhere),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.contains("refusing to serve plain HTTP") && err.contains("--insecure-http"),
            "{err}"
        );
        let ok = resolve(ServeArgs {
            listen: Some(anywhere),
            insecure_http: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.listen, anywhere);
        // With TLS no flag is needed; loopback never needs one (IPv6 too).
        assert!(
            resolve(ServeArgs {
                listen: Some(anywhere),
                tls_cert: Some("c.pem".into()),
                tls_key: Some("k.pem".into()),
                ..Default::default()
            })
            .is_ok()
        );
        assert!(
            resolve(ServeArgs {
                listen: Some("[::1]:8080".parse().unwrap()),
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn limits_are_checked_against_each_other() {
        let d = resolve(ServeArgs::default()).unwrap();
        assert_eq!(d.conn.header_timeout, Duration::from_secs(10));
        assert_eq!(d.conn.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.api.request_timeout, Duration::from_secs(30));
        assert_eq!(d.conn.max_connections, 1024);
        assert_eq!((d.api.rate.per_org, d.api.rate.per_token), (5000, 2500));
        assert!(d.api.metrics_here && d.tls.is_none());
        let err = resolve(ServeArgs {
            idle_timeout_ms: Some(30_000),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.contains("must be longer than request_timeout_ms"),
            "{err}"
        );
        let err = resolve(ServeArgs {
            header_timeout_ms: Some(10),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.contains("header_timeout_ms must be between 100 and 300000"),
            "{err}"
        );
        for (args, says) in [
            (
                ServeArgs {
                    header_timeout_ms: Some(300_001),
                    ..Default::default()
                },
                "header_timeout_ms must be between 100 and 300000",
            ),
            (
                ServeArgs {
                    request_timeout_ms: Some(3_600_001),
                    idle_timeout_ms: Some(7_200_000),
                    ..Default::default()
                },
                "request_timeout_ms must be between 100 and 3600000",
            ),
            (
                ServeArgs {
                    idle_timeout_ms: Some(7_200_001),
                    ..Default::default()
                },
                "idle_timeout_ms must be between 100 and 7200000",
            ),
        ] {
            assert!(resolve(args).unwrap_err().contains(says), "{says}");
        }
        // At the bounds: taken.
        resolve(ServeArgs {
            header_timeout_ms: Some(300_000),
            request_timeout_ms: Some(3_600_000),
            idle_timeout_ms: Some(7_200_000),
            ..Default::default()
        })
        .unwrap();
        let err = resolve(ServeArgs {
            max_connections: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("max_connections"), "{err}");
        let err = resolve(ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("both tls_cert and tls_key"), "{err}");
        let m = resolve(ServeArgs {
            metrics_listen: Some("127.0.0.1:9090".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        assert!(!m.api.metrics_here);
    }
}
