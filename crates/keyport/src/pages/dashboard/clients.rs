//! `/dashboard/clients` (workspace owners and server admins): the clients,
//! "Add client" with presets (the "CLI / device" one makes a public
//! device-flow client with refresh tokens) and "Rotate secret", each
//! secret shown once.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use super::{Nav, bad_form, csrf, query_of, refused, signed_in, signed_in_form};
use crate::crypto::tokens::Secret;
use crate::domain::clients::ClientSpec;
use crate::domain::{Error, ErrorCode, User};
use crate::pages::page;
use crate::service::{Caller, Keyport};
use keyport_proto::DEVICE_CODE_GRANT;

pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub grants: String,
    pub scopes: String,
    pub rotatable: bool,
}

#[derive(Template)]
#[template(path = "dashboard/clients.html")]
struct ClientsPage<'a> {
    nav: &'a Nav,
    csrf: &'a str,
    /// (client id, secret, whether an older secret still works)
    secret: Option<(String, &'a str, bool)>,
    notice: Option<&'a str>,
    error: Option<String>,
    clients: Vec<ClientRow>,
    next: Option<String>,
}

struct Shown<'a> {
    secret: Option<(String, &'a Secret, bool)>,
    notice: Option<&'a str>,
    error: Option<String>,
}

async fn render(
    kp: &Keyport,
    headers: &HeaderMap,
    user: &User,
    nav: &Nav,
    after: Option<&str>,
    status: StatusCode,
    shown: Shown<'_>,
) -> Response {
    let found = match kp.clients_page(user, after, None).await {
        Ok(found) => found,
        Err(e) => return refused(&e),
    };
    let csrf = csrf(kp, headers);
    let html = ClientsPage {
        nav,
        csrf: &csrf.token,
        secret: shown.secret.map(|(id, s, grace)| (id, s.expose(), grace)),
        notice: shown.notice,
        error: shown.error,
        clients: found
            .items
            .into_iter()
            .map(|c| ClientRow {
                rotatable: c.confidential && c.source != "config",
                kind: if c.confidential {
                    "confidential"
                } else {
                    "public"
                },
                grants: c
                    .grants
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                scopes: c.scopes.join(" "),
                id: c.id.as_str().to_string(),
                name: c.name,
            })
            .collect(),
        next: found.next,
    };
    page(status, html.render(), Some(&csrf))
}

/// `GET /dashboard/clients`.
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Response {
    let (user, nav) = match signed_in(&kp, &headers, &uri).await {
        Ok(both) => both,
        Err(response) => return response,
    };
    let query = query_of(&uri);
    let shown = Shown {
        secret: None,
        notice: None,
        error: None,
    };
    render(
        &kp,
        &headers,
        &user,
        &nav,
        query.get("after"),
        StatusCode::OK,
        shown,
    )
    .await
}

fn words(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The settings a preset stands for, with what the form adds.
fn spec_of(form: &crate::http::params::Params) -> Result<ClientSpec, &'static str> {
    let (confidential, grants): (bool, &[&str]) = match form.get("preset") {
        Some("cli") | None => (false, &[DEVICE_CODE_GRANT, "refresh_token"]),
        Some("web") => (true, &["authorization_code", "refresh_token"]),
        Some("spa") => (false, &["authorization_code", "refresh_token"]),
        Some("service") => (true, &["client_credentials"]),
        Some(_) => return Err("Choose a preset from the list."),
    };
    let mut scopes = words(form.get("scopes"));
    if scopes.is_empty() && grants.contains(&"refresh_token") {
        scopes = vec![
            "openid".into(),
            "profile".into(),
            "email".into(),
            "offline_access".into(),
        ];
    }
    Ok(ClientSpec {
        id: form.get("id").unwrap_or("").trim().to_string(),
        name: form.get("name").unwrap_or("").trim().to_string(),
        confidential,
        grants: grants.iter().map(|g| g.to_string()).collect(),
        scopes,
        default_scopes: Vec::new(),
        audiences: words(form.get("audiences")),
        redirect_uris: words(form.get("redirect_uris")),
        first_party: false,
        access_token_format: None,
        access_token_alg: None,
        access_token_prefix: None,
        refresh_token_prefix: None,
    })
}

/// Refusals the page explains beside the form; anything else is its own page.
async fn answer_refusal(
    kp: &Keyport,
    headers: &HeaderMap,
    user: &User,
    nav: &Nav,
    e: Error,
) -> Response {
    match e {
        Error::OAuth {
            code: ErrorCode::InvalidRequest | ErrorCode::InvalidClientMetadata,
            description,
        } => {
            let shown = Shown {
                secret: None,
                notice: None,
                error: Some(format!("Nothing changed: {description}.")),
            };
            render(kp, headers, user, nav, None, StatusCode::BAD_REQUEST, shown).await
        }
        e => refused(&e),
    }
}

/// `POST /dashboard/clients`: "Add client".
pub async fn add(
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
    let spec = match spec_of(&form) {
        Ok(spec) => spec,
        Err(why) => return bad_form(why),
    };
    match kp.add_client_as(&user, spec, &caller).await {
        Ok((client, secret)) => {
            let shown = Shown {
                secret: secret
                    .as_ref()
                    .map(|s| (client.id.as_str().to_string(), s, false)),
                notice: Some("The client is added."),
                error: None,
            };
            render(&kp, &headers, &user, &nav, None, StatusCode::OK, shown).await
        }
        Err(e) => answer_refusal(&kp, &headers, &user, &nav, e).await,
    }
}

/// `POST /dashboard/clients/{id}/rotate-secret`.
pub async fn rotate_secret(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let (_, user, nav) = match signed_in_form(&kp, &headers, &uri, body).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    match kp.rotate_secret_as(&user, &id, &caller).await {
        Ok(secret) => {
            let shown = Shown {
                secret: Some((id, &secret, true)),
                notice: None,
                error: None,
            };
            render(&kp, &headers, &user, &nav, None, StatusCode::OK, shown).await
        }
        Err(e) => answer_refusal(&kp, &headers, &user, &nav, e).await,
    }
}
