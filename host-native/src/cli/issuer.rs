//! `byok issuer`: the operator's hold on byok's OIDC issuer.

use serde_json::Value;

use super::output::{print, s};
use super::{Client, Failure};

/// Issuer commands.
#[derive(Debug, clap::Subcommand)]
pub enum IssuerCmd {
    /// Replace every signing key at once (operator token), when one may have leaked: a new key
    /// signs from now and is the only one published; the other replicas switch within a
    /// minute. Tokens the old keys signed stop verifying as each cloud fetches the JWKS again;
    /// until it has, a cloud refuses byok's new tokens too, and keys reached through byok's
    /// issuer answer as withdrawn (424) meanwhile.
    ReplaceKeys,
}

/// Runs an issuer command.
pub async fn issuer(client: &Client, cmd: IssuerCmd) -> Result<(), Failure> {
    match cmd {
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
