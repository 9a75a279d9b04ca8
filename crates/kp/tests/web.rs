//! `kp login --web` end to end: the real binary against the real Keyport server, signed in and approved on the hosted pages in headless Chromium, and its fallback to the device flow.
//!
//! `$BROWSER` is how kp is handed a browser here, as a user's shell would:
//! a script that writes down the URL it is given, for Chromium to open.

// Each test binary compiles the shared support module; this one uses part of it.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use keyport::admin;
use keyport::domain::clients::ClientSpec;
use keyport_testkit::Chromium;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

use support::*;

/// A public CLI client offering both flows, as a client for `kp login`
/// and `kp login --web` would be set up.
const WEB_CLI: &str = "e2e-web-cli";
/// The loopback redirect URI as registered: it matches on any port (RFC 8252 §7.3).
const LOOPBACK_REDIRECT: &str = "http://127.0.0.1/callback";
/// How long kp may take to do its part (print, open, exchange, exit).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

async fn add_web_client(server: &Server) {
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: WEB_CLI.into(),
            name: "E2E Web CLI".into(),
            confidential: false,
            grants: vec![
                "authorization_code".into(),
                DEVICE_GRANT.into(),
                "refresh_token".into(),
            ],
            scopes: vec!["openid profile email offline_access agents:read".into()],
            redirect_uris: vec![LOOPBACK_REDIRECT.into()],
            ..ClientSpec::default()
        },
    )
    .await
    .unwrap();
}

/// An executable `$BROWSER` in `dir` running `body` with the URL as `$1`.
fn browser_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// `kp login --web` for [`WEB_CLI`], started and left running.
fn start_web_login(kp: &Kp, server: &Server, browser: Option<&Path>) -> Child {
    let mut command = kp.command(&[
        "login",
        "--web",
        "--issuer",
        &server.issuer,
        "--client-id",
        WEB_CLI,
    ]);
    if let Some(browser) = browser {
        command.env("BROWSER", browser);
    }
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kp starts")
}

/// Waits for kp to exit after the user's part is done.
async fn wait_for_exit(child: Child) -> Output {
    tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
        .await
        .expect("kp login did not finish")
        .unwrap()
}

/// Waits for the `$BROWSER` script to have written down the URL kp opened.
async fn opened_url(path: &Path, kp_login: &mut Child) -> String {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        if let Ok(url) = std::fs::read_to_string(path) {
            return url.trim().to_owned();
        }
        if let Some(status) = kp_login.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = kp_login.stderr.take() {
                pipe.read_to_string(&mut stderr).await.unwrap();
            }
            panic!("kp login exited ({status}) without opening a browser:\n{stderr}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kp login opened no browser in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_login_signs_in_through_the_browser_and_stores_the_login() {
    let server = Server::start().await;
    add_web_client(&server).await;
    let issuer = server.issuer.as_str();
    let kp = Kp::new();
    let scratch = tempfile::tempdir().unwrap();
    let url_file = scratch.path().join("opened-url");
    let browser = browser_script(
        scratch.path(),
        "browser",
        &format!(
            "printf '%s\\n' \"$1\" > '{0}.tmp' && mv '{0}.tmp' '{0}'",
            url_file.display()
        ),
    );

    let mut login = start_web_login(&kp, &server, Some(&browser));
    let url = opened_url(&url_file, &mut login).await;

    // The authorization request of RFC 6749 §4.1.1 with PKCE, to a loopback redirect.
    let parsed = reqwest::Url::parse(&url).unwrap();
    assert!(
        url.starts_with(&format!("{issuer}/oauth/authorize?")),
        "{url}"
    );
    let query: BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], WEB_CLI);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["state"].len(), 43);
    let redirect_uri = &query["redirect_uri"];
    let port = redirect_uri
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/callback"))
        .unwrap_or_else(|| panic!("not a loopback redirect: {redirect_uri}"));
    assert!(port.parse::<u16>().is_ok(), "{redirect_uri}");
    assert_eq!(query["scope"], "openid profile email offline_access");

    // The user: signs in on the hosted page and approves.
    let chromium = Chromium::launch().await;
    chromium.open(&url).await;
    chromium.fill("Email", EMAIL).await;
    chromium.fill("Password", PASSWORD).await;
    chromium.click_button("Sign in").await;
    chromium.click_button("Approve").await;
    // kp's own page (the consent page also says "Signed in as …").
    chromium
        .wait_for_text("You can close this tab and return to the terminal.")
        .await;
    assert!(
        chromium
            .current_url()
            .await
            .starts_with(redirect_uri.as_str()),
        "the browser came back to kp"
    );
    let page = chromium.page_text().await;
    assert!(
        page.contains("You can close this tab and return to the terminal."),
        "{page}"
    );
    chromium.close().await;

    let output = wait_for_exit(login).await;
    assert_exit(&output, 0, "kp login --web");
    assert!(
        stderr(&output).contains(&format!("Logged in to {issuer} as {EMAIL}")),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains(&url),
        "the URL is shown as text too"
    );
    assert!(
        output.stdout.is_empty(),
        "login prints data only with --json"
    );

    // Stored as a device login is: every other command works unchanged.
    let status = kp.run(&["status", "--json"]).await;
    assert_exit(&status, 0, "kp status --json");
    let report = stdout_json(&status);
    assert_eq!(report["logged_in"], true);
    assert_eq!(report["issuer"], issuer);
    assert_eq!(report["client_id"], WEB_CLI);
    assert_eq!(report["email"], EMAIL);

    let token = kp.run(&["token"]).await;
    assert_exit(&token, 0, "kp token");
    let access_token = stdout(&token).trim().to_owned();
    let (code, me) = server.userinfo(&access_token).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["email"], EMAIL);
    assert_eq!(me["workspace"], "acme");

    let sessions = server.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["client_id"], WEB_CLI);
    assert_eq!(sessions[0]["user"], EMAIL);

    // offline_access was granted: the refresh token works.
    kp.expire_access_token(issuer);
    let refreshed = kp.run(&["token"]).await;
    assert_exit(&refreshed, 0, "kp token after expiry");
    let refreshed = stdout(&refreshed).trim().to_owned();
    assert_ne!(refreshed, access_token);
    let (code, me) = server.userinfo(&refreshed).await;
    assert_eq!(code, 200, "{me}");

    let logout = kp.run(&["logout"]).await;
    assert_exit(&logout, 0, "kp logout");
    assert!(server.sessions().await.is_empty(), "revoked at the server");
}

/// Runs `kp login --web` where no browser opens, expects the device flow
/// to take over, approves its code on the hosted page and returns kp's
/// output, with all of stderr.
async fn login_through_the_fallback(server: &Server, kp: &Kp, browser: Option<&Path>) -> Output {
    let mut child = start_web_login(kp, server, browser);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let url = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if let Some((_, url)) = line.split_once("in your web browser: ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .expect("kp login printed no device URL in time")
    .unwrap_or_else(|| panic!("kp login exited without a device URL:\n{stderr}"));
    assert!(
        stderr.contains("logging in with a one-time code instead"),
        "{stderr}"
    );
    assert!(
        stderr.contains("First copy your one-time code: "),
        "{stderr}"
    );
    assert!(
        url.starts_with(&format!("{}/device?", server.issuer)),
        "{url}"
    );
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });

    server.approve(&url).await;

    let mut output = wait_for_exit(child).await;
    stderr.push_str(&rest.await.unwrap());
    output.stderr = stderr.into_bytes();
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_browser_command_falls_back_to_the_device_flow() {
    let server = Server::start().await;
    add_web_client(&server).await;
    let kp = Kp::new();
    let scratch = tempfile::tempdir().unwrap();
    let browser = browser_script(scratch.path(), "broken-browser", "exit 3");

    let output = login_through_the_fallback(&server, &kp, Some(&browser)).await;
    assert_exit(&output, 0, "kp login --web with a failing $BROWSER");
    let text = stderr(&output);
    assert!(
        text.contains("! Could not open a browser (") && text.contains("failed"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Logged in to {} as {EMAIL}", server.issuer)),
        "{text}"
    );
    let status = kp.run(&["status", "--json"]).await;
    assert_exit(&status, 0, "kp status --json");
    assert_eq!(stdout_json(&status)["client_id"], WEB_CLI);
}

/// Linux without DISPLAY or BROWSER: kp does not even try a browser.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_display_web_login_uses_the_device_flow() {
    let server = Server::start().await;
    add_web_client(&server).await;
    let kp = Kp::new();

    let output = login_through_the_fallback(&server, &kp, None).await;
    assert_exit(&output, 0, "kp login --web without a display");
    let text = stderr(&output);
    assert!(
        text.contains("! Cannot open a browser (no display"),
        "{text}"
    );
    assert!(!text.contains("Opening this URL"), "{text}");
}

#[tokio::test]
async fn web_with_no_browser_is_a_usage_error() {
    let kp = Kp::new();
    let output = kp
        .run(&[
            "login",
            "--web",
            "--no-browser",
            "--issuer",
            "http://127.0.0.1:9",
        ])
        .await;
    assert_exit(&output, 2, "kp login --web --no-browser");
    assert!(
        stderr(&output).contains("'--web' cannot be used with '--no-browser'"),
        "{}",
        stderr(&output)
    );
}
