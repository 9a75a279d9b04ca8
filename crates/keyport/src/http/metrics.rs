//! `GET /metrics` and the middleware that times every response by its route
//! template (never the raw path, which could hold a user code or an id).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::service::Keyport;
use crate::telemetry;

/// Route templates with series of their own; anything else is `other`.
const ROUTES: [&str; 13] = [
    "/oauth/device_authorization",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/userinfo",
    "/oauth/jwks",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/device",
    "/device/sign-in",
    "/device/decision",
    "/setup",
    "/metrics",
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counts and times each response by its route template.
pub async fn count_responses(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().find(|r| **r == p.as_str()).copied())
        .unwrap_or("other");
    let response = next.run(req).await;
    let class = CLASSES[(response.status().as_u16() / 100).clamp(1, 5) as usize - 1];
    telemetry::response(route, class, started.elapsed());
    response
}

pub async fn render(State(kp): State<Keyport>) -> Response {
    kp.record_pool_use();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        telemetry::render(),
    )
        .into_response()
}
