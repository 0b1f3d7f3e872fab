//! `byok org`: create and show organizations.

use serde_json::{Value, json};

use super::output::{print, s};
use super::{Client, Failure, OrgArg};

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
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
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
        OrgCmd::Show {
            org: OrgArg { org },
        } => {
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
