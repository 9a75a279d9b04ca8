//! The real Keyport server in-process for kp's end-to-end tests, approval on its pages through `keyport-testkit`, and kp run as a subprocess.
//!
//! A small equivalent of `crates/keyport/tests/it/support.rs` (which cannot
//! be imported from here), on the system clock because kp reads the real one.

#[cfg(all(target_os = "linux", feature = "keyring"))]
mod secret_service;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keyport::Keyport;
use keyport::admin;
use keyport::clock::SystemClock;
use keyport::config::{Config, Limits, TokenSettings};
use keyport::domain::clients::ClientSpec;
use keyport_testkit::{decide_device, json_of};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::oneshot;

#[cfg(all(target_os = "linux", feature = "keyring"))]
pub use secret_service::SecretService;

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const EMAIL: &str = "alice@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
/// The public client kp logs in as.
pub const CLI: &str = "e2e-cli";

/// Longest any single kp invocation may take; a hang fails the test instead of the suite.
const KP_TIMEOUT: Duration = Duration::from_secs(30);

/// The real Keyport on 127.0.0.1:0 with a fresh SQLite file, seeded with
/// alice (admin of `acme`) and the public client [`CLI`].
pub struct Server {
    pub kp: Keyport,
    pub issuer: String,
    pub addr: SocketAddr,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    _data_dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Server::start`] with the configuration adjusted first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        // Rate limits on, as `keyport serve` runs by default.
        let limits = Limits {
            enabled: true,
            ..Limits::default()
        };
        let tokens = TokenSettings {
            // kp honours the issuer's interval; 5 s per poll would dominate the run time.
            device_poll_interval: 1,
            ..TokenSettings::default()
        };
        let mut config = Config {
            issuer: format!("http://{addr}"),
            listen: addr,
            data_dir: data_dir.path().to_path_buf(),
            database_url: None,
            master_key: Some("11".repeat(32)),
            trusted_proxies: vec![],
            metrics_listen: None,
            tls: None,
            limits,
            tokens,
            retention: Default::default(),
            keys: Default::default(),
            cimd: Default::default(),
            registration: Default::default(),
            smtp: Default::default(),
            sms: Default::default(),
            scopes: vec![],
            clients: vec![],
            profiles: vec![],
            headless: Default::default(),
        };
        adjust(&mut config);
        let kp = Keyport::open(config, Arc::new(SystemClock))
            .await
            .expect("keyport opens");
        let (tx, rx) = oneshot::channel::<()>();
        let server = kp.clone();
        tokio::spawn(async move {
            keyport::http::serve(server, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });

        admin::add_user(&kp, EMAIL, Some("Alice"), PASSWORD.into())
            .await
            .unwrap();
        admin::add_workspace(&kp, "acme", "Acme").await.unwrap();
        admin::add_member(&kp, "acme", EMAIL, "admin")
            .await
            .unwrap();
        admin::add_client(
            &kp,
            ClientSpec {
                id: CLI.into(),
                name: "E2E CLI".into(),
                confidential: false,
                grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
                scopes: vec!["openid profile email offline_access agents:read".into()],
                audiences: vec![],
                redirect_uris: vec![],
                ..ClientSpec::default()
            },
        )
        .await
        .unwrap();

        Server {
            issuer: kp.config().issuer.clone(),
            addr,
            kp,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown: Some(tx),
            _data_dir: data_dir,
        }
    }

    /// GET /oauth/userinfo with the token, as a resource server would.
    pub async fn userinfo(&self, access_token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/oauth/userinfo", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// The live (not revoked) CLI sessions, as `keyport sessions list` shows them.
    pub async fn sessions(&self) -> Vec<Value> {
        let sessions = admin::list_sessions(&self.kp, None).await.unwrap();
        sessions.as_array().unwrap().clone()
    }

    /// How many audit events named `event` were recorded.
    pub async fn audit_count(&self, event: &str) -> usize {
        let events = admin::export_audit(&self.kp, 0).await.unwrap();
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == event)
            .count()
    }

    /// Signs in as alice through the hosted page's forms and approves, as a
    /// user who opened `verification_uri_complete` would.
    pub async fn approve(&self, verification_uri_complete: &str) {
        let done = decide_device(
            &self.issuer,
            verification_uri_complete,
            EMAIL,
            PASSWORD,
            "approve",
        )
        .await;
        assert!(done.contains("Device approved"), "{done}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One user's kp: its own config dir (and HOME), nothing inherited from the
/// developer's environment that could change what kp does.
pub struct Kp {
    dir: tempfile::TempDir,
    /// `Some`: no `--config-dir`, so kp picks its storage itself (the OS
    /// keyring when it works), and this environment points it at a
    /// keyring; its config dir is still under `dir`.
    keyring_env: Option<Vec<(&'static str, OsString)>>,
}

impl Kp {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            keyring_env: None,
        }
    }

    /// A kp whose OS keyring is `keyring`, and never the developer's.
    #[cfg(all(target_os = "linux", feature = "keyring"))]
    pub fn with_os_keyring(keyring: &SecretService) -> Self {
        Self {
            keyring_env: Some(keyring.env()),
            ..Self::new()
        }
    }

    pub fn credentials_path(&self) -> PathBuf {
        match self.keyring_env.is_some() {
            // etcetera's XDG layout, on Linux and macOS alike.
            true => self.dir.path().join("kp").join("credentials.json"),
            false => self.dir.path().join("credentials.json"),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kp"));
        for var in [
            "KP_TOKEN",
            "KP_ISSUER",
            "KP_CLIENT_ID",
            "KP_CONFIG_DIR",
            "KP_INSECURE_STORAGE",
            "BROWSER",
            "DISPLAY",
            "WAYLAND_DISPLAY",
            "SSH_CONNECTION",
        ] {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1").env("HOME", self.dir.path());
        match &self.keyring_env {
            Some(env) => {
                command
                    .env("XDG_CONFIG_HOME", self.dir.path())
                    .envs(env.iter().map(|(k, v)| (k, v)));
            }
            None => {
                command.arg("--config-dir").arg(self.dir.path());
            }
        }
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// Runs kp to completion (bounded by a timeout) and returns what it printed.
    pub async fn run(&self, args: &[&str]) -> Output {
        finish(self.command(args)).await
    }

    /// Runs kp with `KP_TOKEN` set.
    pub async fn run_with_token(&self, token: &str, args: &[&str]) -> Output {
        let mut command = self.command(args);
        command.env("KP_TOKEN", token);
        finish(command).await
    }

    /// `kp login --no-browser` as a user runs it: waits for the URL on
    /// stderr, approves it on the server's page, and waits for kp to exit.
    pub async fn login(&self, server: &Server, label: &str) -> Output {
        self.login_approved_by(
            server,
            label,
            |url| async move { server.approve(&url).await },
        )
        .await
    }

    /// [`Kp::login`] with the approval left to `approve`, which is handed
    /// the `verification_uri_complete` kp printed (a test's own browser).
    pub async fn login_approved_by<F, Fut>(
        &self,
        server: &Server,
        label: &str,
        approve: F,
    ) -> Output
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut child = self
            .command(&[
                "login",
                "--no-browser",
                "--issuer",
                &server.issuer,
                "--client-id",
                CLI,
                "--label",
                label,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kp starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut stderr = String::new();
        let mut user_code = None;
        let url = tokio::time::timeout(KP_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                stderr.push_str(&line);
                stderr.push('\n');
                if let Some((_, code)) = line.split_once("one-time code: ") {
                    user_code = Some(code.trim().to_owned());
                }
                if let Some((_, url)) = line.split_once("in your web browser: ") {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await
        .expect("kp login printed no URL in time");
        let url = url.unwrap_or_else(|| panic!("kp login exited without a URL:\n{stderr}"));
        let user_code =
            user_code.unwrap_or_else(|| panic!("no user code before the URL:\n{stderr}"));
        assert!(
            url.starts_with(&format!("{}/device?", server.issuer)) && url.contains(&user_code),
            "the URL should be the issuer's page with the code filled in: {url}"
        );
        // Keep reading so kp never blocks on a full pipe.
        let rest = tokio::spawn(async move {
            let mut rest = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });

        approve(url).await;

        let mut output = tokio::time::timeout(KP_TIMEOUT, child.wait_with_output())
            .await
            .expect("kp login did not finish after approval")
            .unwrap();
        stderr.push_str(&rest.await.unwrap());
        output.stderr = stderr.into_bytes();
        output
    }

    /// Makes the stored access token look expired, as it will be 15 minutes
    /// after login, so the next `kp token` must refresh.
    pub fn expire_access_token(&self, issuer: &str) {
        let path = self.credentials_path();
        let mut document: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let record = &mut document["credentials"][issuer];
        assert!(
            record.is_object(),
            "no credentials for {issuer}: {document}"
        );
        record["expires_at"] = Value::from(unix_now() - 10);
        std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }

    /// Points the stored token endpoint somewhere else (a [`Tap`]).
    pub fn set_token_endpoint(&self, issuer: &str, endpoint: &str) {
        let path = self.credentials_path();
        let mut document: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        document["credentials"][issuer]["token_endpoint"] = Value::from(endpoint);
        std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }

    /// The stored record for `issuer`.
    pub fn stored(&self, issuer: &str) -> Value {
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(self.credentials_path()).unwrap())
                .unwrap();
        document["credentials"][issuer].clone()
    }
}

/// A TCP forwarder in front of the server that counts connections: a kp
/// process that sends a request opens one (each process has its own pool).
pub struct Tap {
    pub url: String,
    connections: Arc<AtomicUsize>,
}

impl Tap {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Self { url, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn finish(mut command: Command) -> Output {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    tokio::time::timeout(KP_TIMEOUT, output)
        .await
        .expect("kp did not finish in time")
        .expect("kp runs")
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            stdout(output),
            stderr(output)
        )
    })
}

/// Asserts kp exited with `code`, showing what it printed when not.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}
