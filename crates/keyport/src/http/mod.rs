//! HTTP: the axum router, the middleware every response passes (client IP,
//! the HTTPS rule, request deadlines, RFC 6749 bodies on bare errors,
//! security headers, panic guard) and, in [`serve`], the serve loop with
//! connection caps, native TLS ([`tls`]) and graceful shutdown.

pub mod api;
pub mod error;
pub mod headless;
pub mod metrics;
pub mod oauth;
pub mod params;
pub mod profiles;
pub mod serve;
pub mod tls;

pub use serve::{serve, serve_tls};
pub use tls::{OverTls, TlsCertificate, TlsError};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyport_proto::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutLayer};

use crate::pages;
use crate::service::{Caller, Keyport};
use error::json_error;

/// Flipped when shutdown begins, so `/readyz` turns load balancers away.
#[derive(Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The whole server as a router. [`serve`] serves it with connection caps;
/// an embedder serving it otherwise should use
/// `into_make_service_with_connect_info::<SocketAddr>()` so per-IP limits
/// and audit records see the peer address.
pub fn router(kp: Keyport, draining: Draining) -> Router {
    let limits = &kp.config.limits;
    let body_deadline = Duration::from_secs(limits.request_body_timeout_secs.max(1));
    let request_deadline = Duration::from_secs(limits.request_timeout_secs.max(1));
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state((kp.clone(), draining));
    // With `metrics_listen` set, /metrics is served there instead.
    let health = match kp.config.metrics_listen {
        Some(_) => health,
        None => health.merge(metrics_router(kp.clone())),
    };
    // RFC 7591 registration exists only when it is turned on.
    let registration = match kp.config.registration.enabled {
        true => Router::new().route("/oauth/register", post(oauth::register)),
        false => Router::new(),
    };
    Router::new()
        .merge(registration)
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route("/.well-known/openid-configuration", get(oauth::metadata))
        .route("/oauth/jwks", get(oauth::jwks))
        .route(
            "/oauth/device_authorization",
            post(oauth::device_authorization),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/introspect", post(oauth::introspect))
        .route(
            "/oauth/userinfo",
            get(oauth::userinfo).post(oauth::userinfo),
        )
        .route(
            "/oauth/authorize",
            get(pages::authorize::authorize).post(pages::authorize::decide),
        )
        .route(
            "/signin",
            get(pages::authorize::sign_in_page).post(pages::device::sign_in),
        )
        .route(
            "/signin/code",
            get(pages::account::code_form).post(pages::account::verify_code),
        )
        .route("/account/security", get(pages::account::security))
        .route("/account/security/password", post(pages::account::password))
        .route(
            "/account/security/authenticator",
            post(pages::account::authenticator),
        )
        .route(
            "/account/security/email-codes",
            post(pages::account::email_codes),
        )
        .route(
            "/account/security/sms-codes",
            post(pages::account::sms_codes),
        )
        .merge(dashboard_routes())
        .route("/device", get(pages::device::verification_page))
        .route("/device/sign-in", post(pages::device::sign_in))
        .route("/device/decision", post(pages::device::decision))
        .route("/device/sign-out", post(pages::device::sign_out))
        .route("/setup", get(pages::setup::form).post(pages::setup::create))
        .route("/assets/keyport.css", get(pages::stylesheet))
        .nest("/api/v1", api::router())
        .nest("/api/headless", headless::router(&kp))
        .merge(profiles::router(&kp))
        .fallback(not_found)
        .layer(middleware::from_fn(metrics::count_responses))
        .layer(middleware::from_fn_with_state(kp.clone(), https_only))
        .with_state(kp.clone())
        .merge(health)
        .layer(middleware::from_fn_with_state(kp.clone(), identify_caller))
        // A body trickled in, or a chunk that promises more than it sends,
        // cannot hold a connection past these deadlines.
        .layer(RequestBodyDeadlineLayer::new(body_deadline))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_deadline,
        ))
        .layer(middleware::from_fn(error::json_for_bare_errors))
        .layer(middleware::from_fn_with_state(kp, security_headers))
        .layer(CatchPanicLayer::custom(|_| {
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::ServerError.as_str(),
                "internal error",
            )
        }))
}

/// The dashboard's pages and forms, and the invitation links they hand out.
fn dashboard_routes() -> Router<Keyport> {
    use pages::dashboard::{api_keys, audit, clients, members, sessions};
    Router::new()
        .route("/dashboard", get(pages::dashboard::home))
        .route("/dashboard/sessions", get(sessions::mine))
        .route("/dashboard/sessions/{id}/revoke", post(sessions::revoke))
        .route(
            "/dashboard/api-keys",
            get(api_keys::list).post(api_keys::create),
        )
        .route("/dashboard/api-keys/{id}/revoke", post(api_keys::revoke))
        .route("/dashboard/workspaces/{slug}/members", get(members::list))
        .route(
            "/dashboard/workspaces/{slug}/invitations",
            post(members::invite),
        )
        .route(
            "/dashboard/workspaces/{slug}/members/{action}",
            post(members::manage),
        )
        .route("/dashboard/workspaces/{slug}/leave", post(members::leave))
        .route(
            "/dashboard/workspaces/{slug}/sessions",
            get(sessions::workspace),
        )
        .route("/dashboard/workspaces/{slug}/audit", get(audit::list))
        .route(
            "/dashboard/workspaces/{slug}/audit/export",
            get(audit::export),
        )
        .route("/dashboard/clients", get(clients::list).post(clients::add))
        .route(
            "/dashboard/clients/{id}/rotate-secret",
            post(clients::rotate_secret),
        )
        .route(
            "/invitations/{token}",
            get(members::invitation).post(members::accept),
        )
}

/// `GET /metrics` alone, for the main listener or one of its own.
pub fn metrics_router(kp: Keyport) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .layer(middleware::from_fn(metrics::count_responses))
        .with_state(kp)
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest.as_str(),
        "no such endpoint",
    )
}

async fn readyz(State((kp, draining)): State<(Keyport, Draining)>) -> Response {
    if draining.0.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    if kp.database_reachable().await {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

/// The client's address: the peer, or behind a trusted proxy the last
/// address `X-Forwarded-For` names.
async fn identify_caller(State(kp): State<Keyport>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = peer
        .filter(|ip| kp.config.trusted_proxies.contains(ip))
        .and_then(|_| req.headers().get("x-forwarded-for"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    req.extensions_mut().insert(Caller {
        ip: forwarded.or(peer),
        mount: None,
    });
    next.run(req).await
}

/// Requests are served over Keyport's own TLS from any address; plain HTTP
/// only on loopback or through a trusted proxy that terminated TLS
/// (RFC 6749 §3.1, §10.9).
async fn https_only(State(kp): State<Keyport>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let over_tls = req.extensions().get::<tls::OverTls>().is_some();
    let allowed = match peer {
        _ if over_tls => true,
        None => true, // embedded without a socket: the embedder decides
        Some(ip) if ip.is_loopback() => true,
        Some(ip) if kp.config.trusted_proxies.contains(&ip) => req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")),
        Some(_) => false,
    };
    if !allowed {
        return json_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest.as_str(),
            "HTTPS required",
        );
    }
    next.run(req).await
}

pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(State(kp): State<Keyport>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if kp.config.issuer_is_https() {
        // RFC 6797: browsers that once reached us over https never try plain http.
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page that may redirect a posted form elsewhere sets its own.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}
