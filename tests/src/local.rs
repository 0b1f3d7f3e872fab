//! What every local conformance server shares (the Cloud KMS, the Key Vault): a loopback port
//! serving an axum router until the server is dropped, over HTTP or (for SDKs that insist)
//! HTTPS with a fresh test CA, and the clock and random names their answers use.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;

/// The serving task: dropping it stops the server.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the router `make` builds for its own URL (`http://127.0.0.1:PORT`).
pub async fn serve(make: impl FnOnce(&str) -> Router) -> (String, Serving) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = make(&url);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, Serving(task))
}

/// [`serve`] over HTTPS (`https://127.0.0.1:PORT`), with a certificate for 127.0.0.1 from a
/// fresh test CA; also returns the CA's PEM for the client to trust.
pub async fn serve_tls(make: impl FnOnce(&str) -> Router) -> (String, Serving, String) {
    let (ca, chain, key) = crate::tls::ca_and_leaf("127.0.0.1");
    let listener = crate::tls::TlsListener::bind(&chain, &key).await;
    let url = format!("https://{}", listener.local_addr());
    let app = make(&url);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, Serving(task), ca)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh, empty database on the PostgreSQL test cluster at `admin` (an admin URL naming a
/// database), as a URL; made from a thread of its own, so callers inside a runtime can wait.
pub fn fresh_postgres(admin: &str) -> String {
    let (base, _) = admin
        .rsplit_once('/')
        .expect("an admin URL with a database");
    let url = format!("{base}/byok_t_{}", random_hex(8));
    let (admin, name) = (admin.to_owned(), url.rsplit_once('/').unwrap().1.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("the test PostgreSQL cluster answers");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("a test database");
        });
    })
    .join()
    .unwrap();
    url
}
