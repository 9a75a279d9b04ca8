//! Keyport embedded in another axum application (its `Router` merged with
//! the app's own routes, as `examples/embed.rs` does) and driven through
//! the in-process service API, with a real CLI's HTTP requests beside it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use keyport::clock::ManualClock;
use keyport::config::Config;
use keyport::domain::ErrorCode;
use keyport::domain::clients::ClientSpec;
use keyport::domain::device::Decided;
use keyport::embed::{DeviceRef, DeviceStart};
use keyport::http::{Draining, router};
use keyport::{Keyport, admin};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{SchemaGuard, temp_dir, test_database};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const API: &str = "https://api.acme.com";

struct Embedded {
    kp: Keyport,
    clock: ManualClock,
    url: String,
    http: reqwest::Client,
    data_dir: std::path::PathBuf,
    _database: Option<(String, SchemaGuard)>,
}

impl Embedded {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data_dir = temp_dir();
        let mut config = Config::embedded(&url, &data_dir).unwrap();
        config.master_key = Some("22".repeat(32));
        let database = test_database().await;
        config.database_url = database.as_ref().map(|(url, _)| url.clone());
        let clock = ManualClock::starting_now();
        let kp = Keyport::open(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        admin::add_client(
            &kp,
            ClientSpec {
                id: "acme-cli".into(),
                name: "Acme CLI".into(),
                confidential: false,
                grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
                scopes: vec!["openid offline_access agents:read agents:write".into()],
                audiences: vec![API.into()],
                ..ClientSpec::default()
            },
        )
        .await
        .unwrap();
        admin::add_workspace(&kp, "acme", "Acme").await.unwrap();
        for (email, role) in [("ada@acme.com", "member"), ("vic@acme.com", "viewer")] {
            admin::add_user(&kp, email, None, "a long passphrase".into())
                .await
                .unwrap();
            admin::add_member(&kp, "acme", email, role).await.unwrap();
        }

        let app = Router::new()
            .route("/", get(|| async { "the app's own page" }))
            .merge(router(kp.clone(), Draining::default()));
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Embedded {
            kp,
            clock,
            url,
            http: reqwest::Client::new(),
            data_dir,
            _database: database,
        }
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn code_of<T>(answer: Result<T, keyport::domain::Error>) -> Option<ErrorCode> {
    answer.err().and_then(|e| e.code())
}

#[tokio::test]
async fn the_router_mounts_beside_an_apps_routes_and_the_service_api_approves_an_http_login() {
    let app = Embedded::start().await;

    let home = app.http.get(&app.url).send().await.unwrap();
    assert_eq!(home.text().await.unwrap(), "the app's own page");
    let metadata: Value = app
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], app.url.as_str());

    // The CLI starts over HTTP; the app's backend approves in process.
    let (status, start) = app
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "acme-cli"),
                ("scope", "openid offline_access agents:read agents:write"),
                ("resource", API),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    let devices = app.kp.devices();
    let ada = devices.user("ADA@acme.com ").await.unwrap().expect("found");
    let pending = devices
        .resolve(start["user_code"].as_str().unwrap(), &ada)
        .await
        .unwrap();
    assert_eq!(pending.client.id.as_str(), "acme-cli");
    assert_eq!(pending.resource.as_deref(), Some(API));
    let user_code = start["user_code"].as_str().unwrap();
    let decided = devices
        .approve(DeviceRef::UserCode(user_code), &ada, None)
        .await
        .unwrap();
    assert!(
        matches!(&decided, Decided::Approved { granted, .. } if granted.contains("agents:write")),
        "{decided:?}"
    );
    // A second decision of the same request is refused.
    let again = devices.deny(DeviceRef::RequestId(&pending.id), &ada).await;
    assert_eq!(code_of(again), Some(ErrorCode::InvalidGrant));

    let device_code = start["device_code"].as_str().unwrap();
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", "acme-cli"),
        ("device_code", device_code),
        ("resource", API),
    ];
    let (status, tokens) = app.post_form("/oauth/token", &poll).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        tokens["scope"],
        "agents:read agents:write offline_access openid"
    );
    // Sessions made through the service API are ordinary sessions.
    let sessions = admin::list_sessions(&app.kp, None).await.unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    let audit = admin::export_audit(&app.kp, 0).await.unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "device.approve" && e["actor"] == "ada@acme.com"),
        "{audit}"
    );
}

#[tokio::test]
async fn the_service_api_starts_and_polls_with_the_endpoints_rules() {
    let app = Embedded::start().await;
    let devices = app.kp.devices();

    // Start-time validation, as the endpoint answers it.
    let start = |scope, resource| {
        devices.start(DeviceStart {
            client_id: "acme-cli",
            scope,
            resource,
            label: Some("build-01"),
        })
    };
    assert_eq!(
        code_of(start(Some("admin:everything"), None).await),
        Some(ErrorCode::InvalidScope)
    );
    assert_eq!(
        code_of(start(None, Some("https://elsewhere.example")).await),
        Some(ErrorCode::InvalidTarget)
    );
    let unknown = devices
        .start(DeviceStart {
            client_id: "nobody",
            ..DeviceStart::default()
        })
        .await;
    assert_eq!(code_of(unknown), Some(ErrorCode::InvalidClient));

    let started = start(Some("openid offline_access agents:write"), Some(API))
        .await
        .unwrap();
    let poll = || devices.poll("acme-cli", &started.device_code, Some(API));
    assert_eq!(code_of(poll().await), Some(ErrorCode::AuthorizationPending));
    assert_eq!(code_of(poll().await), Some(ErrorCode::SlowDown));
    app.clock.advance_secs(started.interval as i64 + 6);
    let wrong_resource = devices
        .poll(
            "acme-cli",
            &started.device_code,
            Some("https://other.example"),
        )
        .await;
    assert_eq!(code_of(wrong_resource), Some(ErrorCode::InvalidGrant));

    // A viewer approves: the role filters out what a member's scope allows.
    let vic = devices.user("vic@acme.com").await.unwrap().unwrap();
    let pending = devices.resolve(&started.user_code, &vic).await.unwrap();
    devices
        .approve(DeviceRef::RequestId(&pending.id), &vic, Some("acme"))
        .await
        .unwrap();
    app.clock.advance_secs(started.interval as i64 + 6);
    let tokens = poll().await.unwrap();
    assert_eq!(tokens.scope, "offline_access openid");
    assert!(tokens.refresh_token.is_some());
    // A poll whose answer was lost gets the same tokens inside the leeway,
    // and nothing after it.
    app.clock.advance_secs(5);
    let replayed = poll().await.unwrap();
    assert_eq!(replayed.access_token, tokens.access_token);
    app.clock.advance_secs(120);
    assert_eq!(code_of(poll().await), Some(ErrorCode::InvalidGrant));

    // The same tokens work over HTTP at userinfo.
    let me: Value = app
        .http
        .get(format!("{}/oauth/userinfo", app.url))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], vic.id.as_str());
    assert_eq!(me["role"], "viewer");

    // A wrong user code counts against the user and says so.
    let wrong = devices.resolve("WXYZ-2345", &vic).await;
    assert_eq!(code_of(wrong), Some(ErrorCode::InvalidGrant));
    // Denied: the poller is told.
    let denied = start(None, None).await.unwrap();
    devices
        .deny(DeviceRef::UserCode(&denied.user_code), &vic)
        .await
        .unwrap();
    let answer = devices.poll("acme-cli", &denied.device_code, None).await;
    assert_eq!(code_of(answer), Some(ErrorCode::AccessDenied));
}
