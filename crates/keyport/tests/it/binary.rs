//! The `keyport` binary as an operator runs it: the first-run setup link
//! (kept out of the logs, dead once any user exists), the user admin
//! commands exactly as PRODUCT.md spells them, and SIGTERM's drain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

/// A `keyport serve` process on a data directory of its own.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The arguments naming the store: the data directory, and the test
/// database when the suite runs on PostgreSQL.
pub fn store_args(data_dir: &Path, database_url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_string(), data_dir.display().to_string()];
    if let Some(url) = database_url {
        args.extend(["--database-url".to_string(), url.to_string()]);
    }
    args
}

impl Server {
    pub async fn spawn(store: &[String], port: u16, extra: &[&str]) -> Self {
        let log =
            std::env::temp_dir().join(format!("keyport-log-{}", keyport::crypto::random_id()));
        let child = Command::new(env!("CARGO_BIN_EXE_keyport"))
            .args(store)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("KEYPORT_MASTER_KEY", "22".repeat(32))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("keyport binary runs");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready().await;
        server
    }

    pub async fn wait_ready(&self) {
        wait_ready(&self.base).await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs an admin command to completion, `stdin` on its standard input.
pub fn keyport(store: &[String], args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(store)
        .args(args)
        .env("KEYPORT_MASTER_KEY", "22".repeat(32))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keyport binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "keyport {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_out(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

#[tokio::test]
async fn setup_link_stays_out_of_the_logs_and_the_user_commands_work() {
    // SQLite in a fresh data directory: the first-run path of a new user.
    let data_dir = temp_dir();
    let store = store_args(&data_dir, None);
    let config = data_dir.join("keyport.toml");
    std::fs::write(&config, "[limits]\nshutdown_drain_secs = 2\n").unwrap();
    let mut serve_args = vec!["--log-format", "json", "--config"];
    let config_text = config.display().to_string();
    serve_args.push(&config_text);
    let port = free_port();
    let mut server = Server::spawn(&store, port, &serve_args).await;

    // Without a terminal the link goes to a file only its owner reads.
    let link_file = data_dir.join("setup-link.txt");
    let text = std::fs::read_to_string(&link_file).expect("the setup link file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&link_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/setup?token="))
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(&link).send().await.unwrap().status(),
        StatusCode::OK
    );

    // The first user made with the admin command: the link dies at once.
    keyport(
        &store,
        &[
            "user",
            "add",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert_eq!(
        http.get(&link).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let disabled = json_out(&keyport(
        &store,
        &["user", "disable", "--email", "ops@example.com", "--json"],
        "",
    ));
    assert_eq!(disabled["disabled"], true);
    let enabled = json_out(&keyport(
        &store,
        &["user", "enable", "--email", "ops@example.com", "--json"],
        "",
    ));
    assert_eq!(enabled["disabled"], false);
    let unlocked = json_out(&keyport(
        &store,
        &["user", "unlock", "--email", "ops@example.com", "--json"],
        "",
    ));
    assert_eq!(unlocked["unlocked"], true);
    let human = keyport(
        &store,
        &["user", "unlock", "--email", "ops@example.com"],
        "",
    );
    assert!(String::from_utf8_lossy(&human.stdout).contains("ops@example.com"));
    let reset = json_out(&keyport(
        &store,
        &[
            "user",
            "totp",
            "reset",
            "--email",
            "ops@example.com",
            "--json",
        ],
        "",
    ));
    assert_eq!(reset["totp_reset"], true, "{reset}");
    assert_eq!(reset["had_authenticator"], false, "{reset}");
    let missing = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(&store)
        .args(["user", "totp", "reset", "--email", "nobody@example.com"])
        .env("KEYPORT_MASTER_KEY", "22".repeat(32))
        .output()
        .unwrap();
    assert_eq!(
        missing.status.code(),
        Some(1),
        "an unknown user is an error"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user nobody@example.com"));

    // SIGTERM: /readyz turns 503 while requests are still answered.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut saw_draining = false;
    while Instant::now() < deadline && !saw_draining {
        if let Ok(r) = http.get(format!("{}/readyz", server.base)).send().await {
            saw_draining = r.status() == StatusCode::SERVICE_UNAVAILABLE;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_draining, "/readyz never answered 503 while draining");
    let health = http.get(format!("{}/healthz", server.base)).send().await;
    assert!(health.is_ok_and(|r| r.status() == StatusCode::OK));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "keyport did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");

    // The logs: structured lines only, and no trace of the link.
    let token = link.split("token=").nth(1).unwrap();
    let log = server.log_text();
    assert!(!log.contains(token), "the setup token reached the logs");
    assert!(!log.contains("/setup?token="), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }

    // Restarted with a user: no link is made and the old file is gone.
    let _server = Server::spawn(&store, free_port(), &[]).await;
    assert!(!link_file.exists());
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn the_client_commands_work_as_spelled() {
    let data_dir = temp_dir();
    let database = test_database().await;
    let store = store_args(&data_dir, database.as_ref().map(|(url, _)| url.as_str()));
    let added = json_out(&keyport(
        &store,
        &[
            "client",
            "add",
            "--id",
            "portal",
            "--name",
            "Portal",
            "--confidential",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--scope",
            "openid offline_access",
            "--redirect-uri",
            "https://portal.example.com/cb",
            "--first-party",
            "--access-token-format",
            "opaque",
            "--access-token-prefix",
            "ptl_at_",
            "--refresh-token-prefix",
            "ptl_rt_",
            "--default-scope",
            "openid",
            "--json",
        ],
        "",
    ));
    assert_eq!(added["client_id"], "portal");
    assert_eq!(added["first_party"], true);
    assert_eq!(added["access_token_format"], "opaque");
    let first = added["client_secret"].as_str().unwrap().to_string();
    let rotated = json_out(&keyport(
        &store,
        &["client", "secret", "rotate", "--id", "portal", "--json"],
        "",
    ));
    let second = rotated["client_secret"].as_str().unwrap();
    assert_ne!(first, second);
    assert!(
        rotated["previous_secret_expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let human = keyport(
        &store,
        &[
            "client",
            "secret",
            "rotate",
            "--id",
            "portal",
            "--grace-hours",
            "1",
        ],
        "",
    );
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("kp_cs_") && text.contains("old secret works until"),
        "{text}"
    );
    // A client the rules refuse: a clear message and exit 1, nothing added.
    let refused = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(&store)
        .args([
            "client",
            "add",
            "--id",
            "bad",
            "--name",
            "Bad",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "http://evil.example/cb",
        ])
        .env("KEYPORT_MASTER_KEY", "22".repeat(32))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("redirect URI"), "{message}");
}
