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
    encrypt_with(server, env, Vec::new()).await
}

/// [`encrypt`] with `more` arguments.
async fn encrypt_with(
    server: String,
    env: Vec<(&'static str, String)>,
    more: Vec<std::ffi::OsString>,
) -> Output {
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
            .args(more)
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

/// A listener on loopback that answers one request with `answer` and hands back what it read.
async fn recorder(answer: &'static str) -> (String, tokio::sync::oneshot::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).await.unwrap_or(0);
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.shutdown().await;
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    (addr, rx)
}

/// `byok token list` against `server` with `args` and `env` (no token from the environment
/// unless `env` sets one).
async fn token_list(server: String, args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .env_remove("BYOK_TOKEN")
            .env_remove("BYOK_TOKEN_FILE")
            .envs(env)
            .env("BYOK_SERVER", server)
            .args(["token", "list", "--org", ORG])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// A localhost name (RFC 6761) is this machine: the CLI sends plain HTTP to it, and sends it
/// to loopback itself, whatever the resolver says. `byok.localhost` resolves nowhere on these
/// machines (no resolver here answers for names under `localhost`), so the request arrives
/// only because the CLI pins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localhost_name_is_sent_to_loopback_whatever_the_resolver_says() {
    let (addr, got) = recorder(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
    )
    .await;
    let port = addr.rsplit(':').next().unwrap();
    let env = vec![("BYOK_TOKEN", "byok_local_token".to_owned())];
    let out = token_list(format!("http://byok.localhost:{port}"), vec![], env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request = got.await.unwrap().to_ascii_lowercase();
    assert!(
        request.contains(&format!("host: byok.localhost:{port}")),
        "{request}"
    );
}

/// `--token-file` sends the file's first line as the bearer token, and nothing of it shows in
/// the process list. A file every user may read, an empty one, or a token given both ways is
/// refused (exit 2) before any request, and no error repeats the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_is_read_when_private_and_is_the_only_source() {
    use std::os::unix::fs::PermissionsExt;
    let dir = byok_tests::server::temp_dir("cli-token-file");
    let path = dir.join("token");
    std::fs::write(&path, "byok_from_file \nsecond line\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let flag = vec!["--token-file".to_owned(), path.display().to_string()];
    let (server, request) = recorder(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
    )
    .await;
    let out = token_list(format!("http://{server}"), flag.clone(), Vec::new()).await;
    let request = request.await.unwrap().to_ascii_lowercase();
    assert!(
        request.contains("\r\nauthorization: bearer byok_from_file\r\n"),
        "{request}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refused before any request: nothing listens on the URL below.
    let nowhere = "http://127.0.0.1:9".to_owned();
    let refused = |out: &Output, says: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("byok_from_file"), "{stderr}");
    };
    let env = vec![("BYOK_TOKEN", "byok_from_env".to_owned())];
    refused(
        &token_list(nowhere.clone(), flag.clone(), env).await,
        "give one",
    );
    let env = vec![("BYOK_TOKEN_FILE", path.display().to_string())];
    let both = vec!["--token".to_owned(), "byok_flag".to_owned()];
    refused(&token_list(nowhere.clone(), both, env).await, "give one");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        &token_list(nowhere.clone(), flag.clone(), Vec::new()).await,
        "holds a bearer token and every user can read it (mode 644); run: chmod 600",
    );
    std::fs::write(&path, "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(
        &token_list(nowhere, flag, Vec::new()).await,
        "holds no token: put the token on its first line",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `byok encrypt -o FILE` (a fresh temporary directory) against `server`: its output and the
/// files left in the directory.
async fn encrypt_to_file(server: String) -> (Output, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.enc");
    let out = encrypt_with(server, Vec::new(), vec!["-o".into(), target.into()]).await;
    let left = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (out, left)
}

/// A success the CLI cannot use is a failure (exit 3), and no output file is left: an answer
/// cut short after its headers (the client's deadline reached mid-body, a reset), a proxy's
/// HTML page answered 200, an empty 200, and JSON without a ciphertext. Before, each wrote an
/// empty line to the output and exited 0 (a script would then shred the input; a claimed
/// token was lost with exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_that_is_not_byoks_answer_is_a_failure() {
    let answers: [&'static str; 4] = [
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"ciphertext\":\"byok:v1:",
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ];
    for answer in answers {
        let (server, _) = listener(answer).await;
        let (out, left) = encrypt_to_file(format!("http://{server}")).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{answer:?}: {stderr}");
        assert!(
            stderr.contains("cut short") || stderr.contains("not byok's"),
            "{answer:?}: {stderr}"
        );
        assert!(left.is_empty(), "{answer:?} left {left:?}");
    }
}

/// `byok` with `args` against a listener answering `answer`, its standard output a pipe whose
/// reader is gone before byok writes (its write fails with EPIPE).
async fn to_closed_output(answer: &'static str, args: &'static [&'static str]) -> Output {
    let (server, _) = listener(answer).await;
    tokio::task::spawn_blocking(move || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(binary())
            .env("BYOK_SERVER", format!("http://{server}"))
            .env("BYOK_TOKEN", "byok_secret_token")
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// A reader that goes away from a stream of rows (`audit read`) ends byok quietly (exit 0), as
/// ripgrep does: `println!` panicked (exit 101) on a closed standard output. From any other
/// command the output was lost: exit 2, never 0 (a verdict piped to a reader gone was a pass,
/// a token shown once that reached no one a success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_standard_output_ends_a_stream_quietly_and_fails_the_rest() {
    let row = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n[{\"seq\":1,\"at\":1,\"event\":{\"a\":1}}]";
    let out = to_closed_output(row, &["audit", "read", "--org", ORG]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let list = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
    let out = to_closed_output(list, &["token", "list", "--org", ORG]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: the output's reader went away before it was all written"
    );
}

/// A token given with a control character in it (a file's two lines, given whole) is bad
/// usage, and no part of it is printed: clap printed a value it refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_control_character_is_refused_unprinted() {
    let (server, count) = listener("HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
    let out = token_list(
        format!("http://{server}"),
        Vec::new(),
        vec![("BYOK_TOKEN", "byok_s3cret\nsecond line".into())],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: the token has a control character in it: give the token alone"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0, "the token was sent");
}

/// The server's words reach the terminal with their control characters escaped: an escape
/// sequence in an error message (here one that erases the line and writes a made-up verdict)
/// is shown, not obeyed. So is one in a name of a listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_words_are_shown_with_control_characters_escaped() {
    let refusal = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 70\r\n\r\n{\"error\":{\"code\":\"x\",\"message\":\"\\u001b[2K\\rthe log extends\\u0007 ok\"}}";
    let (server, _) = listener(refusal).await;
    let out = token_list(
        format!("http://{server}"),
        Vec::new(),
        vec![("BYOK_TOKEN", "byok_secret_token".into())],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(
        stderr.contains("x (403): \\u001b[2K\\u000dthe log extends\\u0007 ok"),
        "{stderr:?}"
    );
    let named = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n[{\"id\":\"1\",\"name\":\"a\\u001b]52;c;aGk=\\u0007\",\"role\":\"admin\"}]";
    let (server, _) = listener(named).await;
    let out = token_list(
        format!("http://{server}"),
        Vec::new(),
        vec![("BYOK_TOKEN", "byok_secret_token".into())],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("a\\u001b]52;c;aGk=\\u0007"), "{stdout:?}");
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
}

/// `byok` with `args` against `server` (a token in the environment, `input` on standard input).
async fn byok(server: String, args: &'static [&'static str], input: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(binary())
            .env("BYOK_SERVER", server)
            .env("BYOK_TOKEN", "byok_secret_token")
            .env_remove("BYOK_ORG")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// The commands that print secrets check the answer in every mode, `--json` included: a
/// proxy's page answered 200 is exit 3 with nothing on standard output, not the page with
/// exit 0. So are a first admin token missing from `org create`'s answer and a decrypt answer
/// without a plaintext (before: exit 0 with an empty token; exit 1, as if byok had refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_print_secrets_check_the_answer_first() {
    let html =
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>";
    let empty =
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let cases: [(&'static str, &'static [&'static str], &'static [u8]); 5] = [
        (
            html,
            &[
                "token", "create", "--org", ORG, "--role", "service", "--name", "x", "--json",
            ],
            b"",
        ),
        (html, &["scope", "lease", "--org", ORG, ORG], b""),
        (
            html,
            &["datakey", "new", "--org", ORG, "--scope", ORG, "--json"],
            b"",
        ),
        (empty, &["org", "create", "acme"], b""),
        (empty, &["decrypt", "--org", ORG], b"byok:v1:AAAA"),
    ];
    for (answer, args, input) in cases {
        let (server, _) = listener(answer).await;
        let out = byok(format!("http://{server}"), args, input).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("not byok's"), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// A listener on loopback that answers every request with `head` and then body bytes without
/// end (as `Transfer-Encoding: chunked` chunks when `chunked`), until the client goes away.
async fn endless(head: &'static str, chunked: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'a'; 64 * 1024];
                loop {
                    let sent = if chunked {
                        let mut chunk = b"10000\r\n".to_vec();
                        chunk.extend_from_slice(&piece);
                        chunk.extend_from_slice(b"\r\n");
                        s.write_all(&chunk).await
                    } else {
                        s.write_all(&piece).await
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The CLI reads no more of an answer than byok sends there: a lease past core's 1 MiB (the
/// length announced, or chunks without end) and any answer past 256 MiB are refused as not
/// byok's (exit 3) when the limit is reached. Before, every answer was read whole into memory
/// first: a server (or a proxy posing as one) could make the CLI hold whatever it sent, until
/// the 60 s deadline or memory ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_is_read_no_further_than_byok_sends() {
    let cases: [(&'static str, bool, &'static [&'static str], &str); 3] = [
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
            false,
            &["scope", "lease", "--org", ORG, ORG],
            "more than 1048576 bytes",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            &["scope", "lease", "--org", ORG, ORG],
            "more than 1048576 bytes",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            &["token", "list", "--org", ORG],
            "more than 268435456 bytes",
        ),
    ];
    for (head, chunked, args, says) in cases {
        let server = endless(head, chunked).await;
        let out = byok(format!("http://{server}"), args, b"").await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
