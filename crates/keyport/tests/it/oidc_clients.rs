//! OpenID Connect clients nobody on the team wrote sign in with the
//! authorization code flow and PKCE: the `openidconnect` crate, and Python's
//! Authlib run as a child process. Each discovers the provider from the
//! issuer, builds its own authorization URL (S256 challenge, state, nonce),
//! checks the RFC 9207 `iss` in the redirect, redeems the code, verifies the
//! RS256 ID token against the JWKS (nonce, at_hash) and calls userinfo.
//! `CodeBrowser` plays the user: it signs in and approves the consent page.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use keyport::domain::clients::ClientSpec;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AsyncHttpClient, AuthType, AuthorizationCode,
    ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::code_flow::{APP, APP_REDIRECT, CodeBrowser, add_app, public_app, query};
use crate::support::*;

const CONFIDENTIAL: &str = "oidc-portal";
const CONFIDENTIAL_REDIRECT: &str = "https://portal.example.com/oidc/callback";

/// A confidential web app for the code flow; returns its secret.
async fn add_confidential_app(server: &TestServer) -> String {
    add_app(
        server,
        ClientSpec {
            id: CONFIDENTIAL.into(),
            name: "OIDC Portal".into(),
            confidential: true,
            redirect_uris: vec![CONFIDENTIAL_REDIRECT.into()],
            ..public_app()
        },
    )
    .await
    .expect("a confidential client has a secret")
}

// ---------------------------------------------------------------------------
// The `openidconnect` crate

/// `openidconnect`'s HTTP client trait over the workspace's reqwest 0.13:
/// the crate's own `reqwest` feature would use reqwest 0.12.
struct Http(reqwest::Client);

impl Http {
    fn new() -> Self {
        // No redirects, as the crate's docs advise (SSRF).
        Http(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(std::io::Error::other)?;
            let response = self
                .0
                .execute(request)
                .await
                .map_err(std::io::Error::other)?;
            let mut builder = openidconnect::http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await.map_err(std::io::Error::other)?;
            builder.body(body.to_vec()).map_err(std::io::Error::other)
        })
    }
}

/// The one discovery field RFC 9207 adds, which the crate's core metadata
/// does not know.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct IssParameterMetadata {
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for IssParameterMetadata {}

/// `CoreProviderMetadata` plus the RFC 9207 field.
type KeyportProviderMetadata = ProviderMetadata<
    IssParameterMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// An error and its causes on one line, for assertion messages.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The whole flow as a relying party built on `openidconnect` runs it.
async fn openidconnect_code_flow(
    server: &TestServer,
    client_id: &str,
    secret: Option<String>,
    redirect: &str,
) {
    let http = Http::new();
    let issuer = IssuerUrl::new(server.issuer.clone()).unwrap();
    let metadata = KeyportProviderMetadata::discover_async(issuer, &http)
        .await
        .unwrap_or_else(|e| panic!("discovery: {}", chain(&e)));
    assert!(
        metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported,
        "discovery does not advertise RFC 9207 iss"
    );
    let discovered_issuer = metadata.issuer().clone();
    let confidential = secret.is_some();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.into()),
        secret.map(ClientSecret::new),
    )
    // client_secret_basic for the confidential client; with no secret the
    // crate sends client_id in the body (auth method `none`).
    .set_auth_type(AuthType::BasicAuth)
    .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());

    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("openid email profile")
    );

    let back = CodeBrowser::new(server)
        .authorize(url.as_str(), "approve")
        .await;
    assert_eq!(back.as_str().split('?').next().unwrap(), redirect);
    assert_eq!(query(&back, "error"), None, "{back}");
    // The crate leaves the redirect to the application: state, and RFC 9207
    // §2.4's iss against the issuer discovery returned.
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query(&back, "iss").as_deref(),
        Some(discovered_issuer.as_str()),
        "RFC 9207: the redirect's iss is the discovered issuer"
    );
    let code = AuthorizationCode::new(query(&back, "code").expect("a code"));

    let tokens = client
        .exchange_code(code)
        .expect("discovery gave a token endpoint")
        .set_pkce_verifier(pkce_verifier)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("code exchange ({client_id}): {}", chain(&e)));
    assert_eq!(
        tokens.token_type(),
        &openidconnect::core::CoreTokenType::Bearer
    );
    assert!(tokens.expires_in().is_some());

    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    // Signature against the JWKS, iss, aud, exp, iat and the nonce.
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("ID token ({client_id}): {}", chain(&e)));
    let alg = id_token.signing_alg().unwrap();
    assert_eq!(alg, &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
    let key = id_token.signing_key(&verifier).unwrap();
    let at_hash = AccessTokenHash::from_token(tokens.access_token(), alg, key).unwrap();
    assert_eq!(
        claims.access_token_hash(),
        Some(&at_hash),
        "at_hash covers the access token"
    );
    assert_eq!(claims.issuer(), &discovered_issuer);
    assert_eq!(claims.audiences().len(), 1);
    assert_eq!(claims.audiences()[0].as_str(), client_id);
    assert_eq!(claims.email().map(|e| e.as_str()), Some(EMAIL));
    // The verifier is not a rubber stamp: another nonce is refused.
    assert!(
        id_token
            .claims(&verifier, &Nonce::new("another-nonce".into()))
            .is_err()
    );

    let userinfo: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .expect("discovery gave a userinfo endpoint")
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("userinfo ({client_id}): {}", chain(&e)));
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(userinfo.email().map(|e| e.as_str()), Some(EMAIL));

    if confidential {
        // The same flow without the secret: the token endpoint refuses it.
        let bare = CoreClient::from_provider_metadata(
            KeyportProviderMetadata::discover_async(discovered_issuer.clone(), &http)
                .await
                .unwrap(),
            ClientId::new(client_id.into()),
            None,
        )
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _, _) = bare
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .url();
        let back = CodeBrowser::new(server)
            .authorize(url.as_str(), "approve")
            .await;
        let refused = bare
            .exchange_code(AuthorizationCode::new(query(&back, "code").unwrap()))
            .unwrap()
            .set_pkce_verifier(pkce_verifier)
            .request_async(&http)
            .await;
        match refused {
            Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                assert_eq!(
                    e.error(),
                    &openidconnect::core::CoreErrorResponseType::InvalidClient
                );
            }
            other => panic!("expected invalid_client, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn openidconnect_crate_public_client_with_pkce() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    openidconnect_code_flow(&server, APP, None, APP_REDIRECT).await;
}

#[tokio::test]
async fn openidconnect_crate_confidential_client_with_client_secret_basic() {
    let server = TestServer::start().await;
    let secret = add_confidential_app(&server).await;
    openidconnect_code_flow(&server, CONFIDENTIAL, Some(secret), CONFIDENTIAL_REDIRECT).await;
}

// ---------------------------------------------------------------------------
// Authlib (Python), as a child process

const AUTHLIB_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/authlib_code_flow.py"
);
const AUTHLIB_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails (never skips) when python3 cannot import Authlib and requests.
async fn require_authlib() {
    let hint = "`.ci/run` installs them (python3 -m pip install 'authlib>=1.3' requests)";
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import authlib, requests"])
        .stdin(Stdio::null())
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import Authlib and requests: {hint}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            panic!("no python3 ({e}); the Authlib tests need it with Authlib and requests: {hint}")
        }
    }
}

/// How an Authlib run ended.
struct AuthlibRun {
    /// The URL Authlib built.
    authorization_url: url::Url,
    /// The last line it printed, when it was JSON: the summary.
    summary: Option<Value>,
    success: bool,
    stderr: String,
}

/// Runs the script for `client_id`; the browser signs in and approves the
/// URL the script built, and `tamper` may change the redirect before the
/// script gets it.
async fn authlib_code_flow(
    server: &TestServer,
    client: &[&str],
    tamper: impl FnOnce(url::Url) -> url::Url,
) -> AuthlibRun {
    require_authlib().await;
    let mut child = tokio::process::Command::new("python3")
        .arg(AUTHLIB_SCRIPT)
        .args(["--issuer", &server.issuer])
        .args(client)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdin = child.stdin.take().unwrap();

    let run = async {
        let first = stdout.next_line().await.unwrap();
        let Some(first) = first else {
            let _ = child.wait().await;
            panic!(
                "the Authlib script printed no authorization URL:\n{}",
                stderr.await.unwrap()
            );
        };
        let first: Value = serde_json::from_str(&first).expect("a JSON line");
        let authorization_url =
            url::Url::parse(first["authorization_url"].as_str().unwrap()).unwrap();
        let back = CodeBrowser::new(server)
            .authorize(authorization_url.as_str(), "approve")
            .await;
        let back = tamper(back);
        stdin
            .write_all(format!("{back}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let mut last = None;
        while let Some(line) = stdout.next_line().await.unwrap() {
            last = Some(line);
        }
        let status = child.wait().await.unwrap();
        AuthlibRun {
            authorization_url,
            summary: last.and_then(|l| serde_json::from_str(&l).ok()),
            success: status.success(),
            stderr: stderr.await.unwrap(),
        }
    };
    tokio::time::timeout(AUTHLIB_TIMEOUT, run)
        .await
        .expect("the Authlib script finished in time")
}

/// What every successful Authlib run must have seen.
fn assert_authlib_signed_in(server: &TestServer, run: &AuthlibRun, client_id: &str) -> Value {
    assert!(run.success, "Authlib failed:\n{}", run.stderr);
    let summary = run.summary.clone().expect("a JSON summary");
    // The URL Authlib built: S256 challenge, state and nonce.
    let url = &run.authorization_url;
    assert_eq!(query(url, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query(url, "code_challenge").is_some_and(|c| c.len() == 43));
    assert!(query(url, "nonce").is_some());
    assert_eq!(
        query(url, "state"),
        summary["authorization_response"]["state"]
            .as_str()
            .map(str::to_string)
    );
    assert_eq!(summary["issuer"], server.issuer.as_str());
    assert_eq!(
        summary["authorization_response"]["iss"],
        server.issuer.as_str()
    );
    assert_eq!(summary["token"]["token_type"], "Bearer", "{summary}");
    assert_eq!(
        summary["token"]["scope"], "email openid profile",
        "{summary}"
    );
    let id = &summary["id_token"];
    assert_eq!(id["header"]["alg"], "RS256", "{summary}");
    assert!(id["header"]["kid"].is_string(), "{summary}");
    assert_eq!(id["claims"]["iss"], server.issuer.as_str());
    assert_eq!(id["claims"]["aud"], client_id);
    assert_eq!(id["claims"]["email"], EMAIL);
    assert_eq!(
        id["claims"]["nonce"].as_str(),
        query(url, "nonce").as_deref()
    );
    assert_eq!(id["nonce_matched"], true);
    assert_eq!(id["at_hash_verified"], true);
    assert_eq!(summary["userinfo"]["sub"], id["claims"]["sub"]);
    assert_eq!(summary["userinfo"]["email"], EMAIL);
    summary
}

#[tokio::test]
async fn authlib_public_client_with_pkce() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let run = authlib_code_flow(
        &server,
        &["--client-id", APP, "--redirect-uri", APP_REDIRECT],
        |back| back,
    )
    .await;
    let summary = assert_authlib_signed_in(&server, &run, APP);
    assert_eq!(summary["token_endpoint_auth_method"], "none");
}

#[tokio::test]
async fn authlib_confidential_client_with_client_secret_basic_and_post() {
    let server = TestServer::start().await;
    let secret = add_confidential_app(&server).await;
    for method in ["client_secret_basic", "client_secret_post"] {
        let run = authlib_code_flow(
            &server,
            &[
                "--client-id",
                CONFIDENTIAL,
                "--redirect-uri",
                CONFIDENTIAL_REDIRECT,
                "--client-secret",
                &secret,
                "--auth-method",
                method,
            ],
            |back| back,
        )
        .await;
        let summary = assert_authlib_signed_in(&server, &run, CONFIDENTIAL);
        assert_eq!(summary["token_endpoint_auth_method"], method);
    }
}

/// RFC 9207 §2.4: a redirect whose `iss` is another issuer's, or that has
/// none although discovery promises it, is rejected before the code is
/// redeemed (the mix-up defence).
#[tokio::test]
async fn authlib_rejects_a_redirect_with_a_wrong_or_missing_iss() {
    let server = TestServer::start().await;
    add_app(&server, public_app()).await;
    let swap_iss = |to: Option<&'static str>| {
        move |back: url::Url| {
            let mut out = back.clone();
            out.query_pairs_mut()
                .clear()
                .extend_pairs(back.query_pairs().filter(|(k, _)| k != "iss"));
            if let Some(to) = to {
                out.query_pairs_mut().append_pair("iss", to);
            }
            out
        }
    };
    let args = ["--client-id", APP, "--redirect-uri", APP_REDIRECT];
    for (tamper, refusal) in [
        (
            swap_iss(Some("https://attacker.example")),
            "is not the discovered issuer",
        ),
        (swap_iss(None), "iss missing"),
    ] {
        let run = authlib_code_flow(&server, &args, tamper).await;
        assert!(!run.success, "Authlib took a tampered redirect");
        assert!(run.summary.is_none());
        assert!(
            run.stderr.contains("RFC 9207") && run.stderr.contains(refusal),
            "{}",
            run.stderr
        );
    }
    // Neither code reached the token endpoint.
    let events = server.audit_events().await;
    assert!(
        events.iter().any(|e| e.starts_with("authorize.")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("token.")),
        "{events:?}"
    );
}
