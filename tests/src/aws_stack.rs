//! moto behind the key-state front (moto alone keeps using a disabled key), and `byok serve`
//! wired to it as moto's user `byok`: what every server test with customer keys starts from.

use std::path::Path;

use byok_core::kms::aws::request::AwsCredentials;

use crate::fault_front::{FaultFront, StateCheck};
use crate::moto::Moto;
use crate::server::Server;

/// moto and the front before it.
pub struct AwsStack {
    /// The moto server.
    pub moto: Moto,
    /// The key-state front every AWS call of the server goes through.
    pub front: FaultFront,
}

impl AwsStack {
    /// Starts moto (prepared, auth on) and the front.
    pub async fn start() -> Self {
        let moto = Moto::start();
        let front = FaultFront::start_with(
            moto.url.trim_start_matches("http://").to_owned(),
            Some(StateCheck {
                creds: AwsCredentials::new(
                    &moto.byok.access_key_id,
                    &moto.byok.secret_access_key,
                    None,
                    None,
                ),
            }),
        )
        .await;
        Self { moto, front }
    }

    /// A server on `data` whose AWS calls go through the front as user `byok`; the periodic
    /// key health check is an hour away, so tests decide when health is checked.
    pub fn server(&self, data: &Path) -> Server {
        Server::start(
            data,
            &[
                ("BYOK_DANGER_AWS_ENDPOINT", &self.front.url),
                ("BYOK_AWS_ACCESS_KEY_ID", &self.moto.byok.access_key_id),
                (
                    "BYOK_AWS_SECRET_ACCESS_KEY",
                    &self.moto.byok.secret_access_key,
                ),
                (
                    "BYOK_AWS_PRINCIPAL_ARN",
                    "arn:aws:iam::123456789012:user/byok",
                ),
                ("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000"),
            ],
        )
    }
}
