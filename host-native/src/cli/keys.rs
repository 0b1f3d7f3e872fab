//! `byok key`: customer master keys: policy, validation, attach, default, disable, health.

use serde_json::{Value, json};

use super::output::{key_line, keys_lines, print, report_lines};
use super::{Client, Failure, KmsKeyArgs, OrgArg};

/// Key commands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// List the org's keys with state and health.
    List {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
    /// Print the policy statements to grant for a key (before adding it).
    Policy {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The key (`--key-arn`, `--role-arn`).
        #[command(flatten)]
        kms_key: KmsKeyArgs,
    },
    /// Validate an attached key again, live, and record the result as its health.
    Revalidate {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// `cmk:N`.
        key: String,
    },
    /// Validate a key live (describe, wrap, unwrap) without attaching it.
    Validate {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// The key (`--key-arn`, `--role-arn`).
        #[command(flatten)]
        kms_key: KmsKeyArgs,
    },
    /// Attach a customer key (validated first; nothing changes if validation fails).
    Add {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// Display name.
        #[arg(long)]
        name: String,
        /// The key (`--key-arn`, `--role-arn`).
        #[command(flatten)]
        kms_key: KmsKeyArgs,
    },
    /// Make a key the default.
    Default {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// `managed` or `cmk:N`.
        key: String,
    },
    /// Disable a key; `--target` keeps the root copies (and becomes the default if needed).
    Disable {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// `cmk:N`.
        key: String,
        /// The key that takes over.
        #[arg(long)]
        target: String,
    },
    /// Enable a disabled key again.
    Enable {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
        /// `cmk:N`.
        key: String,
    },
    /// Disable every customer key and fall back to the managed key.
    DisableAll {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
    /// Describe the org's keys now and show their health.
    Check {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
}

/// Runs a key command.
pub async fn key(client: &Client, cmd: KeyCmd) -> Result<(), Failure> {
    let enc = |x: &str| {
        x.replace('%', "%25")
            .replace('&', "%26")
            .replace('=', "%3D")
            .replace('+', "%2B")
            .replace(' ', "%20")
    };
    match cmd {
        KeyCmd::List {
            org: OrgArg { org },
        } => {
            let v = client.get(&format!("/v1/orgs/{org}/keys")).await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Check {
            org: OrgArg { org },
        } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/check"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Policy {
            org: OrgArg { org },
            kms_key,
        } => {
            let mut path = format!(
                "/v1/orgs/{org}/keys/policy?provider={}&key={}",
                enc(&kms_key.provider),
                enc(&kms_key.key)
            );
            for (name, value) in [
                ("role", &kms_key.role),
                ("role_trust", &kms_key.role_trust),
                ("audience", &kms_key.audience),
            ] {
                if let Some(v) = value {
                    path.push_str(&format!("&{name}={}", enc(v)));
                }
            }
            let v = client.get(&path).await?;
            print(client, &v, |v| {
                serde_json::to_string_pretty(v).unwrap_or_default()
            });
        }
        KeyCmd::Validate {
            org: OrgArg { org },
            kms_key,
        } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/validate"), kms_key.body())
                .await?;
            validation_report(client, &v)?;
        }
        KeyCmd::Revalidate {
            org: OrgArg { org },
            key,
        } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/{key}/validate"), json!({}))
                .await?;
            validation_report(client, &v)?;
        }
        KeyCmd::Add {
            org: OrgArg { org },
            name,
            kms_key,
        } => {
            let mut body = kms_key.body();
            body["name"] = json!(name);
            let v = client.post(&format!("/v1/orgs/{org}/keys"), body).await?;
            print(client, &v, |v| {
                format!(
                    "{}\n{}",
                    report_lines(&v["validation"]),
                    key_line(&v["key"])
                )
            });
        }
        KeyCmd::Default {
            org: OrgArg { org },
            key,
        } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/{key}/default"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Disable {
            org: OrgArg { org },
            key,
            target,
        } => {
            let v = client
                .post(
                    &format!("/v1/orgs/{org}/keys/{key}/disable"),
                    json!({ "target": target }),
                )
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::Enable {
            org: OrgArg { org },
            key,
        } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/{key}/enable"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
        KeyCmd::DisableAll {
            org: OrgArg { org },
        } => {
            let v = client
                .post(&format!("/v1/orgs/{org}/keys/disable-all"), json!({}))
                .await?;
            print(client, &v, keys_lines);
        }
    }
    Ok(())
}

/// Prints a validation report (each step, with its fix when it failed); exit code 1 unless every
/// step passed.
fn validation_report(client: &Client, v: &Value) -> Result<(), Failure> {
    print(client, v, |v| report_lines(&v["steps"]));
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    Err(Failure::new(1, "the key did not validate"))
}
