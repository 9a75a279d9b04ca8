//! The weaknesses an outside security review found in the device login,
//! each shown closed: setup links, lockouts, device text, introspection,
//! session lifetimes, device-start budgets and the smaller gaps.

use reqwest::StatusCode;
use reqwest::header::{RETRY_AFTER, STRICT_TRANSPORT_SECURITY, WWW_AUTHENTICATE};
use serde_json::Value;

use crate::support::*;

async fn setup_page(server: &TestServer, link: &str) -> StatusCode {
    server.http.get(link).send().await.unwrap().status()
}

#[tokio::test]
async fn the_setup_link_dies_once_any_user_exists() {
    let server = TestServer::start_empty(|_| {}).await;
    let link = server
        .kp
        .setup_link()
        .await
        .unwrap()
        .expect("an empty database gets a setup link");
    assert_eq!(setup_page(&server, &link).await, StatusCode::OK);
    let token = link.split("token=").nth(1).unwrap();
    let stored =
        keyport::store::settings::get(server.kp.store().pool(), keyport::pages::setup::SETUP_TOKEN)
            .await
            .unwrap()
            .unwrap();
    assert!(!stored.contains(token), "only a hash is stored");

    // The first user made another way: the link must not make an owner.
    keyport::admin::add_user(&server.kp, "ops@example.com", None, PASSWORD.into())
        .await
        .unwrap();
    assert_eq!(setup_page(&server, &link).await, StatusCode::NOT_FOUND);
    // A CSRF token from any page: only the link itself may stop this post.
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    let mut form = form_fields(&page, "/device/sign-in");
    for (k, v) in [
        ("token", token),
        ("email", "mallory@example.com"),
        ("password", "a long enough password"),
    ] {
        form.insert(k.into(), v.into());
    }
    let response = browser
        .http
        .post(server.url("/setup"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let done = response.text().await.unwrap();
    assert!(!done.contains("Admin created"), "{done}");
    let users = keyport::store::directory::count_users(server.kp.store().pool())
        .await
        .unwrap();
    assert_eq!(users, 1);
    // Nor after a restart: with users, no link is made and the old one is gone.
    assert!(server.kp.setup_link().await.unwrap().is_none());
    assert_eq!(setup_page(&server, &link).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_setup_link_expires_after_an_hour() {
    let server = TestServer::start_empty(|_| {}).await;
    let link = server.kp.setup_link().await.unwrap().unwrap();
    server.clock.advance_secs(3599);
    assert_eq!(setup_page(&server, &link).await, StatusCode::OK);
    server.clock.advance_secs(2);
    assert_eq!(setup_page(&server, &link).await, StatusCode::NOT_FOUND);
}

/// Five wrong passwords on the page, as an attacker who knows the email would.
async fn fail_sign_ins(server: &TestServer, email: &str, times: usize) -> Vec<String> {
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    let mut pages = Vec::new();
    for _ in 0..times {
        let form = [("email", email), ("password", "not the password")];
        pages.push(browser.submit(&page, "/device/sign-in", &form).await);
    }
    pages
}

async fn sign_in_page(server: &TestServer, email: &str, password: &str) -> String {
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    let form = [("email", email), ("password", password)];
    browser.submit(&page, "/device/sign-in", &form).await
}

#[tokio::test]
async fn a_lockout_blocks_sign_in_but_ends_no_session() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    // A device approved before the lock, not yet polled.
    let start = server.start_device(&[]).await;
    let done = server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    assert!(done.contains("Device approved"));

    fail_sign_ins(&server, "alice@example.com", 5).await;
    let page = sign_in_page(&server, "alice@example.com", PASSWORD).await;
    assert!(page.contains("locked"), "the lock holds: {page}");

    let (status, refreshed) = server
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "the CLI keeps working: {refreshed}");
    let (status, polled) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the earlier approval completes: {polled}"
    );
    let (status, _) = server
        .userinfo(refreshed["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);

    // `keyport user unlock` clears the count; sign-in works again.
    keyport::admin::unlock_user(&server.kp, "Alice@Example.com")
        .await
        .unwrap();
    let page = sign_in_page(&server, "alice@example.com", PASSWORD).await;
    assert!(page.contains("Connect a device"), "{page}");
}

#[tokio::test]
async fn disabling_a_user_ends_every_session_and_enabling_lets_them_back() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let done = keyport::admin::disable_user(&server.kp, "alice@example.com")
        .await
        .unwrap();
    assert_eq!(done["sessions_ended"], 1);
    let (status, body) = server
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let page = sign_in_page(&server, "alice@example.com", PASSWORD).await;
    assert!(page.contains("wrong email or password"), "{page}");

    keyport::admin::enable_user(&server.kp, "alice@example.com")
        .await
        .unwrap();
    let page = sign_in_page(&server, "alice@example.com", PASSWORD).await;
    assert!(page.contains("Connect a device"), "{page}");
    let events = server.audit_events().await;
    assert!(events.iter().any(|e| e == "admin.user_disable:success"));
}

#[tokio::test]
async fn unknown_and_real_accounts_lock_alike() {
    let server = TestServer::start().await;
    let real = fail_sign_ins(&server, "alice@example.com", 6).await;
    let ghost = fail_sign_ins(&server, "ghost@example.com", 6).await;
    for (i, (real, ghost)) in real.iter().zip(&ghost).enumerate() {
        let ghost = ghost.replace("ghost@example.com", "alice@example.com");
        assert_eq!(
            strip_tokens(real),
            strip_tokens(&ghost),
            "attempt {} differs",
            i + 1
        );
    }
    assert!(real[4].contains("wrong email or password"), "{}", real[4]);
    assert!(ghost[5].contains("locked"), "{}", ghost[5]);
}

/// A page without its per-request CSRF values, for comparing two pages.
fn strip_tokens(page: &str) -> String {
    page.lines()
        .filter(|l| !l.contains("csrf_token"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn device_text_is_cleaned_and_shown_as_reported_by_the_device() {
    let server = TestServer::start().await;
    let label = "build-\u{202E}exe.gpj\u{200B}box\u{2066}";
    let long_host = "h".repeat(300);
    let (status, start) = server
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", CLI),
                ("cli_label", label),
                ("dns_name", &long_host),
                ("os_type", "Linux\u{FEFF}"),
                ("os_version", "6.1\n\rinjected"),
            ],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "device text is cleaned, not refused: {start}"
    );
    let browser = server.browser();
    let page = browser
        .sign_in_at(start["verification_uri_complete"].as_str().unwrap())
        .await;
    assert!(page.contains("Reported by the device"), "{page}");
    assert!(page.contains("Known to Keyport"), "{page}");
    for hidden in ['\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\r'] {
        assert!(!page.contains(hidden), "{hidden:?} reached the page");
    }
    assert!(
        page.contains("build-\u{FFFD}exe.gpj\u{FFFD}box\u{FFFD}"),
        "{page}"
    );
    assert!(page.contains("6.1 injected"), "{page}");
    assert!(!page.contains(&"h".repeat(65)), "long text is cut");
    // The client's name and the origin sit with what Keyport knows, before
    // anything the device said.
    let known = page.find("Known to Keyport").unwrap();
    let reported = page.find("Reported by the device").unwrap();
    let origin = page.find("Requested from").unwrap();
    assert!(known < origin && origin < reported, "{page}");
}

#[tokio::test]
async fn a_client_introspects_only_its_own_tokens_and_its_audience() {
    let server = TestServer::start().await;
    let tokens = server.login().await; // audience: the RS's API
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(server.introspect(access).await["active"], true);
    assert_eq!(
        server.introspect(refresh).await,
        serde_json::json!({ "active": false }),
        "another client's refresh token is never reported"
    );

    // An access token for another audience tells the RS nothing.
    let start = server.start_device(&[]).await;
    server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    let (_, other) = server.poll(start["device_code"].as_str().unwrap()).await;
    let other_access = other["access_token"].as_str().unwrap();
    assert_eq!(
        server.introspect(other_access).await,
        serde_json::json!({ "active": false })
    );

    // A confidential client with no audience sees nothing of the CLI's.
    let nosy = keyport::admin::add_client(
        &server.kp,
        keyport::domain::clients::ClientSpec {
            id: "nosy".into(),
            name: "Nosy".into(),
            confidential: true,
            grants: vec!["client_credentials".into()],
            scopes: vec!["agents:read".into()],
            audiences: vec![],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let secret = nosy["client_secret"].as_str().unwrap();
    for token in [access, refresh] {
        let body = server.introspect_as("nosy", secret, token).await;
        assert_eq!(body, serde_json::json!({ "active": false }));
    }
    // Its own token it may see.
    let (_, own) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "nosy"),
                ("client_secret", secret),
            ],
        )
        .await;
    let own = own["access_token"].as_str().unwrap();
    assert_eq!(
        server.introspect_as("nosy", secret, own).await["active"],
        true
    );
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_refreshes() {
    let day = 86_400;
    let server = TestServer::start_with(|c| {
        c.tokens.refresh_token_ttl = 30 * day;
        c.tokens.session_max_lifetime = 40 * day;
    })
    .await;
    let mut refresh = server.login().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        server.clock.advance_secs(19 * day);
        let (status, body) = server.refresh(&refresh).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        refresh = body["refresh_token"].as_str().unwrap().to_string();
    }
    // Day 38 was the last refresh; its successor still dies at day 40.
    server.clock.advance_secs(2 * day + 1);
    let (status, body) = server.refresh(&refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

/// A device start as if from `ip`, through the trusted proxy on loopback.
async fn start_from(server: &TestServer, ip: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url("/oauth/device_authorization"))
        .header("x-forwarded-for", ip)
        .form(&[("client_id", CLI)])
        .send()
        .await
        .unwrap();
    json_of(response).await
}

async fn behind_proxy(per_ip: i64, per_client: i64) -> TestServer {
    TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.limits.device_starts_per_ip_per_minute = per_ip;
        c.limits.device_starts_per_client_per_minute = per_client;
    })
    .await
}

#[tokio::test]
async fn a_few_addresses_cannot_use_up_a_public_clients_device_budget() {
    let server = behind_proxy(6, 60).await;
    // Eleven attackers in eleven networks, each just under its own limit.
    for net in 0..11 {
        for _ in 0..6 {
            let (status, body) = start_from(&server, &format!("198.51.{net}.7")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let (status, body) = start_from(&server, "203.0.113.9").await;
    assert_eq!(status, StatusCode::OK, "a real user still gets in: {body}");
}

#[tokio::test]
async fn addresses_of_one_network_share_its_budget_for_a_client() {
    let server = behind_proxy(6, 10).await;
    for ip in ["192.0.2.1", "192.0.2.2"] {
        for _ in 0..5 {
            assert_eq!(start_from(&server, ip).await.0, StatusCode::OK);
        }
    }
    let (_, body) = start_from(&server, "192.0.2.3").await;
    assert_eq!(body["error"], "slow_down");
    assert_eq!(start_from(&server, "192.0.3.1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn hsts_on_an_https_issuer_only() {
    let plain = TestServer::start().await;
    let response = plain.http.get(plain.url("/healthz")).send().await.unwrap();
    assert!(response.headers().get(STRICT_TRANSPORT_SECURITY).is_none());
    let https = TestServer::start_with(|c| c.issuer = format!("https://{}", c.listen)).await;
    let url = format!("http://{}/healthz", https.kp.config().listen);
    let response = https.http.get(url).send().await.unwrap();
    let hsts = response.headers().get(STRICT_TRANSPORT_SECURITY).unwrap();
    assert!(hsts.to_str().unwrap().starts_with("max-age="));
}

#[tokio::test]
async fn every_429_says_when_to_retry_and_the_metrics_count_it() {
    let server = TestServer::start_with(|c| {
        c.limits.user_code_failures_per_hour = 1;
        c.limits.sign_ins_per_ip_per_minute = 7;
    })
    .await;
    // Refresh-token reuse (one sign-in). The clock stays put: a minute
    // boundary would reset the sign-in throttle below.
    let tokens = server.login().await;
    let first = tokens["refresh_token"].as_str().unwrap();
    let (_, second) = server.refresh(first).await;
    server
        .refresh(second["refresh_token"].as_str().unwrap())
        .await;
    let (_, reused) = server.refresh(first).await;
    assert_eq!(reused["error"], "invalid_grant");

    // A user-code throttle on the page (one sign-in).
    let browser = server.browser();
    browser.sign_in_at(&server.url("/device")).await;
    browser
        .get(&server.url("/device?user_code=BCDF-GHJK"))
        .await;
    let response = browser
        .http
        .get(server.url("/device?user_code=BCDF-GHJK"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get(RETRY_AFTER).is_some());

    // A lockout (five sign-ins), then the per-IP sign-in throttle.
    fail_sign_ins(&server, "bob@example.com", 5).await;
    let browser = server.browser();
    let page = browser.get(&server.url("/device")).await;
    let mut fields = form_fields(&page, "/device/sign-in");
    fields.insert("email".into(), "alice@example.com".into());
    fields.insert("password".into(), PASSWORD.into());
    let throttled = browser
        .http
        .post(server.url("/device/sign-in"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = throttled.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    let metrics = server.metrics_text().await;
    for name in [
        "keyport_user_code_throttled_total",
        "keyport_sign_in_throttled_total",
        "keyport_lockouts_total",
        "keyport_refresh_token_reuse_total",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));
        assert!(value.parse::<u64>().unwrap() >= 1, "{name} = {value}");
    }
}

#[tokio::test]
async fn invalid_client_says_the_same_for_an_unknown_client_and_a_wrong_secret() {
    let server = TestServer::start().await;
    let form = |id: &'static str, secret: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ]
    };
    let unknown = server.post_form("/oauth/token", &form("nobody", "x")).await;
    let wrong = server.post_form("/oauth/token", &form(RS, "wrong")).await;
    let public = server.post_form("/oauth/token", &form(CLI, "x")).await;
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown, wrong);
    assert_eq!(unknown, public);
}

#[tokio::test]
async fn user_codes_are_stored_only_as_hashes_and_typed_with_any_dash() {
    let server = TestServer::start().await;
    let start = server.start_device(&[]).await;
    let code = start["user_code"].as_str().unwrap();
    let rows = sqlx::query("SELECT * FROM device_authorizations")
        .fetch_all(server.kp.store().pool())
        .await
        .unwrap();
    for row in &rows {
        for i in 0..sqlx::Row::len(row) {
            if let Ok(Some(text)) = sqlx::Row::try_get::<Option<String>, _>(row, i) {
                assert!(
                    !text.contains(code) && !text.contains(&code.replace('-', "")),
                    "the user code is stored in the clear: {text}"
                );
            }
        }
    }
    let browser = server.browser();
    browser.sign_in_at(&server.url("/device")).await;
    let typed = code.replace('-', "\u{2013}").to_lowercase();
    let url =
        reqwest::Url::parse_with_params(&server.url("/device"), &[("user_code", typed)]).unwrap();
    let page = browser.get(url.as_str()).await;
    assert!(
        page.contains("Approve"),
        "an en dash works like '-': {page}"
    );
    assert!(
        page.contains(code),
        "the page shows the code to compare: {page}"
    );
}

#[tokio::test]
async fn bearer_challenges_405s_and_credentials_in_the_url() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("/oauth/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(
        !challenge.contains("error"),
        "RFC 6750 §3.1: no error code: {challenge}"
    );

    let response = server
        .http
        .get(server.url("/oauth/token"))
        .send()
        .await
        .unwrap();
    let allow = response.headers().get("allow").cloned();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(allow.is_some(), "a 405 still says what is allowed");

    let before = server.table_counts().await;
    let response = server
        .http
        .post(server.url(&format!("/oauth/token?client_secret={}", server.rs_secret)))
        .form(&[("grant_type", "client_credentials"), ("client_id", RS)])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert_eq!(server.table_counts().await, before);
}

#[tokio::test]
async fn a_zero_leeway_allows_no_retry() {
    let server = TestServer::start_with(|c| c.tokens.refresh_leeway = 0).await;
    let (code, tokens) = server.login_keeping_code().await;
    let (status, again) = server.poll(&code).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "no device-code retry"
    );
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _) = server.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK);
    // At once, in the same millisecond: reuse all the same, the session ends.
    let (status, body) = server.refresh(refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let events = server.audit_events().await;
    assert!(
        events
            .iter()
            .any(|e| e == "token.reuse_detected:session_revoked")
    );
}

#[tokio::test]
async fn a_lost_device_code_reply_can_be_retried_within_the_leeway() {
    let server = TestServer::start().await;
    let (code, first) = server.login_keeping_code().await;
    // The reply was lost; the CLI polls again.
    server.clock.advance_secs(6);
    let (status, retry) = server.poll(&code).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry, first, "the same tokens, never a second set");
    let sessions: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM sessions")
            .fetch_one(server.kp.store().pool())
            .await
            .unwrap(),
        "n",
    );
    assert_eq!(sessions, 1);
    // Another client never gets them, even inside the leeway.
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", RS),
                ("client_secret", &server.rs_secret),
                ("device_code", &code),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The retried refresh token is the live one.
    let (status, body) = server
        .refresh(retry["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.clock.advance_secs(30);
    let (status, body) = server.poll(&code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}
