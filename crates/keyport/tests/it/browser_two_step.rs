//! Two-step verification in a real headless Chromium, found by labels and
//! button names as a person would: set up an authenticator on
//! `/account/security`, sign out, then approve a device login with the
//! password and the app's code; a recovery code works once.

use keyport::domain::totp::TotpSecret;
use keyport_testkit::{Chromium, Locator};
use reqwest::StatusCode;

use crate::support::*;
use crate::two_step::{current_code, next_code};

/// Signs in with the password, then passes the code page with `code`.
async fn sign_in_with_code(browser: &Chromium, code: &str) {
    browser.fill("Email", EMAIL).await;
    browser.fill("Password", PASSWORD).await;
    browser.click_button("Sign in").await;
    browser.wait_for_heading("Two-step verification").await;
    browser.fill("Code", code).await;
    browser.click_button("Verify").await;
}

#[tokio::test]
async fn enrol_an_authenticator_then_approve_a_device_with_its_code() {
    let server = TestServer::start().await;
    let browser = Chromium::launch().await;

    browser.open(&server.url("/account/security")).await;
    browser.wait_for_heading("Sign in").await;
    browser.fill("Email", EMAIL).await;
    browser.fill("Password", PASSWORD).await;
    browser.click_button("Sign in").await;
    browser.wait_for_heading("Security").await;
    browser.click_button("Set up authenticator").await;
    browser.wait_for_heading("Set up authenticator").await;
    browser.find(Locator::Css(".qr svg")).await;
    let shown = browser
        .find(Locator::Id("totp-secret"))
        .await
        .text()
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(&shown).expect("the secret is base32");
    browser.fill("Code", &current_code(&server, &secret)).await;
    browser.click_button("Turn on").await;
    browser.wait_for_heading("Authenticator turned on").await;
    let mut recovery = Vec::new();
    for item in browser
        .client()
        .find_all(Locator::Css("#recovery-codes code"))
        .await
        .unwrap()
    {
        recovery.push(item.text().await.unwrap());
    }
    assert_eq!(recovery.len(), 10, "{recovery:?}");

    browser.open(&server.url("/account/security")).await;
    browser.wait_for_text("10 recovery codes left").await;
    browser.click_button("Sign out").await;
    browser.wait_for_heading("Signed out").await;

    // A device login: password, then the app's code, then Approve.
    let start = server.start_device(&[]).await;
    browser
        .open(start["verification_uri_complete"].as_str().unwrap())
        .await;
    sign_in_with_code(&browser, &next_code(&server, &secret)).await;
    browser.wait_for_heading("Approve Test CLI?").await;
    browser.click_button("Approve").await;
    browser.wait_for_heading("Device approved").await;
    server.clock.advance_secs(5);
    let (status, tokens) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // A recovery code in place of the app's code: once.
    browser.open(&server.url("/account/security")).await;
    browser.click_button("Sign out").await;
    browser.wait_for_heading("Signed out").await;
    browser
        .open(&server.url("/signin?next=/account/security"))
        .await;
    sign_in_with_code(&browser, &recovery[2]).await;
    browser.wait_for_text("9 recovery codes left").await;
    browser.click_button("Sign out").await;
    browser.wait_for_heading("Signed out").await;
    browser
        .open(&server.url("/signin?next=/account/security"))
        .await;
    sign_in_with_code(&browser, &recovery[2]).await;
    browser.wait_for_text("that code is not right").await;
    browser.close().await;
}
