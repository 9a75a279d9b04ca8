//! CLI sessions on the dashboard: a person's own (`/dashboard/sessions`)
//! and, for a workspace's admins, every member's
//! (`/dashboard/workspaces/{slug}/sessions`), each with "Revoke".

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::{Answer, Nav, Visit, back_to, query_of, refused, signed_in, signed_in_form, when};
use crate::domain::workspaces::ListedSession;
use crate::pages::page;
use crate::service::{Caller, Keyport};

pub struct Row {
    pub id: String,
    pub user: String,
    pub client: String,
    pub label: String,
    pub os: String,
    pub ip: String,
    pub created: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "dashboard/sessions.html")]
struct SessionsPage<'a> {
    nav: &'a Nav,
    csrf: &'a str,
    heading: String,
    show_user: bool,
    rows: Vec<Row>,
    next: Option<String>,
    back: &'a str,
}

fn row(listed: ListedSession) -> Row {
    let s = listed.session;
    let device: serde_json::Value = serde_json::from_str(&s.metadata).unwrap_or_default();
    let text = |key: &str| device.get(key).and_then(|v| v.as_str()).unwrap_or("");
    let os = [text("os_type"), text("os_version")]
        .iter()
        .filter(|t| !t.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let label = s
        .label
        .clone()
        .or_else(|| Some(text("dns_name").to_string()).filter(|t| !t.is_empty()))
        .unwrap_or_default();
    Row {
        id: s.id,
        user: listed.email.unwrap_or_default(),
        client: s.client_id,
        label,
        os,
        ip: s.ip.unwrap_or_default(),
        created: when(s.created_at),
        last_used: when(s.last_used_at),
    }
}

/// `GET /dashboard/sessions`.
pub async fn mine(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    let found = kp
        .my_sessions(&v.user, query.get("after"), None)
        .await
        .map_err(|e| refused(&e))?;
    let heading = "My CLI sessions".to_string();
    Ok(render(&v, heading, false, found, "/dashboard/sessions"))
}

/// `GET /dashboard/workspaces/{slug}/sessions` (admins).
pub async fn workspace(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    let (ws, found) = kp
        .workspace_sessions(&v.user, &slug, query.get("after"), None)
        .await
        .map_err(|e| refused(&e))?;
    let heading = format!("CLI sessions in {}", ws.name);
    Ok(render(&v, heading, true, found, uri.path()))
}

fn render(
    v: &Visit<'_>,
    heading: String,
    show_user: bool,
    found: crate::domain::workspaces::Page<ListedSession>,
    back: &str,
) -> Response {
    let csrf = v.csrf();
    let html = SessionsPage {
        nav: &v.nav,
        csrf: &csrf.token,
        heading,
        show_user,
        rows: found.items.into_iter().map(row).collect(),
        next: found.next,
        back,
    };
    page(StatusCode::OK, html.render(), Some(&csrf))
}

/// `POST /dashboard/sessions/{id}/revoke`: the person's own session, or as
/// an admin any member's in their workspace.
pub async fn revoke(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let (form, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    kp.revoke_session_as(&v.user, &id, &caller)
        .await
        .map_err(|e| refused(&e))?;
    Ok(back_to(&form, "/dashboard/sessions"))
}
