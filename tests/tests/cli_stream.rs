//! The CLI's streaming `encrypt` and `decrypt` against a live `byok serve`, run as the real
//! binary: an output file appears whole or not at all, with mode 0600; `decrypt` to standard
//! output releases frames as they authenticate, and with `--buffer` nothing before the whole
//! stream did; a long stream renews its lease and stops when the renewal is refused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use byok_core::FrameSize;
use byok_core::format::{HEADER_LEN, TAG_LEN};
use byok_tests::fixtures::{OrgSettings, TestOrg, TestServer, assert_status};
use byok_tests::server::binary;
use serde_json::json;

/// Plaintext bytes per frame of the CLI's streams.
const FRAME: usize = FrameSize::DEFAULT.bytes();
/// Ciphertext bytes per full frame.
const SEALED_FRAME: usize = FRAME + TAG_LEN;

/// A server with org `edge` (leases of `lease_ttl_ms`) and its scope `team`; the CLI runs as
/// the org's service token.
struct Edge {
    ts: TestServer,
    o: TestOrg,
    team: String,
}

impl Edge {
    async fn new(name: &str, lease_ttl_ms: u64) -> Self {
        let ts = TestServer::start(name);
        let o = ts
            .org(OrgSettings {
                lease_ttl_ms,
                ..OrgSettings::named("edge")
            })
            .await;
        let team = o.scope(&ts, &o.id, "team").await;
        Self { ts, o, team }
    }

    /// `byok` with the server, the org and the service token in its environment.
    fn cli(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.env("BYOK_SERVER", &self.ts.url)
            .env("BYOK_TOKEN", &self.o.service)
            .env("BYOK_ORG", &self.o.id)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }

    /// A file in the server's temp dir.
    fn path(&self, name: &str) -> PathBuf {
        self.ts.dir.join(name)
    }

    /// `data` streamed through `byok encrypt --stream` into `sealed.byok`; returns its path.
    fn seal(&self, data: &[u8]) -> PathBuf {
        let input = self.path("input.bin");
        std::fs::write(&input, data).unwrap();
        let sealed = self.path("sealed.byok");
        let out = self.run(&[
            "encrypt",
            "--scope",
            &self.team,
            "--stream",
            s(&input),
            "-o",
            s(&sealed),
        ]);
        assert_ok(&out);
        sealed
    }

    /// The sealed stream of `data` cut after `frames` whole frames (no final frame), as
    /// `truncated.byok`.
    fn truncated(&self, data: &[u8], frames: usize) -> PathBuf {
        let ct = std::fs::read(self.seal(data)).unwrap();
        let path = self.path("truncated.byok");
        std::fs::write(&path, &ct[..HEADER_LEN + frames * SEALED_FRAME]).unwrap();
        path
    }

    /// The sealed stream of `data` with one byte of frame `frame` flipped, as `tampered.byok`.
    fn tampered(&self, data: &[u8], frame: usize) -> PathBuf {
        let mut ct = std::fs::read(self.seal(data)).unwrap();
        ct[HEADER_LEN + frame * SEALED_FRAME + 7] ^= 1;
        let path = self.path("tampered.byok");
        std::fs::write(&path, ct).unwrap();
        path
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `len` bytes of a pattern that differs from frame to frame.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decrypt_that_fails_half_way_leaves_no_file_and_no_temporary_file() {
    let e = Edge::new("cli-partial", 60_000).await;
    // 46 frames; frame 20 fails, after 20 frames were opened and written.
    let tampered = e.tampered(&data(3_000_000), 20);
    let dir = e.path("out");
    std::fs::create_dir(&dir).unwrap();
    let out = e.run(&["decrypt", s(&tampered), "-o", s(&dir.join("plain.bin"))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the ciphertext does not open"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(&dir), Vec::<String>::new());
    // An existing file at the target is left as it was.
    std::fs::write(dir.join("plain.bin"), b"before").unwrap();
    let out = e.run(&["decrypt", s(&tampered), "-o", s(&dir.join("plain.bin"))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(listing(&dir), ["plain.bin"]);
    assert_eq!(std::fs::read(dir.join("plain.bin")).unwrap(), b"before");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_are_0600_plaintext_and_ciphertext() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let e = Edge::new("cli-mode", 60_000).await;
    let plain = data(200_000);
    let sealed = e.seal(&plain);
    assert_eq!(mode(&sealed), 0o600);
    let opened = e.path("opened.bin");
    // Replacing a world-readable file does not keep its mode.
    std::fs::write(&opened, b"old").unwrap();
    std::fs::set_permissions(&opened, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_ok(&e.run(&["decrypt", s(&sealed), "-o", s(&opened)]));
    assert_eq!(std::fs::read(&opened).unwrap(), plain);
    assert_eq!(mode(&opened), 0o600);
    // The text format (one API call) writes its files the same way.
    let text = e.path("small.txt");
    let small = e.path("small.bin");
    std::fs::write(&small, b"small secret").unwrap();
    assert_ok(&e.run(&["encrypt", "--scope", &e.team, s(&small), "-o", s(&text)]));
    assert_eq!(mode(&text), 0o600);
    let back = e.path("small.out");
    assert_ok(&e.run(&["decrypt", s(&text), "-o", s(&back)]));
    assert_eq!(std::fs::read(&back).unwrap(), b"small secret");
    assert_eq!(mode(&back), 0o600);
}

/// What a consumer of standard output saw of a stream that failed: exit 1 with the decrypt
/// error, and `released` bytes, all of them a prefix of `data`.
#[track_caller]
fn fails_after_releasing(out: &Output, data: &[u8], released: usize) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert_eq!(
        stderr(out).trim_end(),
        "error: the ciphertext does not open: decryption failed: wrong key or encryption \
         context, or the ciphertext was modified"
    );
    assert_eq!(out.stdout.len(), released);
    assert!(
        data.starts_with(&out.stdout),
        "not a prefix of the plaintext"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_stdout_a_truncated_stream_releases_its_authenticated_frames_then_fails() {
    let e = Edge::new("cli-truncated", 60_000).await;
    let plain = data(3_000_000);
    // Ten whole frames and no final one: the first nine are released as they authenticate;
    // the tenth, held back until the input ends, fails as the final frame it is not.
    let truncated = e.truncated(&plain, 10);
    fails_after_releasing(&e.run(&["decrypt", s(&truncated)]), &plain, 9 * FRAME);
    fails_after_releasing(&e.run(&["decrypt", "--buffer", s(&truncated)]), &plain, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_stdout_a_tampered_stream_releases_the_frames_before_it_unless_buffered() {
    let e = Edge::new("cli-tampered", 60_000).await;
    let plain = data(3_000_000);
    let tampered = e.tampered(&plain, 20);
    fails_after_releasing(&e.run(&["decrypt", s(&tampered)]), &plain, 20 * FRAME);
    fails_after_releasing(&e.run(&["decrypt", "--buffer", s(&tampered)]), &plain, 0);
    // The same stream intact comes out whole with --buffer, from a pipe too.
    let sealed = e.seal(&plain);
    let out = e
        .cli()
        .args(["decrypt", "--buffer", "-"])
        .stdin(std::fs::File::open(&sealed).unwrap())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(out.stdout == plain, "--buffer changed the plaintext");
}

/// The lease TTL of the mid-stream tests: renewal is due 1 s after a lease arrives.
const SHORT_LEASE_MS: u64 = 2_000;

impl Edge {
    /// Runs `byok encrypt --stream` as `token` from a pipe: feeds two frames and waits until the
    /// first sealed frame comes out (so the first lease is in use), runs `between`, waits past
    /// the renewal point, feeds one more frame and ends the input. Returns the CLI's output (all
    /// of stdout) and how many stdout bytes came after `between`.
    async fn stream_across(&self, token: &str, between: impl AsyncFnOnce()) -> (Output, usize) {
        let mut child = self
            .cli()
            .env("BYOK_TOKEN", token)
            .args(["encrypt", "--scope", &self.team, "--stream"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (first, first_out) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                all.extend_from_slice(&buf[..n]);
                if all.len() >= HEADER_LEN + SEALED_FRAME {
                    let _ = first.send(all.len());
                }
            }
            all
        });
        stdin.write_all(&data(2 * FRAME)).unwrap();
        stdin.flush().unwrap();
        let Ok(before) = first_out.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("no sealed frame came out of byok encrypt");
        };
        between().await;
        tokio::time::sleep(Duration::from_millis(SHORT_LEASE_MS / 2 + 200)).await;
        // The CLI may stop while this is still being read: a broken pipe is expected then.
        let _ = stdin.write_all(&data(FRAME));
        drop(stdin);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("byok encrypt did not end");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut stderr = Vec::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_end(&mut stderr)
            .unwrap();
        let stdout = reader.join().unwrap();
        let after = stdout.len() - before;
        let out = Output {
            status,
            stdout,
            stderr,
        };
        (out, after)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_paused_mid_stream_stops_the_stream_at_its_next_lease_renewal() {
    let e = Edge::new("cli-renew-paused", SHORT_LEASE_MS).await;
    let pause = async || {
        assert_status(&e.o.act(&e.ts, &e.team, "pause", json!({})).await, 200);
    };
    let (out, after) = e.stream_across(&e.o.service, pause).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let prefix = format!(
        "error: the server refused to renew the lease on scope {}, so the stream stopped: \
         scope_paused (409): ",
        e.team
    );
    assert!(stderr(&out).starts_with(&prefix), "{}", stderr(&out));
    assert_eq!(after, 0, "frames sealed after the pause");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_stream_stops_the_stream_at_its_next_lease_renewal() {
    let e = Edge::new("cli-renew-revoked", SHORT_LEASE_MS).await;
    let (id, token) = e.o.token(&e.ts, "service", "streamer").await;
    let revoke = async || {
        let path = e.o.path(&format!("/tokens/{id}"));
        let answer = e.ts.raw("DELETE", &path, Some(&e.o.admin), None).await;
        assert_eq!(answer.0, 200, "{answer:?}");
    };
    let (out, after) = e.stream_across(&token, revoke).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("so the stream stopped: unauthenticated (401): "),
        "{}",
        stderr(&out)
    );
    assert_eq!(after, 0, "frames sealed after the revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_its_lease_renews_it_and_opens_whole() {
    let e = Edge::new("cli-renew-ok", SHORT_LEASE_MS).await;
    let (out, _) = e.stream_across(&e.o.service, async || {}).await;
    assert_ok(&out);
    let sealed = e.path("renewed.byok");
    std::fs::write(&sealed, &out.stdout).unwrap();
    let opened = e.run(&["decrypt", s(&sealed)]);
    assert_ok(&opened);
    let mut expected = data(2 * FRAME);
    expected.extend(data(FRAME));
    assert!(
        opened.stdout == expected,
        "the renewed stream opened to other bytes"
    );
}
