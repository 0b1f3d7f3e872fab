//! The CLI's own HTTP, against bare listeners: it follows no redirect (a 307 would send the
//! plaintext again to wherever it points, and take that answer for byok's), and it sends plain
//! HTTP, allowed on this machine only, through no proxy from the environment (the proxy would
//! get the token in the clear).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use byok_tests::server::binary;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ORG: &str = "0123456789abcdef0123456789abcdef";

/// A listener on loopback that answers every request with `answer` (`{addr}` in it replaced
/// by its own address) and counts the connections it got.
async fn listener(answer: &'static str) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let (counted, own) = (count.clone(), addr.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.replace("{addr}", &own);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, count)
}

/// `byok encrypt` of a secret, as a service would run it, against `server`, with `env`.
async fn encrypt(server: String, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(binary())
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .envs(env)
            .env("BYOK_SERVER", server)
            .env("BYOK_TOKEN", "byok_secret_token")
            .args(["encrypt", "--org", ORG, "--scope", ORG])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"the plaintext")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let (elsewhere, reached) = listener("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").await;
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere}/v1/x\r\nContent-Length: 0\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (server, asked) = listener(redirect).await;
    let out = encrypt(format!("http://{server}"), Vec::new()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("answered 307") && stderr.contains(&elsewhere),
        "{stderr}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the plaintext went on to the redirect's target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_through_no_proxy_from_the_environment() {
    let (proxy, proxied) = listener("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
    let (server, asked) = listener(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    let proxy_url = format!("http://{proxy}");
    let env = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .map(|k| (k, proxy_url.clone()))
        .collect();
    let out = encrypt(format!("http://{server}"), env).await;
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "the token went to the proxy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
