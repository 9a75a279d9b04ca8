//! The kp binary as a script sees it: exit codes, stdout/stderr split and `KP_TOKEN`, with no issuer running.
//!
//! Everything here works from a credentials file the test writes itself; the
//! device login against a real Keyport server is in `e2e.rs`.

use std::borrow::BorrowMut;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const ISSUER: &str = "http://127.0.0.1:9";

/// A kp command isolated from the developer's environment and home.
fn kp(config_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kp"));
    for var in [
        "KP_TOKEN",
        "KP_ISSUER",
        "KP_CLIENT_ID",
        "KP_CONFIG_DIR",
        "BROWSER",
        "DISPLAY",
    ] {
        command.env_remove(var);
    }
    command
        .env("HOME", config_dir)
        .arg("--config-dir")
        .arg(config_dir)
        .args(args);
    command
}

fn run(mut command: impl BorrowMut<Command>) -> Output {
    command.borrow_mut().output().expect("kp runs")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes the documented credentials file with one login to [`ISSUER`],
/// whose endpoints point at a port nothing listens on.
fn write_credentials(dir: &Path, expires_at: i64, refresh_token: Option<&str>) {
    let mut record = json!({
        "issuer": ISSUER,
        "client_id": "kp",
        "access_token": "stored-access-token",
        "expires_at": expires_at,
        "scope": "openid email offline_access",
        "token_endpoint": format!("{ISSUER}/oauth/token"),
        "revocation_endpoint": format!("{ISSUER}/oauth/revoke"),
        "userinfo_endpoint": format!("{ISSUER}/oauth/userinfo"),
        "subject": "user-1",
        "email": "alice@example.com",
    });
    if let Some(refresh_token) = refresh_token {
        record["refresh_token"] = json!(refresh_token);
    }
    let document = json!({ "version": 1, "current": ISSUER, "credentials": { ISSUER: record } });
    std::fs::write(dir.join("credentials.json"), document.to_string()).unwrap();
}

#[test]
fn help_lists_the_five_commands() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(kp(dir.path(), &["--help"]));
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["login", "status", "token", "whoami", "logout"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "no {command} in:\n{help}"
        );
    }
}

/// `kp status` answers "logged out" with 1; commands that need a login exit 4.
#[test]
fn without_credentials_status_exits_1_and_the_others_4() {
    let dir = tempfile::tempdir().unwrap();

    let status = run(kp(dir.path(), &["status"]));
    assert_eq!(status.status.code(), Some(1));
    assert!(status.stdout.is_empty());
    assert!(
        stderr(&status).contains("Not logged in"),
        "{}",
        stderr(&status)
    );

    let json = run(kp(dir.path(), &["status", "--json"]));
    assert_eq!(json.status.code(), Some(1));
    assert_eq!(stdout_json(&json)["logged_in"], false);

    for command in ["token", "whoami", "logout"] {
        let output = run(kp(dir.path(), &[command]));
        assert_eq!(
            output.status.code(),
            Some(4),
            "kp {command}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn login_without_an_issuer_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(kp(dir.path(), &["login", "--no-browser"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("KP_ISSUER"), "{}", stderr(&output));
}

#[test]
fn kp_token_in_the_environment_wins_and_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    write_credentials(dir.path(), now() + 900, Some("kp_rt_stored"));

    let token = run(kp(dir.path(), &["token"]).env("KP_TOKEN", "env-token"));
    assert!(token.status.success());
    assert_eq!(token.stdout, b"env-token\n");

    let status = run(kp(dir.path(), &["status", "--json"]).env("KP_TOKEN", "env-token"));
    assert!(status.status.success());
    let report = stdout_json(&status);
    assert_eq!(report["storage"], "env");
    assert_eq!(report["logged_in"], true);

    let human = run(kp(dir.path(), &["status"]).env("KP_TOKEN", "env-token"));
    assert!(String::from_utf8_lossy(&human.stdout).contains("KP_TOKEN"));

    for command in [&["login", "--issuer", ISSUER][..], &["logout"]] {
        let refused = run(kp(dir.path(), command).env("KP_TOKEN", "env-token"));
        assert_eq!(refused.status.code(), Some(1), "{command:?}");
        assert!(
            stderr(&refused).contains("KP_TOKEN"),
            "{}",
            stderr(&refused)
        );
    }
    // Refusing must not have touched the stored login.
    let stored = std::fs::read_to_string(dir.path().join("credentials.json")).unwrap();
    assert!(stored.contains("kp_rt_stored"));
}

#[test]
fn stored_valid_credentials_work_offline() {
    let dir = tempfile::tempdir().unwrap();
    let expires_at = now() + 900;
    write_credentials(dir.path(), expires_at, Some("kp_rt_stored"));

    let token = run(kp(dir.path(), &["token"]));
    assert!(token.status.success(), "{}", stderr(&token));
    assert_eq!(token.stdout, b"stored-access-token\n");
    assert!(token.stderr.is_empty());

    let status = run(kp(dir.path(), &["status", "--json"]));
    assert!(status.status.success());
    assert_eq!(
        stdout_json(&status),
        json!({
            "logged_in": true,
            "issuer": ISSUER,
            "client_id": "kp",
            "subject": "user-1",
            "email": "alice@example.com",
            "scope": "openid email offline_access",
            "expires_at": expires_at,
            "storage": "file",
        })
    );

    let human = run(kp(dir.path(), &["status"]));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("Logged in to {ISSUER} as alice@example.com")),
        "{text}"
    );
}

#[test]
fn the_config_dir_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    write_credentials(dir.path(), now() + 900, None);
    let mut command = Command::new(env!("CARGO_BIN_EXE_kp"));
    command
        .env_remove("KP_TOKEN")
        .env_remove("KP_ISSUER")
        .env("KP_CONFIG_DIR", dir.path());
    let output = run(command.arg("token"));
    assert_eq!(
        output.stdout,
        b"stored-access-token\n",
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_expired_login_without_refresh_token_is_logged_out() {
    let dir = tempfile::tempdir().unwrap();
    write_credentials(dir.path(), now() - 10, None);
    let status = run(kp(dir.path(), &["status"]));
    assert_eq!(status.status.code(), Some(1));
    assert!(stderr(&status).contains("Not logged in"));
    let token = run(kp(dir.path(), &["token"]));
    assert_eq!(token.status.code(), Some(4));
    assert!(token.stdout.is_empty());
}

#[test]
fn an_unreachable_issuer_is_an_error_not_a_logout() {
    let dir = tempfile::tempdir().unwrap();
    write_credentials(dir.path(), now() - 10, Some("kp_rt_stored"));

    // Expired but refreshable: still logged in as far as status can tell offline.
    let status = run(kp(dir.path(), &["status"]));
    assert!(status.status.success());

    let token = run(kp(dir.path(), &["token"]));
    assert_eq!(token.status.code(), Some(1), "{}", stderr(&token));
    assert!(token.stdout.is_empty());
    let stored = std::fs::read_to_string(dir.path().join("credentials.json")).unwrap();
    assert!(
        stored.contains("kp_rt_stored"),
        "credentials must survive a network error"
    );
}

#[test]
fn logout_forgets_locally_and_says_revocation_failed() {
    let dir = tempfile::tempdir().unwrap();
    write_credentials(dir.path(), now() + 900, Some("kp_rt_stored"));

    let output = run(kp(dir.path(), &["logout", "--json"]));
    assert_eq!(output.status.code(), Some(1));
    let report = stdout_json(&output);
    assert_eq!(report["logged_out"], true);
    assert_eq!(report["revoked"], false);
    assert!(report["revocation_error"].is_string());
    assert!(
        stderr(&output).contains("Could not revoke"),
        "{}",
        stderr(&output)
    );

    let status = run(kp(dir.path(), &["status"]));
    assert_eq!(status.status.code(), Some(1));
}

/// kp with its default config dir under `home`, nothing pointing it
/// elsewhere, and no session bus: no test may reach the developer's keyring.
fn kp_at_home(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kp"));
    for var in [
        "KP_TOKEN",
        "KP_ISSUER",
        "KP_CLIENT_ID",
        "KP_CONFIG_DIR",
        "KP_INSECURE_STORAGE",
        "BROWSER",
        "DISPLAY",
    ] {
        command.env_remove(var);
    }
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", home.join("no-bus").display()),
        )
        .args(args);
    command
}

#[cfg(target_os = "linux")]
#[test]
fn insecure_storage_uses_the_default_dir_without_a_warning() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config").join("kp");
    std::fs::create_dir_all(&dir).unwrap();
    write_credentials(&dir, now() + 900, Some("kp_rt_stored"));

    for command in [
        kp_at_home(home.path(), &["--insecure-storage", "status", "--json"]),
        {
            let mut command = kp_at_home(home.path(), &["status", "--json"]);
            command.env("KP_INSECURE_STORAGE", "1");
            command
        },
    ] {
        let status = run(command);
        assert!(status.status.success(), "{}", stderr(&status));
        assert_eq!(stdout_json(&status)["storage"], "file");
        assert!(status.stderr.is_empty(), "{}", stderr(&status));
    }
}

#[cfg(all(target_os = "linux", feature = "keyring"))]
#[test]
fn without_a_keyring_kp_falls_back_to_the_file_with_one_warning() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config").join("kp");
    std::fs::create_dir_all(&dir).unwrap();
    write_credentials(&dir, now() + 900, Some("kp_rt_stored"));

    let status = run(kp_at_home(home.path(), &["status", "--json"]));
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(stdout_json(&status)["storage"], "file");
    let warning = stderr(&status);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("warning: no usable OS keyring"),
        "{warning}"
    );
    assert!(warning.contains("--insecure-storage"), "{warning}");

    let token = run(kp_at_home(home.path(), &["token"]));
    assert_eq!(token.stdout, b"stored-access-token\n", "{}", stderr(&token));
}

#[test]
fn a_login_kept_in_the_keyring_is_not_used_without_it() {
    let dir = tempfile::tempdir().unwrap();
    write_credentials(dir.path(), now() + 900, None);
    let path = dir.path().join("credentials.json");
    let mut document: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    document["credentials"][ISSUER]["refresh_token_in_keyring"] = json!(true);
    std::fs::write(&path, document.to_string()).unwrap();

    for command in [&["status"][..], &["token"]] {
        let output = run(kp(dir.path(), command));
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(output.stdout.is_empty());
        let text = stderr(&output);
        assert!(text.contains("kept in the OS keyring"), "{text}");
        assert!(text.contains("kp login"), "{text}");
    }
    // Nothing was deleted: the keyring half is still usable elsewhere.
    assert_eq!(
        serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()).unwrap(),
        document
    );
}
