//! `byok audit`: read the hash-chained audit log, and verify its chain.

use serde_json::Value;

use super::output::{print, s};
use super::{Client, Failure, OrgArg};

/// Audit commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Print audit rows (JSON lines with --json, for a SIEM).
    Read {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// Rows after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many rows (all if omitted).
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Check the hash chain; exit code 4 names a broken link.
    Verify {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
}

/// Runs an audit command.
pub async fn audit(client: &Client, cmd: AuditCmd) -> Result<(), Failure> {
    match cmd {
        AuditCmd::Read {
            org: OrgArg { org },
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
        AuditCmd::Verify {
            org: OrgArg { org },
        } => {
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
                Err(Failure::new(4, "the audit chain does not verify"))
            }
        }
    }
}
