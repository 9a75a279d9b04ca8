//! The management API, `/api/v1`: JSON over the same middleware as every
//! other endpoint, for a Bearer access token or API key. Each handler
//! checks in one order — the token, then its scope, then (under
//! `/workspaces/{slug}`) that the token is bound to that workspace with a
//! role high enough — and then calls the domain, which checks the role
//! again from the database. The OpenAPI 3.1 document at
//! `/api/v1/openapi.json` is derived from these handlers and `json.rs`.

mod api_keys;
mod audit;
mod clients;
pub mod json;
mod sessions;
mod workspaces;

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ApiError, bearer_required, no_store};
use super::params::{Params, Rejection, bearer_token, parse_query, read_json_body};
use crate::domain::api_keys::Principal;
use crate::domain::workspaces::MAX_PAGE_SIZE;
use crate::domain::{Error, User};
use crate::service::Keyport;

/// The routes under `/api/v1`.
pub fn router() -> Router<Keyport> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/workspaces", get(workspaces::list))
        .route("/workspaces/{slug}/members", get(workspaces::members))
        .route("/workspaces/{slug}/invitations", post(workspaces::invite))
        .route("/workspaces/{slug}/sessions", get(sessions::of_workspace))
        .route("/workspaces/{slug}/audit", get(audit::trail))
        .route("/sessions", get(sessions::mine))
        .route("/sessions/{id}", delete(sessions::revoke))
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{id}", delete(api_keys::revoke))
        .route("/clients", get(clients::list).post(clients::add))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyport management API",
        description = "Workspaces, members, CLI sessions, API keys, clients and the audit \
                       trail, for a Bearer OAuth access token or a `kp_pat_…` API key. Reads \
                       need `workspace:read`, writes `workspace:write`, the audit trail \
                       `audit:read`; the caller's current role in the token's workspace is \
                       checked on every request. Errors are RFC 6749 §5.2 JSON. Lists are \
                       paginated: pass a page's `next_cursor` back as `cursor`."
    ),
    paths(
        openapi_json,
        workspaces::list,
        workspaces::members,
        workspaces::invite,
        sessions::mine,
        sessions::revoke,
        sessions::of_workspace,
        api_keys::list,
        api_keys::create,
        api_keys::revoke,
        audit::trail,
        clients::list,
        clients::add,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "workspaces", description = "The token's workspace and its members"),
        (name = "sessions", description = "CLI sessions (refresh-token families)"),
        (name = "api-keys", description = "API keys; made and revoked only in a signed-in browser"),
        (name = "audit", description = "A workspace's audit trail"),
        (name = "clients", description = "OAuth clients (workspace owners)"),
    )
)]
pub struct ApiDoc;

/// The one security scheme: RFC 6750 Bearer, for access tokens and API keys.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An OAuth access token bound to a workspace, or an API key (kp_pat_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "workspaces",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi_json() -> Response {
    // Built once: the document is a function of the code alone.
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body.clone(),
    )
        .into_response()
}

/// A refusal on its way out: an RFC 6749 error from the domain, a bad
/// request from parsing, or the bare `Bearer` challenge.
pub struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused(Box::new(e.into_response()))
    }
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused(Box::new(ApiError(e).into_response()))
    }
}

impl From<Rejection> for Refused {
    fn from(e: Rejection) -> Self {
        Refused(Box::new(e.into_response()))
    }
}

pub type Reply = Result<Response, Refused>;

/// A checked bearer token and the account it speaks for.
pub struct Authed {
    pub principal: Principal,
    pub user: User,
}

/// The first two guards: a valid token (401 otherwise), carrying `scope`
/// (403 otherwise).
pub async fn authorize(kp: &Keyport, headers: &HeaderMap, scope: &str) -> Result<Authed, Refused> {
    let authed = authenticate(kp, headers).await?;
    authed.principal.needs(scope)?;
    Ok(authed)
}

/// Only the token's validity, with its user still enabled: for the
/// endpoints that refuse every token.
pub async fn authenticate(kp: &Keyport, headers: &HeaderMap) -> Result<Authed, Refused> {
    let Some(token) = bearer_token(headers) else {
        return Err(Refused(Box::new(bearer_required())));
    };
    let principal = kp.bearer(token).await?;
    let user = kp.user_of(&principal).await?;
    Ok(Authed { principal, user })
}

/// A 200 (or other) JSON response that no cache keeps.
pub fn json_reply(status: StatusCode, value: impl Serialize) -> Response {
    let mut response = (status, axum::Json(value)).into_response();
    no_store(&mut response);
    response
}

/// The query parameters that are numbers: present, they must hold one.
const NUMBERS: &[&str] = &["limit", "from", "to"];

/// The URL query, parsed as strictly as a form (repeats and NUL refused).
/// An empty value counts as absent (RFC 6749 §3.1), except for a number:
/// `limit=` is a malformed number, not the default.
pub fn query(uri: &Uri) -> Result<Params, Refused> {
    let raw = uri.query().unwrap_or("");
    for pair in raw.split('&') {
        if let Some(name) = pair
            .strip_suffix('=')
            .or((!pair.contains('=')).then_some(pair))
            && NUMBERS.contains(&name)
        {
            return Err(ApiError::bad_request(format!("{name} must be a number")).into());
        }
    }
    Ok(parse_query(raw)?)
}

/// `limit` (1 to 500, default 50) and `cursor` of a list request.
pub struct PageAsk {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub fn page_ask(params: &Params) -> Result<PageAsk, Refused> {
    let limit = match params.get("limit") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Some(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_PAGE_SIZE}"
                ))
                .into());
            }
        },
    };
    Ok(PageAsk {
        limit,
        cursor: params.get("cursor").map(str::to_string),
    })
}

/// A JSON request body: `application/json`, within the body limits, and
/// of the documented shape; anything else is 400 `invalid_request`.
pub async fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Refused> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if essence.as_deref() != Some("application/json") {
        return Err(ApiError::bad_request("send the body as application/json").into());
    }
    let bytes = read_json_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field and the expectation, never the value.
        let why = e.to_string();
        let why = why.split(" at line ").next().unwrap_or("").to_string();
        ApiError::bad_request(format!("the body is not valid: {why}")).into()
    })
}
