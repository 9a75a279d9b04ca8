//! `/dashboard/api-keys`: a person's API keys. "Create API key" (name,
//! workspace, scopes the role allows, expiry) shows the key once; "Revoke"
//! ends one. Only a signed-in browser can do either.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};

use super::{
    Answer, Nav, Visit, bad_form, query_of, refused, signed_in, signed_in_form, when, when_opt,
};
use crate::crypto::tokens::Secret;
use crate::domain::Error;
use crate::domain::api_keys::KeyRequest;
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

/// What a render shows beside the list: a key just made, or why none was.
#[derive(Default)]
struct Shown<'a> {
    created: Option<(String, &'a Secret)>,
    error: Option<String>,
}

async fn render(
    v: &Visit<'_>,
    after: Option<&str>,
    status: StatusCode,
    shown: Shown<'_>,
) -> Answer {
    let (kp, user) = (v.kp, &v.user);
    let workspaces = kp.workspaces_of(user).await.map_err(|e| refused(&e))?;
    let keys = kp
        .api_keys_of(user, after, None)
        .await
        .map_err(|e| refused(&e))?;
    let csrf = v.csrf();
    let html = KeysPage {
        nav: &v.nav,
        csrf: &csrf.token,
        created: shown.created.map(|(name, key)| (name, key.expose())),
        error: shown.error,
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
    Ok(page(status, html.render(), Some(&csrf)))
}

/// `GET /dashboard/api-keys`.
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    render(&v, query.get("after"), StatusCode::OK, Shown::default()).await
}

/// `POST /dashboard/api-keys`: makes a key and shows it once.
pub async fn create(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Answer {
    let (form, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    let scopes: Vec<String> = form
        .iter()
        .filter_map(|(key, _)| key.strip_prefix("scope."))
        .map(str::to_string)
        .collect();
    let expires_in_days = match form.get("expires") {
        None => None,
        Some(days) => match days.parse::<i64>() {
            Ok(days) => Some(days),
            Err(_) => return Err(bad_form("Choose when the key expires from the list.")),
        },
    };
    let asked = KeyRequest {
        name: form.get("name").unwrap_or(""),
        workspace: form.get("workspace").unwrap_or(""),
        scopes: &scopes,
        expires_in_days,
    };
    match kp.create_api_key(&v.user, &asked, &caller).await {
        Ok((key, secret)) => {
            let shown = Shown {
                created: Some((key.name, &secret)),
                error: None,
            };
            render(&v, None, StatusCode::OK, shown).await
        }
        Err(Error::OAuth { description, code }) if code != crate::domain::ErrorCode::NotFound => {
            let shown = Shown {
                created: None,
                error: Some(format!("No key was made: {description}.")),
            };
            render(&v, None, StatusCode::BAD_REQUEST, shown).await
        }
        Err(e) => Err(refused(&e)),
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
) -> Answer {
    let (_, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    kp.revoke_api_key(&v.user, &id, &caller)
        .await
        .map_err(|e| refused(&e))?;
    Ok(Redirect::to("/dashboard/api-keys").into_response())
}
