//! `byok scope`: the scope tree and its actions (pause, resume, revoke, rotate, retire, lease).

use serde_json::{Value, json};

use super::output::{print, scope_line};
use super::{Client, Failure, OrgArg, ScopeArg};

/// Scope commands.
#[derive(Debug, clap::Subcommand)]
pub enum ScopeCmd {
    /// Create a scope under a parent (the org id for a top-level scope).
    Create {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// Parent scope id.
        #[arg(long)]
        parent: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List the org's scopes as a tree.
    List {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
    /// Show a scope and its effective state.
    Show {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
    },
    /// Pause a scope and its subtree.
    Pause {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
    },
    /// Resume a paused scope.
    Resume {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
    },
    /// Revoke a scope and its subtree for good (destroys their keys).
    Revoke {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
        /// The scope id again, to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Retire an old key version: stored data keys and child keys move to the newest version
    /// in the background (follow with `byok job watch`), then it is destroyed.
    Retire {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
        /// The version to retire.
        #[arg(long)]
        version: u32,
    },
    /// Lease the scope's keys for the edge (service token); prints the lease as JSON.
    Lease {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
    },
    /// Add a key version to a scope.
    Rotate {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The scope.
        #[command(flatten)]
        scope: ScopeArg,
    },
}

/// Runs a scope command.
pub async fn scope(client: &Client, cmd: ScopeCmd) -> Result<(), Failure> {
    let v = match cmd {
        ScopeCmd::Create {
            org: OrgArg { org },
            parent,
            name,
        } => {
            client
                .post(
                    &format!("/v1/orgs/{org}/scopes"),
                    json!({ "parent": parent, "name": name }),
                )
                .await?
        }
        ScopeCmd::List {
            org: OrgArg { org },
        } => {
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
        ScopeCmd::Show {
            org: OrgArg { org },
            scope: ScopeArg { scope },
        } => {
            client
                .get(&format!("/v1/orgs/{org}/scopes/{scope}"))
                .await?
        }
        ScopeCmd::Pause { org, scope } => {
            client
                .post_to_scope(&org.org, &scope.scope, "pause", json!({}))
                .await?
        }
        ScopeCmd::Resume { org, scope } => {
            client
                .post_to_scope(&org.org, &scope.scope, "resume", json!({}))
                .await?
        }
        ScopeCmd::Revoke {
            org,
            scope,
            confirm,
        } => {
            client
                .post_to_scope(
                    &org.org,
                    &scope.scope,
                    "revoke",
                    json!({ "confirm": confirm }),
                )
                .await?
        }
        ScopeCmd::Retire {
            org: OrgArg { org },
            scope: ScopeArg { scope },
            version,
        } => {
            client
                .post_to_scope(&org, &scope, "retire", json!({ "version": version }))
                .await?;
            if client.json() {
                super::output::line(json!({ "retiring": version, "scope": scope }));
            } else {
                super::output::line(format!(
                    "retiring v{version} of {scope}; follow it with: byok job watch --org {org}"
                ));
            }
            return Ok(());
        }
        ScopeCmd::Lease {
            org: OrgArg { org },
            scope: ScopeArg { scope },
        } => {
            // The scope's keys: printed from the answer's own bytes, wiped when dropped.
            let answer = client.lease(&org, &scope).await?;
            // Printed as it came (JSON either way), once it reads as a lease of this scope.
            #[derive(serde::Deserialize)]
            struct Leased<'a> {
                #[serde(borrow)]
                scope: std::borrow::Cow<'a, str>,
            }
            let text = std::str::from_utf8(&answer).map_err(|_| client.unusable("lease"))?;
            match serde_json::from_str::<Leased<'_>>(text) {
                Ok(l) if l.scope.eq_ignore_ascii_case(&scope) => {}
                _ => return Err(client.unusable("lease")),
            }
            super::output::raw(text.trim_end());
            super::output::raw("\n");
            return Ok(());
        }
        ScopeCmd::Rotate {
            org: OrgArg { org },
            scope: ScopeArg { scope },
        } => {
            client
                .post_to_scope(&org, &scope, "rotate", json!({}))
                .await?
        }
    };
    print(client, &v, scope_line);
    Ok(())
}
