//! Seed API profiles (`[[profiles]]`): a seed system's documented routes
//! and bodies, mounted beside Keyport's own so its existing CLIs keep
//! working. Each route only renames what the seed names differently and
//! fills in what it leaves out (the profile's client, the grant its path
//! implies), then runs Keyport's own endpoint: no grant is implemented
//! twice.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyport_proto::TokenResponse;
use serde_json::{Value, json};

use super::error::{ApiError, no_store};
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
                // Refused when the configuration is read.
                ProfileKind::Sqlos => Router::new(),
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

/// `…/authorize` of a prefixed anny profile: the same request at Keyport's own.
async fn to_authorize(uri: axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    axum::response::Redirect::temporary(&format!("/oauth/authorize{query}")).into_response()
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
