//! Keyport inside another axum application: the app's own routes and
//! Keyport's whole server (discovery, the device flow, the hosted pages,
//! the dashboard, `/api/v1`) on one listener, plus an admin route of the
//! app that approves a device login through the in-process service API.
//!
//! Usage, in three terminals:
//!
//! ```sh
//! cargo run -p keyport --example embed [DATA_DIR]      # default ./embed-data
//! echo 'a long passphrase' | cargo run -p keyport -- user add \
//!     --data-dir ./embed-data --email ada@acme.com --password-stdin
//! cargo run -p kp -- login --issuer http://127.0.0.1:3000 --client-id acme-cli --no-browser
//! # approve on the hosted page kp prints, or as the app's backend would:
//! curl -X POST 'http://127.0.0.1:3000/admin/devices/USER-CODE/approve?user=ada@acme.com'
//! ```
//!
//! The approval route stands for a backend that signs its users in its own
//! way; it trusts the `user` it is given, so a real app puts it behind its
//! own authentication (here it listens on loopback only).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use keyport::clock::SystemClock;
use keyport::config::Config;
use keyport::domain::clients::ClientSpec;
use keyport::embed::DeviceRef;
use keyport::http::{Draining, router};
use keyport::{Keyport, admin};

const ISSUER: &str = "http://127.0.0.1:3000";

#[derive(serde::Deserialize)]
struct Acting {
    user: String,
    workspace: Option<String>,
}

/// `POST /admin/devices/{user_code}/approve?user=EMAIL[&workspace=SLUG]`.
async fn approve(
    State(kp): State<Keyport>,
    Path(user_code): Path<String>,
    Query(acting): Query<Acting>,
) -> (StatusCode, String) {
    let devices = kp.devices();
    let user = match devices.user(&acting.user).await {
        Ok(Some(user)) => user,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such user\n".into()),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let which = DeviceRef::UserCode(&user_code);
    match devices
        .approve(which, &user, acting.workspace.as_deref())
        .await
    {
        Ok(decided) => (StatusCode::OK, format!("{decided:?}\n")),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./embed-data".into());
    let kp = Keyport::open(Config::embedded(ISSUER, data_dir)?, Arc::new(SystemClock)).await?;
    if kp.client("acme-cli").await?.is_none() {
        admin::add_client(
            &kp,
            ClientSpec {
                id: "acme-cli".into(),
                name: "Acme CLI".into(),
                confidential: false,
                grants: vec![
                    "urn:ietf:params:oauth:grant-type:device_code".into(),
                    "refresh_token".into(),
                ],
                scopes: vec!["openid".into(), "profile".into(), "offline_access".into()],
                ..ClientSpec::default()
            },
        )
        .await?;
    }

    let app = Router::new()
        .route("/", get(|| async { "Acme: home of the app\n" }))
        .route("/admin/devices/{user_code}/approve", post(approve))
        .with_state(kp.clone())
        // Every Keyport path, beside the app's own.
        .merge(router(kp, Draining::default()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("Acme and Keyport on {ISSUER}");
    // Keyport's per-IP limits and audit records read the peer address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
