//! Bad input of every kind gets an RFC 6749 §5.2 error (or 413), never a
//! 500, and leaves the database as it was.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::support::*;

const ENDPOINTS: &[&str] = &[
    "/oauth/device_authorization",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
];

async fn send(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url(path))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

fn assert_rfc_error(path: &str, case: &str, status: StatusCode, body: &Value) {
    assert!(
        status.is_client_error(),
        "{path} {case}: status {status} {body}"
    );
    assert!(
        body["error"].is_string(),
        "{path} {case}: no RFC 6749 error body: {body}"
    );
}

#[tokio::test]
async fn malformed_requests_get_rfc_errors_and_change_nothing() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let before = server.table_counts().await;
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"client_id\": \"test-cli\",".to_vec(),
        ),
        ("JSON array", "application/json", b"[1,2]".to_vec()),
        (
            "JSON nested value",
            "application/json",
            br#"{"client_id": {"a": 1}}"#.to_vec(),
        ),
        (
            "wrong content type",
            "text/plain",
            b"client_id=test-cli".to_vec(),
        ),
        (
            "multipart",
            "multipart/form-data; boundary=x",
            b"--x--".to_vec(),
        ),
        ("missing parameters", form, b"".to_vec()),
        (
            "duplicated parameter",
            form,
            b"client_id=test-cli&client_id=test-cli&grant_type=refresh_token".to_vec(),
        ),
        (
            "invalid UTF-8",
            form,
            b"client_id=test-cli&scope=%FF%FE&grant_type=x".to_vec(),
        ),
        (
            "raw invalid UTF-8",
            form,
            vec![
                b'c', b'l', b'i', b'e', b'n', b't', b'_', b'i', b'd', b'=', 0xC3, 0x28,
            ],
        ),
    ];
    for path in ENDPOINTS {
        for (case, content_type, body) in &cases {
            let (status, body) = send(&server, path, content_type, body.clone()).await;
            assert_rfc_error(path, case, status, &body);
        }
        let huge = vec![b'a'; 1024 * 1024];
        let (status, body) = send(&server, path, form, huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[("grant_type", "urn:example:unknown"), ("client_id", CLI)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, body) = server
        .post_form("/oauth/token", &[("client_id", CLI)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[("grant_type", DEVICE_GRANT), ("client_id", CLI)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "no device_code"
    );
    let (status, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLI),
                ("refresh_token", "kp_rt_garbage"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // A refresh asking for more than was granted.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (_, body) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLI),
                ("refresh_token", refresh),
                ("scope", "openid audit:read"),
            ],
        )
        .await;
    assert_eq!(body["error"], "invalid_scope");
    // Wrong client secret: 401 with a challenge.
    let response = server
        .http
        .post(server.url("/oauth/introspect"))
        .basic_auth(RS, Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    // Public clients cannot introspect.
    let (status, body) = server
        .post_form("/oauth/introspect", &[("client_id", CLI), ("token", "x")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert_eq!(
        server.table_counts().await,
        before,
        "bad requests changed stored state"
    );
    // The refresh token still works: nothing above touched it.
    let (status, _) = server.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn json_bodies_and_charset_parameters_are_accepted() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("/oauth/device_authorization"))
        .json(&serde_json::json!({ "client_id": CLI, "cli_label": "json-box", "client_info": { "name": "osk-cli", "version": "1.0.0" } }))
        .send()
        .await
        .unwrap();
    let (status, start) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{start}");
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(format!(
            "grant_type={}&client_id={CLI}&device_code={}",
            DEVICE_GRANT.replace(':', "%3A"),
            start["device_code"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (_, body) = json_of(response).await;
    assert_eq!(body["error"], "authorization_pending");
    let page = server
        .browser()
        .get(start["verification_uri_complete"].as_str().unwrap())
        .await;
    assert!(page.contains("Sign in"));
}

#[tokio::test]
async fn unknown_paths_and_missing_bearer_tokens() {
    let server = TestServer::start().await;
    let response = server.http.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, body) = server.userinfo("not-a-jwt").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    let response = server
        .http
        .get(server.url("/oauth/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
