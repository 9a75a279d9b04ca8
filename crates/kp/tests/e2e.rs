//! kp end to end: the real binary as a subprocess against the real Keyport server, approved through its pages.
//!
//! Each test starts its own server (system clock, 1 s poll interval) and
//! gives kp its own config dir, so the tests run in parallel.

mod support;

use serde_json::Value;

use support::*;

/// A JWT is three base64url parts joined by dots.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `kp token`'s stdout: exactly one line, the token.
fn one_token(output: &std::process::Output) -> String {
    let out = stdout(output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "kp token printed {out:?}");
    assert!(out.ends_with('\n'));
    lines[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_use_and_logout() {
    let server = Server::start().await;
    let kp = Kp::new();
    let issuer = server.issuer.as_str();

    let login = kp.login(&server, "e2e-laptop").await;
    assert_exit(&login, 0, "kp login");
    assert!(
        stderr(&login).contains(&format!("Logged in to {issuer} as {EMAIL}")),
        "{}",
        stderr(&login)
    );
    assert!(
        login.stdout.is_empty(),
        "login prints data only with --json"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(kp.credentials_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let status = kp.run(&["status"]).await;
    assert_exit(&status, 0, "kp status");
    assert!(
        stdout(&status).contains(&format!("Logged in to {issuer} as {EMAIL}")),
        "{}",
        stdout(&status)
    );
    let status = kp.run(&["status", "--json"]).await;
    assert_exit(&status, 0, "kp status --json");
    let report = stdout_json(&status);
    assert_eq!(report["logged_in"], true);
    assert_eq!(report["issuer"], issuer);
    assert_eq!(report["client_id"], CLI);
    assert_eq!(report["email"], EMAIL);
    assert_eq!(report["storage"], "file");

    let token = kp.run(&["token"]).await;
    assert_exit(&token, 0, "kp token");
    assert!(token.stderr.is_empty(), "{}", stderr(&token));
    let access_token = one_token(&token);
    assert!(looks_like_jwt(&access_token), "{access_token}");
    let (code, me) = server.userinfo(&access_token).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["email"], EMAIL);
    assert_eq!(me["workspace"], "acme");

    let whoami = kp.run(&["whoami", "--json"]).await;
    assert_exit(&whoami, 0, "kp whoami --json");
    let me = stdout_json(&whoami);
    assert_eq!(me["email"], EMAIL);
    assert_eq!(me["role"], "admin");

    // The same token through KP_TOKEN, from a kp that never logged in.
    let elsewhere = Kp::new();
    let whoami = elsewhere
        .run_with_token(&access_token, &["whoami", "--json", "--issuer", issuer])
        .await;
    assert_exit(&whoami, 0, "KP_TOKEN=<token> kp whoami");
    assert_eq!(stdout_json(&whoami)["email"], EMAIL);

    let sessions = server.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(session["label"], "e2e-laptop");
    assert_eq!(session["client_id"], CLI);
    assert_eq!(session["user"], EMAIL);

    let logout = kp.run(&["logout"]).await;
    assert_exit(&logout, 0, "kp logout");
    assert!(
        stderr(&logout).contains("the session was revoked"),
        "{}",
        stderr(&logout)
    );
    assert!(
        server.sessions().await.is_empty(),
        "the session must be revoked at the server"
    );
    let (code, body) = server.userinfo(&access_token).await;
    assert_eq!(
        code, 401,
        "a revoked session's access token must fail userinfo: {body}"
    );

    let status = kp.run(&["status"]).await;
    assert_exit(&status, 1, "kp status when logged out");
    assert!(stdout(&status).is_empty());
    assert!(
        stderr(&status).contains("Not logged in"),
        "{}",
        stderr(&status)
    );
    let token = kp.run(&["token"]).await;
    assert_exit(&token, 4, "kp token when logged out");
    assert!(token.stdout.is_empty());
    assert!(stderr(&token).contains("kp login"), "{}", stderr(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_token_commands_refresh_once_and_keep_the_session() {
    let server = Server::start().await;
    let kp = Kp::new();
    let issuer = server.issuer.as_str();
    assert_exit(&kp.login(&server, "e2e-concurrent").await, 0, "kp login");
    let session_id = server.sessions().await[0]["id"].clone();
    let before = kp.stored(issuer);
    // Refreshes go through a tap that counts them.
    let tap = Tap::start(server.addr).await;
    kp.set_token_endpoint(issuer, &format!("{}/oauth/token", tap.url));

    kp.expire_access_token(issuer);
    let (first, second) = tokio::join!(kp.run(&["token"]), kp.run(&["token"]));
    assert_exit(&first, 0, "first concurrent kp token");
    assert_exit(&second, 0, "second concurrent kp token");
    let (first, second) = (one_token(&first), one_token(&second));
    assert_ne!(
        first, before["access_token"],
        "the expired token was refreshed"
    );
    // The store lock makes the second process find the first one's refresh.
    assert_eq!(first, second);
    for token in [&first, &second] {
        let (code, body) = server.userinfo(token).await;
        assert_eq!(code, 200, "{body}");
    }
    let after = kp.stored(issuer);
    assert_ne!(after["refresh_token"], before["refresh_token"], "rotated");
    assert_eq!(
        tap.connections(),
        1,
        "only one process may present the refresh token"
    );
    assert_eq!(server.audit_count("token.refresh").await, 1);
    assert_eq!(server.audit_count("token.reuse_detected").await, 0);

    let third = kp.run(&["token"]).await;
    assert_exit(&third, 0, "kp token after the race");
    let third = one_token(&third);
    assert_eq!(third, first, "still valid, so not refreshed again");
    let (code, body) = server.userinfo(&third).await;
    assert_eq!(code, 200, "{body}");
    let sessions = server.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["id"], session_id);
}

/// Two copies of one login (no shared lock, as on two machines or a
/// network filesystem) refreshing at the same moment: the server's refresh
/// leeway must give both the same successor pair and keep the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_without_a_shared_lock_get_the_same_pair() {
    let server = Server::start().await;
    let a = Kp::new();
    let issuer = server.issuer.as_str();
    assert_exit(&a.login(&server, "e2e-copies").await, 0, "kp login");
    let b = Kp::new();
    std::fs::copy(a.credentials_path(), b.credentials_path()).unwrap();
    a.expire_access_token(issuer);
    b.expire_access_token(issuer);

    let (from_a, from_b) = tokio::join!(a.run(&["token"]), b.run(&["token"]));
    assert_exit(&from_a, 0, "kp token in copy a");
    assert_exit(&from_b, 0, "kp token in copy b");
    let (token_a, token_b) = (one_token(&from_a), one_token(&from_b));
    assert_eq!(token_a, token_b, "the retry gets the same access token");
    assert_eq!(
        a.stored(issuer)["refresh_token"],
        b.stored(issuer)["refresh_token"],
        "the retry gets the same refresh token"
    );
    assert_eq!(server.audit_count("token.refresh").await, 1, "one rotation");
    assert_eq!(server.audit_count("token.reuse_detected").await, 0);
    assert_eq!(server.sessions().await.len(), 1);

    // The shared successor keeps working.
    a.expire_access_token(issuer);
    let next = a.run(&["token"]).await;
    assert_exit(&next, 0, "kp token after the shared rotation");
    let (code, body) = server.userinfo(&one_token(&next)).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_at_the_server_asks_for_a_new_login() {
    let server = Server::start().await;
    let kp = Kp::new();
    let issuer = server.issuer.as_str();
    assert_exit(&kp.login(&server, "e2e-revoked").await, 0, "kp login");
    let sessions = server.sessions().await;
    let id = sessions[0]["id"].as_str().unwrap();
    keyport::admin::revoke_session(&server.kp, id)
        .await
        .unwrap();
    assert!(server.sessions().await.is_empty());

    // The access token has not expired locally, but the issuer refuses it.
    let whoami = kp.run(&["whoami"]).await;
    assert_exit(&whoami, 4, "kp whoami with a revoked session");
    assert!(
        stderr(&whoami).contains("log in again"),
        "{}",
        stderr(&whoami)
    );

    kp.expire_access_token(issuer);
    let token = kp.run(&["token"]).await;
    assert_exit(&token, 4, "kp token with a revoked session");
    assert!(token.stdout.is_empty());
    let text = stderr(&token);
    assert!(text.contains("expired or was revoked"), "{text}");
    assert!(text.contains("Run `kp login` to log in again"), "{text}");

    // The dead credentials are forgotten.
    let status = kp.run(&["status"]).await;
    assert_exit(&status, 1, "kp status after the session ended");
    assert_eq!(kp.stored(issuer), Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kp_token_in_the_environment_overrides_and_blocks_login() {
    let server = Server::start().await;
    let kp = Kp::new();
    let issuer = server.issuer.as_str();

    let token = kp.run_with_token("abc", &["token"]).await;
    assert_exit(&token, 0, "KP_TOKEN=abc kp token");
    assert_eq!(stdout(&token), "abc\n");

    let status = kp.run_with_token("abc", &["status"]).await;
    assert_exit(&status, 0, "KP_TOKEN=abc kp status");
    assert!(
        stdout(&status).contains("KP_TOKEN"),
        "status must say the environment token is in use: {}",
        stdout(&status)
    );
    let status = kp
        .run_with_token("abc", &["status", "--json", "--issuer", issuer])
        .await;
    assert_exit(&status, 0, "KP_TOKEN=abc kp status --json");
    let report = stdout_json(&status);
    assert_eq!(report["storage"], "env");
    assert_eq!(report["logged_in"], true);

    let login = kp
        .run_with_token(
            "abc",
            &[
                "login",
                "--no-browser",
                "--issuer",
                issuer,
                "--client-id",
                CLI,
            ],
        )
        .await;
    assert_exit(&login, 1, "KP_TOKEN=abc kp login");
    let text = stderr(&login);
    assert!(
        text.contains("cannot log in while KP_TOKEN is set"),
        "{text}"
    );
    assert!(!text.contains("one-time code"), "no device login started");
    assert!(!kp.credentials_path().exists());

    // The issuer rejects the bogus token: exit 4, blaming KP_TOKEN.
    let whoami = kp
        .run_with_token("abc", &["whoami", "--issuer", issuer])
        .await;
    assert_exit(&whoami, 4, "KP_TOKEN=abc kp whoami");
    assert!(stderr(&whoami).contains("KP_TOKEN"), "{}", stderr(&whoami));
    assert!(
        !stderr(&whoami).contains("kp login"),
        "logging in would not help while KP_TOKEN is set: {}",
        stderr(&whoami)
    );
}

/// The whole life of a login whose refresh token is in the OS keyring: a
/// private Secret Service (D-Bus session bus and GNOME Keyring) that only
/// this test's kp processes see.
#[cfg(all(target_os = "linux", feature = "keyring"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_through_the_os_keyring() {
    let keyring = SecretService::start();
    let server = Server::start().await;
    let kp = Kp::with_os_keyring(&keyring);
    let issuer = server.issuer.as_str();

    let login = kp.login(&server, "e2e-keyring").await;
    assert_exit(&login, 0, "kp login");
    assert!(!stderr(&login).contains("warning"), "{}", stderr(&login));
    let stored = kp.stored(issuer);
    assert_eq!(stored["refresh_token_in_keyring"], true, "{stored}");
    assert_eq!(stored.get("refresh_token"), None, "{stored}");

    // What kp keeps in the keyring: one entry, for this issuer and client
    // (the probes leave nothing behind).
    let items = keyring.items();
    assert_eq!(items.len(), 1, "{items:?}");
    let service = format!("kp:{issuer}");
    assert_eq!(
        keyring.search(&[("service", &service), ("username", CLI)]),
        items
    );

    let status = kp.run(&["status", "--json"]).await;
    assert_exit(&status, 0, "kp status --json");
    assert_eq!(stdout_json(&status)["storage"], "keyring");

    // The refresh token comes from the keyring, and its rotation goes back.
    kp.expire_access_token(issuer);
    let token = kp.run(&["token"]).await;
    assert_exit(&token, 0, "kp token after expiry");
    let (code, me) = server.userinfo(&one_token(&token)).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(kp.stored(issuer).get("refresh_token"), None);
    kp.expire_access_token(issuer);
    assert_exit(&kp.run(&["token"]).await, 0, "kp token after a rotation");
    assert_eq!(keyring.items().len(), 1, "a rotation replaces the entry");

    // Without the keyring the login is refused, not used and deleted.
    let mut insecure = kp.command(&["status"]);
    insecure.arg("--insecure-storage");
    let refused = insecure.output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("kept in the OS keyring"),
        "{}",
        stderr(&refused)
    );

    let logout = kp.run(&["logout"]).await;
    assert_exit(&logout, 0, "kp logout");
    assert!(server.sessions().await.is_empty());
    assert_eq!(kp.stored(issuer), Value::Null);
    assert_eq!(
        keyring.items(),
        Vec::<String>::new(),
        "logout empties the keyring"
    );
}

/// A `sqlos` profile's mount is an issuer of its own: kp discovers it at
/// `<issuer>/sqlos/auth`, logs in through the mount's endpoints, and its
/// tokens name the mount's issuer and refresh there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kp_logs_in_at_a_sqlos_mount_as_at_any_issuer() {
    use keyport::config::{ProfileDecl, ProfileKind};
    let mut server = Server::start_with(|config| {
        config.profiles = vec![ProfileDecl {
            kind: ProfileKind::Sqlos,
            client: CLI.into(),
            prefix: String::new(),
        }];
    })
    .await;
    let origin = server.issuer.clone();
    server.issuer = format!("{origin}/sqlos/auth");
    let kp = Kp::new();
    let login = kp
        .login_approved_by(&server, "sqlos-laptop", |url| async move {
            // The pages are Keyport's own, at the origin; the mount's
            // `/device` leads there.
            let done =
                keyport_testkit::decide_device(&origin, &url, EMAIL, PASSWORD, "approve").await;
            assert!(done.contains("Device approved"), "{done}");
        })
        .await;
    assert_exit(&login, 0, "kp login at the mount");

    let whoami = kp.run(&["whoami", "--json"]).await;
    assert_exit(&whoami, 0, "kp whoami");
    assert_eq!(stdout_json(&whoami)["email"], EMAIL);
    kp.expire_access_token(&server.issuer);
    let token = kp.run(&["token"]).await;
    assert_exit(&token, 0, "kp token refreshes at the mount");
    let claims = keyport_testkit::jwt_claims(&one_token(&token));
    assert_eq!(claims["iss"], server.issuer.as_str());
}
