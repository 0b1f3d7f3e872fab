//! `byok datakey`: fresh data keys, and data keys byok stores (service token).

use std::borrow::Cow;

use serde_json::json;

use super::data::parse_context;
use super::output::{print, print_secret, raw};
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

/// A data key made for the product: `datakey`'s answer, read in place.
#[derive(serde::Deserialize)]
struct NewKey<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    wrapped: Cow<'a, str>,
}

/// Stored data keys: `datakeys` and `datakeys/get`'s answer, read in place.
#[derive(serde::Deserialize)]
struct StoredKeys<'a> {
    #[serde(borrow)]
    keys: Vec<StoredKey<'a>>,
}

#[derive(serde::Deserialize)]
struct StoredKey<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    version: u32,
}

impl StoredKeys<'_> {
    /// One line per key (id, key, version), written piece by piece: no buffer of ours holds
    /// a key.
    fn print(&self) {
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                raw("\n");
            }
            raw(&k.id);
            raw("  ");
            raw(&k.key);
            raw(&format!("  v{}", k.version));
        }
    }
}

/// Runs a data key command. The keys are printed from the answer's own (wiped) bytes.
pub async fn datakey(client: &Client, cmd: DataKeyCmd) -> Result<(), Failure> {
    match cmd {
        DataKeyCmd::New {
            org,
            scope,
            context,
        } => {
            let body = json!({ "context": parse_context(&context)? });
            let answer = client
                .post_to_scope_secret(&org.org, &scope.scope, "datakey", body)
                .await?;
            print_secret(client, &answer, "datakey", |k: &NewKey<'_>| {
                raw("key ");
                raw(&k.key);
                raw("\nwrapped ");
                raw(&k.wrapped);
            })
        }
        DataKeyCmd::Create { org, scope, count } => {
            let body = json!({ "count": count });
            let answer = client
                .post_to_scope_secret(&org.org, &scope.scope, "datakeys", body)
                .await?;
            print_secret(client, &answer, "datakeys", StoredKeys::print)
        }
        DataKeyCmd::Get {
            org: OrgArg { org },
            ids,
        } => {
            let path = format!("/v1/orgs/{org}/datakeys/get");
            let answer = client.post_to_secret(&path, json!({ "ids": ids })).await?;
            print_secret(client, &answer, &path, StoredKeys::print)
        }
        DataKeyCmd::Delete {
            org: OrgArg { org },
            ids,
        } => {
            let v = client
                .post(
                    &format!("/v1/orgs/{org}/datakeys/delete"),
                    json!({ "ids": ids }),
                )
                .await?;
            print(client, &v, |v| format!("deleted {}", &v["deleted"]));
            Ok(())
        }
    }
}
