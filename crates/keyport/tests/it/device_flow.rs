//! The device login end to end (RFC 8628), then refresh rotation, reuse
//! detection, revocation, introspection and userinfo.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn device_login_rotation_and_reuse_detection() {
    let server = TestServer::start().await;
    let start = server
        .start_device(&[("cli_label", "prod-server-01"), ("resource", AUDIENCE)])
        .await;
    let device_code = start["device_code"].as_str().unwrap();
    let user_code = start["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(start["verification_uri"], server.url("/device"));
    assert_eq!(start["expires_in"], 900);
    assert_eq!(start["interval"], 5);

    let (status, body) = server.poll(device_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending");

    // The page shows the code to compare and the client's name and label.
    let browser = server.browser();
    let page = browser
        .get(start["verification_uri_complete"].as_str().unwrap())
        .await;
    assert!(
        page.contains("<label for=\"email\">Email</label>"),
        "{page}"
    );
    let page = browser
        .submit(
            &page,
            "/device/sign-in",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert!(
        page.contains(user_code),
        "the approval page shows the code: {page}"
    );
    assert!(page.contains("Test CLI") && page.contains("prod-server-01"));
    assert!(
        !page.contains("audit:read"),
        "only requested scopes are listed"
    );
    let done = browser
        .submit(&page, "/device/decision", &[("decision", "approve")])
        .await;
    assert!(done.contains("Device approved"), "{done}");

    server.clock.advance_secs(5);
    let (status, tokens) = server.poll(device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(
        tokens["scope"],
        "agents:read email offline_access openid profile"
    );
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh1 = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh1.starts_with("kp_rt_"));
    assert!(tokens["id_token"].is_string(), "openid was granted");

    // Released exactly once: a retry within the leeway (its reply was
    // lost) gets the same tokens, never a second set; later, nothing.
    server.clock.advance_secs(5);
    let (status, again) = server.poll(device_code).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["refresh_token"], tokens["refresh_token"]);
    assert_eq!(again["access_token"], tokens["access_token"]);
    server.clock.advance_secs(30);
    let (status, body) = server.poll(device_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    let (status, me) = server.userinfo(&access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["workspace"], "acme");
    assert_eq!(me["role"], "admin");

    // Rotation: a new refresh token each time.
    let (status, second) = server.refresh(&refresh1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let refresh2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh1, refresh2);
    let access2 = second["access_token"].as_str().unwrap().to_string();

    // Replaying the rotated token after the leeway revokes the whole session.
    server.clock.advance_secs(31);
    let (status, body) = server.refresh(&refresh1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = server.refresh(&refresh2).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the newest token dies with its session: {body}"
    );
    assert_eq!(server.introspect(&access2).await["active"], false);
    assert_eq!(server.introspect(&refresh2).await["active"], false);
    let (status, _) = server.userinfo(&access2).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let events = server.audit_events().await;
    for expected in [
        "sign_in:success",
        "device.approve:success",
        "token.issue:success",
        "token.refresh:success",
        "token.reuse_detected:session_revoked",
    ] {
        assert!(
            events.iter().any(|e| e == expected),
            "audit lacks {expected}: {events:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_refresh_within_leeway_gets_the_same_pair() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (a, b) = tokio::join!(server.refresh(refresh), server.refresh(refresh));
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(
        a.1["refresh_token"], b.1["refresh_token"],
        "both racers get the one successor"
    );
    assert_eq!(a.1["access_token"], b.1["access_token"]);
    // A retry later within the leeway still gets it; the session lives on.
    server.clock.advance_secs(10);
    let (status, c) = server.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c["refresh_token"], a.1["refresh_token"]);
    let (status, d) = server.refresh(a.1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    // Once the successor itself rotated, the old token is plain reuse.
    let (status, _) = server.refresh(refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.refresh(d["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "reuse revoked the session");
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_session_everywhere() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let (access, refresh) = (
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(server.introspect(access).await["active"], true);
    let (status, _) = server
        .post_form(
            "/oauth/revoke",
            &[
                ("client_id", CLI),
                ("token", refresh),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.introspect(access).await["active"], false);
    let (status, _) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = server.refresh(refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Unknown tokens: still 200 (RFC 7009 §2.2).
    let (status, _) = server
        .post_form(
            "/oauth/revoke",
            &[("client_id", CLI), ("token", "nonsense")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn another_clients_token_cannot_be_revoked() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let response = server
        .http
        .post(server.url("/oauth/revoke"))
        .basic_auth(RS, Some(&server.rs_secret))
        .form(&[("token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, _) = server.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK, "the token stays valid");
}

#[tokio::test]
async fn admin_session_revocation_kills_access_tokens() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let access = tokens["access_token"].as_str().unwrap();
    let sessions = keyport::admin::list_sessions(&server.kp, Some("alice@example.com"))
        .await
        .unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["client_id"], CLI);
    let id = sessions[0]["id"].as_str().unwrap();
    keyport::admin::revoke_session(&server.kp, id)
        .await
        .unwrap();
    assert_eq!(server.introspect(access).await["active"], false);
    let (status, body) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn scopes_follow_the_role_and_workspace_choice() {
    let server = TestServer::start().await;
    keyport::admin::add_workspace(&server.kp, "beta", "Beta")
        .await
        .unwrap();
    keyport::admin::add_member(&server.kp, "beta", "alice@example.com", "viewer")
        .await
        .unwrap();
    let start = server
        .start_device(&[("scope", "openid agents:read agents:write audit:read")])
        .await;
    let browser = server.browser();
    let page = browser
        .get(start["verification_uri_complete"].as_str().unwrap())
        .await;
    let page = browser
        .submit(
            &page,
            "/device/sign-in",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert!(
        page.contains("Choose a workspace"),
        "two workspaces: a choice first\n{page}"
    );
    let code = start["user_code"].as_str().unwrap();
    let page = browser
        .get(&server.url(&format!("/device?user_code={code}&workspace=beta")))
        .await;
    assert!(
        page.contains("not granted"),
        "viewer cannot get agents:write: {page}"
    );
    let done = browser
        .submit(&page, "/device/decision", &[("decision", "approve")])
        .await;
    assert!(done.contains("Device approved"), "{done}");
    let (status, tokens) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "agents:read openid");
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let (_, me) = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me["workspace"], "beta");
    assert_eq!(me["role"], "viewer");
}

#[tokio::test]
async fn form_fillers_matching_user_or_email_keep_the_pending_code() {
    let server = TestServer::start().await;
    let start = server.start_device(&[]).await;
    let browser = server.browser();
    let page = browser
        .get(start["verification_uri_complete"].as_str().unwrap())
        .await;
    // Scripted and browser form fillers put the email into every field whose
    // name says "user" or "email"; the code being approved must survive that.
    let mut form = form_fields(&page, "/device/sign-in");
    for (name, value) in form.iter_mut() {
        if name.contains("user") || name.contains("email") {
            *value = "alice@example.com".into();
        }
    }
    form.insert("email".into(), "alice@example.com".into());
    form.insert("password".into(), PASSWORD.into());
    let page = browser
        .http
        .post(server.url("/device/sign-in"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Approve") && page.contains(start["user_code"].as_str().unwrap()),
        "{page}"
    );
}

#[tokio::test]
async fn signing_out_ends_the_browser_session() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    let page = browser
        .submit(
            &page,
            "/device/sign-in",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert!(
        page.contains("Connect a device") && page.contains("Sign out"),
        "{page}"
    );
    let done = browser.submit(&page, "/device/sign-out", &[]).await;
    assert!(done.contains("Signed out"), "{done}");
    let page = browser.get(&server.url("/device")).await;
    assert!(
        page.contains("<label for=\"password\">"),
        "signed out: the sign-in form again\n{page}"
    );
    let count = sqlx::query("SELECT COUNT(*) AS n FROM browser_sessions")
        .fetch_one(server.kp.store().pool())
        .await
        .unwrap();
    assert_eq!(
        sqlx::Row::get::<i64, _>(&count, "n"),
        0,
        "the session is gone on the server too"
    );
}

#[tokio::test]
async fn housekeeping_forgets_leeway_replies_past_the_leeway() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let (status, _) = server
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let sealed = || async {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM refresh_tokens WHERE sealed_successor IS NOT NULL",
        )
        .fetch_one(server.kp.store().pool())
        .await
        .unwrap();
        sqlx::Row::get::<i64, _>(&row, "n")
    };
    server.kp.housekeeping().await.unwrap();
    assert_eq!(sealed().await, 1, "still inside the leeway");
    server.clock.advance_secs(31);
    server.kp.housekeeping().await.unwrap();
    assert_eq!(sealed().await, 0);
}

#[tokio::test]
async fn device_code_keys_sort_by_issue_and_bare_codes_still_log_in() {
    let server = TestServer::start().await;
    let first = server.start_device(&[("resource", AUDIENCE)]).await;
    server.clock.advance_secs(1);
    let second = server.start_device(&[("resource", AUDIENCE)]).await;
    let codes = [&first, &second].map(|s| s["device_code"].as_str().unwrap().to_string());
    let keys: Vec<String> =
        sqlx::query("SELECT device_code_hash FROM device_authorizations ORDER BY id")
            .fetch_all(server.kp.store().pool())
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get(row, "device_code_hash"))
            .collect();
    assert_eq!(keys.len(), 2);
    for (code, key) in codes.iter().zip(&keys) {
        let hash = keyport::crypto::hash_secret(code);
        if server.kp.store().is_shared() {
            // Instances of the release before read only the bare form.
            assert_eq!(code.len(), 43, "{code}");
            assert_eq!(key, &hash);
        } else {
            assert_eq!(code.len(), 56, "{code}");
            assert_eq!(key, &format!("{}{hash}", &code[..13]));
        }
    }
    if !server.kp.store().is_shared() {
        assert!(
            keys[0] < keys[1],
            "the later code's key sorts later: {keys:?}"
        );
    }

    // A code of the bare form, as the release before issued on every
    // store, is found by its bare hash and logs in.
    let bare = keyport::crypto::tokens::new_device_code(None);
    sqlx::query(
        "UPDATE device_authorizations SET device_code_hash = $1 WHERE device_code_hash = $2",
    )
    .bind(bare.hash())
    .bind(&keys[1])
    .execute(server.kp.store().pool())
    .await
    .unwrap();
    let (status, body) = server.poll(bare.expose()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let done = server
        .approve(
            second["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    assert!(done.contains("Device approved"), "{done}");
    let (status, body) = server.poll(&codes[1]).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the replaced code is unknown"
    );
    assert_eq!(body["error"], "invalid_grant", "{body}");
    server.clock.advance_secs(5);
    let (status, tokens) = server.poll(bare.expose()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["access_token"].is_string());
}
