//! Every error PRODUCT.md names for the device flow, with the clock moved
//! instead of slept.

use reqwest::StatusCode;

use crate::support::*;

async fn start_error(server: &TestServer, form: &[(&str, &str)]) -> (StatusCode, String) {
    let (status, body) = server.post_form("/oauth/device_authorization", form).await;
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn start_time_validation() {
    let server = TestServer::start().await;
    let before = server.table_counts().await;
    let (status, error) = start_error(&server, &[("client_id", "nobody")]).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let (status, error) = start_error(
        &server,
        &[("client_id", RS), ("client_secret", &server.rs_secret)],
    )
    .await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
    let (_, error) = start_error(
        &server,
        &[("client_id", CLI), ("scope", "openid admin:everything")],
    )
    .await;
    assert_eq!(error, "invalid_scope");
    let (_, error) = start_error(
        &server,
        &[("client_id", CLI), ("resource", "https://evil.example.com")],
    )
    .await;
    assert_eq!(error, "invalid_target");
    let (_, error) = start_error(
        &server,
        &[
            ("client_id", CLI),
            ("resource", AUDIENCE),
            ("resource", "https://x.example"),
        ],
    )
    .await;
    assert_eq!(error, "invalid_target");
    assert_eq!(
        server.table_counts().await,
        before,
        "refused starts store nothing"
    );
}

#[tokio::test]
async fn start_rate_limits_answer_slow_down() {
    let server = TestServer::start_with(|c| c.limits.device_starts_per_ip_per_minute = 3).await;
    for _ in 0..3 {
        server.start_device(&[]).await;
    }
    let (status, error) = start_error(&server, &[("client_id", CLI)]).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "slow_down")
    );
    server.clock.advance_secs(60);
    server.start_device(&[]).await;
}

#[tokio::test]
async fn polling_too_fast_grows_the_interval() {
    let server = TestServer::start().await;
    let start = server.start_device(&[]).await;
    let code = start["device_code"].as_str().unwrap();
    assert_eq!(server.poll(code).await.1["error"], "authorization_pending");
    server.clock.advance_secs(1);
    assert_eq!(server.poll(code).await.1["error"], "slow_down");
    // The interval is now 10 s: 6 s later is still too fast.
    server.clock.advance_secs(6);
    assert_eq!(server.poll(code).await.1["error"], "slow_down");
    // And now 15 s.
    server.clock.advance_secs(15);
    assert_eq!(server.poll(code).await.1["error"], "authorization_pending");
}

#[tokio::test]
async fn a_pending_polls_time_judges_the_next_poll() {
    let server = TestServer::start().await;
    let start = server.start_device(&[]).await;
    let code = start["device_code"].as_str().unwrap();
    assert_eq!(server.poll(code).await.1["error"], "authorization_pending");
    let polled_at = keyport::clock::Clock::now_ms(&server.clock);
    // A shared store (PostgreSQL) has the time in the row, for every
    // instance to read; SQLite's one instance holds it in memory and
    // writes nothing.
    let stored =
        sqlx::query_scalar::<_, Option<i64>>("SELECT last_poll_ms FROM device_authorizations")
            .fetch_one(server.kp.store().pool())
            .await
            .unwrap();
    let expected = server.kp.store().is_shared().then_some(polled_at);
    assert_eq!(stored, expected);
    // Fifty quick polls: every one is too fast, and the interval grows
    // once for each.
    server.clock.advance_secs(1);
    for n in 0..50 {
        let (_, body) = server.poll(code).await;
        assert_eq!(body["error"], "slow_down", "poll {n}: {body}");
    }
    let interval: i64 = sqlx::query_scalar("SELECT poll_interval FROM device_authorizations")
        .fetch_one(server.kp.store().pool())
        .await
        .unwrap();
    assert_eq!(interval, 5 + 5 * 50);
    // After the grown interval, the code is pending again.
    server.clock.advance_secs(5 + 5 * 50);
    assert_eq!(server.poll(code).await.1["error"], "authorization_pending");
}

#[tokio::test]
async fn expiry_denial_and_foreign_codes() {
    let server = TestServer::start().await;
    // expired_token
    let start = server.start_device(&[]).await;
    server.clock.advance_secs(901);
    let (_, body) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "expired_token");

    // access_denied reaches the next poll at once.
    let start = server.start_device(&[]).await;
    let page = server
        .approve(start["verification_uri_complete"].as_str().unwrap(), "deny")
        .await;
    assert!(page.contains("Request denied"), "{page}");
    let (_, body) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "access_denied");

    // invalid_grant: wrong code, another client's code, another resource.
    let (_, body) = server.poll("not-a-real-device-code").await;
    assert_eq!(body["error"], "invalid_grant");
    keyport::admin::add_client(
        &server.kp,
        keyport::domain::clients::ClientSpec {
            id: "other-cli".into(),
            name: "Other".into(),
            confidential: false,
            grants: vec![DEVICE_GRANT.into()],
            scopes: vec![],
            audiences: vec![],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let start = server.start_device(&[("resource", AUDIENCE)]).await;
    let code = start["device_code"].as_str().unwrap();
    let (_, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "other-cli"),
                ("device_code", code),
            ],
        )
        .await;
    assert_eq!(body["error"], "invalid_grant");
    let (_, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", CLI),
                ("device_code", code),
                ("resource", "https://other.example"),
            ],
        )
        .await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_disabled_approver_gets_access_denied_at_the_next_poll() {
    let server = TestServer::start().await;
    let start = server.start_device(&[]).await;
    let done = server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    assert!(done.contains("Device approved"));
    sqlx::query("UPDATE users SET disabled = 1")
        .execute(server.kp.store().pool())
        .await
        .unwrap();
    let (_, body) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "access_denied");
}

#[tokio::test]
async fn user_code_guessing_is_throttled() {
    let server = TestServer::start_with(|c| c.limits.user_code_failures_per_hour = 3).await;
    let start = server.start_device(&[]).await;
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    browser
        .submit(
            &page,
            "/device/sign-in",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    for _ in 0..3 {
        let page = browser
            .get(&server.url("/device?user_code=BCDF-GHJK"))
            .await;
        assert!(page.contains("not valid"), "{page}");
    }
    let real = start["user_code"].as_str().unwrap();
    let response = browser
        .http
        .get(server.url(&format!("/device?user_code={real}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right code waits out the hour"
    );
    server.clock.advance_secs(3600);
    let start = server.start_device(&[]).await;
    let real = start["user_code"].as_str().unwrap();
    let page = browser
        .get(&server.url(&format!(
            "/device?user_code={}",
            real.to_lowercase().replace('-', "")
        )))
        .await;
    assert!(
        page.contains("Approve"),
        "codes are accepted in any case, without the dash: {page}"
    );
}

#[tokio::test]
async fn sign_in_lockout() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    for _ in 0..5 {
        let page = browser
            .submit(
                &page,
                "/device/sign-in",
                &[
                    ("email", "alice@example.com"),
                    ("password", "wrong password"),
                ],
            )
            .await;
        assert!(
            page.contains("wrong email or password") || page.contains("locked"),
            "{page}"
        );
    }
    let page = browser
        .submit(
            &page,
            "/device/sign-in",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert!(
        page.contains("locked"),
        "the right password does not open a locked account: {page}"
    );
    server.clock.advance_secs(901);
    let page = browser
        .submit(
            &page,
            "/device/sign-in",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert!(page.contains("Connect a device"), "{page}");
    let events = server.audit_events().await;
    assert!(events.iter().any(|e| e == "sign_in:failure"));
}

#[tokio::test]
async fn clients_declared_in_the_config_file_work() {
    let server = TestServer::start_with(|c| {
        c.clients.push(keyport::config::ClientDecl {
            id: "acme-cli".into(),
            name: "Acme CLI".into(),
            confidential: false,
            secret_hash: None,
            secret_env: None,
            grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
            scopes: vec![
                "openid".into(),
                "offline_access".into(),
                "projects:write".into(),
            ],
            audiences: vec!["https://api.acme.com".into()],
            redirect_uris: vec![],
            ..Default::default()
        });
        c.scopes.push(keyport::config::ScopeDef {
            name: "projects:write".into(),
            min_role: Some(keyport::domain::scopes::Role::Owner),
            description: None,
        });
    })
    .await;
    let (status, start) = server
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "acme-cli"),
                ("scope", "openid offline_access projects:write"),
                ("resource", "https://api.acme.com"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    let page = server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    assert!(
        page.contains("Not granted") && page.contains("projects:write"),
        "an admin is below owner: {page}"
    );
    let (status, tokens) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "acme-cli"),
                ("device_code", start["device_code"].as_str().unwrap()),
                ("resource", "https://api.acme.com"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "offline_access openid");
}
