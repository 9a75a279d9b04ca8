//! `/api/v1/api-keys`: the caller's keys, listed without the keys
//! themselves. Making and revoking keys is refused to every token (seed
//! 000): a key is made only in a signed-in browser, so a leaked token
//! cannot mint itself a longer-lived one.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

use super::json::{ApiKeyPage, ApiKeyView, ErrorBody, NewApiKey};
use super::{Reply, authenticate, authorize, json_reply, page_ask, query};
use crate::domain::workspaces::forbidden;
use crate::service::Keyport;

/// The caller's API keys, newest first, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = [])),
    params(super::json::PageParams),
    responses(
        (status = 200, description = "A page of the caller's keys", body = ApiKeyPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:read", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:read").await?;
    let ask = page_ask(&query(&uri)?)?;
    let page = kp
        .api_keys_of(&authed.user, ask.cursor.as_deref(), ask.limit)
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        ApiKeyPage {
            items: page.items.into_iter().map(ApiKeyView::from).collect(),
            next_cursor: page.next,
        },
    ))
}

/// Refused to every token: keys are made only from a signed-in browser
/// (`/dashboard/api-keys`).
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = [])),
    request_body = NewApiKey,
    responses(
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "Always, for any valid token: insufficient_scope", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn create(State(kp): State<Keyport>, headers: HeaderMap) -> Reply {
    authenticate(&kp, &headers).await?;
    Err(forbidden("API keys are made only from a signed-in browser").into())
}

/// Refused to every token: keys are revoked only from a signed-in browser
/// (`/dashboard/api-keys`).
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api-keys",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "Always, for any valid token: insufficient_scope", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn revoke(State(kp): State<Keyport>, headers: HeaderMap) -> Reply {
    authenticate(&kp, &headers).await?;
    Err(forbidden("API keys are revoked only from a signed-in browser").into())
}
