//! The CLI client: one subcommand per API call, human output by default, `--json` for the
//! server's JSON as is. Exit codes: 0 success; 1 the server refused (the error's code and
//! message are printed); 2 bad usage; 3 the server could not be reached; 4 `audit verify` found
//! a broken chain.

mod stream;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use zeroize::Zeroizing;

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
    /// Bearer token (prefer the environment variable: flags show up in process lists).
    #[arg(long, env = "BYOK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Org commands.
#[derive(Debug, clap::Subcommand)]
pub enum OrgCmd {
    /// Create an org and its first admin token (operator token).
    Create {
        /// Display name.
        name: String,
        /// Unwrap cache TTL for this org, ms (0: ask the key holder every time).
        #[arg(long)]
        unwrap_cache_ttl_ms: Option<u64>,
    },
    /// Show an org.
    Show {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
}

/// Token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token for the org (admin token).
    Create {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// admin, service or auditor.
        #[arg(long)]
        role: String,
        /// What it is for.
        #[arg(long)]
        name: String,
        /// Seconds until it stops working (default: never).
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// List the org's tokens (admin token), or with no org the operator tokens (operator
    /// token): id, name, role, created, last used, expiry; never the secret.
    List {
        /// Org id (omit, with an operator token, for the operator tokens).
        #[arg(long, env = "BYOK_ORG")]
        org: Option<String>,
    },
    /// Revoke a token by id: its next request gets 401.
    Revoke {
        /// Org id (omit, with an operator token, to revoke an operator token).
        #[arg(long, env = "BYOK_ORG")]
        org: Option<String>,
        /// The token id (16 hex digits, from `byok token list`).
        id: String,
    },
    /// Replace the operator token you call with: the new one is printed once, the old one
    /// stops working at once.
    RotateOperator,
}

/// Scope commands.
#[derive(Debug, clap::Subcommand)]
pub enum ScopeCmd {
    /// Create a scope under a parent (the org id for a top-level scope).
    Create {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Parent scope id.
        #[arg(long)]
        parent: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List the org's scopes as a tree.
    List {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
    /// Show a scope and its effective state.
    Show {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
    },
    /// Pause a scope and its subtree.
    Pause {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
    },
    /// Resume a paused scope.
    Resume {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
    },
    /// Revoke a scope and its subtree for good (destroys their keys).
    Revoke {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
        /// The scope id again, to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Retire an old key version: stored data keys and child keys move to the newest version
    /// in the background (follow with `byok job watch`), then it is destroyed.
    Retire {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
        /// The version to retire.
        #[arg(long)]
        version: u32,
    },
    /// Lease the scope's keys for the edge (service token); prints the lease as JSON.
    Lease {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
    },
    /// Add a key version to a scope.
    Rotate {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        scope: String,
    },
}

/// Key commands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// List the org's keys with state and health.
    List {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
    /// Print the policy statements to grant for a key (before adding it).
    Policy {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Key or alias ARN.
        #[arg(long)]
        key_arn: String,
        /// A role in your account for byok to assume.
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Validate an attached key again, live, and record the result as its health.
    Revalidate {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// `cmk:N`.
        key: String,
    },
    /// Validate a key live (describe, wrap, unwrap) without attaching it.
    Validate {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Key or alias ARN.
        #[arg(long)]
        key_arn: String,
        /// A role in your account for byok to assume.
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Attach an AWS key (validated first; nothing changes if validation fails).
    Add {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Key or alias ARN.
        #[arg(long)]
        key_arn: String,
        /// A role in your account for byok to assume.
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Make a key the default.
    Default {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// `managed` or `cmk:N`.
        key: String,
    },
    /// Disable a key; `--target` keeps the root copies (and becomes the default if needed).
    Disable {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// `cmk:N`.
        key: String,
        /// The key that takes over.
        #[arg(long)]
        target: String,
    },
    /// Enable a disabled key again.
    Enable {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// `cmk:N`.
        key: String,
    },
    /// Disable every customer key and fall back to the managed key.
    DisableAll {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
    /// Describe the org's keys now and show their health.
    Check {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
}

/// Job commands.
#[derive(Debug, clap::Subcommand)]
pub enum JobCmd {
    /// Show the running re-encryption job, if any.
    Show {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
    /// Follow the running job with a progress bar until it finishes.
    Watch {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
}

/// Data key commands (service token).
#[derive(Debug, clap::Subcommand)]
pub enum DataKeyCmd {
    /// A fresh data key, not stored: the key and its wrapped form (store the wrapped form).
    New {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        #[arg(long)]
        scope: String,
        /// Context entry `key=value` (repeatable).
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
    },
    /// Data keys that byok stores (and rewraps on rotation): prints each id and key.
    Create {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Scope id.
        #[arg(long)]
        scope: String,
        /// How many (1..=1000).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Stored data keys by id.
    Get {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Their ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Runs a data key command.
pub async fn datakey(client: &Client, cmd: DataKeyCmd) -> Result<(), Failure> {
    let v = match cmd {
        DataKeyCmd::New {
            org,
            scope,
            context,
        } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/scopes/{scope}/datakey"),
                    json!({ "context": parse_context(&context)? }),
                )
                .await?
        }
        DataKeyCmd::Create { org, scope, count } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/scopes/{scope}/datakeys"),
                    json!({ "count": count }),
                )
                .await?
        }
        DataKeyCmd::Get { org, ids } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/datakeys/get"),
                    json!({ "ids": ids }),
                )
                .await?
        }
    };
    print(client, &v, |v| {
        match v.get("keys").and_then(Value::as_array) {
            Some(keys) => keys
                .iter()
                .map(|k| format!("{}  {}  v{}", s(k, "id"), s(k, "key"), k["version"]))
                .collect::<Vec<_>>()
                .join("\n"),
            None => format!("key {}\nwrapped {}", s(v, "key"), s(v, "wrapped")),
        }
    });
    Ok(())
}

/// Audit commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Print audit rows (JSON lines with --json, for a SIEM).
    Read {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
        /// Rows after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many rows (all if omitted).
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Check the hash chain; exit code 4 names a broken link.
    Verify {
        /// Org id.
        #[arg(long, env = "BYOK_ORG")]
        org: String,
    },
}

/// Input and output files for encrypt and decrypt.
#[derive(Debug, Clone, clap::Args)]
pub struct Io {
    /// Input file (`-` or nothing: standard input).
    pub input: Option<PathBuf>,
    /// Output file (standard output if omitted).
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

/// A client failure, with its exit code.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

/// Prints the failure and returns its exit code.
pub fn report(f: Failure) -> ExitCode {
    eprintln!("error: {}", f.message);
    ExitCode::from(f.code)
}

/// The HTTP client.
pub struct Client {
    http: reqwest::Client,
    args: ClientArgs,
}

impl Client {
    /// A client for `args`.
    pub fn new(args: ClientArgs) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::usage(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { http, args })
    }

    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        self.args.json
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.args.server.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.args.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| Failure {
            code: 3,
            message: format!("cannot reach {}: {e}", self.args.server),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let err = value.get("error");
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        Err(Failure {
            code: 1,
            message: format!(
                "{} ({}): {} [request {}]",
                field("code"),
                status.as_u16(),
                field("message"),
                field("request_id")
            ),
        })
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

fn print(client: &Client, value: &Value, human: impl FnOnce(&Value) -> String) {
    if client.json() {
        println!("{value}");
    } else {
        println!("{}", human(value));
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn scope_line(v: &Value) -> String {
    let by = match v.get("effective_by").and_then(Value::as_str) {
        Some(b) if b != s(v, "id") => format!(" (by {b})"),
        _ => String::new(),
    };
    format!(
        "{}  {}  {}{}  key v{}",
        s(v, "id"),
        s(v, "name"),
        s(v, "effective"),
        by,
        v.get("key_version")
            .and_then(Value::as_u64)
            .map_or("-".into(), |n| n.to_string())
    )
}

/// Runs an org command.
pub async fn org(client: &Client, cmd: OrgCmd) -> Result<(), Failure> {
    match cmd {
        OrgCmd::Create {
            name,
            unwrap_cache_ttl_ms,
        } => {
            let v = client
                .post(
                    "/v1/orgs",
                    json!({ "name": name, "unwrap_cache_ttl_ms": unwrap_cache_ttl_ms }),
                )
                .await?;
            print(client, &v, |v| {
                format!(
                    "org {} created\nadmin token (shown once, store it now): {}",
                    s(v, "id"),
                    s(v, "admin_token")
                )
            });
        }
        OrgCmd::Show { org } => {
            let v = client.get(&format!("/v1/orgs/{org}")).await?;
            print(client, &v, |v| {
                format!(
                    "{}  {}  default key {}  {} scope(s)",
                    s(v, "id"),
                    s(v, "name"),
                    s(v, "default_key"),
                    v.get("scopes").and_then(Value::as_u64).unwrap_or(0)
                )
            });
        }
    }
    Ok(())
}

/// Runs a token command.
pub async fn token(client: &Client, cmd: TokenCmd) -> Result<(), Failure> {
    let created = |v: &Value| {
        format!(
            "{} token {} (shown once, store it now): {}",
            s(v, "role"),
            s(v, "id"),
            s(v, "token")
        )
    };
    let when = |t: &Value, k: &str| t[k].as_i64().map_or("never".into(), |x| x.to_string());
    match cmd {
        TokenCmd::Create {
            org,
            role,
            name,
            expires_in,
        } => {
            let v = client
                .post(
                    &format!("/v1/orgs/{org}/tokens"),
                    json!({ "role": role, "name": name, "expires_in_s": expires_in }),
                )
                .await?;
            print(client, &v, created);
        }
        TokenCmd::List { org } => {
            let path = org.map_or_else(|| "/v1/tokens".into(), |o| format!("/v1/orgs/{o}/tokens"));
            let v = client.get(&path).await?;
            print(client, &v, |v| {
                v.as_array()
                    .map(|ts| {
                        ts.iter()
                            .map(|t| {
                                format!(
                                    "{}  {:<8} {:<24} last used {}  expires {}",
                                    s(t, "id"),
                                    s(t, "role"),
                                    s(t, "name"),
                                    when(t, "last_used_at"),
                                    when(t, "expires_at"),
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        TokenCmd::Revoke { org, id } => {
            let path = org.map_or_else(
                || format!("/v1/tokens/{id}"),
                |o| format!("/v1/orgs/{o}/tokens/{id}"),
            );
            let v = client.delete(&path).await?;
            print(client, &v, |_| format!("token {id} revoked"));
        }
        TokenCmd::RotateOperator => {
            let v = client.post("/v1/tokens/rotate", json!({})).await?;
            print(client, &v, created);
        }
    }
    Ok(())
}

/// Runs a scope command.
pub async fn scope(client: &Client, cmd: ScopeCmd) -> Result<(), Failure> {
    let v = match cmd {
        ScopeCmd::Create { org, parent, name } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/scopes"),
                    json!({ "parent": parent, "name": name }),
                )
                .await?
        }
        ScopeCmd::List { org } => {
            let v = client.get(&format!("/v1/orgs/{org}/scopes")).await?;
            print(client, &v, |v| {
                v.as_array()
                    .map(|rows| {
                        rows.iter()
                            .map(|r| {
                                let depth = r.get("depth").and_then(Value::as_u64).unwrap_or(0);
                                format!(
                                    "{}{}",
                                    "  ".repeat(usize::try_from(depth).unwrap_or(0)),
                                    scope_line(r)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
            return Ok(());
        }
        ScopeCmd::Show { org, scope } => {
            client
                .get(&format!("/v1/orgs/{org}/scopes/{scope}"))
                .await?
        }
        ScopeCmd::Pause { org, scope } => {
            client
                .post(&format!("/v1/orgs/{org}/scopes/{scope}/pause"), json!({}))
                .await?
        }
        ScopeCmd::Resume { org, scope } => {
            client
                .post(&format!("/v1/orgs/{org}/scopes/{scope}/resume"), json!({}))
                .await?
        }
        ScopeCmd::Revoke {
            org,
            scope,
            confirm,
        } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/scopes/{scope}/revoke"),
                    json!({ "confirm": confirm }),
                )
                .await?
        }
        ScopeCmd::Retire {
            org,
            scope,
            version,
        } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/scopes/{scope}/retire"),
                    json!({ "version": version }),
                )
                .await?;
            if !client.json() {
                println!(
                    "retiring v{version} of {scope}; follow it with: byok job watch --org {org}"
                );
            }
            return Ok(());
        }
        ScopeCmd::Lease { org, scope } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/scopes/{scope}/lease"), json!({}))
                .await?;
            println!("{v}");
            return Ok(());
        }
        ScopeCmd::Rotate { org, scope } => {
            client
                .post(&format!("/v1/orgs/{org}/scopes/{scope}/rotate"), json!({}))
                .await?
        }
    };
    print(client, &v, scope_line);
    Ok(())
}

fn parse_context(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Failure::usage(format!("--context {p:?}: expected KEY=VALUE")))
        })
        .collect()
}

/// Reads the whole input, refusing (not truncating) more than `max` bytes.
fn read_input(io: &Io, max: usize) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(Vec::new());
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let result = match io.input.as_deref() {
        None => std::io::stdin().lock().take(limit).read_to_end(&mut buf),
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin().lock().take(limit).read_to_end(&mut buf)
        }
        Some(p) => std::fs::File::open(p).and_then(|f| f.take(limit).read_to_end(&mut buf)),
    };
    result.map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
    if buf.len() > max {
        return Err(Failure::usage(format!(
            "input is larger than {max} bytes, the most one API call takes"
        )));
    }
    Ok(buf)
}

fn write_output(io: &Io, bytes: &[u8]) -> Result<(), Failure> {
    let result = match &io.output {
        Some(p) => std::fs::write(p, bytes),
        None => std::io::stdout().lock().write_all(bytes),
    };
    result.map_err(|e| Failure::usage(format!("cannot write output: {e}")))
}

/// `byok encrypt`: the input's bytes to a `byok:v1:` ciphertext (one line).
pub async fn encrypt(client: &Client, org: &str, scope: &str, io: &Io) -> Result<(), Failure> {
    if io.stream {
        return stream::encrypt(client, org, scope, io).await;
    }
    let input = read_input(io, crate::service::MAX_PLAINTEXT)?;
    let v = client
        .post(
            &format!("/v1/orgs/{org}/scopes/{scope}/encrypt"),
            json!({ "plaintext": Base64::encode_string(&input), "context": parse_context(&io.context)? }),
        )
        .await?;
    let mut out = s(&v, "ciphertext").to_owned();
    out.push('\n');
    write_output(io, out.as_bytes())
}

/// `byok decrypt`: a `byok:v1:` ciphertext to the original bytes.
pub async fn decrypt(client: &Client, org: &str, io: &Io) -> Result<(), Failure> {
    let (head, reader) = stream::sniff(io)?;
    if head.starts_with(&byok_core::format::header::MAGIC) {
        return stream::decrypt(client, org, io, head, reader).await;
    }
    // The text armor of the largest ciphertext: 4/3 of it, plus the header and the prefix.
    let max = crate::service::MAX_PLAINTEXT / 3 * 4 + 4096;
    let mut input = Zeroizing::new(head);
    reader
        .take(u64::try_from(max).unwrap_or(u64::MAX))
        .read_to_end(&mut input)
        .map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
    if input.len() > max {
        return Err(Failure::usage(
            "input is larger than the text format allows; use --stream",
        ));
    }
    let text = std::str::from_utf8(&input)
        .map_err(|_| Failure::usage("the input is not `byok:v1:` text"))?
        .trim();
    let v = client
        .post(
            &format!("/v1/orgs/{org}/decrypt"),
            json!({ "ciphertext": text, "context": parse_context(&io.context)? }),
        )
        .await?;
    let pt = Zeroizing::new(
        Base64::decode_vec(s(&v, "plaintext"))
            .map_err(|_| Failure::usage("the server's answer is not base64"))?,
    );
    write_output(io, &pt)
}

/// Runs an audit command.
pub async fn audit(client: &Client, cmd: AuditCmd) -> Result<(), Failure> {
    match cmd {
        AuditCmd::Read {
            org,
            mut after,
            limit,
        } => {
            let mut left = limit.unwrap_or(i64::MAX);
            while left > 0 {
                let page = left.min(1000);
                let v = client
                    .get(&format!("/v1/orgs/{org}/audit?after={after}&limit={page}"))
                    .await?;
                let rows = v.as_array().cloned().unwrap_or_default();
                for r in &rows {
                    if client.json() {
                        println!("{r}");
                    } else {
                        println!(
                            "{:>6}  {}  {}",
                            r.get("seq").and_then(Value::as_i64).unwrap_or(0),
                            r.get("at").and_then(Value::as_i64).unwrap_or(0),
                            r.get("event").map(Value::to_string).unwrap_or_default()
                        );
                    }
                }
                let n = i64::try_from(rows.len()).unwrap_or(0);
                if n < page {
                    break;
                }
                after = rows
                    .last()
                    .and_then(|r| r.get("seq"))
                    .and_then(Value::as_i64)
                    .unwrap_or(after);
                left -= n;
            }
            Ok(())
        }
        AuditCmd::Verify { org } => {
            let v = client.get(&format!("/v1/orgs/{org}/audit/verify")).await?;
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
            print(client, &v, |v| {
                if ok {
                    format!(
                        "audit chain intact: {} row(s) checked",
                        v.get("checked").and_then(Value::as_i64).unwrap_or(0)
                    )
                } else {
                    format!(
                        "audit chain BROKEN at row {}: {}",
                        v.get("first_broken").and_then(Value::as_i64).unwrap_or(0),
                        s(v, "reason")
                    )
                }
            });
            if ok {
                Ok(())
            } else {
                Err(Failure {
                    code: 4,
                    message: "the audit chain does not verify".into(),
                })
            }
        }
    }
}

fn key_line(k: &Value) -> String {
    format!(
        "{:<8} {:<16} {:<8} {:<9}{} {}{}",
        s(k, "id"),
        s(k, "name"),
        s(k, "type"),
        s(k, "state"),
        if k.get("default").and_then(Value::as_bool) == Some(true) {
            " default"
        } else {
            ""
        },
        k.get("health")
            .and_then(Value::as_str)
            .map(|h| format!("health {h}"))
            .unwrap_or_default(),
        k.get("key_arn")
            .and_then(Value::as_str)
            .map(|a| format!("  {a}"))
            .unwrap_or_default(),
    )
}

fn keys_lines(v: &Value) -> String {
    let keys = v["keys"]
        .as_array()
        .map(|ks| ks.iter().map(key_line).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    let vendor = if v["vendor_can_decrypt"] == true {
        "vendor can decrypt: yes (the managed key holds a copy of the root)"
    } else {
        "vendor can decrypt: no (BYOK: every unwrap goes through your KMS)"
    };
    format!("{keys}\n{vendor}")
}

fn report_lines(steps: &Value) -> String {
    steps
        .as_array()
        .map(|st| {
            st.iter()
                .map(|x| {
                    let mut line = format!(
                        "{:<8} {:<18} {}",
                        s(x, "outcome"),
                        s(x, "step"),
                        s(x, "detail")
                    );
                    if let Some(fix) = x.get("fix").and_then(Value::as_str) {
                        line.push_str(&format!("\n         fix: {fix}"));
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Runs a key command.
pub async fn key(client: &Client, cmd: KeyCmd) -> Result<(), Failure> {
    let enc = |x: &str| {
        x.replace('%', "%25")
            .replace('&', "%26")
            .replace('=', "%3D")
            .replace('+', "%2B")
            .replace(' ', "%20")
    };
    match cmd {
        KeyCmd::List { org } => {
            let v = client.get(&format!("/v1/orgs/{org}/keys")).await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Check { org } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/check"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Policy {
            org,
            key_arn,
            role_arn,
        } => {
            let mut path = format!("/v1/orgs/{org}/keys/policy?key_arn={}", enc(&key_arn));
            if let Some(r) = role_arn {
                path.push_str(&format!("&role_arn={}", enc(&r)));
            }
            let v = client.get(&path).await?;
            print(client, &v, |v| {
                serde_json::to_string_pretty(v).unwrap_or_default()
            });
        }
        KeyCmd::Validate {
            org,
            key_arn,
            role_arn,
        } => {
            let v = client
                .post(
                    &format!("/v1/orgs/{org}/keys/validate"),
                    json!({ "key_arn": key_arn, "role_arn": role_arn }),
                )
                .await?;
            print(client, &v, |v| report_lines(&v["steps"]));
            if v.get("ok").and_then(Value::as_bool) != Some(true) {
                return Err(Failure {
                    code: 1,
                    message: "the key did not validate".into(),
                });
            }
        }
        KeyCmd::Revalidate { org, key } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/{key}/validate"), json!({}))
                .await?;
            print(client, &v, |v| report_lines(&v["steps"]));
            if v.get("ok").and_then(Value::as_bool) != Some(true) {
                return Err(Failure {
                    code: 1,
                    message: "the key did not validate".into(),
                });
            }
        }
        KeyCmd::Add {
            org,
            name,
            key_arn,
            role_arn,
        } => {
            let body = json!({ "name": name, "provider": "aws", "key_arn": key_arn, "role_arn": role_arn });
            let v = client.post(&format!("/v1/orgs/{org}/keys"), body).await?;
            print(client, &v, |v| {
                format!(
                    "{}\n{}",
                    report_lines(&v["validation"]),
                    key_line(&v["key"])
                )
            });
        }
        KeyCmd::Default { org, key } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/{key}/default"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Disable { org, key, target } => {
            let v = client
                .post(
                    &format!("/v1/orgs/{org}/keys/{key}/disable"),
                    json!({ "target": target }),
                )
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Enable { org, key } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/{key}/enable"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::DisableAll { org } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/disable-all"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
    }
    Ok(())
}

/// Runs a job command.
pub async fn job(client: &Client, cmd: JobCmd) -> Result<(), Failure> {
    match cmd {
        JobCmd::Show { org } => {
            let v = client.get(&format!("/v1/orgs/{org}/job")).await?;
            print(client, &v, |v| {
                if v.is_null() {
                    "no job running".into()
                } else {
                    format!("{}: {} of {} steps", s(v, "kind"), v["done"], v["total"])
                }
            });
        }
        JobCmd::Watch { org } => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} steps ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            if client.json() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            loop {
                let v = client.get(&format!("/v1/orgs/{org}/job")).await?;
                if v.is_null() {
                    bar.finish_with_message("done");
                    if client.json() {
                        println!("{}", json!({ "running": false }));
                    }
                    return Ok(());
                }
                if client.json() {
                    println!("{v}");
                }
                bar.set_length(v["total"].as_u64().unwrap_or(0));
                bar.set_position(v["done"].as_u64().unwrap_or(0));
                bar.set_message(s(&v, "kind").to_owned());
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}
