//! The authorization code flow (RFC 6749 §4.1) in a real headless Chromium:
//! the hosted sign-in and consent pages are filled by label and clicked by
//! button text, and the browser follows the 303 after the consent form to
//! a tiny HTTP listener on 127.0.0.1 that plays the client's loopback
//! redirect URI (RFC 8252 §7.3) and hands the query it got to the test.
//!
//! Chromium enforces the consent page's CSP `form-action` on the redirect
//! that follows the form post, so these tests prove the redirect to the
//! client is allowed; the headers themselves are checked over plain HTTP,
//! which WebDriver cannot see. Like `browser.rs`, these need Debian's
//! `chromium` and `chromium-driver` and fail (never skip) without them.

use std::time::Duration;

use keyport::domain::clients::ClientSpec;
use keyport_testkit::{Chromium, PAGE_TIMEOUT};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::code_flow::{
    APP, APP_REDIRECT, CHALLENGE, VERIFIER, add_app, authorize_url, exchange, public_app, query,
};
use crate::support::*;

/// What the listener answers at the callback, for Chromium to show.
const CALLBACK_HEADING: &str = "Back at the test client";

/// The client's side of the redirect: an HTTP listener on a free loopback
/// port. Every `GET /callback?…` is answered 200 with a small page and its
/// full URL sent to the test; anything else (a favicon) gets a 404.
struct Callback {
    port: u16,
    seen: mpsc::UnboundedReceiver<url::Url>,
    task: tokio::task::JoinHandle<()>,
}

impl Callback {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                // One task per connection: Chromium may open a connection
                // it never uses, which must not hold up the next one.
                tokio::spawn(answer(stream, port, tx.clone()));
            }
        });
        Callback { port, seen, task }
    }

    /// The redirect URI as the client requests it: the registered
    /// `http://127.0.0.1/callback` with this listener's port.
    fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// The next callback the browser made; on a timeout, panics with what
    /// Chromium shows instead.
    async fn next(&mut self, browser: &Chromium) -> url::Url {
        match tokio::time::timeout(PAGE_TIMEOUT, self.seen.recv()).await {
            Ok(Some(url)) => url,
            _ => panic!(
                "the client's redirect URI was never reached; Chromium is on {} showing:\n{}",
                browser.current_url().await,
                browser.page_text().await
            ),
        }
    }

    /// Checks that the browser made no further callback.
    fn assert_no_more(&mut self) {
        if let Ok(url) = self.seen.try_recv() {
            panic!("an unexpected extra callback: {url}");
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request's head and answers it, closing the connection.
async fn answer(mut stream: TcpStream, port: u16, seen: mpsc::UnboundedSender<url::Url>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(30), read).await,
        Ok(true)
    ) {
        return;
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (request_line.next(), request_line.next().unwrap_or(""));
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}{target}")).ok();
    let response = match url {
        Some(url) if method == Some("GET") && url.path() == "/callback" => {
            let _ = seen.send(url);
            let body = format!(
                "<!doctype html><html><head><title>Test client</title></head>\
                 <body><h1>{CALLBACK_HEADING}</h1><p>You can close this tab.</p></body></html>"
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Fills the hosted sign-in page as alice (one workspace, so no workspace
/// choice follows) and waits for the consent page of `client_name`.
async fn sign_in_to_consent(browser: &Chromium, client_name: &str) {
    browser.wait_for_heading("Sign in").await;
    browser.fill("Email", EMAIL).await;
    browser.fill("Password", PASSWORD).await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_heading(&format!("Approve {client_name}?"))
        .await;
}

/// Waits until Chromium shows the listener's page, at `url`.
async fn wait_for_callback_page(browser: &Chromium, url: &url::Url) {
    browser.wait_for_heading(CALLBACK_HEADING).await;
    assert_eq!(browser.current_url().await, url.as_str());
}

#[tokio::test]
async fn a_public_client_gets_a_code_through_chromium_and_redeems_it_with_pkce() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let mut callback = Callback::start().await;
    let redirect = callback.redirect_uri();
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", APP),
            ("redirect_uri", &redirect),
            ("state", "st-browser-1"),
            ("nonce", "n-browser-1"),
            ("scope", "openid email offline_access agents:read"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );

    let browser = Chromium::launch().await;
    browser.open(&url).await;
    browser.wait_for_text("Web App").await;
    sign_in_to_consent(&browser, "Web App").await;
    let consent = browser.page_text().await;
    assert!(consent.contains(EMAIL), "{consent}");
    assert!(
        consent.contains(&format!("127.0.0.1:{}", callback.port)),
        "the consent page names where the user returns to:\n{consent}"
    );
    assert!(consent.contains("agents:read"), "{consent}");
    browser.click_button("Approve").await;

    let back = callback.next(&browser).await;
    wait_for_callback_page(&browser, &back).await;
    assert_eq!(back.as_str().split('?').next().unwrap(), redirect);
    assert_eq!(query(&back, "state").as_deref(), Some("st-browser-1"));
    assert_eq!(query(&back, "iss").as_deref(), Some(server.issuer.as_str()));
    assert!(query(&back, "error").is_none(), "{back}");
    let code = query(&back, "code").expect("a code in the redirect");
    browser.close().await;
    callback.assert_no_more();

    let (status, tokens) = exchange(
        &server,
        &[
            ("client_id", APP),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    assert_eq!(tokens["scope"], "agents:read email offline_access openid");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n-browser-1");
    assert_eq!(id["aud"], APP);
    assert_eq!(id["iss"], server.issuer.as_str());
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["client_id"], APP);
    let (status, me) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], EMAIL);
}

#[tokio::test]
async fn a_confidential_client_gets_a_code_through_chromium_and_a_denial_too() {
    let server = TestServer::start().await;
    // An https redirect URI cannot be served here: a loopback one instead.
    let secret = add_app(
        &server,
        ClientSpec {
            id: "portal".into(),
            name: "Portal".into(),
            confidential: true,
            redirect_uris: vec![APP_REDIRECT.into()],
            ..public_app()
        },
    )
    .await
    .expect("a confidential client has a secret");
    let mut callback = Callback::start().await;
    let redirect = callback.redirect_uri();
    // No PKCE: a confidential client may do without it.
    let request = |state: &'static str| {
        authorize_url(
            &server,
            &[
                ("response_type", "code"),
                ("client_id", "portal"),
                ("redirect_uri", &redirect),
                ("state", state),
                ("scope", "openid email"),
            ],
        )
    };

    let browser = Chromium::launch().await;
    browser.open(&request("st-portal-approve")).await;
    sign_in_to_consent(&browser, "Portal").await;
    browser.click_button("Approve").await;
    let back = callback.next(&browser).await;
    wait_for_callback_page(&browser, &back).await;
    assert_eq!(back.as_str().split('?').next().unwrap(), redirect);
    assert_eq!(query(&back, "state").as_deref(), Some("st-portal-approve"));
    assert_eq!(query(&back, "iss").as_deref(), Some(server.issuer.as_str()));
    let code = query(&back, "code").expect("a code in the redirect");

    // Signed in now: the next request goes straight to the consent page.
    browser.open(&request("st-portal-deny")).await;
    browser.wait_for_heading("Approve Portal?").await;
    browser.click_button("Deny").await;
    let denied = callback.next(&browser).await;
    wait_for_callback_page(&browser, &denied).await;
    assert_eq!(denied.as_str().split('?').next().unwrap(), redirect);
    assert_eq!(query(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&denied, "state").as_deref(), Some("st-portal-deny"));
    assert_eq!(
        query(&denied, "iss").as_deref(),
        Some(server.issuer.as_str())
    );
    assert!(query(&denied, "code").is_none(), "{denied}");
    browser.close().await;
    callback.assert_no_more();

    // client_secret_basic at the token endpoint, no code_verifier.
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth("portal", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, tokens) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "email openid");
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "portal");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["client_id"], "portal");
    let (status, me) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], EMAIL);
}

#[tokio::test]
async fn the_consent_page_admits_the_redirect_origin_and_cannot_be_framed() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let redirect = "http://127.0.0.1:4711/callback";
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", APP),
            ("redirect_uri", redirect),
            ("state", "st-headers"),
            ("scope", "openid"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );
    // Sign in over HTTP (cookies kept, redirects on the server followed):
    // the post to /signin lands on the consent page.
    let http = server.browser().http;
    let sign_in = http.get(&url).send().await.unwrap().text().await.unwrap();
    let mut form = form_fields(&sign_in, "/signin");
    form.insert("email".into(), EMAIL.into());
    form.insert("password".into(), PASSWORD.into());
    let response = http
        .post(server.url("/signin"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Approve Web App?"),
        "not the consent page:\n{page}"
    );

    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("the consent page lacks {name}: {headers:?}"))
            .to_string()
    };
    let csp = header("content-security-policy");
    let directive = |name: &str| -> Vec<String> {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(directive("frame-ancestors"), ["'none'"], "{csp}");
    let form_action = directive("form-action");
    assert!(form_action.contains(&"'self'".to_string()), "{csp}");
    assert!(
        form_action.contains(&"http://127.0.0.1:4711".to_string()),
        "form-action must admit the redirect URI's origin: {csp}"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
}
