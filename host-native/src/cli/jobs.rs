//! `byok job`: the running re-encryption job.

use serde_json::json;

use super::output::{print, s};
use super::{Client, Failure, OrgArg};

/// Job commands.
#[derive(Debug, clap::Subcommand)]
pub enum JobCmd {
    /// Show the running re-encryption job, if any.
    Show {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
    /// Follow the running job with a progress bar until it finishes.
    Watch {
        /// The org (`--org`).
        #[command(flatten)]
        org: OrgArg,
    },
}

/// Runs a job command.
pub async fn job(client: &Client, cmd: JobCmd) -> Result<(), Failure> {
    match cmd {
        JobCmd::Show {
            org: OrgArg { org },
        } => {
            let v = client.get(&format!("/v1/orgs/{org}/job")).await?;
            print(client, &v, |v| {
                if v.is_null() {
                    "no job running".into()
                } else {
                    format!("{}: {} of {} steps", s(v, "kind"), v["done"], v["total"])
                }
            });
        }
        JobCmd::Watch {
            org: OrgArg { org },
        } => {
            super::output::streaming();
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} steps ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            if client.json() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            loop {
                let v = client.get(&format!("/v1/orgs/{org}/job")).await?;
                if v.is_null() {
                    bar.finish_with_message("done");
                    if client.json() {
                        super::output::line(json!({ "running": false }));
                    }
                    return Ok(());
                }
                if client.json() {
                    super::output::line(&v);
                }
                bar.set_length(v["total"].as_u64().unwrap_or(0));
                bar.set_position(v["done"].as_u64().unwrap_or(0));
                bar.set_message(super::output::shown(s(&v, "kind")).into_owned());
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}
