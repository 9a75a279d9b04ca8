//! Two people in two headless Chromium browsers: an owner invites a member
//! by link, the member accepts and logs `kp` in through the device flow,
//! the owner revokes that CLI session from the workspace's sessions page,
//! and the member's next `kp token` exits 4.

// Each test binary compiles the shared support module; this one uses part of it.
#[allow(dead_code)]
mod support;

use keyport::admin;
use keyport_testkit::{Chromium, Locator};

use support::*;

const BOB: &str = "bob@example.com";
const BOB_PASSWORD: &str = "bob's own long password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_invites_and_later_revokes_a_members_cli() {
    let server = Server::start().await;
    admin::add_member(&server.kp, "acme", EMAIL, "owner")
        .await
        .unwrap();
    let members_page = format!("{}/dashboard/workspaces/acme/members", server.issuer);

    let owner = Chromium::launch().await;
    owner.open(&members_page).await;
    owner.wait_for_heading("Sign in").await;
    owner.fill("Email", EMAIL).await;
    owner.fill("Password", PASSWORD).await;
    owner.click_button("Sign in").await;
    owner.wait_for_heading("Members of Acme").await;
    owner.fill("Email", BOB).await;
    owner.click_button("Invite").await;
    let link = owner
        .find(Locator::Id("invitation-link"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        link.starts_with(&format!("{}/invitations/", server.issuer)),
        "{link}"
    );

    let member = owner.another().await;
    member.open(&link).await;
    member.wait_for_heading("Join Acme").await;
    member.fill("Name", "Bob").await;
    member.fill("Password", BOB_PASSWORD).await;
    member.click_button("Accept").await;
    member.wait_for_heading("Sign in").await;
    member.fill("Email", BOB).await;
    member.fill("Password", BOB_PASSWORD).await;
    member.click_button("Sign in").await;
    member.wait_for_heading("My CLI sessions").await;

    let kp = Kp::new();
    // The member approves the CLI in the browser already signed in.
    let browser = &member;
    let login = kp
        .login_approved_by(&server, "bob-laptop", |url| async move {
            browser.open(&url).await;
            browser.wait_for_heading("Approve E2E CLI?").await;
            browser.click_button("Approve").await;
            browser.wait_for_heading("Device approved").await;
        })
        .await;
    assert_exit(&login, 0, "kp login as the new member");
    let whoami = kp.run(&["whoami", "--json"]).await;
    assert_exit(&whoami, 0, "kp whoami");
    assert_eq!(
        stdout_json(&whoami)["role"],
        "member",
        "{}",
        stdout(&whoami)
    );

    member
        .open(&format!("{}/dashboard/sessions", server.issuer))
        .await;
    member.wait_for_text("bob-laptop").await;

    owner
        .open(&format!(
            "{}/dashboard/workspaces/acme/sessions",
            server.issuer
        ))
        .await;
    owner.wait_for_heading("CLI sessions in Acme").await;
    owner.wait_for_text("bob-laptop").await;
    owner.click_button("Revoke").await;
    owner.wait_for_text("No live CLI sessions.").await;

    kp.expire_access_token(&server.issuer);
    let token = kp.run(&["token"]).await;
    assert_exit(&token, 4, "kp token after the owner revoked the session");

    member.close().await;
    owner.close().await;
}
