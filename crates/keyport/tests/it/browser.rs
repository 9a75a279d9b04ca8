//! The hosted device page (RFC 8628 §3.3) in a real headless Chromium: a
//! user signs in, compares the code and clicks Approve or Deny, found by
//! label and button text as a person would, while the CLI polls over HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them these tests
//! fail (they never skip), so CI cannot pass without exercising the page.
//! The browser is `keyport-testkit`'s `Chromium`.

use keyport_testkit::{Chromium, Locator};
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn device_login_by_clicking_the_hosted_page() {
    let server = TestServer::start().await;

    // WebDriver cannot see response headers, so check them over plain HTTP.
    let response = server.http.get(server.url("/device")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("/device lacks {name}: {headers:?}"))
    };
    assert!(
        header("content-security-policy").contains("frame-ancestors 'none'"),
        "{headers:?}"
    );
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "DENY");

    let start = server.start_device(&[("cli_label", "browser test")]).await;
    let device_code = start["device_code"].as_str().unwrap();
    let user_code = start["user_code"].as_str().unwrap();

    let browser = Chromium::launch().await;
    browser
        .open(start["verification_uri_complete"].as_str().unwrap())
        .await;
    sign_in_as_alice(&browser).await;

    // §5.4: even through verification_uri_complete the code is shown to compare.
    let shown_code = browser.find(Locator::Css("p.code.big")).await;
    assert_eq!(shown_code.text().await.unwrap(), user_code);
    let text = browser.page_text().await;
    assert!(text.contains("Test CLI"), "client name missing:\n{text}");
    assert!(
        text.contains("browser test"),
        "device label missing:\n{text}"
    );

    browser.click_button("Approve").await;
    browser.wait_for_heading("Device approved").await;

    server.clock.advance_secs(5);
    let (status, tokens) = server.poll(device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{tokens}"
    );
    browser.close().await;
}

#[tokio::test]
async fn deny_in_the_browser_reaches_the_polling_client() {
    let server = TestServer::start().await;
    let start = server.start_device(&[("cli_label", "browser test")]).await;

    let browser = Chromium::launch().await;
    browser
        .open(start["verification_uri_complete"].as_str().unwrap())
        .await;
    sign_in_as_alice(&browser).await;
    browser.click_button("Deny").await;
    browser.wait_for_heading("Request denied").await;

    // No clock advance: a denial reaches the client at its next poll.
    let (status, body) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "access_denied");
    browser.close().await;
}

/// Fills the sign-in form as alice and waits for the approval page (alice
/// has one workspace, so there is no workspace choice in between).
async fn sign_in_as_alice(browser: &Chromium) {
    browser.fill("Email", EMAIL).await;
    browser.fill("Password", PASSWORD).await;
    browser.click_button("Sign in").await;
    browser.wait_for_heading("Approve Test CLI?").await;
}
