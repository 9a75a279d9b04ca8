//! keyport-client's resource-server helper against the real server: JWTs
//! from the JWKS (following a key rotation), the audience, opaque tokens
//! and API keys through cached introspection, revocation noticed within
//! the cache bound, and RFC 6750 answers from its axum extractor.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use keyport::admin;
use keyport::domain::clients::ClientSpec;
use keyport_client::resource::{Bearer, Refusal, ResourceServer, TokenKind};
use reqwest::StatusCode;
use serde_json::Value;

use crate::dashboard::{create_key, signed_in};
use crate::support::*;

async fn resource_server(server: &TestServer, audience: &str) -> ResourceServer {
    ResourceServer::builder(&server.issuer, audience)
        .introspection(RS, &server.rs_secret)
        .cache_ttl(Duration::from_secs(1))
        .jwks_refetch(Duration::ZERO)
        .scopes_supported(&["agents:read", "agents:write"])
        .build()
        .await
        .unwrap()
}

/// An API on the helper: `GET /agents` needs `agents:read`.
async fn serve_api(rs: ResourceServer) -> String {
    async fn agents(Bearer(who): Bearer) -> Result<String, Refusal> {
        who.require(&["agents:read"])?;
        Ok(format!("agents of {}", who.subject))
    }
    async fn deploy(Bearer(who): Bearer) -> Result<String, Refusal> {
        who.require(&["agents:write", "operations:write"])?;
        Ok("deployed".into())
    }
    let app = Router::new()
        .route("/agents", get(agents))
        .route("/deploy", get(deploy))
        .with_state(rs.clone())
        .merge(rs.metadata_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn jwts_verify_against_the_jwks_and_follow_a_key_rotation() {
    let server = TestServer::start().await;
    let rs = resource_server(&server, AUDIENCE).await;
    let tokens = server.login().await;
    let access = tokens["access_token"].as_str().unwrap();

    let who = rs.verify(access).await.unwrap();
    assert_eq!(who.kind, TokenKind::Jwt);
    assert_eq!(who.client_id.as_deref(), Some(CLI));
    assert_eq!(who.workspace.as_deref(), Some("acme"));
    assert_eq!(who.role.as_deref(), Some("admin"));
    assert!(who.has_scope("agents:read"), "{who:?}");

    // Another API's helper refuses a token for this one.
    let other = resource_server(&server, "https://other.example.com").await;
    let refused = other.verify(access).await.unwrap_err();
    assert_eq!(refused.error, Some("invalid_token"));
    assert!(refused.description.contains("audience"), "{refused}");

    // A tampered token does not verify.
    let mut tampered = access.to_string();
    tampered.insert(tampered.len() - 5, 'A');
    assert_eq!(
        rs.verify(&tampered).await.unwrap_err().error,
        Some("invalid_token")
    );

    // Rotation: new tokens are signed by a key the helper has not seen.
    admin::rotate_keys(&server.kp).await.unwrap();
    let rotated = server.login().await;
    let rotated = rotated["access_token"].as_str().unwrap();
    let kid = |jwt: &str| jsonwebtoken_kid(jwt);
    assert_ne!(kid(rotated), kid(access), "the rotation changed the key");
    assert_eq!(rs.verify(rotated).await.unwrap().kind, TokenKind::Jwt);
}

fn jsonwebtoken_kid(jwt: &str) -> String {
    use base64::Engine;
    let header = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn opaque_tokens_and_api_keys_are_introspected_and_revocation_shows_within_the_cache_bound() {
    let server = TestServer::start().await;
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: "opaque-svc".into(),
            name: "Opaque service".into(),
            confidential: true,
            grants: vec!["client_credentials".into()],
            scopes: vec!["agents:read".into()],
            audiences: vec![AUDIENCE.into()],
            access_token_format: Some("opaque".into()),
            ..ClientSpec::default()
        },
    )
    .await
    .unwrap();
    let secret = admin::rotate_client_secret(&server.kp, "opaque-svc", 0)
        .await
        .unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth("opaque-svc", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("resource", AUDIENCE)])
        .send()
        .await
        .unwrap();
    let (status, tokens) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let opaque = tokens["access_token"].as_str().unwrap();
    assert_eq!(opaque.split('.').count(), 1, "opaque: {opaque}");

    let rs = resource_server(&server, AUDIENCE).await;
    let who = rs.verify(opaque).await.unwrap();
    assert_eq!(who.kind, TokenKind::Opaque);
    assert_eq!(who.scopes, vec!["agents:read".to_string()]);

    // An API key, made on the dashboard, is introspected too.
    let (browser, _) = signed_in(&server, "/dashboard/api-keys").await;
    let key = create_key(&browser, &server, "script", &["agents:read"]).await;
    let who = rs.verify(&key).await.unwrap();
    assert_eq!(who.kind, TokenKind::ApiKey);
    assert_eq!(who.workspace.as_deref(), Some("acme"));
    assert!(who.has_scope("agents:read"));

    // A JWT of a session revoked at the server: with check_revocation the
    // helper notices within its cache bound (1 s here).
    let checking = ResourceServer::builder(&server.issuer, AUDIENCE)
        .introspection(RS, &server.rs_secret)
        .cache_ttl(Duration::from_secs(1))
        .check_revocation(true)
        .build()
        .await
        .unwrap();
    let tokens = server.login().await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(checking.verify(access).await.is_ok());
    assert!(rs.verify(access).await.is_ok());
    let sessions = admin::list_sessions(&server.kp, None).await.unwrap();
    let sid = sessions[0]["id"].as_str().unwrap();
    admin::revoke_session(&server.kp, sid).await.unwrap();
    assert!(
        checking.verify(access).await.is_ok(),
        "cached for up to a second"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = checking.verify(access).await.unwrap_err();
    assert_eq!(refused.error, Some("invalid_token"));
    assert!(
        rs.verify(access).await.is_ok(),
        "without check_revocation a JWT holds until it expires"
    );

    // The opaque token, revoked: refused once the cache entry is stale.
    let response = server
        .http
        .post(server.url("/oauth/revoke"))
        .basic_auth("opaque-svc", Some(&secret))
        .form(&[("token", opaque)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        rs.verify(opaque).await.unwrap_err().error,
        Some("invalid_token")
    );
}

#[tokio::test]
async fn the_extractor_answers_as_rfc_6750_and_9728_say() {
    let server = TestServer::start().await;
    let rs = resource_server(&server, AUDIENCE).await;
    let api = serve_api(rs).await;
    let http = reqwest::Client::new();
    let challenge = |response: &reqwest::Response| {
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let metadata_url = format!("{AUDIENCE}/.well-known/oauth-protected-resource");

    // No token: 401, a bare challenge pointing at the metadata.
    let response = http.get(format!("{api}/agents")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let header = challenge(&response);
    assert!(header.starts_with("Bearer "), "{header}");
    assert!(!header.contains("error="), "{header}");
    assert!(
        header.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{header}"
    );

    // A bad token: 401 invalid_token.
    let response = http
        .get(format!("{api}/agents"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("error=\"invalid_token\""));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    // A good token: 200; a scope it lacks: 403 insufficient_scope naming it.
    let tokens = server.login().await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = http
        .get(format!("{api}/agents"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().starts_with("agents of "));
    let response = http
        .get(format!("{api}/deploy"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let header = challenge(&response);
    assert!(header.contains("error=\"insufficient_scope\""), "{header}");
    assert!(
        header.contains("scope=\"agents:write operations:write\""),
        "{header}"
    );

    // Two Authorization headers: 400 invalid_request.
    let response = http
        .get(format!("{api}/agents"))
        .header("authorization", format!("Bearer {access}"))
        .header("authorization", "Bearer other")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // RFC 9728 metadata.
    let document: Value = http
        .get(format!("{api}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["resource"], AUDIENCE);
    assert_eq!(document["authorization_servers"][0], server.issuer.as_str());
    assert_eq!(document["scopes_supported"][1], "agents:write");
}
