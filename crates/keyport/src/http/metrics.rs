//! `GET /metrics`: Prometheus text exposition of a few counters kept in
//! atomics (a relaxed increment per request is all the hot path pays), and
//! of the security events in [`crate::metrics`].

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyport_proto::ErrorCode;

use super::oauth::GrantType;
use crate::metrics::SecurityEvent;

const ERROR_CODES: [ErrorCode; 19] = [
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidClient,
    ErrorCode::InvalidGrant,
    ErrorCode::UnauthorizedClient,
    ErrorCode::UnsupportedGrantType,
    ErrorCode::InvalidScope,
    ErrorCode::InvalidTarget,
    ErrorCode::AuthorizationPending,
    ErrorCode::SlowDown,
    ErrorCode::AccessDenied,
    ErrorCode::ExpiredToken,
    ErrorCode::UnsupportedTokenType,
    ErrorCode::InvalidToken,
    ErrorCode::AccountLocked,
    ErrorCode::MissingTotp,
    ErrorCode::InvalidTotp,
    ErrorCode::TooManyRequests,
    ErrorCode::ServerError,
    ErrorCode::TemporarilyUnavailable,
];

const ROUTES: [&str; 8] = [
    "/oauth/device_authorization",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/userinfo",
    "/device",
    "/oauth/jwks",
    "other",
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The process's counters.
pub struct Metrics {
    responses: [[AtomicU64; 5]; 8],
    tokens_issued: [AtomicU64; 3],
    oauth_errors: [AtomicU64; 19],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_ROW: [AtomicU64; 5] = [ZERO; 5];

pub static METRICS: Metrics = Metrics {
    responses: [ZERO_ROW; 8],
    tokens_issued: [ZERO; 3],
    oauth_errors: [ZERO; 19],
};

impl Metrics {
    pub fn token_issued(&self, grant: GrantType) {
        let index = match grant {
            GrantType::DeviceCode => 0,
            GrantType::RefreshToken => 1,
            GrantType::ClientCredentials => 2,
        };
        self.tokens_issued[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn oauth_error(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.oauth_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP keyport_http_responses_total HTTP responses by route and status class.\n",
        );
        out.push_str("# TYPE keyport_http_responses_total counter\n");
        for (r, route) in ROUTES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.responses[r][c].load(Ordering::Relaxed);
                if n > 0 {
                    out.push_str(&format!(
                        "keyport_http_responses_total{{route=\"{route}\",class=\"{class}\"}} {n}\n"
                    ));
                }
            }
        }
        out.push_str("# HELP keyport_tokens_issued_total Token responses by grant type.\n");
        out.push_str("# TYPE keyport_tokens_issued_total counter\n");
        for (i, grant) in GrantType::SUPPORTED.iter().enumerate() {
            let n = self.tokens_issued[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "keyport_tokens_issued_total{{grant_type=\"{grant}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP keyport_oauth_errors_total RFC 6749 error responses by error code.\n");
        out.push_str("# TYPE keyport_oauth_errors_total counter\n");
        for (i, code) in ERROR_CODES.iter().enumerate() {
            let n = self.oauth_errors[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "keyport_oauth_errors_total{{error=\"{}\"}} {n}\n",
                code.as_str()
            ));
        }
        for event in SecurityEvent::ALL {
            let name = event.name();
            out.push_str(&format!(
                "# HELP keyport_{name}_total {}\n# TYPE keyport_{name}_total counter\nkeyport_{name}_total {}\n",
                event.help(),
                crate::metrics::count(event)
            ));
        }
        out
    }
}

/// Counts each response by its route template (never the raw path).
pub async fn count_responses(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(req).await;
    let r = route
        .as_deref()
        .and_then(|p| ROUTES.iter().position(|r| *r == p))
        .unwrap_or(ROUTES.len() - 1);
    let c = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    METRICS.responses[r][c].fetch_add(1, Ordering::Relaxed);
    response
}

pub async fn render() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        METRICS.render(),
    )
        .into_response()
}
