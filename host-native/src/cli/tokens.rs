//! `byok token`: bearer tokens of an org, and the operator's.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::output::{print, print_secret, raw, s};
use super::{Client, Failure, OrgArg};

/// Token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token for the org (admin token).
    Create {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
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
    /// Take the org over (admin token): print a new admin token once and revoke every other
    /// admin token of the org, yours included. Do it first with the admin token the operator
    /// handed you: after it, no admin token anyone else may have seen works.
    Claim {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The new admin token's name.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// Replace the operator token you call with: the new one is printed once, the old one
    /// stops working at once.
    RotateOperator,
}

/// A new token as byok answers it (made, claimed or rotated), read in place from the answer's
/// own bytes, which are wiped when dropped.
#[derive(serde::Deserialize)]
struct NewToken<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    /// A claim's revoked tokens.
    #[serde(default)]
    revoked: Vec<serde::de::IgnoredAny>,
}

/// Runs a token command.
pub async fn token(client: &Client, cmd: TokenCmd) -> Result<(), Failure> {
    let created = |t: &NewToken<'_>| {
        raw(&format!(
            "{} token {} (shown once, store it now): ",
            t.role.as_deref().unwrap_or("admin"),
            t.id
        ));
        raw(&t.token);
    };
    let when = |t: &Value, k: &str| t[k].as_i64().map_or("never".into(), |x| x.to_string());
    match cmd {
        TokenCmd::Create {
            org: OrgArg { org },
            role,
            name,
            expires_in,
        } => {
            let path = format!("/v1/orgs/{org}/tokens");
            let body = json!({ "role": role, "name": name, "expires_in_s": expires_in });
            let answer = client.post_to_secret(&path, body).await?;
            print_secret(client, &answer, &path, created)?;
        }
        TokenCmd::Claim {
            org: OrgArg { org },
            name,
        } => {
            let path = format!("/v1/orgs/{org}/tokens/claim");
            let answer = client
                .post_to_secret(&path, json!({ "name": name }))
                .await?;
            print_secret(client, &answer, &path, |t: &NewToken<'_>| {
                raw(&format!(
                    "org claimed: {} admin token(s) revoked, yours included\nadmin token {} (shown once, store it now): ",
                    t.revoked.len(),
                    t.id
                ));
                raw(&t.token);
            })?;
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
            let path = "/v1/tokens/rotate";
            let answer = client.post_to_secret(path, json!({})).await?;
            print_secret(client, &answer, path, created)?;
        }
    }
    Ok(())
}
