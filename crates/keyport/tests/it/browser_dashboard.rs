//! The dashboard in a real headless Chromium, found by labels and button
//! names as a person would: create an API key, use it with plain HTTP at
//! userinfo and the management API, revoke it on the page, and see it
//! refused.

use keyport_testkit::{Chromium, Locator};
use reqwest::StatusCode;

use crate::support::*;

async fn get_with(server: &TestServer, path: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn create_use_and_revoke_an_api_key() {
    let server = TestServer::start().await;
    let browser = Chromium::launch().await;

    browser.open(&server.url("/dashboard/api-keys")).await;
    browser.wait_for_heading("Sign in").await;
    browser.fill("Email", EMAIL).await;
    browser.fill("Password", PASSWORD).await;
    browser.click_button("Sign in").await;
    browser.wait_for_heading("API keys").await;

    browser.fill("Name", "nightly backup").await;
    browser.field("Workspace").await.click().await.unwrap();
    for scope in ["agents:read", "workspace:read"] {
        browser.field(scope).await.click().await.unwrap();
    }
    browser.click_button("Create API key").await;
    let key = browser
        .find(Locator::Id("api-key"))
        .await
        .text()
        .await
        .unwrap();
    assert!(key.starts_with("kp_pat_"), "{key}");

    let (status, info) = server.userinfo(&key).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["scope"], "agents:read workspace:read");
    assert_eq!(info["workspace"], "acme");
    assert_eq!(
        get_with(&server, "/api/v1/sessions", &key).await,
        StatusCode::OK
    );

    browser.open(&server.url("/dashboard/api-keys")).await;
    browser.wait_for_text("nightly backup").await;
    assert!(!browser.page_text().await.contains(&key), "shown only once");
    browser.click_button("Revoke").await;
    browser.wait_for_text("Revoked").await;

    assert_eq!(server.userinfo(&key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_with(&server, "/api/v1/sessions", &key).await,
        StatusCode::UNAUTHORIZED
    );
    browser.close().await;
}
