//! `byok audit`: read the audit log, follow it, verify it against a checkpoint you kept, prove
//! a row is in it, and check revocation receipts offline (the checks are in `audit_log.rs`).

use std::path::PathBuf;

use serde_json::Value;

use super::audit_log;
use super::output::{print, s};
use super::{Client, Failure, OrgArg};

/// Audit commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Print audit rows (JSON lines with --json, for a SIEM), optionally only some: "did token
    /// X touch scope Y since Z" is `--actor X --scope Y --since Z`.
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
        /// Only events of this type (`scope_paused`, `lease_issued`, `scope_used`, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this scope.
        #[arg(long)]
        scope: Option<String>,
        /// Only events written by requests with this token id.
        #[arg(long)]
        actor: Option<String>,
        /// Only rows at or after this time (RFC 3339, or ms since the epoch).
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Only rows before this time (RFC 3339, or ms since the epoch).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
    },
    /// Follow the log as JSON lines, for a SIEM: from a sequence number, and with --follow
    /// waiting for new rows (resume by passing the last seq you stored as --after).
    Tail {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// Rows after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep waiting for new rows (polls every --interval-ms).
        #[arg(long)]
        follow: bool,
        /// How often to ask for new rows with --follow, in ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Without --checkpoint: the server checks its hash chain. With --checkpoint FILE: prove
    /// here that the log now extends the checkpoint you kept (a cut tail, an edited, removed
    /// or reordered row is reported with the first bad row). Exit code 4 when it does not.
    Verify {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// A signed checkpoint you kept (from `byok audit checkpoint`), or a withdrawal
        /// receipt (or the answer that carried it): its checkpoint, once the receipt verifies,
        /// so that the log is shown to still hold the withdrawal as it was signed.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The log's verifier key (`name+id+key`, or `@FILE`); default: the server's, with a
        /// warning.
        #[arg(long, env = "BYOK_VERIFIER_KEY")]
        verifier_key: Option<String>,
        /// A witness you trust (its C2SP cosignature key, `name+id+base64`, or `@FILE`);
        /// repeat for several. With --checkpoint: the witness must have cosigned a checkpoint
        /// at least as large as yours that these rows give, so that the log you see is the one
        /// it saw (no split view up to your checkpoint). Exit code 4 otherwise.
        #[arg(long, requires = "checkpoint")]
        witness_key: Vec<String>,
        /// How many of the --witness-key witnesses must have cosigned [default: all of them].
        #[arg(long, requires = "witness_key", value_parser = clap::value_parser!(u64).range(1..))]
        min_cosignatures: Option<u64>,
    },
    /// Print the newest signed checkpoint (a C2SP signed note): keep it, and later verify the
    /// log extends it.
    Checkpoint {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
    /// Prove that row SEQ is in the log signed by a checkpoint (yours, or the newest). Exit
    /// code 4 when it is not.
    Prove {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The row's sequence number.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        seq: u64,
        /// A signed checkpoint you kept, or a withdrawal receipt (its checkpoint) [default: the
        /// newest].
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The log's verifier key (`name+id+key`, or `@FILE`); default: the server's, with a
        /// warning.
        #[arg(long, env = "BYOK_VERIFIER_KEY")]
        verifier_key: Option<String>,
    },
    /// Check a revocation receipt offline (a receipt, or a whole pause / revoke / disable /
    /// token revoke answer saved with --json). Needs no server. Exit code 4 when it fails.
    VerifyReceipt {
        /// The receipt file.
        file: PathBuf,
        /// The log's verifier key (`name+id+key`, or `@FILE`), as published.
        #[arg(long, env = "BYOK_VERIFIER_KEY")]
        verifier_key: String,
        /// Your org id: a receipt of another org is refused (the same log key signs every
        /// org's receipts).
        #[arg(long, env = "BYOK_ORG")]
        org: Option<String>,
    },
    /// Print the log's verifier key (C2SP note form), to pin.
    VerifierKey,
}

/// Runs an audit command.
pub async fn audit(client: &Client, cmd: AuditCmd) -> Result<(), Failure> {
    match cmd {
        AuditCmd::Read {
            org: OrgArg { org },
            mut after,
            limit,
            kind,
            scope,
            actor,
            since,
            until,
        } => {
            super::output::streaming();
            let mut filter = String::new();
            for (k, v) in [
                ("kind", kind),
                ("scope", scope),
                ("actor", actor),
                ("since", since.map(|t| t.to_string())),
                ("until", until.map(|t| t.to_string())),
            ] {
                if let Some(v) = v {
                    filter.push_str(&format!("&{k}={}", query_value(&v)?));
                }
            }
            let mut left = limit.unwrap_or(i64::MAX);
            while left > 0 {
                let page = left.min(1000);
                let v = client
                    .get(&format!(
                        "/v1/orgs/{org}/audit?after={after}&limit={page}{filter}"
                    ))
                    .await?;
                let rows = rows_of(client, &v, &format!("/v1/orgs/{org}/audit"))?;
                for r in &rows {
                    if client.json() {
                        super::output::line(r);
                    } else {
                        super::output::line(format!(
                            "{:>6}  {}  {}",
                            r.get("seq").and_then(Value::as_i64).unwrap_or(0),
                            r.get("at").and_then(Value::as_i64).unwrap_or(0),
                            r.get("event").map(Value::to_string).unwrap_or_default()
                        ));
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
        AuditCmd::Tail {
            org: OrgArg { org },
            after,
            follow,
            interval_ms,
        } => {
            super::output::streaming();
            tail(client, &org, after, follow, interval_ms).await
        }
        AuditCmd::Checkpoint {
            org: OrgArg { org },
        } => {
            let note = audit_log::fetch_checkpoint(client, &org).await?;
            if client.json() {
                super::output::line(serde_json::json!({ "note": note }));
            } else {
                super::output::raw(&note);
            }
            Ok(())
        }
        AuditCmd::Prove {
            org: OrgArg { org },
            seq,
            checkpoint,
            verifier_key,
        } => {
            audit_log::prove(
                client,
                &org,
                seq,
                checkpoint.as_deref(),
                verifier_key.as_deref(),
            )
            .await
        }
        AuditCmd::VerifyReceipt {
            file,
            verifier_key,
            org,
        } => audit_log::verify_receipt(client, &file, &verifier_key, org.as_deref()),
        AuditCmd::VerifierKey => {
            let v = client.get("/v1/audit/verifier-key").await?;
            print(client, &v, |v| s(v, "verifier_key").to_owned());
            Ok(())
        }
        AuditCmd::Verify {
            org: OrgArg { org },
            checkpoint: Some(kept),
            verifier_key,
            witness_key,
            min_cosignatures,
        } => {
            let witnesses = audit_log::Witnesses::parse(&witness_key, min_cosignatures)?;
            audit_log::verify(client, &org, &kept, verifier_key.as_deref(), &witnesses).await
        }
        AuditCmd::Verify {
            org: OrgArg { org },
            checkpoint: None,
            ..
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

/// JSON lines from `after` on; with `follow`, forever.
async fn tail(
    client: &Client,
    org: &str,
    mut after: i64,
    follow: bool,
    interval_ms: u64,
) -> Result<(), Failure> {
    loop {
        let v = client
            .get(&format!("/v1/orgs/{org}/audit?after={after}&limit=1000"))
            .await?;
        let rows = rows_of(client, &v, &format!("/v1/orgs/{org}/audit"))?;
        for r in &rows {
            // A reader gone ends the follow (`line`), instead of polling for ever.
            super::output::line(r);
            after = r.get("seq").and_then(Value::as_i64).unwrap_or(after);
        }
        if rows.len() == 1000 {
            continue;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(interval_ms.max(100))).await;
    }
}

/// A time given as ms since the epoch or RFC 3339, in ms.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            format!(
                "{text:?} is neither ms since the epoch nor an RFC 3339 time (2026-11-30T10:00:00Z)"
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "time out of range".into())
}

/// A filter value as it goes into the query string: types and hex ids only.
fn query_value(v: &str) -> Result<&str, Failure> {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(v)
    } else {
        Err(Failure::usage(format!(
            "{v:?}: filters are event types, ids and times (letters, digits, '_' and '-')"
        )))
    }
}

/// The rows of a list answer: byok sends a JSON array; anything else (a proxy's `{}`) is not
/// taken for an empty list (exit 3), or a `tail --follow` would forward nothing for ever.
pub(super) fn rows_of(client: &Client, v: &Value, path: &str) -> Result<Vec<Value>, Failure> {
    v.as_array().cloned().ok_or_else(|| client.unusable(path))
}
