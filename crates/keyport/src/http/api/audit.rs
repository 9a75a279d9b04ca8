//! `/api/v1/workspaces/{slug}/audit`: a workspace's audit trail, newest
//! first, filtered by actor, event, client and time (unix seconds).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};

use super::json::{AuditEventView, AuditPage, ErrorBody};
use super::{Reply, authorize, json_reply, page_ask, query};
use crate::domain::scopes::Role;
use crate::domain::workspaces::AuditFilter as Filter;
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::service::Keyport;

/// The latest instant a filter may name: the end of year 9999, so that
/// milliseconds never overflow.
const LATEST: i64 = 253_402_300_799;

fn unix_seconds(params: &Params, name: &'static str) -> Result<Option<i64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(secs) if (0..=LATEST).contains(&secs) => Ok(Some(secs)),
            _ => Err(ApiError::bad_request(format!(
                "{name} must be a time in unix seconds"
            ))),
        },
    }
}

/// The workspace's audit trail (admins and owners, `audit:read`).
#[utoipa::path(
    get,
    path = "/api/v1/workspaces/{slug}/audit",
    tag = "audit",
    security(("bearer" = [])),
    params(
        ("slug" = String, Path, description = "The workspace's slug"),
        super::json::AuditParams,
    ),
    responses(
        (status = 200, description = "A page of events, newest first", body = AuditPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks audit:read, is bound to another \
                                      workspace, or its role is below admin", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn trail(
    State(kp): State<Keyport>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Reply {
    let authed = authorize(&kp, &headers, "audit:read").await?;
    let params = query(&uri)?;
    let ask = page_ask(&params)?;
    let filter = Filter {
        actor: params.get("actor").map(str::to_string),
        event: params.get("event").map(str::to_string),
        client_id: params.get("client_id").map(str::to_string),
        from_ms: unix_seconds(&params, "from")?.map(|s| s * 1000),
        to_ms: unix_seconds(&params, "to")?.map(|s| s * 1000),
    };
    authed.principal.in_workspace(&slug, Role::Admin)?;
    let (_, page) = kp
        .audit_page(
            &authed.user,
            &slug,
            &filter,
            ask.cursor.as_deref(),
            ask.limit,
        )
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        AuditPage {
            items: page.items.into_iter().map(AuditEventView::from).collect(),
            next_cursor: page.next,
        },
    ))
}
