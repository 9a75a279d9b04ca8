//! Seed API profiles (`[[profiles]]`): a seed system's documented routes
//! and bodies, mounted beside Keyport's own so its existing CLIs keep
//! working. Each route only renames what the seed names differently and
//! fills in what it leaves out (the profile's client, the grant its path
//! implies), then runs Keyport's own endpoint: no grant is implemented
//! twice.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyport_proto::TokenResponse;
use serde_json::{Value, json};

use super::error::{ApiError, no_store};
use super::headless;
use super::oauth;
use super::params::Params;
use crate::config::{ProfileDecl, ProfileKind};
use crate::service::{Caller, Keyport};
use keyport_proto::DEVICE_CODE_GRANT;

/// Every configured profile's routes.
pub fn router(kp: &Keyport) -> Router<Keyport> {
    kp.config
        .profiles
        .iter()
        .fold(Router::new(), |router, profile| {
            let routes = match profile.kind {
                ProfileKind::Anysola => anysola(profile),
                ProfileKind::Openskill => openskill(profile),
                ProfileKind::Anny => anny(profile),
                ProfileKind::Anchor => anchor(profile),
                ProfileKind::Sqlos => sqlos(kp, profile),
            };
            router.merge(routes)
        })
}

/// A profile's request: its client when the body names none, and the grant
/// its path stands for.
#[derive(Clone)]
struct Implied {
    client: Arc<str>,
    grant: Option<&'static str>,
}

impl Implied {
    fn fill(&self, params: Params) -> Params {
        let params = params.or_default("client_id", &self.client);
        match self.grant {
            Some(grant) => params.or_default("grant_type", grant),
            None => params,
        }
    }
}

fn implied(profile: &ProfileDecl, grant: Option<&'static str>) -> Implied {
    Implied {
        client: Arc::from(profile.client.as_str()),
        grant,
    }
}

/// Seed 000 (Anysola): `POST …/device` (JSON, `cli_label`), `POST …/token`
/// (device code and refresh grants, no `client_id`), `GET …/userinfo`,
/// `POST …/revoke`; the base is `/api/oauth`.
fn anysola(profile: &ProfileDecl) -> Router<Keyport> {
    let base = profile.base();
    let plain = implied(profile, None);
    Router::new()
        .route(
            &format!("{base}/device"),
            post(device_start).layer(Extension(plain.clone())),
        )
        .route(
            &format!("{base}/token"),
            post(token).layer(Extension(plain.clone())),
        )
        .route(
            &format!("{base}/userinfo"),
            get(oauth::userinfo).post(oauth::userinfo),
        )
        .route(
            &format!("{base}/revoke"),
            post(revoke).layer(Extension(plain)),
        )
}

/// Seed 002 (OpenSkill): `POST …/device/code` (`client_info`),
/// `POST …/device/token` (`device_code` only), `POST …/refresh`
/// (`refresh_token` only), `POST …/revoke` (`{"refresh_token"}`, answered
/// `{"success": true}`); the base is `/api/auth`.
fn openskill(profile: &ProfileDecl) -> Router<Keyport> {
    let base = profile.base();
    Router::new()
        .route(
            &format!("{base}/device/code"),
            post(device_start).layer(Extension(implied(profile, None))),
        )
        .route(
            &format!("{base}/device/token"),
            post(token).layer(Extension(implied(profile, Some(DEVICE_CODE_GRANT)))),
        )
        .route(
            &format!("{base}/refresh"),
            post(token).layer(Extension(implied(profile, Some("refresh_token")))),
        )
        .route(
            &format!("{base}/revoke"),
            post(revoke_refresh_token).layer(Extension(implied(profile, None))),
        )
}

/// Seed 001 (anny): Keyport's own `/oauth/authorize` and `/oauth/token`
/// (JSON bodies work there already); its client's token responses carry
/// `expiresIn` and `expiresAt` too ([`token_response`]). With a prefix,
/// `…/authorize` and `…/token` lead to them.
fn anny(profile: &ProfileDecl) -> Router<Keyport> {
    if profile.prefix.is_empty() {
        return Router::new();
    }
    let base = profile.base();
    Router::new()
        .route(&format!("{base}/authorize"), get(to_authorize))
        .route(&format!("{base}/token"), post(oauth::token))
}

/// Seed 003 (Anchor): Keyport's own `/oauth/token` (password and refresh
/// grants with `guid` and the device fields) and `/oauth/revoke`; its
/// client's token responses say `"scope": "full"`. With a prefix,
/// `…/token` and `…/revoke` lead to them.
fn anchor(profile: &ProfileDecl) -> Router<Keyport> {
    if profile.prefix.is_empty() {
        return Router::new();
    }
    let base = profile.base();
    Router::new()
        .route(&format!("{base}/token"), post(oauth::token))
        .route(&format!("{base}/revoke"), post(oauth::revoke))
}

/// Seed 004 (SqlOS): Keyport's own device, token and side endpoints under
/// `/sqlos/auth`, answering as an issuer of its own (Keyport's issuer
/// followed by the mount path): its metadata document (at
/// `…/.well-known/oauth-authorization-server` as the seed has it, and at
/// RFC 8414's `/.well-known/oauth-authorization-server/sqlos/auth`),
/// `…/device` (the hosted page, or the headless UI) and `…/headless/…`.
/// Tokens issued here carry the mount's issuer.
fn sqlos(kp: &Keyport, profile: &ProfileDecl) -> Router<Keyport> {
    let base = profile.base();
    let plain = implied(profile, None);
    let metadata = get(oauth::metadata);
    let routes = Router::new()
        .route("/.well-known/oauth-authorization-server", metadata.clone())
        .route("/.well-known/openid-configuration", metadata.clone())
        .route("/jwks", get(oauth::jwks))
        .route(
            "/device_authorization",
            post(device_start).layer(Extension(plain.clone())),
        )
        .route("/token", post(token).layer(Extension(plain.clone())))
        .route("/revoke", post(revoke).layer(Extension(plain)))
        .route("/introspect", post(oauth::introspect))
        .route("/userinfo", get(oauth::userinfo).post(oauth::userinfo))
        .route("/device", get(to_device_page))
        .nest("/headless", headless::router(kp));
    let mount: Arc<str> = Arc::from(base);
    Router::new()
        .nest(base, routes)
        .route(
            &format!("/.well-known/oauth-authorization-server{base}"),
            metadata,
        )
        .layer(middleware::map_request(move |mut req: Request| {
            let mount = mount.clone();
            async move {
                if let Some(caller) = req.extensions_mut().get_mut::<Caller>() {
                    caller.mount = Some(mount);
                }
                req
            }
        }))
}

/// `…/device` of a `sqlos` profile: Keyport's own verification page (or,
/// with `[headless] ui_url`, the custom UI it leads to), same query.
async fn to_device_page(uri: Uri) -> Response {
    same_query(&uri, "/device")
}

/// `…/authorize` of a prefixed anny profile: the same request at Keyport's own.
async fn to_authorize(uri: Uri) -> Response {
    same_query(&uri, "/oauth/authorize")
}

/// A redirect to Keyport's own `path` with the request's query.
fn same_query(uri: &Uri, path: &str) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    axum::response::Redirect::temporary(&format!("{path}{query}")).into_response()
}

/// The profile whose token responses `client_id` gets in its seed's shape
/// (anny or anchor); `None` for RFC 6749's shape as it is.
pub fn token_shape(kp: &Keyport, client_id: &str) -> Option<ProfileKind> {
    kp.config
        .profiles
        .iter()
        .find(|p| p.client == client_id)
        .map(|p| p.kind)
        .filter(|kind| matches!(kind, ProfileKind::Anny | ProfileKind::Anchor))
}

/// A token response in the shape `kind` documents: anny adds `expiresIn`
/// and `expiresAt` (`+00:00`, as its example shows), Anchor's `scope` is
/// always `"full"`.
pub fn token_response(kind: ProfileKind, response: TokenResponse) -> Value {
    let mut body = serde_json::to_value(&response).expect("token responses serialize");
    match kind {
        ProfileKind::Anny => {
            body["expiresIn"] = json!(response.expires_in);
            if let Some(at) = &response.expires_at {
                let offset = at.strip_suffix('Z').map(|t| format!("{t}+00:00"));
                body["expiresAt"] = json!(offset.unwrap_or_else(|| at.clone()));
            }
        }
        ProfileKind::Anchor => body["scope"] = json!("full"),
        ProfileKind::Anysola | ProfileKind::Openskill | ProfileKind::Sqlos => {}
    }
    body
}

async fn device_start(
    state: State<Keyport>,
    caller: Extension<Caller>,
    Extension(implied): Extension<Implied>,
    params: Params,
) -> Result<Response, ApiError> {
    oauth::device_authorization(state, caller, implied.fill(params)).await
}

async fn token(
    state: State<Keyport>,
    caller: Extension<Caller>,
    Extension(implied): Extension<Implied>,
    params: Params,
) -> Result<Response, ApiError> {
    oauth::token(state, caller, implied.fill(params)).await
}

async fn revoke(
    state: State<Keyport>,
    caller: Extension<Caller>,
    Extension(implied): Extension<Implied>,
    params: Params,
) -> Result<Response, ApiError> {
    oauth::revoke(state, caller, implied.fill(params)).await
}

/// OpenSkill's revoke names the refresh token; revoking it ends its
/// session, and with it every access token of the session.
async fn revoke_refresh_token(
    state: State<Keyport>,
    caller: Extension<Caller>,
    Extension(implied): Extension<Implied>,
    params: Params,
) -> Result<Response, ApiError> {
    let params = implied.fill(params).renamed("refresh_token", "token")?;
    oauth::revoke(state, caller, params).await?;
    let mut response = axum::Json(json!({ "success": true })).into_response();
    no_store(&mut response);
    Ok(response)
}
