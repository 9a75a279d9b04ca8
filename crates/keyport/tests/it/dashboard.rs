//! The dashboard over HTTP, through its real forms: sign-in redirects,
//! CSRF, API keys (shown once, re-checked against the current role on every
//! use, revoked), invitations bound to an address, member management, the
//! workspace's sessions and audit trail with its exports, clients for
//! owners, and escaping of every name a user or device controls.

use keyport::admin;
use keyport::clock::Clock;
use keyport_testkit::{Browser, form_fields};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const BOB: &str = "bob@example.com";
const BOB_PASSWORD: &str = "bob's long password";

/// Posts `fields` to `action` with the CSRF token of the form on `page`
/// (only the token: a checkbox the caller leaves out stays unchecked).
async fn post(browser: &Browser, page: &str, action: &str, fields: &[(&str, &str)]) -> String {
    let csrf = form_fields(page, action)
        .remove("csrf_token")
        .unwrap_or_else(|| panic!("no CSRF token in the form for {action}:\n{page}"));
    let only_token = format!(
        "<form method=\"post\" action=\"{action}\"><input name=\"csrf_token\" value=\"{csrf}\"></form>"
    );
    browser.submit(&only_token, action, fields).await
}

/// Opens `path` as `browser`, is sent to `/signin`, signs in there and
/// comes back: returns the page.
async fn sign_in(
    browser: &Browser,
    server: &TestServer,
    email: &str,
    password: &str,
    path: &str,
) -> String {
    let page = browser.get(&server.url(path)).await;
    browser
        .submit(
            &page,
            "/signin",
            &[("email", email), ("password", password)],
        )
        .await
}

/// alice's browser, signed in, on `path`.
pub(crate) async fn signed_in(server: &TestServer, path: &str) -> (Browser, String) {
    let browser = server.browser();
    let page = sign_in(&browser, server, EMAIL, PASSWORD, path).await;
    (browser, page)
}

/// The text of the element with this id: a secret shown once.
fn shown(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} shown:\n{page}"))
        + marker.len();
    page[start..start + page[start..].find('<').unwrap()].to_string()
}

pub(crate) async fn create_key(
    browser: &Browser,
    server: &TestServer,
    name: &str,
    scopes: &[&str],
) -> String {
    let page = browser.get(&server.url("/dashboard/api-keys")).await;
    let mut fields = vec![("name", name), ("workspace", "acme")];
    let names: Vec<String> = scopes.iter().map(|s| format!("scope.{s}")).collect();
    for name in &names {
        fields.push((name, "1"));
    }
    let page = post(browser, &page, "/dashboard/api-keys", &fields).await;
    shown(&page, "api-key")
}

async fn bearer_get(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    keyport_testkit::json_of(response).await
}

#[tokio::test]
async fn every_dashboard_path_sends_a_stranger_to_sign_in() {
    let server = TestServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/dashboard/sessions",
        "/dashboard/api-keys",
        "/dashboard/workspaces/acme/members",
        "/dashboard/workspaces/acme/sessions",
        "/dashboard/workspaces/acme/audit?event=sign_in",
        "/dashboard/clients",
    ] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()["location"].to_str().unwrap();
        let expected = format!(
            "/signin?next={}",
            percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC)
        );
        assert_eq!(location, expected, "{path}");
    }
}

#[tokio::test]
async fn a_post_without_its_csrf_token_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let (browser, _) = signed_in(&server, "/dashboard/api-keys").await;
    let before = server.table_counts().await;
    let page = browser
        .submit(
            "<form action=\"/dashboard/api-keys\"></form>",
            "/dashboard/api-keys",
            &[
                ("name", "x"),
                ("workspace", "acme"),
                ("scope.agents:read", "1"),
            ],
        )
        .await;
    assert!(page.contains("Request refused"), "{page}");
    assert_eq!(server.table_counts().await, before);
}

#[tokio::test]
async fn an_api_key_is_shown_once_follows_the_role_and_dies_when_revoked() {
    let server = TestServer::start().await;
    let (browser, _) = signed_in(&server, "/dashboard/api-keys").await;
    let key = create_key(
        &browser,
        &server,
        "deploy",
        &["agents:read", "agents:write", "workspace:read"],
    )
    .await;
    assert!(key.starts_with("kp_pat_"), "{key}");
    let list = browser.get(&server.url("/dashboard/api-keys")).await;
    assert!(
        list.contains("deploy") && !list.contains(&key),
        "shown once"
    );

    let (status, info) = bearer_get(&server, "/oauth/userinfo", &key).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["workspace"], "acme");
    assert_eq!(info["role"], "admin");
    assert_eq!(info["scope"], "agents:read agents:write workspace:read");
    let introspected = server.introspect(&key).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(
        introspected["scope"],
        "agents:read agents:write workspace:read"
    );

    // Demoted to viewer: the member-level scope is gone at the next use.
    admin::add_member(&server.kp, "acme", EMAIL, "viewer")
        .await
        .unwrap();
    let (_, info) = bearer_get(&server, "/oauth/userinfo", &key).await;
    assert_eq!(info["scope"], "agents:read workspace:read");
    assert_eq!(info["role"], "viewer");

    // A role cannot make a key wider than itself.
    let page = browser.get(&server.url("/dashboard/api-keys")).await;
    let refused = post(
        &browser,
        &page,
        "/dashboard/api-keys",
        &[
            ("name", "wide"),
            ("workspace", "acme"),
            ("scope.audit:read", "1"),
        ],
    )
    .await;
    assert!(refused.contains("does not allow audit:read"), "{refused}");

    // Revoked from the page: 401 from then on.
    let page = browser.get(&server.url("/dashboard/api-keys")).await;
    let action = page
        .split("action=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .find(|a| a.ends_with("/revoke"))
        .expect("a Revoke form")
        .to_string();
    post(&browser, &page, &action, &[]).await;
    let (status, body) = bearer_get(&server, "/oauth/userinfo", &key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(server.introspect(&key).await["active"], false);
    let events = server.audit_events().await;
    for event in ["api_key.create", "api_key.revoke"] {
        assert!(events.contains(&format!("{event}:success")), "{events:?}");
    }
}

#[tokio::test]
async fn a_removed_members_key_and_sessions_die() {
    let server = TestServer::start().await;
    admin::add_user(&server.kp, BOB, Some("Bob"), BOB_PASSWORD.into())
        .await
        .unwrap();
    admin::add_member(&server.kp, "acme", BOB, "member")
        .await
        .unwrap();
    let bob = Browser::new(&server.url(""), BOB, BOB_PASSWORD);
    sign_in(&bob, &server, BOB, BOB_PASSWORD, "/dashboard/api-keys").await;
    let key = create_key(&bob, &server, "bob's script", &["agents:write"]).await;
    assert_eq!(
        bearer_get(&server, "/oauth/userinfo", &key).await.0,
        StatusCode::OK
    );

    let (alice, page) = signed_in(&server, "/dashboard/workspaces/acme/members").await;
    assert!(page.contains(BOB), "{page}");
    let page = post(
        &alice,
        &page,
        "/dashboard/workspaces/acme/members/remove",
        &[("email", BOB)],
    )
    .await;
    assert!(page.contains("The member is removed."), "{page}");
    assert_eq!(
        bearer_get(&server, "/oauth/userinfo", &key).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_invitation_is_accepted_once_by_its_own_address() {
    let server = TestServer::start().await;
    let (alice, page) = signed_in(&server, "/dashboard/workspaces/acme/members").await;
    let page = post(
        &alice,
        &page,
        "/dashboard/workspaces/acme/invitations",
        &[("email", BOB), ("role", "member")],
    )
    .await;
    let link = shown(&page, "invitation-link");
    assert!(link.starts_with(&server.url("/invitations/")), "{link}");
    // Mailed too: the outbox holds it (no SMTP server is configured).
    let outbox = std::fs::read_dir(server.data_dir.join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(outbox, 1);

    // An admin may not invite above their own role.
    let page = alice
        .get(&server.url("/dashboard/workspaces/acme/members"))
        .await;
    let refused = post(
        &alice,
        &page,
        "/dashboard/workspaces/acme/invitations",
        &[("email", "carol@example.com"), ("role", "owner")],
    )
    .await;
    assert!(refused.contains("above your own"), "{refused}");

    // Someone else, signed in, cannot take it.
    let (other, _) = signed_in(&server, "/dashboard/sessions").await;
    let page = other.get(&link).await;
    assert!(
        page.contains("This invitation is for bob@example.com"),
        "{page}"
    );

    // Bob has no account: the page makes one, then he signs in.
    let bob = Browser::new(&server.url(""), BOB, BOB_PASSWORD);
    let page = bob.get(&link).await;
    assert!(page.contains("Join Acme"), "{page}");
    let action = link.trim_start_matches(&server.url(""));
    bob.submit(
        &page,
        action,
        &[("name", "Bob"), ("password", BOB_PASSWORD)],
    )
    .await;
    let again = bob.get(&link).await;
    assert!(again.contains("expired or was already used"), "{again}");
    let page = sign_in(&bob, &server, BOB, BOB_PASSWORD, "/dashboard/sessions").await;
    assert!(page.contains("My CLI sessions"), "{page}");
    assert!(page.contains("bob@example.com"), "{page}");
    let events = server.audit_events().await;
    for event in ["member.invite", "member.join"] {
        assert!(events.contains(&format!("{event}:success")), "{events:?}");
    }
}

#[tokio::test]
async fn admins_revoke_members_sessions_and_read_and_export_the_audit_trail() {
    let server = TestServer::start().await;
    let tokens = server
        .login_with_label("laptop <script>alert(1)</script>")
        .await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (alice, page) = signed_in(&server, "/dashboard/workspaces/acme/sessions").await;
    assert!(page.contains("CLI sessions in Acme"), "{page}");
    assert!(!page.contains("<script>alert"), "escaped: {page}");
    assert!(page.contains("&#60;script&#62;"), "{page}");
    let action = page
        .split("action=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .find(|a| a.starts_with("/dashboard/sessions/") && a.ends_with("/revoke"))
        .expect("a Revoke form")
        .to_string();
    post(
        &alice,
        &page,
        &action,
        &[("back", "/dashboard/workspaces/acme/sessions")],
    )
    .await;
    let (status, body) = server.refresh(&refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    let page = alice
        .get(&server.url("/dashboard/workspaces/acme/audit?event=session.revoke"))
        .await;
    assert!(page.contains("session.revoke"), "{page}");
    assert!(!page.contains("device.approve"), "filtered: {page}");
    // Dates: the day of the revocation keeps it; the days around it do not.
    let day = |offset: i64| {
        let at = time::OffsetDateTime::from_unix_timestamp(server.clock.now() + offset * 86_400)
            .unwrap();
        format!(
            "{:04}-{:02}-{:02}",
            at.year(),
            u8::from(at.month()),
            at.day()
        )
    };
    let dated = |from: String, to: String| {
        server.url(&format!(
            "/dashboard/workspaces/acme/audit?event=session.revoke&from={from}&to={to}"
        ))
    };
    let page = alice.get(&dated(day(0), day(0))).await;
    assert!(page.contains("<td>session.revoke</td>"), "today: {page}");
    let page = alice.get(&dated(day(-3), day(-1))).await;
    assert!(!page.contains("<td>session.revoke"), "before today: {page}");
    let page = alice.get(&dated(day(1), day(3))).await;
    assert!(!page.contains("<td>session.revoke"), "after today: {page}");
    let csv = alice
        .get(&server.url("/dashboard/workspaces/acme/audit/export?format=csv&event=session.revoke"))
        .await;
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().starts_with("id,at,workspace,event"),
        "{csv}"
    );
    assert_eq!(
        lines.filter(|l| l.contains("session.revoke")).count(),
        1,
        "{csv}"
    );
    let json: Value = serde_json::from_str(
        &alice
            .get(&server.url("/dashboard/workspaces/acme/audit/export?format=json"))
            .await,
    )
    .unwrap();
    let events: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"session.revoke") && events.contains(&"device.approve"),
        "{events:?}"
    );
}

#[tokio::test]
async fn viewers_see_no_admin_pages_and_names_are_escaped_everywhere() {
    let server = TestServer::start().await;
    admin::add_workspace(&server.kp, "xss", "<img src=x onerror=alert(1)>")
        .await
        .unwrap();
    admin::add_user(&server.kp, BOB, Some("<b>Bob</b>"), BOB_PASSWORD.into())
        .await
        .unwrap();
    admin::add_member(&server.kp, "xss", EMAIL, "owner")
        .await
        .unwrap();
    admin::add_member(&server.kp, "xss", BOB, "viewer")
        .await
        .unwrap();
    let (alice, page) = signed_in(&server, "/dashboard/workspaces/xss/members").await;
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(!page.contains("<b>Bob</b>"), "{page}");
    assert!(page.contains("&#60;b&#62;Bob&#60;/b&#62;"), "{page}");
    let key_page = alice.get(&server.url("/dashboard/api-keys")).await;
    let made = post(
        &alice,
        &key_page,
        "/dashboard/api-keys",
        &[
            ("name", "<svg onload=alert(1)>"),
            ("workspace", "xss"),
            ("scope.agents:read", "1"),
        ],
    )
    .await;
    assert!(!made.contains("<svg onload"), "{made}");
    assert!(made.contains("&#60;svg onload=alert(1)&#62;"), "{made}");

    let bob = Browser::new(&server.url(""), BOB, BOB_PASSWORD);
    sign_in(&bob, &server, BOB, BOB_PASSWORD, "/dashboard/sessions").await;
    for path in [
        "/dashboard/workspaces/xss/sessions",
        "/dashboard/workspaces/xss/audit",
        "/dashboard/workspaces/xss/members",
    ] {
        let page = bob.get(&server.url(path)).await;
        assert!(page.contains("Not allowed"), "{path}: {page}");
    }
    let page = bob.get(&server.url("/dashboard/clients")).await;
    assert!(page.contains("Not allowed"), "{page}");
}

#[tokio::test]
async fn owners_add_a_cli_client_and_rotate_a_secret() {
    let server = TestServer::start().await;
    admin::add_member(&server.kp, "acme", EMAIL, "owner")
        .await
        .unwrap();
    let (alice, page) = signed_in(&server, "/dashboard/clients").await;
    let page = post(
        &alice,
        &page,
        "/dashboard/clients",
        &[("preset", "cli"), ("id", "acme-cli"), ("name", "Acme CLI")],
    )
    .await;
    assert!(page.contains("The client is added."), "{page}");
    let (status, start) = server
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "acme-cli"),
                ("scope", "openid offline_access"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{start}");

    let page = post(
        &alice,
        &page,
        "/dashboard/clients",
        &[
            ("preset", "service"),
            ("id", "acme-worker"),
            ("name", "Worker"),
            ("scopes", "agents:read"),
        ],
    )
    .await;
    assert!(page.contains("id=\"client-secret\""), "{page}");
    let page = post(
        &alice,
        &page,
        "/dashboard/clients/acme-worker/rotate-secret",
        &[],
    )
    .await;
    assert!(page.contains("keeps working for 24 hours"), "{page}");
    let events = server.audit_events().await;
    for event in ["client.add", "client.secret_rotate"] {
        assert!(events.contains(&format!("{event}:success")), "{events:?}");
    }
}
