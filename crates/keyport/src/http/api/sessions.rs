//! `/api/v1/sessions` and `/api/v1/workspaces/{slug}/sessions`: live CLI
//! sessions, the caller's own or (admins) a workspace's, and revoking one.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

use super::json::{ErrorBody, SessionPage, SessionView};
use super::{Reply, authorize, json_reply, page_ask, query};
use crate::domain::scopes::Role;
use crate::domain::workspaces::ListedSession;
use crate::domain::workspaces::Page;
use crate::service::{Caller, Keyport};

fn session_page(page: Page<ListedSession>) -> SessionPage {
    SessionPage {
        items: page.items.into_iter().map(SessionView::from).collect(),
        next_cursor: page.next,
    }
}

/// The caller's own live CLI sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    params(super::json::PageParams),
    responses(
        (status = 200, description = "A page of the caller's sessions", body = SessionPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:read", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn mine(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:read").await?;
    let ask = page_ask(&query(&uri)?)?;
    let page = kp
        .my_sessions(&authed.user, ask.cursor.as_deref(), ask.limit)
        .await?;
    Ok(json_reply(StatusCode::OK, session_page(page)))
}

/// Every member's live CLI sessions in the workspace (admins and owners).
#[utoipa::path(
    get,
    path = "/api/v1/workspaces/{slug}/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    params(
        ("slug" = String, Path, description = "The workspace's slug"),
        super::json::PageParams,
    ),
    responses(
        (status = 200, description = "A page of the workspace's sessions", body = SessionPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:read, is bound to another \
                                      workspace, or its role is below admin", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn of_workspace(
    State(kp): State<Keyport>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:read").await?;
    let ask = page_ask(&query(&uri)?)?;
    authed.principal.in_workspace(&slug, Role::Admin)?;
    let (_, page) = kp
        .workspace_sessions(&authed.user, &slug, ask.cursor.as_deref(), ask.limit)
        .await?;
    Ok(json_reply(StatusCode::OK, session_page(page)))
}

/// Revokes a CLI session: the caller's own, or any in a workspace where the
/// caller is an admin. Its refresh token stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No token, or an invalid one (revoking the token's own \
                                      session ends it too)", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:write", body = ErrorBody),
        (status = 404, description = "No such live session that the caller may revoke", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:write").await?;
    kp.revoke_session_as(&authed.user, &id, &caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
