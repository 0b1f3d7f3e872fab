//! `byok issuer`: the operator's hold on byok's OIDC issuer.

use serde_json::Value;

use super::output::{print, s};
use super::{Client, Failure};

/// Issuer commands.
#[derive(Debug, clap::Subcommand)]
pub enum IssuerCmd {
    /// List the signing keys (operator token): each with its role now (signing, next,
    /// retiring, expired, or refused: a stored row byok cannot open under its managed key,
    /// never published nor used), and the key the answering server signs with.
    Keys,
    /// Replace every signing key at once (operator token), when one may have leaked: a new key
    /// signs from now and is the only one published; the other replicas switch within a
    /// minute. Tokens the old keys signed stop verifying as each cloud fetches the JWKS again;
    /// until it has, a cloud refuses byok's new tokens too, and keys reached through byok's
    /// issuer answer as withdrawn (424) meanwhile.
    ReplaceKeys,
}

/// A time in ms since the epoch as RFC 3339 UTC (as the server sent it, if not one).
fn utc(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Runs an issuer command.
pub async fn issuer(client: &Client, cmd: IssuerCmd) -> Result<(), Failure> {
    match cmd {
        IssuerCmd::Keys => {
            let v = client.get("/v1/issuer/keys").await?;
            print(client, &v, |v| {
                let mut out = format!("{:<44} {:<9} SIGNS FROM (UTC)", "KID", "ROLE");
                for k in v["keys"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n{:<44} {:<9} {}",
                        s(k, "kid"),
                        s(k, "role"),
                        utc(&k["signs_from"])
                    ));
                }
                out.push_str(&format!(
                    "\nthis server signs with {}",
                    v["signer_here"].as_str().unwrap_or("no key yet")
                ));
                out
            });
        }
        IssuerCmd::ReplaceKeys => {
            let v = client
                .post("/v1/issuer/keys/replace", serde_json::json!({}))
                .await?;
            print(client, &v, |v| {
                let dropped = v["dropped"]
                    .as_array()
                    .map(|d| {
                        d.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!(
                    "issuer key {} signs from now, the only one published; dropped: {dropped}",
                    s(v, "kid")
                )
            });
        }
    }
    Ok(())
}
