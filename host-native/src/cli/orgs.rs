//! `byok org`: create, show and update organizations.

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
        /// Outage grace, ms (default 0, at most one day): how long past the cache TTL cached
        /// keys keep serving while the org's KMS is unreachable; never after a denial.
        #[arg(long)]
        outage_grace_ms: Option<u64>,
    },
    /// Show an org.
    Show {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
    /// Change an org's settings (admin token); the change is audited.
    #[command(group = clap::ArgGroup::new("setting").required(true).multiple(true))]
    Update {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// Unwrap cache TTL, ms (0: ask the KMS on every use), at most what the org was created
        /// with: the withdrawal bound. Lower it to have a withdrawal obeyed sooner.
        #[arg(long, group = "setting")]
        unwrap_cache_ttl_ms: Option<u64>,
        /// Edge lease TTL, ms (0: no leases), at most what the org was created with. Leases
        /// already issued keep their end.
        #[arg(long, group = "setting")]
        lease_ttl_ms: Option<u64>,
        /// Outage grace, ms (0: none, at most one day): how long past the cache TTL cached keys
        /// keep serving while the org's KMS is unreachable; never after a denial. Withdrawing
        /// by making the KMS unreachable then takes up to the TTL plus this grace.
        #[arg(long, group = "setting")]
        outage_grace_ms: Option<u64>,
    },
}

/// One line for an org.
fn summary(v: &Value) -> String {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let claimed = match v.get("claimed_at").and_then(Value::as_i64) {
        Some(at) => format!("claimed at {at} ms"),
        None => "not claimed (byok token claim)".into(),
    };
    // The quota is absent when the server sets none.
    let stored = match v.get("max_stored_keys").and_then(Value::as_u64) {
        Some(max) => format!("{} stored key(s) of at most {max}", n("stored_keys")),
        None => format!("{} stored key(s), no limit", n("stored_keys")),
    };
    format!(
        "{}  {}  default key {}  {} scope(s)  {stored}  cache ttl {} ms (at most {})  lease ttl {} ms (at most {})  outage grace {} ms  {claimed}",
        s(v, "id"),
        s(v, "name"),
        s(v, "default_key"),
        n("scopes"),
        n("unwrap_cache_ttl_ms"),
        n("max_unwrap_cache_ttl_ms"),
        n("lease_ttl_ms"),
        n("max_lease_ttl_ms"),
        n("outage_grace_ms")
    )
}

/// Runs an org command.
pub async fn org(client: &Client, cmd: OrgCmd) -> Result<(), Failure> {
    match cmd {
        OrgCmd::Create {
            name,
            unwrap_cache_ttl_ms,
            outage_grace_ms,
        } => {
            // The first admin token: read in place from the answer's own (wiped) bytes.
            #[derive(serde::Deserialize)]
            struct Created<'a> {
                #[serde(borrow)]
                id: std::borrow::Cow<'a, str>,
                #[serde(borrow)]
                admin_token: std::borrow::Cow<'a, str>,
            }
            let body = json!({ "name": name, "unwrap_cache_ttl_ms": unwrap_cache_ttl_ms,
                "outage_grace_ms": outage_grace_ms });
            let answer = client.post_to_secret("/v1/orgs", body).await?;
            super::output::print_secret(client, &answer, "/v1/orgs", |c: &Created<'_>| {
                super::output::raw(&format!(
                    "org {} created\nadmin token (shown once, store it now): ",
                    c.id
                ));
                super::output::raw(&c.admin_token);
            })?;
        }
        OrgCmd::Show {
            org: OrgArg { org },
        } => {
            let v = client.get(&format!("/v1/orgs/{org}")).await?;
            print(client, &v, summary);
        }
        OrgCmd::Update {
            org: OrgArg { org },
            unwrap_cache_ttl_ms,
            lease_ttl_ms,
            outage_grace_ms,
        } => {
            // Only the settings given: a field left out keeps its value.
            let mut body = serde_json::Map::new();
            for (name, value) in [
                ("unwrap_cache_ttl_ms", unwrap_cache_ttl_ms),
                ("lease_ttl_ms", lease_ttl_ms),
                ("outage_grace_ms", outage_grace_ms),
            ] {
                if let Some(v) = value {
                    body.insert(name.into(), json!(v));
                }
            }
            let v = client
                .patch(&format!("/v1/orgs/{org}"), Value::Object(body))
                .await?;
            print(client, &v, summary);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_stored_keys_against_the_quota() {
        let org = serde_json::json!({
            "id": "o1", "name": "acme", "default_key": "managed", "scopes": 3,
            "stored_keys": 12, "max_stored_keys": 100,
        });
        assert!(
            summary(&org).contains("  3 scope(s)  12 stored key(s) of at most 100  "),
            "{}",
            summary(&org)
        );
        let unlimited = serde_json::json!({ "stored_keys": 7, "max_stored_keys": null });
        assert!(
            summary(&unlimited).contains("  7 stored key(s), no limit  "),
            "{}",
            summary(&unlimited)
        );
    }
}
