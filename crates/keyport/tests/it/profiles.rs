//! Seed API profiles: each seed's example requests sent as its document
//! writes them (JSON bodies, its paths, its field names; only the host
//! changed) against a server with that `[[profiles]]` entry, and the
//! documented answers checked, errors included.

use keyport::admin;
use keyport::config::{Config, ProfileDecl, ProfileKind};
use keyport::domain::clients::ClientSpec;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn profile(kind: ProfileKind, client: &str, prefix: &str) -> ProfileDecl {
    ProfileDecl {
        kind,
        client: client.into(),
        prefix: prefix.into(),
    }
}

async fn add_cli(server: &TestServer, id: &str, access_prefix: &str, refresh_prefix: &str) {
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: id.into(),
            name: format!("{id} (seed CLI)"),
            confidential: false,
            grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
            scopes: vec!["openid profile email offline_access agents:read agents:write".into()],
            default_scopes: vec!["openid offline_access agents:read".into()],
            access_token_format: Some("opaque".into()),
            access_token_prefix: Some(access_prefix.into()),
            refresh_token_prefix: Some(refresh_prefix.into()),
            ..ClientSpec::default()
        },
    )
    .await
    .unwrap();
}

async fn post_json(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    json_of(response).await
}

async fn get_bearer(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

#[tokio::test]
async fn anysola_cli_requests_work_as_documented() {
    let server = TestServer::start_with(|config: &mut Config| {
        config.profiles = vec![profile(ProfileKind::Anysola, "anysola-cli", "")];
    })
    .await;
    add_cli(&server, "anysola-cli", "ays_oauth_", "ays_refresh_").await;

    // 1. Start device authorization.
    let (status, start) = post_json(
        &server,
        "/api/oauth/device",
        json!({"client_id":"anysola-cli","cli_label":"prod-server-01"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    for field in ["device_code", "user_code", "verification_uri_complete"] {
        assert!(start[field].is_string(), "{field} missing: {start}");
    }
    let device_code = start["device_code"].as_str().unwrap();
    let poll = json!({
        "grant_type":"urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device_code
    });

    // 3. Poll: pending, then slow_down when polled again at once.
    let (status, pending) = post_json(&server, "/api/oauth/token", poll.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{pending}");
    assert_eq!(pending["error"], "authorization_pending");
    let (_, slow) = post_json(&server, "/api/oauth/token", poll.clone()).await;
    assert_eq!(slow["error"], "slow_down");

    // 2. Approved in the browser, the label shown.
    let page = server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    assert!(page.contains("Device approved"), "{page}");
    server.clock.advance_secs(15);
    let (status, tokens) = post_json(&server, "/api/oauth/token", poll.clone()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("ays_oauth_"), "{access}");
    assert!(refresh.starts_with("ays_refresh_"), "{refresh}");
    let sessions = admin::list_sessions(&server.kp, None).await.unwrap();
    assert_eq!(sessions[0]["label"], "prod-server-01", "{sessions}");

    // 4. Use the access token: bound to the workspace and role.
    let (status, me) = get_bearer(&server, "/api/oauth/userinfo", &access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["workspace"], "acme");
    assert_eq!(me["role"], "admin");

    // Refresh: rotated.
    let (status, rotated) = post_json(
        &server,
        "/api/oauth/token",
        json!({"grant_type":"refresh_token","refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert!(new_refresh.starts_with("ays_refresh_") && new_refresh != refresh);

    // Revoke: the session ends, its tokens with it.
    let (status, _) = post_json(&server, "/api/oauth/revoke", json!({"token": new_refresh})).await;
    assert_eq!(status, StatusCode::OK);
    let new_access = rotated["access_token"].as_str().unwrap();
    let (status, refused) = get_bearer(&server, "/api/oauth/userinfo", new_access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let (status, refused) = post_json(
        &server,
        "/api/oauth/token",
        json!({"grant_type":"refresh_token","refresh_token": new_refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"], "invalid_grant");
}

#[tokio::test]
async fn openskill_cli_requests_work_as_documented() {
    let server = TestServer::start_with(|config: &mut Config| {
        config.profiles = vec![profile(ProfileKind::Openskill, "osk-cli", "")];
    })
    .await;
    add_cli(&server, "osk-cli", "osk_", "osk_rt_").await;

    let (status, start) = post_json(
        &server,
        "/api/auth/device/code",
        json!({"client_info": {"name": "osk-cli", "version": "1.0.0"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    for field in ["device_code", "user_code", "verification_uri"] {
        assert!(start[field].is_string(), "{field}: {start}");
    }
    for field in ["expires_in", "interval"] {
        assert!(start[field].is_u64(), "{field}: {start}");
    }
    let device_code = start["device_code"].as_str().unwrap();

    let (status, pending) = post_json(
        &server,
        "/api/auth/device/token",
        json!({"device_code": device_code}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{pending}");
    assert_eq!(pending["error"], "authorization_pending");

    server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    server.clock.advance_secs(15);
    let (status, tokens) = post_json(
        &server,
        "/api/auth/device/token",
        json!({"device_code": device_code}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].is_u64(), "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(
        access.starts_with("osk_") && !access.starts_with("osk_rt_"),
        "{access}"
    );
    assert!(refresh.starts_with("osk_rt_"), "{refresh}");
    // The client_info reached the session.
    let sessions = admin::list_sessions(&server.kp, None).await.unwrap();
    assert_eq!(
        sessions[0]["device"]["client_info"],
        json!({"name": "osk-cli", "version": "1.0.0"}),
        "{sessions}"
    );

    let (status, me) = server.userinfo(&access).await;
    assert_eq!(status, StatusCode::OK, "{me}");

    let (status, rotated) = post_json(
        &server,
        "/api/auth/refresh",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("osk_rt_"));

    // Revoking the refresh token kills its access tokens too.
    let (status, body) = post_json(
        &server,
        "/api/auth/revoke",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": true}));
    let (status, _) = server.userinfo(&access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, refused) = post_json(
        &server,
        "/api/auth/refresh",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"], "invalid_grant");

    // Bad input: the RFC 6749 §5.2 shape.
    let (status, bad) = post_json(&server, "/api/auth/device/token", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"], "invalid_request");
    let (status, bad) = post_json(
        &server,
        "/api/auth/revoke",
        json!({"refresh_token": "x", "token": "y"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"], "invalid_request");
}

#[tokio::test]
async fn a_prefix_moves_a_profile_and_its_own_paths_are_gone() {
    let server = TestServer::start_with(|config: &mut Config| {
        config.profiles = vec![profile(ProfileKind::Openskill, "osk-cli", "/legacy/auth")];
    })
    .await;
    add_cli(&server, "osk-cli", "osk_", "osk_rt_").await;
    let (status, start) = post_json(&server, "/legacy/auth/device/code", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{start}");
    let (status, _) = post_json(&server, "/api/auth/device/code", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn profiles_that_would_shadow_keyport_or_each_other_are_refused() {
    use keyport::config::check_profiles;
    let refused = |profiles: Vec<ProfileDecl>| check_profiles(profiles).unwrap_err().to_string();
    assert!(refused(vec![profile(ProfileKind::Anysola, "c", "/oauth")]).contains("Keyport's own"));
    assert!(
        refused(vec![profile(ProfileKind::Anysola, "c", "/api/v1/x")]).contains("Keyport's own")
    );
    assert!(refused(vec![profile(ProfileKind::Anysola, "c", "legacy")]).contains("prefix"));
    assert!(refused(vec![profile(ProfileKind::Anysola, "c", "/legacy/")]).contains("prefix"));
    assert!(refused(vec![profile(ProfileKind::Anysola, "c", "/a/../b")]).contains("prefix"));
    assert!(
        refused(vec![
            profile(ProfileKind::Anysola, "c", "/x"),
            profile(ProfileKind::Openskill, "d", "/x"),
        ])
        .contains("same path")
    );
    assert!(refused(vec![profile(ProfileKind::Anysola, "", "")]).contains("client"));
    assert!(
        check_profiles(vec![
            profile(ProfileKind::Anysola, "a", ""),
            profile(ProfileKind::Openskill, "o", ""),
        ])
        .is_ok()
    );
}

#[tokio::test]
async fn anny_token_responses_add_expires_in_and_at() {
    use crate::code_flow::{APP_REDIRECT, CodeBrowser, add_app, authorize_url, public_app, query};
    let server = TestServer::start_with(|config: &mut Config| {
        config.profiles = vec![profile(ProfileKind::Anny, "anny-app", "")];
    })
    .await;
    let secret = add_app(
        &server,
        ClientSpec {
            id: "anny-app".into(),
            confidential: true,
            ..public_app()
        },
    )
    .await
    .unwrap();
    // Step 1 as the seed writes it, `scope=` included.
    let url = authorize_url(
        &server,
        &[
            ("client_id", "anny-app"),
            ("response_type", "code"),
            ("redirect_uri", APP_REDIRECT),
            ("state", "random_state"),
            ("scope", ""),
        ],
    );
    let back = CodeBrowser::new(&server).authorize(&url, "approve").await;
    assert_eq!(query(&back, "state").as_deref(), Some("random_state"));
    let code = query(&back, "code").unwrap();
    // Step 2: the JSON body of the seed's fetch().
    let (status, tokens) = post_json(
        &server,
        "/oauth/token",
        json!({
            "client_id": "anny-app",
            "client_secret": secret,
            "code": code,
            "redirect_uri": APP_REDIRECT,
            "grant_type": "authorization_code"
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["access_token"].is_string() && tokens["refresh_token"].is_string());
    assert_eq!(tokens["expiresIn"], tokens["expires_in"]);
    let at = tokens["expiresAt"].as_str().unwrap();
    assert!(at.ends_with("+00:00"), "{at}");
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok()
    );

    // Other clients keep RFC 6749's shape.
    let tokens = server.login().await;
    assert!(tokens.get("expiresIn").is_none(), "{tokens}");
    assert!(
        tokens["expires_at"].as_str().unwrap().ends_with('Z'),
        "{tokens}"
    );
}

#[tokio::test]
async fn anchor_password_and_refresh_answer_scope_full_over_https() {
    let (server, _) = crate::native_tls::tls_server(|config: &mut Config| {
        config.profiles = vec![profile(ProfileKind::Anchor, "anchor", "")];
    })
    .await;
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: "anchor".into(),
            name: "Anchor".into(),
            confidential: false,
            grants: vec!["password".into(), "refresh_token".into()],
            scopes: vec!["openid offline_access agents:read".into()],
            default_scopes: vec!["openid offline_access agents:read".into()],
            ..ClientSpec::default()
        },
    )
    .await
    .unwrap();
    assert!(server.issuer.starts_with("https://"));

    // The seed's example request, form-encoded, with the device fields.
    let (status, tokens) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", "anchor"),
                ("username", EMAIL),
                ("password", PASSWORD),
                ("guid", ""),
                ("dns_name", "build-01"),
                ("os_type", "osx"),
                ("os_version", "14.2"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "full");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["guid"].is_string(), "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, refreshed) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "anchor"),
                ("refresh_token", refresh),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["scope"], "full");

    let access = refreshed["access_token"].as_str().unwrap();
    let (status, _) = server
        .post_form(
            "/oauth/revoke",
            &[
                ("client_id", "anchor"),
                ("token", access),
                ("token_type_hint", "access_token"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A wrong password is still the RFC answer, not "full" of anything.
    let (status, refused) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", "anchor"),
                ("username", EMAIL),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_grant");
}
