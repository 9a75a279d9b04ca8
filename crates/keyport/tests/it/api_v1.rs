//! The management API, `/api/v1`: guards (token, scope, workspace, role),
//! the actions refused to every token, pagination, revocation, API keys
//! that follow their owner's role, bad queries, and the OpenAPI document,
//! which Schemathesis checks the server against.

use keyport::Caller;
use keyport::admin;
use keyport::domain::User;
use keyport::domain::api_keys::KeyRequest;
use keyport::domain::clients::ClientSpec;
use keyport::domain::workspaces::MemberAction;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// A CLI allowed the management scopes.
const API_CLI: &str = "api-cli";
const SCOPE: &str =
    "openid offline_access workspace:read workspace:write audit:read agents:read agents:write";
const BOB: &str = "bob@example.com";

async fn add_api_cli(server: &TestServer) {
    admin::add_client(
        &server.kp,
        ClientSpec {
            id: API_CLI.into(),
            name: "API CLI".into(),
            confidential: false,
            grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
            scopes: vec![SCOPE.into()],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// A server whose alice is the owner of `acme`, with the management CLI.
async fn start() -> TestServer {
    let server = TestServer::start().await;
    admin::add_member(&server.kp, "acme", EMAIL, "owner")
        .await
        .unwrap();
    add_api_cli(&server).await;
    server
}

/// A device login to the management CLI as `email`; the token response.
async fn login_as(server: &TestServer, email: &str, password: &str) -> Value {
    let (status, start) = server
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", API_CLI), ("scope", SCOPE)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    let done = keyport_testkit::decide_device(
        &server.issuer,
        start["verification_uri_complete"].as_str().unwrap(),
        email,
        password,
        "approve",
    )
    .await;
    assert!(done.contains("Device approved"), "{done}");
    let (status, tokens) = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", API_CLI),
                ("device_code", start["device_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_string()
}

async fn user(server: &TestServer, email: &str) -> User {
    keyport::store::directory::user_by_email(server.kp.store().pool(), email)
        .await
        .unwrap()
        .unwrap()
}

/// Makes an API key through the domain, as the dashboard does for a
/// signed-in browser.
async fn api_key(server: &TestServer, email: &str, workspace: &str, scopes: &[&str]) -> String {
    let owner = user(server, email).await;
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let (_, secret) = server
        .kp
        .create_api_key(
            &owner,
            &KeyRequest {
                name: "ci",
                workspace,
                scopes: &scopes,
                expires_in_days: None,
            },
            &Caller::default(),
        )
        .await
        .unwrap();
    secret.expose().to_string()
}

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.http.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

async fn get(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    call(server, Method::GET, path, Some(token), None).await
}

async fn add_bob(server: &TestServer, role: &str) {
    admin::add_user(&server.kp, BOB, Some("Bob"), PASSWORD.into())
        .await
        .unwrap();
    admin::add_member(&server.kp, "acme", BOB, role)
        .await
        .unwrap();
}

#[tokio::test]
async fn api_v1_refuses_keys_and_invitations_to_every_token() {
    let server = start().await;
    let token = access(&login_as(&server, EMAIL, PASSWORD).await);
    let key = api_key(
        &server,
        EMAIL,
        "acme",
        &["workspace:read", "workspace:write", "audit:read"],
    )
    .await;
    let refused = [
        (
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "x", "workspace": "acme", "scopes": ["workspace:read"]})),
        ),
        (Method::DELETE, "/api/v1/api-keys/some-id", None),
        (
            Method::POST,
            "/api/v1/workspaces/acme/invitations",
            Some(json!({"email": "carol@example.com", "role": "viewer"})),
        ),
    ];
    for bearer in [&token, &key] {
        for (method, path, body) in &refused {
            let (status, body) =
                call(&server, method.clone(), path, Some(bearer), body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            assert_eq!(body["error"], "insufficient_scope", "{method} {path}");
        }
    }
    // Without a token: the bare challenge; with a bad one, invalid_token.
    let (status, _) = call(&server, Method::POST, "/api/v1/api-keys", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&server, "/api/v1/sessions", "kp_pat_nonsense").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    // Nothing was made: alice still has her one key, and no invitation went out.
    let (status, keys) = get(&server, "/api/v1/api-keys", &token).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    assert!(keys["items"][0].get("key").is_none());
    assert!(
        !server
            .audit_events()
            .await
            .contains(&"member.invite:success".to_string())
    );
}

#[tokio::test]
async fn api_v1_guards_workspace_and_role() {
    let server = start().await;
    add_bob(&server, "viewer").await;
    let viewer = access(&login_as(&server, BOB, PASSWORD).await);
    // Alice logs in while acme is her only workspace (no workspace choice).
    let owner = access(&login_as(&server, EMAIL, PASSWORD).await);

    let (status, body) = get(&server, "/api/v1/workspaces", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"],
        json!([{"slug": "acme", "name": "Acme", "role": "viewer"}])
    );
    for path in [
        "/api/v1/workspaces/acme/sessions",
        "/api/v1/workspaces/acme/audit",
        "/api/v1/workspaces/acme/members",
        "/api/v1/clients",
    ] {
        let (status, body) = get(&server, path, &viewer).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"], "insufficient_scope");
    }
    // The viewer's own sessions are theirs to see.
    let (status, body) = get(&server, "/api/v1/sessions", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["items"][0]["user"], BOB);

    // An owner's key bound to another workspace does not reach acme.
    admin::add_workspace(&server.kp, "globex", "Globex")
        .await
        .unwrap();
    admin::add_member(&server.kp, "globex", EMAIL, "owner")
        .await
        .unwrap();
    let elsewhere = api_key(&server, EMAIL, "globex", &["workspace:read", "audit:read"]).await;
    for path in [
        "/api/v1/workspaces/acme/members",
        "/api/v1/workspaces/acme/sessions",
        "/api/v1/workspaces/acme/audit",
    ] {
        let (status, body) = get(&server, path, &elsewhere).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"], "insufficient_scope");
    }
    let (status, body) = get(&server, "/api/v1/workspaces/globex/members", &elsewhere).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["email"], EMAIL);
    assert_eq!(body["items"][0]["role"], "owner");

    // The owner sees the workspace's sessions, bob's among them.
    let (status, body) = get(&server, "/api/v1/workspaces/acme/sessions", &owner).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user"].as_str().unwrap())
        .collect();
    assert!(users.contains(&BOB) && users.contains(&EMAIL), "{users:?}");

    // The owner revokes bob's session; the viewer cannot revoke the owner's.
    let sessions = body["items"].as_array().unwrap();
    let id_of = |email: &str| {
        sessions.iter().find(|s| s["user"] == email).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (bobs, alices) = (id_of(BOB), id_of(EMAIL));
    let (status, body) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/sessions/{alices}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer lacks workspace:write: {body}"
    );
    let (status, body) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/sessions/{bobs}"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = get(&server, "/api/v1/sessions", &viewer).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "bob's token ended with his session"
    );
    // The revocation is in acme's audit trail, with its actor.
    let (status, body) = get(
        &server,
        "/api/v1/workspaces/acme/audit?event=session.revoke",
        &owner,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["actor"], EMAIL);
    assert_eq!(body["items"][0]["target"], bobs.as_str());
}

#[tokio::test]
async fn api_v1_pages_return_every_row_once() {
    let server = start().await;
    let token = access(&login_as(&server, EMAIL, PASSWORD).await);
    // 120 keys: 120 rows of /api-keys and 120 api_key.create events in acme's trail.
    for _ in 0..120 {
        api_key(&server, EMAIL, "acme", &["agents:read"]).await;
    }
    for (path, expected) in [
        ("/api/v1/api-keys", 120),
        ("/api/v1/workspaces/acme/audit?event=api_key.create", 120),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let joiner = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{joiner}cursor={}", urlencode(c)),
                None => path.to_string(),
            };
            let (status, body) = get(&server, &url, &token).await;
            assert_eq!(status, StatusCode::OK, "{url}: {body}");
            let items = body["items"].as_array().unwrap();
            assert!(items.len() <= 50, "the default page is 50 rows");
            for item in items {
                assert!(
                    seen.insert(item["id"].as_str().unwrap().to_string()),
                    "{path}: a row came twice"
                );
            }
            pages += 1;
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected, "{path}");
        assert_eq!(pages, 3, "{path}");
    }
    // A page of 500, the most there is.
    let (status, body) = get(&server, "/api/v1/api-keys?limit=500", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 120);
    assert!(body["next_cursor"].is_null());
    // Filters by time, in unix seconds: nothing before the keys were made.
    let before = server.clock_now() - 3600;
    let (status, body) = get(
        &server,
        &format!("/api/v1/workspaces/acme/audit?to={before}"),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], json!([]));
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn api_v1_revokes_a_session_and_its_refresh_fails() {
    let server = start().await;
    let first = login_as(&server, EMAIL, PASSWORD).await;
    // A second later, so the lists' newest-first order tells them apart.
    server.clock.advance_secs(1);
    let second = login_as(&server, EMAIL, PASSWORD).await;
    let token = access(&second);
    let (status, body) = get(&server, "/api/v1/sessions?limit=1", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (_, rest) = get(
        &server,
        &format!(
            "/api/v1/sessions?limit=1&cursor={}",
            urlencode(body["next_cursor"].as_str().unwrap())
        ),
        &token,
    )
    .await;
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let ids: Vec<String> = [&body, &rest]
        .iter()
        .map(|page| page["items"][0]["id"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(ids[0], ids[1]);

    // The first login's session: the older one, on the second page.
    let first_sid = ids[1].clone();
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/api/v1/sessions/{first_sid}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server_refresh(&server, &first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // Gone now: revoking it again, or a session that never was, is 404.
    for id in [first_sid.as_str(), "no-such-session"] {
        let (status, body) = call(
            &server,
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "not_found");
    }
    assert!(
        server
            .audit_events()
            .await
            .contains(&"session.revoke:success".to_string())
    );
    // The other session lives on.
    let (status, _) = server_refresh(&server, &second).await;
    assert_eq!(status, StatusCode::OK);
}

async fn server_refresh(server: &TestServer, tokens: &Value) -> (StatusCode, Value) {
    server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", API_CLI),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await
}

#[tokio::test]
async fn api_v1_keys_follow_their_owners_role() {
    let server = start().await;
    add_bob(&server, "admin").await;
    let key = api_key(
        &server,
        BOB,
        "acme",
        &["workspace:read", "workspace:write", "agents:write"],
    )
    .await;
    let (status, body) = get(&server, "/api/v1/sessions", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/api/v1/sessions/no-such-session",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "workspace:write passes");

    // Demoted to viewer: the key keeps only what a viewer may have.
    admin::add_member(&server.kp, "acme", BOB, "viewer")
        .await
        .unwrap();
    let (status, info) = server.userinfo(&key).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["role"], "viewer");
    assert_eq!(info["scope"], "workspace:read");
    let (status, body) = call(
        &server,
        Method::DELETE,
        "/api/v1/sessions/no-such-session",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    let (status, body) = get(&server, "/api/v1/workspaces", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["role"], "viewer");

    // Removed: the key no longer speaks for anyone.
    let alice = user(&server, EMAIL).await;
    server
        .kp
        .manage_member(
            &alice,
            "acme",
            BOB,
            MemberAction::Remove,
            &Caller::default(),
        )
        .await
        .unwrap();
    let (status, body) = get(&server, "/api/v1/sessions", &key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    let (status, _) = server.userinfo(&key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_v1_bad_queries_and_bodies_are_400_json() {
    let server = start().await;
    let token = access(&login_as(&server, EMAIL, PASSWORD).await);
    for path in [
        "/api/v1/sessions?limit=abc",
        "/api/v1/sessions?limit=0",
        "/api/v1/sessions?limit=501",
        "/api/v1/api-keys?limit=1&limit=2",
        "/api/v1/clients?limit=-1",
        "/api/v1/workspaces/acme/members?limit=%FF",
        "/api/v1/workspaces/acme/audit?from=yesterday",
        "/api/v1/workspaces/acme/audit?to=99999999999999999999",
    ] {
        let (status, body) = get(&server, path, &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], "invalid_request", "{path}");
        assert!(body["error_description"].is_string(), "{path}");
    }
    // Bodies: wrong content type, malformed JSON, wrong shape.
    let bad_bodies: [(&str, &str); 3] = [
        ("text/plain", r#"{"client_id":"x","name":"X"}"#),
        ("application/json", "{not json"),
        ("application/json", r#"{"client_id":5}"#),
    ];
    for (content_type, text) in bad_bodies {
        let response = server
            .http
            .post(server.url("/api/v1/clients"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(text)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}: {body}");
        assert_eq!(body["error"], "invalid_request");
    }
    // A good one: an owner adds a confidential client and sees its secret once.
    let (status, added) = call(
        &server,
        Method::POST,
        "/api/v1/clients",
        Some(&token),
        Some(json!({
            "client_id": "ci-bot",
            "name": "CI bot",
            "confidential": true,
            "grants": ["client_credentials"],
            "scopes": ["agents:read"],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert!(
        added["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() > 20)
    );
    let (status, list) = get(&server, "/api/v1/clients?limit=500", &token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "ci-bot")
        .expect("the new client is listed");
    assert_eq!(listed["type"], "confidential");
    assert!(listed.get("client_secret").is_none());
    assert!(
        server
            .audit_events()
            .await
            .contains(&"client.add:success".to_string())
    );
    // The same id again is the client's mistake, not the server's.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/clients",
        Some(&token),
        Some(json!({"client_id": "ci-bot", "name": "Again"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn api_v1_openapi_document_is_public_and_complete() {
    let server = start().await;
    let (status, doc) = call(&server, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for (path, method) in [
        ("/api/v1/openapi.json", "get"),
        ("/api/v1/workspaces", "get"),
        ("/api/v1/workspaces/{slug}/members", "get"),
        ("/api/v1/workspaces/{slug}/invitations", "post"),
        ("/api/v1/workspaces/{slug}/sessions", "get"),
        ("/api/v1/workspaces/{slug}/audit", "get"),
        ("/api/v1/sessions", "get"),
        ("/api/v1/sessions/{id}", "delete"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/clients", "get"),
        ("/api/v1/clients", "post"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing: {paths:?}");
        if path != "/api/v1/openapi.json" {
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} documents 401"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(
        doc["paths"]["/api/v1/workspaces/{slug}/invitations"]["post"]["requestBody"].is_object()
    );
}

/// Schemathesis generates requests from the document (valid and invalid)
/// and checks every response against it: no 5xx, every status and body as
/// documented, 401 without the token, 405 for undocumented methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v1_conforms_to_its_openapi_document_under_schemathesis() {
    let server = start().await;
    let token = access(&login_as(&server, EMAIL, PASSWORD).await);
    // Schemathesis feeds ids from earlier responses into later requests, so
    // `DELETE /sessions/{id}` would revoke the token's own session and leave
    // every later request a (documented) 401. It runs last, on its own.
    const REVOKE: &str = "DELETE /api/v1/sessions/{id}";
    schemathesis(&server, &token, &["--exclude-name", REVOKE]).await;
    let (status, body) = get(&server, "/api/v1/sessions", &token).await;
    assert_eq!(status, StatusCode::OK, "the token lasted the run: {body}");
    schemathesis(&server, &token, &["--include-name", REVOKE]).await;
}

async fn schemathesis(server: &TestServer, token: &str, select: &[&str]) {
    let schema = server.url("/api/v1/openapi.json");
    let report = temp_dir();
    // `{slug}` is the token's workspace, so the workspace operations are
    // exercised past the binding check (any other slug is a 403).
    let config = report.join("schemathesis.toml");
    std::fs::write(&config, "[parameters]\n\"path.slug\" = \"acme\"\n").unwrap();
    let output = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config)
        .args(["run", &schema])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        // A client's settings have rules (grant combinations, redirect URI
        // shapes) no JSON schema states, so a schema-valid body may be
        // refused with 400; every other check runs.
        .args(["--exclude-checks", "positive_data_acceptance"])
        // The stateful phase chains requests the way the run above avoids.
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "20", "--request-timeout", "10"])
        .args(["--seed", "1", "--workers", "2"])
        .args(select)
        .arg("--report-dir")
        .arg(&report)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(240), output)
        .await
        .expect("schemathesis finished within 240 s")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&report);
    assert!(
        !stderr.contains("No module named schemathesis"),
        "schemathesis is missing: python3 -m pip install schemathesis"
    );
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(" passed"),
        "schemathesis ran no test:\n{stdout}"
    );
}
