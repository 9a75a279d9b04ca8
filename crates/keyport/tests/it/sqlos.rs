//! Seed 004 (SqlOS): its example requests sent as the document writes them
//! (form bodies under `/sqlos/auth`, one pair per line; only the host
//! changed) against a server with a `sqlos` profile and the seed's CLI
//! client declared in the configuration, and the documented answers
//! checked, errors included. The mount is an issuer of its own: its
//! metadata names it and its endpoints, and its tokens carry it.

use keyport::admin;
use keyport::config::{ClientDecl, Config, ProfileDecl, ProfileKind, ScopeDef};
use keyport::domain::clients::ClientSpec;
use keyport::domain::scopes::Role;
use keyport_client::resource::ResourceServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const ACME_CLI: &str = "acme-cli";
const ACME_API: &str = "https://api.acme.com";
/// A second audience of the client: a code started for one is refused for the other.
const ACME_ADMIN_API: &str = "https://admin.acme.com";
const MOUNT: &str = "/sqlos/auth";

/// The seed's `POST /sqlos/auth/device_authorization` body.
const START: &str = "client_id=acme-cli&scope=openid%20offline_access%20projects.read&resource=https%3A%2F%2Fapi.acme.com";

/// The seed's `POST /sqlos/auth/token` body, as printed: a pair per line.
fn poll_body(device_code: &str) -> String {
    format!(
        "grant_type=urn:ietf:params:oauth:grant-type:device_code&\n\
         client_id=acme-cli&\n\
         device_code={device_code}&\n\
         resource=https%3A%2F%2Fapi.acme.com"
    )
}

/// A server with a `sqlos` profile and `SeedCliClient`'s client declared
/// in the configuration (public, device and refresh grants, one audience).
async fn sqlos_server(adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|config| {
        config.profiles = vec![ProfileDecl {
            kind: ProfileKind::Sqlos,
            client: ACME_CLI.into(),
            prefix: String::new(),
        }];
        config.clients.push(ClientDecl {
            id: ACME_CLI.into(),
            name: "Acme CLI".into(),
            grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
            scopes: ["openid", "profile", "email", "offline_access"]
                .into_iter()
                .chain(["projects.read", "projects.write"])
                .map(String::from)
                .collect(),
            audiences: vec![ACME_API.into(), ACME_ADMIN_API.into()],
            ..Default::default()
        });
        for (name, min_role) in [
            ("projects.read", Role::Viewer),
            ("projects.write", Role::Member),
        ] {
            config.scopes.push(ScopeDef {
                name: name.into(),
                min_role: Some(min_role),
                description: None,
            });
        }
        adjust(config);
    })
    .await
}

async fn form(server: &TestServer, path: &str, body: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    json_of(response).await
}

async fn start(server: &TestServer) -> Value {
    let (status, start) = form(server, "/sqlos/auth/device_authorization", START).await;
    assert_eq!(status, StatusCode::OK, "{start}");
    start
}

#[tokio::test]
async fn the_documented_device_login_works_under_sqlos_auth() {
    let server = sqlos_server(|_| {}).await;
    let issuer = format!("{}{MOUNT}", server.issuer);

    // Discovery at the seed's path, and at RFC 8414's for the same issuer.
    let metadata: Value = server
        .get_json("/sqlos/auth/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(
        metadata["device_authorization_endpoint"],
        format!("{issuer}/device_authorization")
    );
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(metadata["jwks_uri"], format!("{issuer}/jwks"));
    assert!(
        metadata.get("authorization_endpoint").is_none(),
        "{metadata}"
    );
    let rfc8414: Value = server
        .get_json("/.well-known/oauth-authorization-server/sqlos/auth")
        .await;
    assert_eq!(rfc8414, metadata);
    let own: Value = server
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        own["issuer"],
        server.issuer.as_str(),
        "Keyport's own is unchanged"
    );

    // Start, as written.
    let start = start(&server).await;
    let user_code = start["user_code"].as_str().unwrap();
    let shape = user_code.len() == 9
        && user_code.chars().enumerate().all(|(i, c)| match i {
            4 => c == '-',
            _ => c.is_ascii_uppercase(),
        });
    assert!(shape, "ABCD-EFGH: {user_code}");
    assert_eq!(start["verification_uri"], format!("{issuer}/device"));
    assert_eq!(
        start["verification_uri_complete"],
        format!("{issuer}/device?user_code={user_code}")
    );
    assert_eq!(start["expires_in"], 900);
    assert_eq!(start["interval"], 5);
    let device_code = start["device_code"].as_str().unwrap();

    // Poll, as written: pending, then slow_down when polled again at once.
    let (status, pending) = form(&server, "/sqlos/auth/token", &poll_body(device_code)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{pending}");
    assert_eq!(pending["error"], "authorization_pending");
    let (_, slow) = form(&server, "/sqlos/auth/token", &poll_body(device_code)).await;
    assert_eq!(slow["error"], "slow_down");

    // The hosted route leads to the verification page; approved there.
    let hosted = server
        .http
        .get(start["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(hosted.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        hosted.headers()["location"],
        format!("/device?user_code={user_code}").as_str()
    );
    let page = server
        .approve(
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
    assert!(page.contains("Device approved"), "{page}");

    // The successful response, its access token a JWT from the mount's issuer.
    server.clock.advance_secs(15);
    let (status, tokens) = form(&server, "/sqlos/auth/token", &poll_body(device_code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["scope"], "offline_access openid projects.read");
    let access = tokens["access_token"].as_str().unwrap();
    assert!(access.starts_with("eyJ"), "{access}");
    let claims = jwt_claims(access);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], ACME_API);
    assert_eq!(claims["client_id"], ACME_CLI);
    assert_eq!(
        jwt_claims(tokens["id_token"].as_str().unwrap())["iss"],
        issuer.as_str()
    );

    // One-time: reuse after the success is invalid_grant, even at once.
    let (status, reused) = form(&server, "/sqlos/auth/token", &poll_body(device_code)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reused}");
    assert_eq!(reused["error"], "invalid_grant");

    // The token works at both issuers' userinfo, and a resource server that
    // discovers the mount's issuer verifies it; one set up for Keyport's
    // own issuer does not take a token another issuer signed.
    for path in ["/sqlos/auth/userinfo", "/oauth/userinfo"] {
        let me = server
            .http
            .get(server.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        let (status, me) = json_of(me).await;
        assert_eq!(status, StatusCode::OK, "{path}: {me}");
        assert_eq!(me["workspace"], "acme");
    }
    let api = ResourceServer::builder(&issuer, ACME_API)
        .build()
        .await
        .unwrap();
    let who = api.verify(access).await.unwrap();
    assert!(who.has_scope("projects.read"), "{who:?}");
    let own_api = ResourceServer::builder(&server.issuer, ACME_API)
        .build()
        .await
        .unwrap();
    assert!(own_api.verify(access).await.is_err());

    // Refresh through the mount: rotated, still the mount's issuer.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let body = format!("grant_type=refresh_token&client_id=acme-cli&refresh_token={refresh}");
    let (status, rotated) = form(&server, "/sqlos/auth/token", &body).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
    let claims = jwt_claims(rotated["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer.as_str());

    // Revoke through the mount: the session ends.
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    let body = format!("token={new_refresh}&token_type_hint=refresh_token&client_id=acme-cli");
    let (status, _) = form(&server, "/sqlos/auth/revoke", &body).await;
    assert_eq!(status, StatusCode::OK);
    let body = format!("grant_type=refresh_token&client_id=acme-cli&refresh_token={new_refresh}");
    let (_, refused) = form(&server, "/sqlos/auth/token", &body).await;
    assert_eq!(refused["error"], "invalid_grant");
}

#[tokio::test]
async fn start_time_validation_is_strict() {
    let server = sqlos_server(|config| config.limits.device_starts_per_client_per_minute = 3).await;
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: "acme-web".into(),
            name: "Acme Web".into(),
            grants: vec!["authorization_code".into()],
            scopes: vec!["openid projects.read".into()],
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            ..ClientSpec::default()
        },
    )
    .await
    .unwrap();
    let devices_before = device_rows(&server).await;
    for (body, status, error) in [
        (
            START.replace("acme-cli", "acme-web"),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
        (
            START.replace("acme-cli", "nobody"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        // A confidential client that does not authenticate.
        (
            START.replace("acme-cli", RS),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            START.replace("projects.read", "projects.admin"),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            START.replace("api.acme.com", "evil.example"),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        (
            format!("{START}&resource=https%3A%2F%2Fother.acme.com"),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
    ] {
        let (got, answer) = form(&server, "/sqlos/auth/device_authorization", &body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{body}: {answer}"
        );
        assert!(answer["error_description"].is_string(), "{answer}");
    }
    assert_eq!(
        device_rows(&server).await,
        devices_before,
        "refusals store nothing"
    );

    // The start budget per client: slow_down once it is spent.
    for _ in 0..3 {
        start(&server).await;
    }
    let (status, slow) = form(&server, "/sqlos/auth/device_authorization", START).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{slow}");
    assert_eq!(slow["error"], "slow_down");
}

async fn device_rows(server: &TestServer) -> i64 {
    let counts = server.table_counts().await;
    counts
        .iter()
        .find(|(table, _)| table == "device_authorizations")
        .map(|(_, n)| *n)
        .unwrap()
}

#[tokio::test]
async fn polling_errors_are_the_documented_ones() {
    let server = sqlos_server(|_| {}).await;
    let server = &server;
    let poll = |body: String| async move { form(server, "/sqlos/auth/token", &body).await };

    // Denied in the browser ("I did not start this").
    let denied = start(server).await;
    let page = server
        .approve(
            denied["verification_uri_complete"].as_str().unwrap(),
            "deny",
        )
        .await;
    assert!(page.contains("Request denied"), "{page}");
    let (status, answer) = poll(poll_body(denied["device_code"].as_str().unwrap())).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied"))
    );

    let pending = start(server).await;
    let device_code = pending["device_code"].as_str().unwrap();
    let cases = [
        (
            poll_body("not-a-device-code"),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        // The same code from another device client, or for another resource.
        (
            poll_body(device_code).replace("acme-cli", CLI),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            poll_body(device_code).replace("api.acme.com", "admin.acme.com"),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            poll_body(device_code).replace("api.acme.com", "evil.example"),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            poll_body(device_code).replace("acme-cli", "nobody"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (body, status, error) in cases {
        let (got, answer) = poll(body.clone()).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{body}: {answer}"
        );
    }
    server.clock.advance_secs(901);
    let (_, expired) = poll(poll_body(device_code)).await;
    assert_eq!(expired["error"], "expired_token");
}

/// With `[headless] ui_url`, the mount's `/device` leads to the team's UI,
/// which calls the headless API under the mount: resolve, then approve by
/// request id (or deny by user code).
#[tokio::test]
async fn the_headless_api_is_served_under_the_mount() {
    const UI: &str = "https://app.example.com";
    let server = sqlos_server(|config| {
        config.headless.ui_url = Some(format!("{UI}/auth"));
        config.headless.allowed_origins = vec![UI.into()];
    })
    .await;
    let start = start(&server).await;
    let user_code = start["user_code"].as_str().unwrap();
    let to_page = server
        .http
        .get(start["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let page = to_page.headers()["location"].to_str().unwrap();
    let to_ui = server.http.get(server.url(page)).send().await.unwrap();
    let ui = to_ui.headers()["location"].to_str().unwrap();
    assert!(ui.starts_with(&format!("{UI}/auth?request=")), "{ui}");
    assert!(ui.ends_with("&view=device"), "{ui}");

    let call = |path: &str, cookie: Option<&str>, body: Value| {
        let mut request = server
            .http
            .post(server.url(&format!("{MOUNT}/headless/{path}")))
            .header("Origin", UI)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        async move { request.send().await.unwrap() }
    };
    let signed_in = call(
        "sign-in",
        None,
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    assert_eq!(signed_in.headers()["access-control-allow-origin"], UI);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let (status, resolved) = json_of(
        call(
            "device/resolve",
            Some(&cookie),
            json!({"userCode": user_code}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["client"]["id"], ACME_CLI);
    let request_id = resolved["id"].as_str().unwrap();
    let approved = call(
        "device/approve",
        Some(&cookie),
        json!({"requestId": request_id}),
    )
    .await;
    assert_eq!(approved.status(), StatusCode::OK);
    server.clock.advance_secs(15);
    let device_code = start["device_code"].as_str().unwrap();
    let (status, tokens) = form(&server, "/sqlos/auth/token", &poll_body(device_code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // Another origin's preflight is refused at the mount as at Keyport's own.
    let preflight = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            server.url("/sqlos/auth/headless/device/approve"),
        )
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::FORBIDDEN);
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
