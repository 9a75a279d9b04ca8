//! `/dashboard/clients` (workspace owners and server admins): the clients,
//! "Add client" with presets (the "CLI / device" one makes a public
//! device-flow client with refresh tokens) and "Rotate secret", each
//! secret shown once.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};

use super::{Answer, Nav, Visit, bad_form, query_of, refused, signed_in, signed_in_form};
use crate::crypto::tokens::Secret;
use crate::domain::clients::ClientSpec;
use crate::domain::{Error, ErrorCode};
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

#[derive(Default)]
struct Shown<'a> {
    secret: Option<(String, &'a Secret, bool)>,
    notice: Option<&'a str>,
    error: Option<String>,
}

async fn render(
    v: &Visit<'_>,
    after: Option<&str>,
    status: StatusCode,
    shown: Shown<'_>,
) -> Answer {
    let found =
        v.kp.clients_page(&v.user, after, None)
            .await
            .map_err(|e| refused(&e))?;
    let csrf = v.csrf();
    let html = ClientsPage {
        nav: &v.nav,
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
    Ok(page(status, html.render(), Some(&csrf)))
}

/// `GET /dashboard/clients`.
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    render(&v, query.get("after"), StatusCode::OK, Shown::default()).await
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
async fn answer_refusal(v: &Visit<'_>, e: Error) -> Answer {
    match e {
        Error::OAuth {
            code: ErrorCode::InvalidRequest | ErrorCode::InvalidClientMetadata,
            description,
        } => {
            let shown = Shown {
                error: Some(format!("Nothing changed: {description}.")),
                ..Shown::default()
            };
            render(v, None, StatusCode::BAD_REQUEST, shown).await
        }
        e => Err(refused(&e)),
    }
}

/// `POST /dashboard/clients`: "Add client".
pub async fn add(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Answer {
    let (form, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    let spec = spec_of(&form).map_err(bad_form)?;
    match kp.add_client_as(&v.user, spec, &caller).await {
        Ok((client, secret)) => {
            let shown = Shown {
                secret: secret
                    .as_ref()
                    .map(|s| (client.id.as_str().to_string(), s, false)),
                notice: Some("The client is added."),
                error: None,
            };
            render(&v, None, StatusCode::OK, shown).await
        }
        Err(e) => answer_refusal(&v, e).await,
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
) -> Answer {
    let (_, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    match kp.rotate_secret_as(&v.user, &id, &caller).await {
        Ok(secret) => {
            let shown = Shown {
                secret: Some((id, &secret, true)),
                ..Shown::default()
            };
            render(&v, None, StatusCode::OK, shown).await
        }
        Err(e) => answer_refusal(&v, e).await,
    }
}
