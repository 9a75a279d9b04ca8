//! Agents and MCP clients: a client ID metadata document (served by the
//! test on loopback) drives a code flow; metadata URLs at private
//! addresses are refused; RFC 7591 registration is opt-in and throttled.

use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::code_flow::{CHALLENGE, CodeBrowser, VERIFIER, authorize_url, exchange, query};
use crate::support::*;

/// Serves `document(base)` at `/client.json` on a free loopback port and
/// returns the document's URL.
async fn serve_document(document: impl Fn(&str) -> Value + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let body = document(&url).to_string();
    let app = axum::Router::new().route(
        "/client.json",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_client_id_metadata_document_drives_a_code_flow() {
    let server = TestServer::start_with(|c| c.cimd.allow_loopback = true).await;
    let client_id = serve_document(|url| {
        json!({
            "client_id": url,
            "client_name": "Research Agent",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": "openid offline_access agents:read"
        })
    })
    .await;
    let pairs = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "http://127.0.0.1:7777/callback"),
        ("state", "agent-state"),
        ("scope", "openid offline_access agents:read"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let browser = CodeBrowser::new(&server);
    let (_, page) = browser.open(&authorize_url(&server, &pairs)).await.page();
    let (_, consent) = browser.sign_in(&page).await.page();
    assert!(consent.contains("Research Agent (127.0.0.1)"), "{consent}");
    assert!(consent.contains(&client_id), "{consent}");
    assert!(consent.contains("127.0.0.1:7777"), "{consent}");
    let back = browser
        .submit(&consent, "/oauth/authorize", &[("decision", "approve")])
        .await
        .client();
    let code = query(&back, "code").unwrap();
    let (status, tokens) = exchange(
        &server,
        &[
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:7777/callback"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["refresh_token"].is_string());

    // A scope the document does not list is refused; and since nobody
    // vouched for the document's redirect URIs, on a page, not by a
    // redirect there (RFC 9700 §4.11.2: no open redirector).
    for (key, value) in [("scope", "audit:read"), ("response_type", "token")] {
        let mut bad = pairs.to_vec();
        bad.retain(|(k, _)| *k != key);
        bad.push((key, value));
        let response = browser
            .http
            .get(authorize_url(&server, &bad))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{key}");
        assert!(response.headers().get("location").is_none(), "{key}");
    }
    // prompt=none without a session: a page too.
    let mut unattended = pairs.to_vec();
    unattended.push(("prompt", "none"));
    let fresh = CodeBrowser::new(&server);
    let (status, _) = fresh
        .open(&authorize_url(&server, &unattended))
        .await
        .page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_document_gets_only_the_known_scopes_it_lists() {
    let server = TestServer::start_with(|c| c.cimd.allow_loopback = true).await;
    let client_id = serve_document(|url| {
        json!({
            "client_id": url,
            "client_name": "Agent \u{202e}moc.live",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "scope": "openid billing:admin"
        })
    })
    .await;
    let browser = CodeBrowser::new(&server);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "http://127.0.0.1:7000/callback"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let (_, page) = browser.open(&authorize_url(&server, &pairs)).await.page();
    let (_, consent) = browser.sign_in(&page).await.page();
    assert!(
        !consent.contains('\u{202e}'),
        "bidi controls are cleaned: {consent}"
    );
    assert!(consent.contains("openid"), "{consent}");
    assert!(!consent.contains("billing:admin"), "{consent}");
    pairs.push(("scope", "billing:admin"));
    let (status, _) = browser.open(&authorize_url(&server, &pairs)).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metadata_urls_at_private_addresses_are_refused() {
    // Without the test switch, even the loopback document is refused.
    let server = TestServer::start().await;
    let loopback = serve_document(
        |url| json!({ "client_id": url, "redirect_uris": ["http://127.0.0.1/callback"] }),
    )
    .await;
    let browser = CodeBrowser::new(&server);
    for client_id in [
        loopback.as_str(),
        "https://10.0.0.1/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
        "https://localhost/client.json",
        "http://example.com/client.json",
        "https://example.com:8443/client.json",
        "https://example.com/a/../client.json",
    ] {
        let pairs = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1/callback"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        let (status, page) = browser.open(&authorize_url(&server, &pairs)).await.page();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id}: {page}");
        assert!(page.contains("not registered"), "{client_id}: {page}");
    }
}

#[tokio::test]
async fn registration_is_off_by_default_and_throttled_when_on() {
    let off = TestServer::start().await;
    let response = off
        .http
        .post(off.url("/oauth/register"))
        .json(&json!({ "redirect_uris": ["https://app.example.com/cb"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let metadata: Value = off
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );

    let server = TestServer::start_with(|c| {
        c.registration.enabled = true;
        c.limits.registrations_per_ip_per_hour = 2;
    })
    .await;
    let register = |body: Value| {
        let server = &server;
        async move {
            let response = server
                .http
                .post(server.url("/oauth/register"))
                .json(&body)
                .send()
                .await
                .unwrap();
            json_of(response).await
        }
    };
    let (status, public) = register(json!({
        "client_name": "CLI Tool",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "scope": "openid offline_access"
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{public}");
    assert!(public.get("client_secret").is_none());
    let (status, confidential) = register(json!({
        "redirect_uris": ["https://app.example.com/cb"]
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{confidential}");
    assert!(
        confidential["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("kp_cs_")
    );

    // Bad metadata: refused, nothing stored.
    let before = server.table_counts().await;
    for (body, error) in [
        (
            json!({ "redirect_uris": ["javascript:alert(1)"] }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uris": ["http://app.example.com/cb"] }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"] }),
            "invalid_client_metadata",
        ),
        (
            json!({ "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt" }),
            "invalid_client_metadata",
        ),
        (
            json!({ "redirect_uris": ["https://a.example/cb"], "scope": "admin:everything" }),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ] {
        let (status, body) = register(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], error, "{body}");
    }
    // A body past the limit: 413 with an RFC 6749 body, as everywhere.
    let huge =
        json!({ "redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(70_000) });
    let response = server
        .http
        .post(server.url("/oauth/register"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(server.table_counts().await, before);

    // The registered public client completes a code flow.
    let client_id = public["client_id"].as_str().unwrap();
    let pairs = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", "http://127.0.0.1:5000/callback"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let browser = CodeBrowser::new(&server);
    let code = query(
        &browser
            .authorize(&authorize_url(&server, &pairs), "approve")
            .await,
        "code",
    )
    .unwrap();
    let (status, tokens) = exchange(
        &server,
        &[
            ("client_id", client_id),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:5000/callback"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // The hour's budget (2) is spent: 429 with Retry-After.
    let response = server
        .http
        .post(server.url("/oauth/register"))
        .json(&json!({ "redirect_uris": ["https://app.example.com/cb"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
}
