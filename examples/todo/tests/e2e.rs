//! The Todo example end to end: the real Keyport server, the Todo API on
//! keyport-client's resource-server helper, and `todo-cli` run as a
//! subprocess, approved on Keyport's hosted page.

use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keyport::clock::SystemClock;
use keyport::config::{Config, ScopeDef};
use keyport::domain::clients::ClientSpec;
use keyport::domain::scopes::Role;
use keyport::{Keyport, admin};
use keyport_client::resource::ResourceServer;
use keyport_testkit::decide_device;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const EMAIL: &str = "ada@acme.com";
const PASSWORD: &str = "ada's long passphrase";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    kp: Keyport,
    issuer: String,
    api: String,
    config_dir: tempfile::TempDir,
    _data_dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded(&issuer, data_dir.path()).unwrap();
        config.master_key = Some("33".repeat(32));
        config.tokens.device_poll_interval = 1;
        // The app's own scopes, in the catalogue with the roles they need.
        config.scopes = vec![
            ScopeDef {
                name: "todos:read".into(),
                min_role: Some(Role::Viewer),
                description: Some("Read your todos".into()),
            },
            ScopeDef {
                name: "todos:write".into(),
                min_role: Some(Role::Member),
                description: Some("Add todos".into()),
            },
        ];
        let kp = Keyport::open(config, Arc::new(SystemClock)).await.unwrap();
        let server = kp.clone();
        tokio::spawn(async move {
            keyport::http::serve(server, listener, std::future::pending())
                .await
                .unwrap()
        });

        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", api_listener.local_addr().unwrap());
        admin::add_user(&kp, EMAIL, Some("Ada"), PASSWORD.into())
            .await
            .unwrap();
        admin::add_workspace(&kp, "acme", "Acme").await.unwrap();
        admin::add_member(&kp, "acme", EMAIL, "member")
            .await
            .unwrap();
        admin::add_client(
            &kp,
            ClientSpec {
                id: "todo-cli".into(),
                name: "Todo CLI".into(),
                confidential: false,
                grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
                scopes: vec!["openid email offline_access todos:read todos:write".into()],
                audiences: vec![api.clone()],
                ..ClientSpec::default()
            },
        )
        .await
        .unwrap();
        let api_client = admin::add_client(
            &kp,
            ClientSpec {
                id: "todo-api".into(),
                name: "Todo API".into(),
                confidential: true,
                grants: vec!["client_credentials".into()],
                audiences: vec![api.clone()],
                ..ClientSpec::default()
            },
        )
        .await
        .unwrap();
        let secret = api_client["client_secret"].as_str().unwrap();
        let rs = ResourceServer::builder(&issuer, &api)
            .introspection("todo-api", secret)
            .check_revocation(true)
            .cache_ttl(Duration::from_secs(1))
            .jwks_refetch(Duration::ZERO)
            .build()
            .await
            .unwrap();
        tokio::spawn(async move { axum::serve(api_listener, todo::app(rs)).await.unwrap() });

        Setup {
            kp,
            issuer,
            api,
            config_dir: tempfile::tempdir().unwrap(),
            _data_dir: data_dir,
        }
    }

    fn todo_cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_todo-cli"));
        command
            .args(args)
            .env("TODO_ISSUER", &self.issuer)
            .env("TODO_API", &self.api)
            .env("TODO_CLI_CONFIG_DIR", self.config_dir.path())
            .env("HOME", self.config_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(TIMEOUT, self.todo_cli(args).output())
            .await
            .expect("todo-cli finished in time")
            .unwrap()
    }

    /// `todo-cli login`, approved on the hosted page as a person would.
    async fn login(&self) -> Output {
        let mut child = self.todo_cli(&["login"]).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(TIMEOUT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, url)) = line.split_once("in your web browser: ") {
                    return url.trim().to_string();
                }
            }
            panic!("todo-cli login printed no URL");
        })
        .await
        .unwrap();
        let page = decide_device(&self.issuer, &url, EMAIL, PASSWORD, "approve").await;
        assert!(page.contains("Device approved"), "{page}");
        let rest = tokio::spawn(async move {
            let mut rest = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        let mut output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        output.stderr = rest.await.unwrap().into_bytes();
        output
    }

    /// Makes the stored access token look expired, so the next call refreshes.
    fn expire_access_token(&self) {
        let path = self.config_dir.path().join("credentials.json");
        let mut document: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        document["credentials"][&self.issuer]["expires_at"] = Value::from(0);
        std::fs::write(&path, serde_json::to_vec(&document).unwrap()).unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_cli_logs_in_adds_lists_and_is_refused_once_revoked() {
    let setup = Setup::start().await;

    let list = setup.run(&["list"]).await;
    assert_exit(&list, 4, "list before login");

    let login = setup.login().await;
    assert_exit(&login, 0, "todo-cli login");
    assert!(
        text(&login.stderr).contains(&format!("Logged in as {EMAIL}")),
        "{}",
        text(&login.stderr)
    );
    let stored = std::fs::read_to_string(setup.config_dir.path().join("credentials.json"));
    assert!(stored.is_ok(), "tokens kept in the config dir");

    assert_exit(&setup.run(&["add", "Ship device OAuth"]).await, 0, "add");
    assert_exit(&setup.run(&["add", "Write the docs"]).await, 0, "add");
    let list = setup.run(&["list"]).await;
    assert_exit(&list, 0, "list");
    assert_eq!(
        text(&list.stdout),
        "1\tShip device OAuth\n2\tWrite the docs\n"
    );
    let whoami = setup.run(&["whoami"]).await;
    assert_exit(&whoami, 0, "whoami");
    assert_eq!(text(&whoami.stdout).trim(), EMAIL);

    // A key rotation at the issuer: the next token is signed by a new key,
    // which the API fetches by itself.
    admin::rotate_keys(&setup.kp).await.unwrap();
    setup.expire_access_token();
    let list = setup.run(&["list"]).await;
    assert_exit(&list, 0, "list after a key rotation");
    assert!(text(&list.stdout).contains("Ship device OAuth"));

    // The session revoked at the server (as an admin would on the
    // dashboard): within the helper's cache bound the API refuses it.
    let sessions = admin::list_sessions(&setup.kp, None).await.unwrap();
    let id = sessions[0]["id"].as_str().unwrap();
    admin::revoke_session(&setup.kp, id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let list = setup.run(&["list"]).await;
    assert_exit(&list, 4, "list after the session was revoked");
    assert!(
        text(&list.stderr).contains("run `todo-cli login`"),
        "{}",
        text(&list.stderr)
    );
}
