//! `/dashboard/api-keys`: a person's API keys. "Create API key" (name,
//! workspace, scopes the role allows, expiry) shows the key once; "Revoke"
//! ends one. Only a signed-in browser can do either.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Nav, bad_form, csrf, query_of, refused, signed_in, signed_in_form, when, when_opt};
use crate::crypto::tokens::Secret;
use crate::domain::api_keys::KeyRequest;
use crate::domain::{Error, User};
use crate::pages::page;
use crate::service::{Caller, Keyport};

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub workspace: String,
    pub scope: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "dashboard/api_keys.html")]
struct KeysPage<'a> {
    nav: &'a Nav,
    csrf: &'a str,
    /// (name, key) of a key just made: shown this once.
    created: Option<(String, &'a str)>,
    error: Option<String>,
    /// (slug, name, role)
    workspaces: Vec<(String, String, String)>,
    /// (scope, least role, description)
    scopes: Vec<(String, String, String)>,
    keys: Vec<KeyRow>,
    next: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn render(
    kp: &Keyport,
    headers: &HeaderMap,
    user: &User,
    nav: &Nav,
    after: Option<&str>,
    status: StatusCode,
    created: Option<(String, &Secret)>,
    error: Option<String>,
) -> Response {
    let (workspaces, keys) = match (
        kp.workspaces_of(user).await,
        kp.api_keys_of(user, after, None).await,
    ) {
        (Ok(ws), Ok(keys)) => (ws, keys),
        (Err(e), _) | (_, Err(e)) => return refused(&e),
    };
    let csrf = csrf(kp, headers);
    let html = KeysPage {
        nav,
        csrf: &csrf.token,
        created: created.map(|(name, key)| (name, key.expose())),
        error,
        workspaces: workspaces
            .into_iter()
            .map(|(ws, role)| (ws.slug, ws.name, role.to_string()))
            .collect(),
        scopes: kp
            .key_scopes()
            .into_iter()
            .map(|(name, role, about)| (name, role.to_string(), about))
            .collect(),
        keys: keys
            .items
            .into_iter()
            .map(|k| KeyRow {
                id: k.id,
                name: k.name,
                workspace: k.workspace_slug,
                scope: k.scope,
                created: when(k.created_at),
                expires: when_opt(k.expires_at),
                last_used: when_opt(k.last_used_at),
                revoked: k.revoked_at.is_some(),
            })
            .collect(),
        next: keys.next,
    };
    page(status, html.render(), Some(&csrf))
}

/// `GET /dashboard/api-keys`.
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Response {
    let (user, nav) = match signed_in(&kp, &headers, &uri).await {
        Ok(both) => both,
        Err(response) => return response,
    };
    let query = query_of(&uri);
    render(
        &kp,
        &headers,
        &user,
        &nav,
        query.get("after"),
        StatusCode::OK,
        None,
        None,
    )
    .await
}

/// `POST /dashboard/api-keys`: makes a key and shows it once.
pub async fn create(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let (form, user, nav) = match signed_in_form(&kp, &headers, &uri, body).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    let scopes: Vec<String> = form
        .iter()
        .filter_map(|(key, _)| key.strip_prefix("scope."))
        .map(str::to_string)
        .collect();
    let expires_in_days = match form.get("expires") {
        None => None,
        Some(days) => match days.parse::<i64>() {
            Ok(days) => Some(days),
            Err(_) => return bad_form("Choose when the key expires from the list."),
        },
    };
    let asked = KeyRequest {
        name: form.get("name").unwrap_or(""),
        workspace: form.get("workspace").unwrap_or(""),
        scopes: &scopes,
        expires_in_days,
    };
    match kp.create_api_key(&user, &asked, &caller).await {
        Ok((key, secret)) => {
            render(
                &kp,
                &headers,
                &user,
                &nav,
                None,
                StatusCode::OK,
                Some((key.name, &secret)),
                None,
            )
            .await
        }
        Err(Error::OAuth { description, code }) if code != crate::domain::ErrorCode::NotFound => {
            render(
                &kp,
                &headers,
                &user,
                &nav,
                None,
                StatusCode::BAD_REQUEST,
                None,
                Some(format!("No key was made: {description}.")),
            )
            .await
        }
        Err(e) => refused(&e),
    }
}

/// `POST /dashboard/api-keys/{id}/revoke`.
pub async fn revoke(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let (_, user, _) = match signed_in_form(&kp, &headers, &uri, body).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    match kp.revoke_api_key(&user, &id, &caller).await {
        Ok(()) => Redirect::to("/dashboard/api-keys").into_response(),
        Err(e) => refused(&e),
    }
}
