//! `/api/v1/workspaces`: the token's workspace, its members, and
//! invitations (refused to every token: seed 000 makes them browser-only).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};

use super::json::{ErrorBody, MemberPage, MemberView, NewInvitation, WorkspaceList, WorkspaceView};
use super::{Reply, authenticate, authorize, json_reply, page_ask, query};
use crate::domain::scopes::Role;
use crate::domain::workspaces::forbidden;
use crate::service::Keyport;

/// The workspace the token is bound to, with the caller's current role: a
/// list of one (or none, for a token bound to no workspace).
#[utoipa::path(
    get,
    path = "/api/v1/workspaces",
    tag = "workspaces",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's workspace", body = WorkspaceList),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:read", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:read").await?;
    let mut items = Vec::new();
    if let Some(slug) = authed.principal.workspace_slug.as_deref() {
        // The role is read again; a membership gone since is simply no row.
        if let Ok((ws, role)) = kp.membership(&authed.user, slug).await {
            items.push(WorkspaceView::new(ws, role));
        }
    }
    Ok(json_reply(
        StatusCode::OK,
        WorkspaceList {
            items,
            next_cursor: None,
        },
    ))
}

/// The workspace's members (admins and owners).
#[utoipa::path(
    get,
    path = "/api/v1/workspaces/{slug}/members",
    tag = "workspaces",
    security(("bearer" = [])),
    params(
        ("slug" = String, Path, description = "The workspace's slug"),
        super::json::PageParams,
    ),
    responses(
        (status = 200, description = "A page of members, by email", body = MemberPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:read, is bound to another \
                                      workspace, or its role is below admin", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn members(
    State(kp): State<Keyport>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:read").await?;
    let ask = page_ask(&query(&uri)?)?;
    authed.principal.in_workspace(&slug, Role::Admin)?;
    let (_, _, page) = kp
        .members(&authed.user, &slug, ask.cursor.as_deref(), ask.limit)
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        MemberPage {
            items: page.items.into_iter().map(MemberView::from).collect(),
            next_cursor: page.next,
        },
    ))
}

/// Refused to every token: invitations are made only from a signed-in
/// browser (`/dashboard/workspaces/{slug}/members`), so a leaked token
/// cannot bring anyone into a workspace.
#[utoipa::path(
    post,
    path = "/api/v1/workspaces/{slug}/invitations",
    tag = "workspaces",
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "The workspace's slug")),
    request_body = NewInvitation,
    responses(
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "Always, for any valid token: insufficient_scope", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn invite(State(kp): State<Keyport>, headers: HeaderMap) -> Reply {
    authenticate(&kp, &headers).await?;
    Err(forbidden("invitations are made only from a signed-in browser").into())
}
