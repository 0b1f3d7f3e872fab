//! A PostgreSQL cluster of a test's own, for tests that stop and restart the database (the
//! shared cluster the test command starts serves other tests at the same time). Debian's
//! binaries (`BYOK_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`), `initdb` with
//! trust on loopback and fsync off, as the `postgres` user when run as root (initdb refuses
//! root). Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::temp_dir;

/// A private PostgreSQL cluster on a loopback port.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

fn bin_dir() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("BYOK_TEST_PG_BIN") {
        return Some(PathBuf::from(b));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    // Directory names are major versions: the newest sorts last as a number.
    found.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    found.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether this process runs as root (then the cluster belongs to `postgres`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` with `args`, as the `postgres` user when this process is root.
fn as_owner(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A new cluster, started; `None` where PostgreSQL is not installed, unless
    /// `BYOK_TEST_REQUIRE_POSTGRES` says it must be.
    pub fn start(name: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("BYOK_TEST_REQUIRE_POSTGRES").is_none(),
                "BYOK_TEST_REQUIRE_POSTGRES is set but no PostgreSQL binaries were found"
            );
            eprintln!("skipped: PostgreSQL is not installed");
            return None;
        };
        let dir = temp_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(&dir);
            run(chown, "chown the cluster directory");
        }
        let data = dir.join("data");
        run(
            as_owner(
                &bin.join("initdb"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-A",
                    "trust",
                    "-U",
                    "byok",
                    "--no-sync",
                ],
            ),
            "initdb",
        );
        let c = Self {
            bin,
            dir,
            port: free_port(),
        };
        c.up();
        Some(c)
    }

    /// An admin URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://byok@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), on the same port, and waits until it accepts connections.
    pub fn up(&self) {
        let (data, log) = (self.dir.join("data"), self.dir.join("server.log"));
        let opts = format!(
            "-F -p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            self.port,
            self.dir.display()
        );
        run(
            as_owner(
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "-s",
                    "-o",
                    &opts,
                    "start",
                ],
            ),
            "pg_ctl start",
        );
    }

    /// Stops the server the way a failover or a crash does (`-m immediate`: open connections
    /// are cut, nothing waits for clients).
    pub fn down(&self) {
        let data = self.dir.join("data");
        run(
            as_owner(
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "-s",
                    "stop",
                ],
            ),
            "pg_ctl stop",
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_owner(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-s",
                "stop",
            ],
        )
        .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
