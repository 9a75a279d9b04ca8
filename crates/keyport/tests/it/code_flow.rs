//! The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636):
//! the hosted pages over HTTP, the redirect back with `code`, `state` and
//! `iss` (RFC 9207), and the exchange at the token endpoint.

use keyport::domain::clients::ClientSpec;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

pub const APP: &str = "web-app";
pub const APP_REDIRECT: &str = "http://127.0.0.1/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Registers a client for the code flow; returns its secret when confidential.
pub async fn add_app(server: &TestServer, spec: ClientSpec) -> Option<String> {
    let added = keyport::admin::add_client(&server.kp, spec).await.unwrap();
    added["client_secret"].as_str().map(str::to_string)
}

pub fn public_app() -> ClientSpec {
    ClientSpec {
        id: APP.into(),
        name: "Web App".into(),
        grants: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec!["openid email profile offline_access agents:read audit:read".into()],
        redirect_uris: vec![APP_REDIRECT.into()],
        audiences: vec![AUDIENCE.into()],
        ..ClientSpec::default()
    }
}

/// A browser that signs in and consents, but stops at the first redirect
/// that leaves the server (the one carrying the code).
pub struct CodeBrowser {
    pub http: reqwest::Client,
    base: String,
}

/// Where a step of the flow ended.
#[derive(Debug)]
pub enum Landing {
    /// A page on the server (status, HTML).
    Page(StatusCode, String),
    /// A redirect off the server: the client's redirect URI with its query.
    Client(url::Url),
}

impl Landing {
    pub fn page(self) -> (StatusCode, String) {
        match self {
            Landing::Page(status, html) => (status, html),
            Landing::Client(url) => panic!("expected a page, was sent to {url}"),
        }
    }

    pub fn client(self) -> url::Url {
        match self {
            Landing::Client(url) => url,
            Landing::Page(status, html) => panic!("expected a redirect, got {status}:\n{html}"),
        }
    }
}

pub fn query(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl CodeBrowser {
    pub fn new(server: &TestServer) -> Self {
        CodeBrowser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.issuer.clone(),
        }
    }

    async fn land(&self, mut response: reqwest::Response) -> Landing {
        loop {
            if !response.status().is_redirection() {
                let status = response.status();
                return Landing::Page(status, response.text().await.unwrap());
            }
            let location = response.headers()["location"].to_str().unwrap().to_string();
            let next = url::Url::parse(&self.base)
                .unwrap()
                .join(&location)
                .unwrap();
            if !next.as_str().starts_with(&self.base) {
                return Landing::Client(next);
            }
            response = self.http.get(next).send().await.unwrap();
        }
    }

    pub async fn open(&self, url: &str) -> Landing {
        let response = self.http.get(url).send().await.unwrap();
        self.land(response).await
    }

    pub async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Landing {
        let mut form = form_fields(page, action);
        for (k, v) in fields {
            form.insert(k.to_string(), v.to_string());
        }
        let response = self
            .http
            .post(format!("{}{action}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        self.land(response).await
    }

    pub async fn sign_in(&self, page: &str) -> Landing {
        self.submit(page, "/signin", &[("email", EMAIL), ("password", PASSWORD)])
            .await
    }

    /// Opens the authorization URL as a signed-in user and answers the
    /// consent page.
    pub async fn consent(&self, url: &str, decision: &str) -> url::Url {
        let (status, consent) = self.open(url).await.page();
        assert!(
            consent.contains("Approve"),
            "{status}: no consent page:\n{consent}"
        );
        self.submit(&consent, "/oauth/authorize", &[("decision", decision)])
            .await
            .client()
    }

    /// Opens the authorization URL, signs in, and answers the consent page.
    pub async fn authorize(&self, url: &str, decision: &str) -> url::Url {
        let (status, page) = self.open(url).await.page();
        assert_eq!(status, StatusCode::OK, "{page}");
        let (_, consent) = self.sign_in(&page).await.page();
        assert!(consent.contains("Approve"), "no consent page:\n{consent}");
        self.submit(&consent, "/oauth/authorize", &[("decision", decision)])
            .await
            .client()
    }
}

pub fn authorize_url(server: &TestServer, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&server.url("/oauth/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.into()
}

fn pkce_request(redirect: &str) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", redirect),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("scope", "openid email offline_access agents:read"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

/// Exchanges a code of the public app with the PKCE verifier.
pub async fn redeem(server: &TestServer, code: &str, redirect_uri: &str) -> (StatusCode, Value) {
    exchange(
        server,
        &[
            ("client_id", APP),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

pub async fn exchange(server: &TestServer, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut full = vec![("grant_type", "authorization_code")];
    full.extend_from_slice(form);
    server.post_form("/oauth/token", &full).await
}

#[tokio::test]
async fn a_public_client_signs_in_with_pkce_and_the_code_works_once() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let redirect = "http://127.0.0.1:4567/callback";
    let url = authorize_url(&server, &pkce_request(redirect));

    let browser = CodeBrowser::new(&server);
    let response = browser.http.get(&url).send().await.unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:4567"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(page.contains("Web App"), "{page}");
    let (_, consent) = browser.sign_in(&page).await.page();
    assert!(consent.contains("agents:read"), "{consent}");
    assert!(consent.contains("127.0.0.1:4567"), "{consent}");
    let back = browser
        .submit(&consent, "/oauth/authorize", &[("decision", "approve")])
        .await
        .client();
    assert_eq!(back.as_str().split('?').next().unwrap(), redirect);
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(query(&back, "iss").as_deref(), Some(server.issuer.as_str()));
    let code = query(&back, "code").unwrap();

    let (status, tokens) = redeem(&server, &code, redirect).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens["expires_at"].as_str().unwrap().ends_with('Z'),
        "{tokens}"
    );
    assert_eq!(tokens["scope"], "agents:read email offline_access openid");
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["aud"], APP);
    let access = jwt_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["workspace"], "acme");
    assert_eq!(access["client_id"], APP);
    let (status, me) = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], EMAIL);

    // The code again: refused, and what it issued is revoked.
    let (status, again) = redeem(&server, &code, redirect).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");
    let (status, _) = server
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", APP),
                ("refresh_token", refresh),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        server
            .audit_events()
            .await
            .contains(&"token.code_reuse_detected:session_revoked".to_string())
    );
}

#[tokio::test]
async fn pkce_is_required_of_public_clients_and_a_wrong_verifier_burns_the_code() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let browser = CodeBrowser::new(&server);

    // No challenge, or `plain`: an error redirect with state and iss.
    for (challenge, method) in [(None, None), (Some(VERIFIER), Some("plain"))] {
        let mut pairs: Vec<(&str, &str)> = pkce_request(APP_REDIRECT)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("code_challenge"))
            .collect();
        if let (Some(c), Some(m)) = (challenge, method) {
            pairs.push(("code_challenge", c));
            pairs.push(("code_challenge_method", m));
        }
        let back = browser.open(&authorize_url(&server, &pairs)).await.client();
        assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));
        assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
        assert_eq!(query(&back, "iss").as_deref(), Some(server.issuer.as_str()));
        assert!(query(&back, "code").is_none());
    }

    let url = authorize_url(&server, &pkce_request(APP_REDIRECT));
    let code = query(&browser.authorize(&url, "approve").await, "code").unwrap();
    let wrong = "W".repeat(43);
    for verifier in [wrong.as_str(), VERIFIER] {
        let (status, body) = exchange(
            &server,
            &[
                ("client_id", APP),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }

    // Missing verifier: refused as well (and the code is then dead).
    let code = query(&browser.consent(&url, "approve").await, "code").unwrap();
    let (_, body) = exchange(
        &server,
        &[
            ("client_id", APP),
            ("code", &code),
            ("redirect_uri", APP_REDIRECT),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_confidential_client_authenticates_and_cannot_be_downgraded() {
    let server = TestServer::start().await;
    let secret = add_app(
        &server,
        ClientSpec {
            id: "portal".into(),
            name: "Portal".into(),
            confidential: true,
            redirect_uris: vec!["https://portal.example.com/cb".into()],
            ..public_app()
        },
    )
    .await
    .unwrap();
    let browser = CodeBrowser::new(&server);
    let pairs = [
        ("response_type", "code"),
        ("client_id", "portal"),
        ("redirect_uri", "https://portal.example.com/cb"),
        ("state", "s"),
        ("scope", "openid"),
    ];
    let url = authorize_url(&server, &pairs);
    let code = query(&browser.authorize(&url, "approve").await, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://portal.example.com/cb"),
    ];
    // Without the secret: invalid_client, and the code still works after.
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[&form[..], &[("client_id", "portal")]].concat(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth("portal", Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, tokens) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["id_token"].is_string());

    // A verifier for a code issued without a challenge: a downgrade.
    let code = query(&browser.consent(&url, "approve").await, "code").unwrap();
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "portal"),
                ("client_secret", &secret),
                ("code", &code),
                ("redirect_uri", "https://portal.example.com/cb"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn every_redirect_uri_mismatch_gets_a_page_and_no_redirect() {
    let server = TestServer::start().await;
    add_app(
        &server,
        ClientSpec {
            redirect_uris: vec![APP_REDIRECT.into(), "https://app.example.com/cb".into()],
            ..public_app()
        },
    )
    .await;
    let browser = CodeBrowser::new(&server);
    for uri in [
        "https://app.example.com/cb?extra=1",
        "https://app.example.com/cb/",
        "https://evil.example.com/cb",
        "http://app.example.com/cb",
        "https://app.example.com/other",
        "http://127.0.0.1:4000/callback/",
        "http://localhost:4000/callback",
    ] {
        let url = authorize_url(&server, &pkce_request(uri));
        let response = browser.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(response.headers().get("location").is_none(), "{uri}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("Authorization request refused"),
            "{uri}: {page}"
        );
    }
    // An unknown client: the same page.
    let url = authorize_url(
        &server,
        &[("client_id", "nobody"), ("redirect_uri", APP_REDIRECT)],
    );
    let (status, _) = browser.open(&url).await.page();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A loopback URI on another port is the registered one (RFC 8252 §7.3).
    let url = authorize_url(&server, &pkce_request("http://127.0.0.1:4000/callback"));
    let (status, page) = browser.open(&url).await.page();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Sign in"));
}

#[tokio::test]
async fn codes_expire_after_a_minute_and_denial_goes_back_with_state_and_iss() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let browser = CodeBrowser::new(&server);
    let url = authorize_url(&server, &pkce_request(APP_REDIRECT));
    let code = query(&browser.authorize(&url, "approve").await, "code").unwrap();
    server.clock.advance_secs(61);
    let (_, body) = redeem(&server, &code, APP_REDIRECT).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let (_, consent) = browser.open(&url).await.page();
    let back = browser
        .submit(&consent, "/oauth/authorize", &[("decision", "deny")])
        .await
        .client();
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(query(&back, "iss").as_deref(), Some(server.issuer.as_str()));
}

#[tokio::test]
async fn prompt_none_first_party_and_csrf() {
    let server = TestServer::start().await;
    // First-party is for confidential clients only (RFC 8252 §8.6).
    let refused = keyport::admin::add_client(
        &server.kp,
        ClientSpec {
            id: "public-fp".into(),
            first_party: true,
            ..public_app()
        },
    )
    .await;
    assert!(refused.is_err());
    add_app(
        &server,
        ClientSpec {
            first_party: true,
            confidential: true,
            ..public_app()
        },
    )
    .await;
    let browser = CodeBrowser::new(&server);
    let mut pairs = pkce_request(APP_REDIRECT);
    pairs.push(("prompt", "none"));
    let back = browser.open(&authorize_url(&server, &pairs)).await.client();
    assert_eq!(query(&back, "error").as_deref(), Some("login_required"));
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"));

    // First-party: sign in, and the code comes back with no consent page.
    let url = authorize_url(&server, &pkce_request(APP_REDIRECT));
    let (_, page) = browser.open(&url).await.page();
    let back = browser.sign_in(&page).await.client();
    assert!(query(&back, "code").is_some(), "{back}");
    // Signed in now, `prompt=none` answers with a code at once.
    let back = browser.open(&authorize_url(&server, &pairs)).await.client();
    assert!(query(&back, "code").is_some(), "{back}");

    // `prompt=consent` asks even a first-party client's user; a post
    // without the CSRF token is refused and issues nothing.
    let mut pairs = pkce_request(APP_REDIRECT);
    pairs.push(("prompt", "consent"));
    let (_, consent) = browser.open(&authorize_url(&server, &pairs)).await.page();
    assert!(consent.contains("Approve"));
    let before = server.table_counts().await;
    let mut form = form_fields(&consent, "/oauth/authorize");
    form.remove("csrf_token");
    form.insert("decision".into(), "approve".into());
    let response = browser
        .http
        .post(server.url("/oauth/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("location").is_none());
    assert_eq!(server.table_counts().await, before);
}

#[tokio::test]
async fn names_are_escaped_on_the_consent_page() {
    let server = TestServer::start().await;
    add_app(
        &server,
        ClientSpec {
            name: "<script>alert(1)</script>".into(),
            ..public_app()
        },
    )
    .await;
    let browser = CodeBrowser::new(&server);
    let mut pairs = pkce_request(APP_REDIRECT);
    pairs.retain(|(k, _)| *k != "state");
    pairs.push(("state", "\"><img src=x onerror=alert(1)>"));
    let (_, page) = browser.open(&authorize_url(&server, &pairs)).await.page();
    let (_, consent) = browser.sign_in(&page).await.page();
    assert!(!consent.contains("<script>alert(1)"), "{consent}");
    assert!(
        consent.contains("&lt;script&gt;") || consent.contains("&#60;script&#62;"),
        "{consent}"
    );
    assert!(!consent.contains("<img src=x"), "{consent}");
    // The state still round-trips exactly.
    let back = browser
        .submit(&consent, "/oauth/authorize", &[("decision", "approve")])
        .await
        .client();
    assert_eq!(
        query(&back, "state").as_deref(),
        Some("\"><img src=x onerror=alert(1)>")
    );
}

#[tokio::test]
async fn bad_authorization_and_exchange_requests_store_nothing() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let before = server.table_counts().await;
    let browser = CodeBrowser::new(&server);
    for query_text in [
        "",
        "client_id=",
        "client_id=web-app&redirect_uri=%ZZ",
        "client_id=web-app&client_id=web-app",
        "client_id=web-app&redirect_uri=http://127.0.0.1/callback&response_type=token",
        "client_id=web-app&redirect_uri=http://127.0.0.1/callback&response_type=code&scope=nope",
        "client_id=web-app&redirect_uri=http://127.0.0.1/callback&response_type=code&resource=https://other",
        "client_id=\u{0}&redirect_uri=\u{ff}",
    ] {
        let response = browser
            .http
            .get(format!("{}/oauth/authorize?{query_text}", server.issuer))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error() || response.status().is_redirection(),
            "{query_text}: {}",
            response.status()
        );
    }
    for form in [
        vec![("client_id", APP)],
        vec![("client_id", APP), ("code", "")],
        vec![
            ("client_id", APP),
            ("code", "kp_ac_nothing"),
            ("redirect_uri", APP_REDIRECT),
        ],
        vec![("client_id", APP), ("code", &"x".repeat(5000))],
        vec![("client_id", RS), ("code", "kp_ac_nothing")],
    ] {
        let (status, body) = exchange(&server, &form).await;
        assert!(status.is_client_error(), "{form:?}: {status} {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(server.table_counts().await, before);
}

#[tokio::test]
async fn opaque_tokens_and_prefixes_are_per_client() {
    let server = TestServer::start().await;
    add_app(
        &server,
        ClientSpec {
            access_token_format: Some("opaque".into()),
            access_token_prefix: Some("ays_oauth_".into()),
            refresh_token_prefix: Some("ays_refresh_".into()),
            ..public_app()
        },
    )
    .await;
    let browser = CodeBrowser::new(&server);
    let mut pairs = pkce_request(APP_REDIRECT);
    pairs.retain(|(k, _)| *k != "scope");
    pairs.push(("scope", "openid email offline_access agents:read"));
    pairs.push(("resource", AUDIENCE));
    let url = authorize_url(&server, &pairs);
    let code = query(&browser.authorize(&url, "approve").await, "code").unwrap();
    let (status, tokens) = redeem(&server, &code, APP_REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert!(access.starts_with("ays_oauth_"), "{access}");
    assert!(!access.contains('.'));
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("ays_refresh_"), "{refresh}");
    let (status, me) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let seen = server.introspect(access).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], APP);
    // The ID token's at_hash covers the opaque token too.
    assert!(jwt_claims(tokens["id_token"].as_str().unwrap())["at_hash"].is_string());
    // RFC 7009 revokes the opaque token itself; the session lives on.
    let (status, _) = server
        .post_form("/oauth/revoke", &[("client_id", APP), ("token", access)])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.userinfo(access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.introspect(access).await["active"], false);

    let (status, rotated) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", APP),
                ("refresh_token", refresh),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(
        rotated["access_token"]
            .as_str()
            .unwrap()
            .starts_with("ays_oauth_")
    );
    // Revoking the refresh token ends the session: the opaque token dies too.
    let (status, _) = server
        .post_form(
            "/oauth/revoke",
            &[
                ("client_id", APP),
                ("token", rotated["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .userinfo(rotated["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_rotated_secret_keeps_working_for_its_grace_period() {
    let server = TestServer::start().await;
    let old = server.rs_secret.clone();
    let rotated = keyport::admin::rotate_client_secret(&server.kp, RS, 3600)
        .await
        .unwrap();
    let new = rotated["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let grant = |secret: String| {
        let server = &server;
        async move {
            let response = server
                .http
                .post(server.url("/oauth/token"))
                .basic_auth(RS, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            response.status()
        }
    };
    assert_eq!(grant(old.clone()).await, StatusCode::OK);
    assert_eq!(grant(new.clone()).await, StatusCode::OK);
    server.clock.advance_secs(3601);
    assert_eq!(grant(old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(grant(new).await, StatusCode::OK);
    // A public client has no secret to rotate.
    let refused = keyport::admin::rotate_client_secret(&server.kp, CLI, 60).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn access_tokens_are_signed_with_the_algorithm_each_client_chose() {
    let server = TestServer::start().await;
    let jwks: jsonwebtoken::jwk::JwkSet = server.get_json("/oauth/jwks").await;
    for alg in ["EdDSA", "ES256", "RS256"] {
        let id = format!("svc-{}", alg.to_lowercase());
        let secret = add_app(
            &server,
            ClientSpec {
                id: id.clone(),
                name: alg.into(),
                confidential: true,
                grants: vec!["client_credentials".into()],
                scopes: vec!["agents:read".into()],
                access_token_alg: Some(alg.into()),
                ..ClientSpec::default()
            },
        )
        .await
        .unwrap();
        let response = server
            .http
            .post(server.url("/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let (status, tokens) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let token = tokens["access_token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        // Any relying party verifies it with the published key.
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid in JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[&server.issuer]);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
        assert_eq!(data.claims["client_id"], id.as_str());
        let seen = server.introspect_as(&id, &secret, token).await;
        assert_eq!(seen["active"], true, "{seen}");
    }
    let metadata: Value = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        metadata["access_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA", "RS256"])
    );
}

#[tokio::test]
async fn housekeeping_prunes_old_codes_and_expired_opaque_tokens() {
    let server = TestServer::start().await;
    add_app(
        &server,
        ClientSpec {
            access_token_format: Some("opaque".into()),
            ..public_app()
        },
    )
    .await;
    let browser = CodeBrowser::new(&server);
    let url = authorize_url(&server, &pkce_request(APP_REDIRECT));
    let code = query(&browser.authorize(&url, "approve").await, "code").unwrap();
    let (status, _) = redeem(&server, &code, APP_REDIRECT).await;
    assert_eq!(status, StatusCode::OK);
    let count = |table: &'static str| {
        let server = &server;
        async move {
            let sql = format!("SELECT COUNT(*) AS n FROM {table}");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(server.kp.store().pool())
                .await
                .unwrap();
            sqlx::Row::get::<i64, _>(&row, "n")
        }
    };
    assert_eq!(count("authorization_codes").await, 1);
    assert_eq!(count("access_tokens").await, 1);
    // A redeemed code is kept a day past its expiry, so a late reuse is
    // still caught; then it goes, with the expired opaque token.
    server.clock.advance_secs(3600);
    server.kp.housekeeping().await.unwrap();
    assert_eq!(count("authorization_codes").await, 1);
    assert_eq!(count("access_tokens").await, 0);
    server.clock.advance_secs(86_400);
    server.kp.housekeeping().await.unwrap();
    assert_eq!(count("authorization_codes").await, 0);
}

#[tokio::test]
async fn racing_exchanges_of_one_code_leave_no_tokens_standing() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let browser = CodeBrowser::new(&server);
    let url = authorize_url(&server, &pkce_request(APP_REDIRECT));
    let code = query(&browser.authorize(&url, "approve").await, "code").unwrap();
    let results =
        futures_util::future::join_all((0..4).map(|_| redeem(&server, &code, APP_REDIRECT))).await;
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    // Every loser was a reuse: what the winner got is revoked.
    let (status, _) = server
        .userinfo(winners[0]["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_resource_named_at_the_exchange_must_be_the_authorized_one() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let browser = CodeBrowser::new(&server);
    let mut pairs = pkce_request(APP_REDIRECT);
    pairs.push(("resource", AUDIENCE));
    let code = query(
        &browser
            .authorize(&authorize_url(&server, &pairs), "approve")
            .await,
        "code",
    )
    .unwrap();
    let form = |resource: &'static str| {
        vec![
            ("client_id", APP),
            ("code", code.as_str()),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", resource),
        ]
    };
    let (status, body) = exchange(&server, &form("https://other.example.com")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target", "{body}");
    // The code was not used up.
    let (status, body) = exchange(&server, &form(AUDIENCE)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["aud"],
        AUDIENCE
    );
    // A repeated parameter gets the error page, not a bare 400.
    let repeated = format!(
        "{}&client_id={APP}",
        authorize_url(&server, &pkce_request(APP_REDIRECT))
    );
    let response = browser.http.get(repeated).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Authorization request refused")
    );
}

#[tokio::test]
async fn a_member_of_several_workspaces_chooses_one_and_the_token_carries_it() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    keyport::admin::add_workspace(&server.kp, "globex", "Globex")
        .await
        .unwrap();
    keyport::admin::add_member(&server.kp, "globex", EMAIL, "viewer")
        .await
        .unwrap();
    let browser = CodeBrowser::new(&server);
    let mut pairs = pkce_request(APP_REDIRECT);
    pairs.retain(|(k, _)| *k != "scope");
    pairs.push(("scope", "openid offline_access agents:read audit:read"));
    let url = authorize_url(&server, &pairs);
    let (_, page) = browser.open(&url).await.page();
    let (_, choice) = browser.sign_in(&page).await.page();
    assert!(choice.contains("Choose a workspace"), "{choice}");
    assert!(choice.contains("<label for=\"workspace\">Workspace</label>"));
    // The GET form carries the request; pick the viewer workspace.
    let mut fields = form_fields(&choice, "/oauth/authorize");
    fields.insert("workspace".into(), "globex".into());
    let mut next = url::Url::parse(&server.url("/oauth/authorize")).unwrap();
    next.query_pairs_mut().extend_pairs(fields.iter());
    let (_, consent) = browser.open(next.as_str()).await.page();
    assert!(consent.contains("Globex"), "{consent}");
    assert!(
        consent.contains("not granted"),
        "a viewer may not have audit:read: {consent}"
    );
    let back = browser
        .submit(&consent, "/oauth/authorize", &[("decision", "approve")])
        .await
        .client();
    let (status, tokens) = redeem(&server, &query(&back, "code").unwrap(), APP_REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = jwt_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["workspace"], "globex");
    assert_eq!(access["role"], "viewer");
    assert_eq!(access["scope"], "agents:read offline_access openid");
}
