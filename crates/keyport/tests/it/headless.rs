//! The headless API: a team's own sign-in and approval page, served by
//! the test on another origin, signs in and approves a device login in
//! Chromium; CORS and origin refusals; the JSON steps one by one.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use keyport_testkit::Chromium;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// A minimal custom UI: loads the request named in `?request=`, signs in,
/// and approves, all through `/api/headless` with the browser's cookies.
/// The script is a file of its own, so the page's text holds only what
/// the script has shown (the browser waits on that text).
const UI_PAGE: &str = r#"<!doctype html>
<html><head><title>Acme sign-in</title></head><body>
<h1>Acme sign-in</h1>
<p id="client">loading</p>
<form id="signin">
<label for="email">Email</label><input id="email" type="email">
<label for="password">Password</label><input id="password" type="password">
<button type="submit">Sign in</button>
</form>
<div id="decide"></div>
<p id="status"></p>
<script src="/ui.js"></script>
</body></html>"#;

fn ui_script(issuer: &str) -> String {
    format!(
        r#"const api = "{issuer}/api/headless";
const request = new URLSearchParams(location.search).get("request");
async function call(path, body) {{
  const options = {{ credentials: "include" }};
  if (body) {{
    options.method = "POST";
    options.headers = {{ "Content-Type": "application/json" }};
    options.body = JSON.stringify(body);
  }}
  const response = await fetch(api + path, options);
  return [response.status, await response.json()];
}}
async function load() {{
  const [status, req] = await call("/requests/" + request);
  document.getElementById("client").textContent =
    status === 200 ? req.client.name + " asks for " + req.scopes.join(" ") : "no such request";
}}
function offerApproval() {{
  const button = document.createElement("button");
  button.textContent = "Approve";
  button.onclick = async () => {{
    const [status, answer] = await call("/device/approve", {{ requestId: request }});
    document.getElementById("status").textContent =
      status === 200 ? "Approved: " + answer.scope : "Refused: " + answer.error;
  }};
  document.getElementById("decide").appendChild(button);
}}
document.getElementById("signin").onsubmit = async (event) => {{
  event.preventDefault();
  const [status, answer] = await call("/sign-in", {{
    email: document.getElementById("email").value,
    password: document.getElementById("password").value,
  }});
  if (status === 200 && answer.status === "signed_in") {{
    document.getElementById("status").textContent = "Signed in";
    offerApproval();
  }} else {{
    document.getElementById("status").textContent = "Refused: " + answer.error;
  }}
}};
load();
"#
    )
}

/// Serves the UI on its own port: another origin than Keyport's.
async fn serve_ui(listener: tokio::net::TcpListener, issuer: &str) {
    let script = ui_script(issuer);
    let app = Router::new()
        .route("/", get(|| async { Html(UI_PAGE) }))
        .route(
            "/ui.js",
            get(move || async move { ([("content-type", "text/javascript")], script) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_ui_on_another_origin_signs_in_and_approves_in_chromium() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ui = format!("http://{}/", listener.local_addr().unwrap());
    let ui_for_config = ui.clone();
    let server = TestServer::start_with(move |config| {
        config.headless.ui_url = Some(ui_for_config);
        config.headless = keyport::config::check_headless(config.headless.clone()).unwrap();
    })
    .await;
    serve_ui(listener, &server.issuer).await;

    let start = server.start_device(&[("cli_label", "ci-runner")]).await;
    let complete = start["verification_uri_complete"].as_str().unwrap();
    let browser = Chromium::launch().await;
    // Keyport's /device hands the browser to the team's UI.
    browser.open(complete).await;
    browser.wait_for_text("Test CLI asks for").await;
    let landed = browser.current_url().await;
    assert!(landed.starts_with(&ui), "{landed}");
    assert!(
        landed.contains("view=device") && landed.contains("request="),
        "{landed}"
    );

    browser.fill("Email", EMAIL).await;
    browser.fill("Password", PASSWORD).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Signed in").await;
    browser.click_button("Approve").await;
    browser.wait_for_text("Approved: ").await;
    browser.close().await;

    server.clock.advance_secs(5);
    let (status, tokens) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let audit = server.audit_events().await;
    assert!(
        audit.iter().any(|e| e == "device.approve:success"),
        "{audit:?}"
    );
    assert!(audit.iter().any(|e| e == "sign_in:success"), "{audit:?}");
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    origin: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = server.http.request(method, server.url(path));
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn only_listed_origins_may_call_and_each_step_answers_in_json() {
    let server = TestServer::start_with(|config| {
        config.headless.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let listed = Some("https://app.example.com");
    let unlisted = Some("https://evil.example");

    // CORS preflight: listed origin allowed with credentials, unlisted refused.
    let preflight = |origin| {
        let request = server
            .http
            .request(
                reqwest::Method::OPTIONS,
                server.url("/api/headless/device/approve"),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type");
        async move { request.send().await.unwrap() }
    };
    let ok = preflight("https://app.example.com").await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let refused = preflight("https://evil.example").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let start = server.start_device(&[]).await;
    let user_code = start["user_code"].as_str().unwrap();
    let before = server.table_counts().await;

    // An unlisted origin cannot even sign in; nothing changes.
    let response = send(
        &server,
        reqwest::Method::POST,
        "/api/headless/sign-in",
        unlisted,
        Some(json!({"email": EMAIL, "password": PASSWORD})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.table_counts().await, before);

    // Not signed in: 401 login_required.
    let response = send(
        &server,
        reqwest::Method::POST,
        "/api/headless/device/resolve",
        listed,
        Some(json!({"userCode": user_code})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "login_required"
    );

    // A form body is refused: JSON only.
    let response = server
        .http
        .post(server.url("/api/headless/sign-in"))
        .header("Origin", "https://app.example.com")
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A wrong password: 401 in RFC 6749's shape.
    let response = send(
        &server,
        reqwest::Method::POST,
        "/api/headless/sign-in",
        listed,
        Some(json!({"email": EMAIL, "password": "wrong"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // Sign in: the session cookie, and CORS headers for the listed origin.
    let response = send(
        &server,
        reqwest::Method::POST,
        "/api/headless/sign-in",
        listed,
        Some(json!({"email": EMAIL, "password": PASSWORD})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let with_session = |method, path: &str, body: Option<Value>| {
        let mut request = server
            .http
            .request(method, server.url(path))
            .header("Origin", "https://app.example.com")
            .header("Cookie", &session);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        async move { request.send().await.unwrap() }
    };

    let me: Value = with_session(reqwest::Method::GET, "/api/headless/session", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["signed_in"], true);
    assert_eq!(me["workspaces"][0]["slug"], "acme");

    // Resolve by the typed code, then load by id.
    let response = with_session(
        reqwest::Method::POST,
        "/api/headless/device/resolve",
        Some(json!({"userCode": user_code.to_lowercase()})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let resolved: Value = response.json().await.unwrap();
    assert_eq!(resolved["client"]["id"], CLI);
    let id = resolved["id"].as_str().unwrap();
    let loaded: Value = with_session(
        reqwest::Method::GET,
        &format!("/api/headless/requests/{id}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(loaded["user"]["email"], EMAIL);
    assert!(
        loaded["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("agents:read"))
    );

    // Deny by user code; the poll is told; a second decision is refused.
    let response = with_session(
        reqwest::Method::POST,
        "/api/headless/device/deny",
        Some(json!({"userCode": user_code})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (status, denied) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(denied["error"], "access_denied");
    let response = with_session(
        reqwest::Method::POST,
        "/api/headless/device/approve",
        Some(json!({"requestId": id})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let unknown = send(
        &server,
        reqwest::Method::GET,
        &format!("/api/headless/requests/{id}"),
        listed,
        None,
    )
    .await;
    assert_eq!(
        unknown.status(),
        StatusCode::NOT_FOUND,
        "decided: no longer pending"
    );
}

#[test]
fn headless_origins_are_checked_and_the_ui_origin_is_added() {
    use keyport::config::{Headless, check_headless};
    let checked = check_headless(Headless {
        ui_url: Some("https://app.example.com/auth?x=1".into()),
        allowed_origins: vec![],
    })
    .unwrap();
    assert!(checked.allows("https://app.example.com"));
    for bad in [
        "https://app.example.com/",
        "app.example.com",
        "ftp://x.example",
    ] {
        let refused = check_headless(Headless {
            ui_url: None,
            allowed_origins: vec![bad.into()],
        });
        assert!(refused.is_err(), "{bad}");
    }
}
