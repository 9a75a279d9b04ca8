//! The password grant (seed 003) and two-step verification over HTTP:
//! authenticator enrolment on `/account/security`, `missing_totp` /
//! `invalid_totp`, recovery codes, the lockout under 50 concurrent wrong
//! passwords, devices registered by `guid`, email codes through a real SMTP
//! server, text-message codes through a webhook, and bad input.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyport::domain::admin;
use keyport::domain::clients::ClientSpec;
use keyport::domain::totp::TotpSecret;
use keyport_testkit::Browser;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

pub const ANCHOR: &str = "anchor";

/// The usual test server plus seed 003's public `anchor` client.
pub async fn anchor_server(adjust: impl FnOnce(&mut keyport::config::Config)) -> TestServer {
    let server = TestServer::start_with(adjust).await;
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: ANCHOR.into(),
            name: "Anchor".into(),
            confidential: false,
            grants: vec!["password".into(), "refresh_token".into()],
            scopes: vec!["openid email offline_access agents:read".into()],
            audiences: vec![AUDIENCE.into()],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    server
}

/// A password grant for alice with `fields` added or replacing the defaults.
pub async fn password_grant(server: &TestServer, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form: BTreeMap<&str, &str> = [
        ("grant_type", "password"),
        ("client_id", ANCHOR),
        ("username", EMAIL),
        ("password", PASSWORD),
    ]
    .into_iter()
    .collect();
    form.extend(fields.iter().copied());
    let form: Vec<(&str, &str)> = form.into_iter().collect();
    server.post_form("/oauth/token", &form).await
}

/// A browser signed in as alice on `/account/security`; returns it and the page.
async fn security_page(server: &TestServer) -> (Browser, String) {
    let browser = server.browser();
    let page = browser.get(&server.url("/account/security")).await;
    assert!(page.contains("<h1>Sign in</h1>"), "{page}");
    let page = browser
        .submit(
            &page,
            "/signin",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    assert!(page.contains("<h1>Security</h1>"), "{page}");
    (browser, page)
}

/// The text of the element with `id` (up to its closing tag).
fn element_text(page: &str, id: &str) -> String {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in:\n{page}"));
    let start = at + page[at..].find('>').unwrap() + 1;
    let end = start + page[start..].find('<').unwrap();
    page[start..end].trim().to_string()
}

/// Turns on alice's authenticator on `/account/security` as a person would:
/// the secret from the page, the code an app computes, "Turn on". Returns
/// the secret and the ten recovery codes.
pub async fn enrol_authenticator(server: &TestServer) -> (TotpSecret, Vec<String>) {
    let (browser, page) = security_page(server).await;
    let setup = browser
        .submit(&page, "/account/security/authenticator", &[])
        .await;
    assert!(setup.contains("<svg"), "no QR code:\n{setup}");
    let secret = TotpSecret::from_base32(&element_text(&setup, "totp-secret")).unwrap();
    let wrong = browser
        .submit(
            &setup,
            "/account/security/authenticator",
            &[("code", "000000")],
        )
        .await;
    assert!(wrong.contains("That code is not right"), "{wrong}");
    let done = browser
        .submit(
            &setup,
            "/account/security/authenticator",
            &[("code", &current_code(server, &secret))],
        )
        .await;
    assert!(done.contains("Authenticator turned on"), "{done}");
    let codes: Vec<String> = done
        .split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{done}");
    (secret, codes)
}

/// The code an authenticator app shows at the server's time.
pub fn current_code(server: &TestServer, secret: &TotpSecret) -> String {
    secret.code_at(server.clock_now().div_euclid(30))
}

/// The next code: the clock moves one step on, as each code works once.
pub fn next_code(server: &TestServer, secret: &TotpSecret) -> String {
    server.clock.advance_secs(30);
    current_code(server, secret)
}

async fn sign_in_failures(server: &TestServer) -> i64 {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(failures), 0) AS n FROM sign_in_failures WHERE username = $1",
    )
    .bind(EMAIL)
    .fetch_one(server.kp.store().pool())
    .await
    .unwrap();
    sqlx::Row::get::<i64, _>(&row, "n")
}

#[tokio::test]
async fn the_password_grant_with_an_authenticator_as_seed_003_spells_it() {
    let server = anchor_server(|_| {}).await;

    // Without two-step verification the password alone gets tokens.
    let (status, plain) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    let first_guid = plain["guid"].as_str().unwrap().to_string();
    assert_eq!(first_guid.len(), 36, "{plain}");
    assert!(plain["refresh_token"].is_string(), "{plain}");
    let (_, me) = server
        .userinfo(plain["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me["email"], EMAIL, "{me}");
    assert_eq!(me["workspace"], "acme", "{me}");

    let (secret, recovery) = enrol_authenticator(&server).await;

    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (&body["error"], &body["two_step_mode"]),
        (&json!("missing_totp"), &json!("authenticator")),
        "{body}"
    );
    let (status, body) = password_grant(&server, &[("auth_code", "123456")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_totp", "{body}");
    assert_eq!(body["two_step_mode"], "authenticator", "{body}");

    // The code, the device's fields and the guid it was given before.
    let code = next_code(&server, &secret);
    let (status, tokens) = password_grant(
        &server,
        &[
            ("auth_code", &code),
            ("guid", &first_guid),
            ("dns_name", "ada-phone"),
            ("os_type", "android"),
            ("os_version", "4.2.2"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["guid"], first_guid.as_str(), "a known guid is kept");
    assert_eq!(
        sign_in_failures(&server).await,
        0,
        "a success clears the count"
    );

    // Each code once.
    let (status, body) = password_grant(&server, &[("auth_code", &code)]).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_totp"))
    );

    // A guid the server never gave (or another user's) gets a new one.
    let (status, other) = password_grant(
        &server,
        &[
            ("auth_code", &next_code(&server, &secret)),
            ("guid", "00000000-0000-4000-8000-000000000000"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_ne!(other["guid"], json!("00000000-0000-4000-8000-000000000000"));
    assert_ne!(other["guid"], json!(first_guid));

    // Refresh with and without the guid: the session's guid comes back.
    let rt = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", ANCHOR),
                ("refresh_token", rt),
                ("guid", &first_guid),
                ("os_version", "5.1.0"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["guid"], first_guid.as_str());
    let (status, again) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", ANCHOR),
                (
                    "refresh_token",
                    refreshed["refresh_token"].as_str().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["guid"], first_guid.as_str());

    // The session list shows the device, with the version it reported last.
    let sessions = admin::list_sessions(&server.kp, Some(EMAIL)).await.unwrap();
    let session = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device"]["guid"] == json!(first_guid) && s["label"] == "ada-phone")
        .unwrap_or_else(|| panic!("no session of the device: {sessions:#}"));
    assert_eq!(session["device"]["os_type"], "android", "{session}");
    assert_eq!(session["device"]["os_version"], "5.1.0", "{session}");

    // A recovery code works once, in JSON as well.
    let grant = |code: String| {
        let http = server.http.clone();
        let url = server.url("/oauth/token");
        async move {
            let response = http
                .post(url)
                .json(&json!({
                    "grant_type": "password", "client_id": ANCHOR,
                    "username": EMAIL, "password": PASSWORD, "auth_code": code,
                }))
                .send()
                .await
                .unwrap();
            keyport_testkit::json_of(response).await
        }
    };
    // A workspace the user is not in is refused before any code is spent.
    let (status, body) = password_grant(
        &server,
        &[("auth_code", &recovery[3]), ("workspace", "elsewhere")],
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    let (status, body) = grant(recovery[3].to_uppercase()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = grant(recovery[3].clone()).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_totp"))
    );

    // Revocation with token_type_hint (RFC 7009 §2.1).
    let (status, _) = server
        .post_form(
            "/oauth/revoke",
            &[
                ("client_id", ANCHOR),
                ("token", again["access_token"].as_str().unwrap()),
                ("token_type_hint", "access_token"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .userinfo(again["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // `keyport user totp reset`: the password alone again, no recovery codes left.
    admin::reset_totp(&server.kp, EMAIL).await.unwrap();
    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = grant(recovery[4].clone()).await;
    assert_eq!(status, StatusCode::OK, "no second step is asked for");
    let events = server.audit_events().await;
    for event in [
        "account.totp_enabled:success",
        "admin.user_totp_reset:success",
    ] {
        assert!(events.iter().any(|e| e == event), "{event}: {events:?}");
    }
}

#[tokio::test]
async fn seed_003_requests_from_python() {
    let server = anchor_server(|_| {}).await;
    let (secret, _) = enrol_authenticator(&server).await;
    let code = next_code(&server, &secret);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/anchor_seed_003.py"
    );
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--issuer", &server.issuer])
        .args(["--username", EMAIL, "--password", PASSWORD])
        .args(["--auth-code", &code])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python3 with requests runs (`.ci/run` installs requests)");
    assert!(
        out.status.success(),
        "the seed 003 script failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["access_token_revoked"], true);
}

#[tokio::test]
async fn fifty_concurrent_wrong_passwords_let_exactly_the_limit_through() {
    let server = anchor_server(|c| c.limits.sign_ins_per_ip_per_minute = 1_000).await;
    // A session from before the lockout keeps refreshing through it.
    let (_, before) = password_grant(&server, &[]).await;

    for name in [EMAIL, "ghost@example.com"] {
        let attempts = (0..50).map(|_| {
            let (http, url) = (server.http.clone(), server.url("/oauth/token"));
            async move {
                let response = http
                    .post(url)
                    .form(&[
                        ("grant_type", "password"),
                        ("client_id", ANCHOR),
                        ("username", name),
                        ("password", "wrong password"),
                    ])
                    .send()
                    .await
                    .unwrap();
                keyport_testkit::json_of(response).await
            }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let count = |status: StatusCode, error: &str| {
            answers
                .iter()
                .filter(|(s, b)| *s == status && b["error"] == error)
                .count()
        };
        assert_eq!(
            count(StatusCode::BAD_REQUEST, "invalid_grant"),
            5,
            "{name}: {answers:?}"
        );
        assert_eq!(
            count(StatusCode::FORBIDDEN, "account_locked"),
            45,
            "{name}: {answers:?}"
        );
    }

    // Locked: the right password too, until the window ends.
    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("account_locked"))
    );
    let (status, _) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", ANCHOR),
                ("refresh_token", before["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a lockout ends no session");
    server.clock.advance_secs(899);
    let (status, _) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.clock.advance_secs(2);
    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Wrong codes and missing codes count as well; `keyport user unlock` clears.
    let (secret, _) = enrol_authenticator(&server).await;
    let mut answers = Vec::new();
    for code in ["", "111111", "", "222222", ""] {
        answers.push(password_grant(&server, &[("auth_code", code)]).await.1["error"].clone());
    }
    assert_eq!(
        answers,
        [
            "missing_totp",
            "invalid_totp",
            "missing_totp",
            "invalid_totp",
            "missing_totp"
        ]
    );
    let code = next_code(&server, &secret);
    let (status, body) = password_grant(&server, &[("auth_code", &code)]).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("account_locked"))
    );
    let unlocked = admin::unlock_user(&server.kp, EMAIL).await.unwrap();
    assert_eq!(unlocked["had_failures"], true);
    let (status, body) =
        password_grant(&server, &[("auth_code", &next_code(&server, &secret))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_device_page_asks_for_the_second_step_and_recovery_codes_work_once() {
    let server = TestServer::start().await;
    let (secret, recovery) = enrol_authenticator(&server).await;

    let approve_with = |code: String| {
        let server = &server;
        async move {
            let start = server.start_device(&[]).await;
            let browser = server.browser();
            let page = browser
                .get(start["verification_uri_complete"].as_str().unwrap())
                .await;
            let page = browser
                .submit(
                    &page,
                    "/device/sign-in",
                    &[("email", EMAIL), ("password", PASSWORD)],
                )
                .await;
            assert!(page.contains("Two-step verification"), "{page}");
            assert!(page.contains("authenticator app"), "{page}");
            // No session yet: the approval needs the code first.
            let early = browser.get(&server.url("/account/security")).await;
            assert!(early.contains("<h1>Sign in</h1>"), "{early}");
            let page = browser
                .submit(&page, "/signin/code", &[("code", &code)])
                .await;
            (start, browser, page)
        }
    };

    let (start, browser, page) = approve_with(next_code(&server, &secret)).await;
    assert!(page.contains("Approve"), "{page}");
    let done = browser
        .submit(&page, "/device/decision", &[("decision", "approve")])
        .await;
    assert!(done.contains("Device approved"), "{done}");
    server.clock.advance_secs(5);
    let (status, _) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let (_, _, page) = approve_with(recovery[0].clone()).await;
    assert!(page.contains("Approve"), "the recovery code works:\n{page}");
    let (_, _, page) = approve_with(recovery[0].clone()).await;
    assert!(page.contains("that code is not right"), "but once:\n{page}");
}

/// A real SMTP server: Python's aiosmtpd writing each message into a maildir.
struct SmtpServer {
    child: tokio::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
    seen: std::collections::HashSet<std::path::PathBuf>,
}

impl SmtpServer {
    async fn start() -> Self {
        let port = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        let maildir = temp_dir().join("maildir");
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m aiosmtpd starts (`.ci/run` installs aiosmtpd)");
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return SmtpServer {
                    child,
                    port,
                    maildir,
                    seen: Default::default(),
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not listen on {port}; is it installed (pip install aiosmtpd)?");
    }

    /// Waits for the next message to alice and returns its six-digit code.
    async fn next_code(&mut self) -> String {
        for _ in 0..400 {
            let fresh = std::fs::read_dir(self.maildir.join("new"))
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
                .find(|p| !self.seen.contains(p));
            if let Some(path) = fresh {
                self.seen.insert(path.clone());
                let message = std::fs::read_to_string(&path).unwrap();
                assert!(message.contains(&format!("To: {EMAIL}")), "{message}");
                assert!(
                    message.contains("From: Keyport <auth@keyport.test>"),
                    "{message}"
                );
                return six_digits(message.split("code is").nth(1).unwrap());
            }
            assert!(self.child.try_wait().unwrap().is_none(), "aiosmtpd exited");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no new message arrived at the SMTP server");
    }
}

fn six_digits(text: &str) -> String {
    text.chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take(6)
        .collect()
}

#[tokio::test]
async fn email_codes_arrive_over_real_smtp_and_sign_in() {
    let mut smtp = SmtpServer::start().await;
    let port = smtp.port;
    let server = anchor_server(move |c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = Some(port);
        c.smtp.starttls = false;
        c.smtp.from = "Keyport <auth@keyport.test>".into();
    })
    .await;
    let (browser, page) = security_page(&server).await;
    let page = browser
        .submit(&page, "/account/security/email-codes", &[])
        .await;
    assert!(page.contains("Email codes are on."), "{page}");

    // The password grant: missing_totp sends the code at that moment.
    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["two_step_mode"], "email", "{body}");
    let code = smtp.next_code().await;
    let (status, body) = password_grant(&server, &[("auth_code", &code)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = password_grant(&server, &[("auth_code", &code)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an email code works once");

    // The hosted sign-in page: the code page, then signed in.
    let browser = server.browser();
    let page = browser
        .get(&server.url("/signin?next=/account/security"))
        .await;
    let page = browser
        .submit(
            &page,
            "/signin",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    assert!(page.contains("We emailed you"), "{page}");
    let code = smtp.next_code().await;
    let page = browser
        .submit(&page, "/signin/code", &[("code", &code)])
        .await;
    assert!(page.contains("<h1>Security</h1>"), "{page}");
}

#[tokio::test]
async fn text_message_codes_go_to_the_webhook() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let server = anchor_server(move |c| c.sms.webhook_url = Some(hook)).await;

    let (browser, page) = security_page(&server).await;
    let bad = browser
        .submit(
            &page,
            "/account/security/sms-codes",
            &[("phone", "555-0100")],
        )
        .await;
    assert!(bad.contains("a phone number is +"), "{bad}");
    let page = browser
        .submit(
            &page,
            "/account/security/sms-codes",
            &[("phone", "+15550100123")],
        )
        .await;
    assert!(page.contains("Text-message codes are on."), "{page}");

    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["two_step_mode"], "sms", "{body}");
    let message = received
        .lock()
        .unwrap()
        .pop()
        .expect("the webhook got the text");
    assert_eq!(message["to"], "+15550100123");
    let code = six_digits(message["text"].as_str().unwrap());
    let (status, body) = password_grant(&server, &[("auth_code", "000000")]).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_totp"))
    );
    let (status, body) = password_grant(&server, &[("auth_code", &code)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn bad_password_grant_requests_change_nothing_and_count_nothing() {
    let server = anchor_server(|_| {}).await;
    let before = server.table_counts().await;
    let huge = "p".repeat(1025);
    let forms: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("grant_type", "password"),
            ("client_id", ANCHOR),
            ("password", PASSWORD),
        ],
        vec![
            ("grant_type", "password"),
            ("client_id", ANCHOR),
            ("username", EMAIL),
        ],
        vec![
            ("grant_type", "password"),
            ("client_id", ANCHOR),
            ("username", EMAIL),
            ("password", &huge),
        ],
        vec![
            ("grant_type", "password"),
            ("client_id", ANCHOR),
            ("username", " "),
            ("password", PASSWORD),
        ],
    ];
    for form in forms {
        let (status, body) = server.post_form("/oauth/token", &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {body}");
        assert_eq!(body["error"], "invalid_request", "{form:?}: {body}");
    }
    let token_url = server.url("/oauth/token");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", br#"{"grant_type":"password","client_id":"anchor","username":{"a":1},"password":"x"}"#.to_vec()),
        ("application/json", br#"{"grant_type":"password","client_id":"anchor","username":"alice@example.com""#.to_vec()),
        ("application/json", format!(r#"{{"grant_type":"password","client_id":"anchor","username":"{EMAIL}","password":"{huge}"}}"#).into_bytes()),
        ("application/x-www-form-urlencoded", b"grant_type=password&client_id=anchor&username=alice%40example.com&password=\xff\xfe".to_vec()),
        ("application/x-www-form-urlencoded", b"grant_type=password&client_id=anchor&username=a&username=b&password=x".to_vec()),
        ("text/plain", b"grant_type=password".to_vec()),
    ];
    for (content_type, body) in bodies {
        let response = server
            .http
            .post(&token_url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, json) = keyport_testkit::json_of(response).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}: {json}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            json["error"],
            "invalid_request",
            "{}: {json}",
            String::from_utf8_lossy(&body)
        );
    }
    // A client that does not list the grant.
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", CLI),
                ("username", EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("unauthorized_client"))
    );
    assert_eq!(server.table_counts().await, before, "nothing stored");
    assert_eq!(sign_in_failures(&server).await, 0, "no failure counted");
}

#[tokio::test]
async fn the_password_changes_on_the_security_page() {
    let server = anchor_server(|_| {}).await;
    let (browser, page) = security_page(&server).await;
    let action = "/account/security/password";
    let wrong = browser
        .submit(
            &page,
            action,
            &[
                ("current_password", "not it at all"),
                ("new_password", "a new long password"),
            ],
        )
        .await;
    assert!(
        wrong.contains("The current password is not right."),
        "{wrong}"
    );
    let short = browser
        .submit(
            &page,
            action,
            &[("current_password", PASSWORD), ("new_password", "short")],
        )
        .await;
    assert!(short.contains("at least 8 characters"), "{short}");
    let done = browser
        .submit(
            &page,
            action,
            &[
                ("current_password", PASSWORD),
                ("new_password", "a new long password"),
            ],
        )
        .await;
    assert!(done.contains("Your password is changed."), "{done}");

    let (status, body) = password_grant(&server, &[]).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
    let (status, body) = password_grant(&server, &[("password", "a new long password")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = server.audit_events().await;
    assert!(
        events
            .iter()
            .any(|e| e == "account.password_changed:success"),
        "{events:?}"
    );

    // A session signed in more than 15 minutes ago signs in again first.
    server.clock.advance_secs(16 * 60);
    let page = browser.get(&server.url("/account/security")).await;
    let stale = browser
        .submit(&page, "/account/security/email-codes", &[])
        .await;
    assert!(stale.contains("<h1>Sign in</h1>"), "{stale}");
    let row = sqlx::query("SELECT email_codes FROM users WHERE email = $1")
        .bind(EMAIL)
        .fetch_one(server.kp.store().pool())
        .await
        .unwrap();
    assert_eq!(
        sqlx::Row::get::<i64, _>(&row, "email_codes"),
        0,
        "nothing changed"
    );
}

#[tokio::test]
async fn concurrent_sign_ins_with_the_right_password_wait_for_room_instead_of_locking() {
    let server = anchor_server(|c| c.limits.sign_ins_per_ip_per_minute = 1_000).await;
    let grants = (0..12).map(|_| password_grant(&server, &[]));
    let answers = futures_util::future::join_all(grants).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    assert_eq!(sign_in_failures(&server).await, 0);
}
