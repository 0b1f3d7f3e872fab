//! A real moto server (AWS KMS, IAM and STS emulator from PyPI) on a loopback port, prepared by
//! `tools/moto_setup.py` with users, keys and SigV4/IAM checking switched on. Killed on drop; its
//! log is printed if the test panics.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials of one IAM user.
#[derive(Clone, Debug)]
pub struct User {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// A running, prepared moto server.
pub struct Moto {
    child: Child,
    log: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The region the keys live in.
    pub region: String,
    /// ARN of the enabled test key.
    pub key_arn: String,
    /// Alias ARN of the same key.
    pub alias_arn: String,
    /// ARN of a disabled key (moto does not enforce it: see kms-wire.md).
    pub disabled_key_arn: String,
    /// ARN of a key scheduled for deletion (not enforced by moto either).
    pub pending_key_arn: String,
    /// A user allowed Encrypt, Decrypt, DescribeKey, GenerateDataKey.
    pub byok: User,
    /// A user allowed everything but Decrypt.
    pub no_decrypt: User,
    /// A role that trusts `byok` when it presents [`Self::external_id`].
    pub role_arn: String,
    /// The external id the role's trust policy requires.
    pub external_id: String,
    /// A role for `AssumeRoleWithWebIdentity`, which the STS front assumes as `sts_front`.
    pub oidc_role_arn: String,
    /// The user the STS front assumes `oidc_role_arn` as.
    pub sts_front: User,
    /// A second enabled key.
    pub second_key_arn: String,
    /// A user allowed to disable and enable keys (the customer's key administrator).
    pub kms_admin: User,
    /// A user allowed to change user policies (the customer's IAM administrator).
    pub iam_admin: User,
    /// The policy that grants `byok` its KMS access (what the grant tests remove and restore).
    pub byok_policy: String,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's Python (with the packages of `tools/requirements.txt`).
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// Runs `tools/<script>` with the venv's Python on `phase` and the config file `config`, with
/// `env` set: what an official SDK saw, as the one JSON object the script prints. Panics with
/// the script's stderr when it fails.
pub fn sdk_check(
    script: &str,
    phase: &str,
    config: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> serde_json::Value {
    let out = Command::new(python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tools")
                .join(script),
        )
        .arg(phase)
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("run the SDK check");
    assert!(
        out.status.success(),
        "{script} {phase}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the SDK check prints JSON")
}

/// The venv the test command made (`BYOK_VENV`, default `~/.cache/byok/venv`).
fn venv() -> PathBuf {
    std::env::var_os("BYOK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/byok/venv")
        })
}

impl Moto {
    /// Starts and prepares moto. Panics with the fix if the venv is missing.
    pub fn start() -> Self {
        let venv = venv();
        let server = venv.join("bin/moto_server");
        assert!(
            server.exists(),
            "{} not found: run ./scripts/test.sh once (it installs moto into the venv) or set BYOK_VENV",
            server.display()
        );
        let (child, port, log) = spawn_on_a_free_port(&server);
        let url = format!("http://127.0.0.1:{port}");
        let setup = Command::new(venv.join("bin/python"))
            .arg(repo_root().join("tools/moto_setup.py"))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            setup.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&setup.stdout).unwrap();
        let s = |p: &str| {
            v.pointer(p)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let user = |name: &str| User {
            access_key_id: s(&format!("/users/{name}/access_key_id")),
            secret_access_key: s(&format!("/users/{name}/secret_access_key")),
        };
        Self {
            child,
            log,
            url,
            region: s("/region"),
            key_arn: s("/key_arn"),
            alias_arn: s("/alias_arn"),
            disabled_key_arn: s("/disabled_key_arn"),
            pending_key_arn: s("/pending_key_arn"),
            byok: user("byok"),
            no_decrypt: user("no-decrypt"),
            role_arn: s("/role_arn"),
            external_id: s("/external_id"),
            oidc_role_arn: s("/oidc_role_arn"),
            sts_front: user("sts-front"),
            second_key_arn: s("/second_key_arn"),
            kms_admin: user("kms-admin"),
            iam_admin: user("iam-admin"),
            byok_policy: s("/byok_policy"),
        }
    }
}

impl Moto {
    /// Runs `client.call` through boto3 as `user` (signed, so moto checks it like any call).
    fn boto3(&self, user: &User, service: &str, call: &str) {
        let script = format!(
            "import boto3\nboto3.client('{service}', endpoint_url='{}', region_name='{}', aws_access_key_id='{}', aws_secret_access_key='{}').{call}",
            self.url, self.region, user.access_key_id, user.secret_access_key
        );
        let out = Command::new(venv().join("bin/python"))
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{service} {call} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// As the customer's key administrator: `DisableKey` or `EnableKey` on `key_arn`.
    pub fn key_admin(&self, op: &str, key_arn: &str) {
        assert!(matches!(op, "disable_key" | "enable_key"), "{op}");
        let key_id = key_arn.rsplit('/').next().unwrap_or(key_arn);
        self.boto3(&self.kms_admin, "kms", &format!("{op}(KeyId='{key_id}')"));
    }

    /// As the customer's IAM administrator: removes (`false`) or restores (`true`) the policy
    /// that grants user `byok` its KMS access.
    pub fn grant(&self, on: bool) {
        let call = if on {
            format!(
                "put_user_policy(UserName='byok', PolicyName='byok', PolicyDocument={:?})",
                self.byok_policy
            )
        } else {
            "delete_user_policy(UserName='byok', PolicyName='byok')".to_owned()
        };
        self.boto3(&self.iam_admin, "iam", &call);
    }

    /// Narrows byok's grant to `actions` (the customer's IAM administrator editing the policy,
    /// e.g. leaving `kms:DescribeKey` and taking `kms:Decrypt` away). [`Self::grant`] with
    /// `true` puts the whole grant back.
    pub fn grant_only(&self, actions: &[&str]) {
        let mut policy: serde_json::Value = serde_json::from_str(&self.byok_policy).unwrap();
        for statement in policy["Statement"].as_array_mut().unwrap() {
            statement["Action"] = serde_json::json!(actions);
        }
        let call = format!(
            "put_user_policy(UserName='byok', PolicyName='byok', PolicyDocument={:?})",
            policy.to_string()
        );
        self.boto3(&self.iam_admin, "iam", &call);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                eprintln!(
                    "--- moto log ({}):\n{}",
                    self.log.display(),
                    log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
                );
            }
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// moto's server on a port free when picked. Another test may bind the same port before
/// moto's slow start does (a port is only picked, not held): then moto exits and whatever
/// answers there is not moto. So the port counts only once moto's own dashboard answers on it;
/// otherwise another port is tried.
fn spawn_on_a_free_port(server: &std::path::Path) -> (Child, u16, PathBuf) {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let log = std::env::temp_dir().join(format!("byok-moto-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break; // It could not bind: another port.
            }
            if answers_as_moto(port) {
                return (child, port, log);
            }
            assert!(
                Instant::now() < deadline,
                "moto did not start; log: {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("moto found no free port in five tries");
}

/// Whether moto answers on `port`: its dashboard (`/moto-api/`) is 200.
fn answers_as_moto(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
