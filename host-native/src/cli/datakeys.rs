//! `byok datakey`: fresh data keys, and data keys byok stores (service token).

use serde_json::{Value, json};

use super::data::parse_context;
use super::output::{print, s};
use super::{Client, Failure, OrgArg, ScopeFlag};

/// Data key commands (service token).
#[derive(Debug, clap::Subcommand)]
pub enum DataKeyCmd {
    /// A fresh data key, not stored: the key and its wrapped form (store the wrapped form).
    New {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope (`--scope`).
        #[command(flatten)]
        scope: ScopeFlag,
        /// Context entry `key=value` (repeatable).
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
    },
    /// Data keys that byok stores (and rewraps on rotation): prints each id and key.
    Create {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope (`--scope`).
        #[command(flatten)]
        scope: ScopeFlag,
        /// How many (1..=1000).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Stored data keys by id.
    Get {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// Their ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Deletes stored data keys by id, for good: what was sealed under them never opens again.
    /// Prints how many were deleted (ids not stored are skipped).
    Delete {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
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
                .post_to_scope(
                    &org.org,
                    &scope.scope,
                    "datakey",
                    json!({ "context": parse_context(&context)? }),
                )
                .await?
        }
        DataKeyCmd::Create { org, scope, count } => {
            client
                .post_to_scope(
                    &org.org,
                    &scope.scope,
                    "datakeys",
                    json!({ "count": count }),
                )
                .await?
        }
        DataKeyCmd::Get {
            org: OrgArg { org },
            ids,
        } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/datakeys/get"),
                    json!({ "ids": ids }),
                )
                .await?
        }
        DataKeyCmd::Delete {
            org: OrgArg { org },
            ids,
        } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/datakeys/delete"),
                    json!({ "ids": ids }),
                )
                .await?
        }
    };
    print(client, &v, |v| {
        if let Some(n) = v.get("deleted") {
            return format!("deleted {n}");
        }
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
