//! First-run setup: on an empty database `keyport serve` prints a one-time
//! link; this page creates the first admin (owner of a `default` workspace).

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{csrf_for, csrf_ok, message, page, read_page_form};
use crate::crypto::{self, constant_time_eq, hash_secret};
use crate::domain::signin::hash_password;
use crate::service::{Caller, Keyport};
use crate::store::{self, directory::NewUser, directory::Workspace};

pub const SETUP_TOKEN: &str = "setup_token_hash";

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    csrf: &'a str,
    token: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

/// Creates a fresh one-time setup token when no user exists yet.
pub async fn setup_link(kp: &Keyport) -> Result<Option<String>, store::Error> {
    if store::directory::count_users(kp.store.pool()).await? > 0 {
        return Ok(None);
    }
    let token = crypto::random_token();
    let hash = hash_secret(&token);
    kp.store
        .write(move |c| Box::pin(async move { store::settings::set(c, SETUP_TOKEN, &hash).await }))
        .await?;
    Ok(Some(format!("{}/setup?token={token}", kp.config.issuer)))
}

async fn token_valid(kp: &Keyport, token: &str) -> bool {
    match store::settings::get(kp.store.pool(), SETUP_TOKEN).await {
        Ok(Some(expected)) => constant_time_eq(expected.as_bytes(), hash_secret(token).as_bytes()),
        _ => false,
    }
}

pub async fn form(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    if !token_valid(&kp, &token).await {
        return message(
            StatusCode::NOT_FOUND,
            "Link not valid",
            vec!["This setup link was used already or is not valid.".into()],
        );
    }
    let csrf = csrf_for(&kp, &headers);
    page(
        StatusCode::OK,
        SetupPage {
            csrf: &csrf.token,
            token: &token,
            error: None,
        }
        .render(),
        Some(&csrf),
    )
}

pub async fn create(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_page_form(body).await {
        Ok(form) => form,
        Err(page) => return page,
    };
    let token = form.get("token").unwrap_or("").to_string();
    if !csrf_ok(&kp, &headers, form.get("csrf_token")) || !token_valid(&kp, &token).await {
        return message(
            StatusCode::FORBIDDEN,
            "Request refused",
            vec!["Open the setup link again.".into()],
        );
    }
    let csrf = csrf_for(&kp, &headers);
    let email = form.get("email").unwrap_or("").trim().to_lowercase();
    let password = form.get("password").unwrap_or("").to_string();
    if !email.contains('@') || password.chars().count() < 12 {
        let error = Some("Give an email address and a password of at least 12 characters.");
        return page(
            StatusCode::BAD_REQUEST,
            SetupPage {
                csrf: &csrf.token,
                token: &token,
                error,
            }
            .render(),
            Some(&csrf),
        );
    }
    let Ok(Ok(phc)) = kp.password_work(move || hash_password(&password)).await else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Setup failed",
            vec!["Could not hash the password.".into()],
        );
    };
    let name = form.get("name").map(str::to_string);
    let now = kp.clock.now();
    let (token_hash, user_id) = (hash_secret(&token), crypto::random_id());
    let actor = email.clone();
    let created = kp
        .store
        .write(move |c| {
            Box::pin(async move {
                if !store::settings::take(&mut *c, SETUP_TOKEN, &token_hash).await? {
                    return Ok(false);
                }
                let user = NewUser {
                    id: &user_id,
                    email: &email,
                    name: name.as_deref(),
                    password_hash: &phc,
                    is_admin: true,
                    now,
                };
                store::directory::insert_user(&mut *c, user).await?;
                let ws = Workspace {
                    id: crypto::random_id(),
                    slug: "default".into(),
                    name: "Default".into(),
                };
                if store::directory::workspace_by_slug(&mut *c, "default")
                    .await?
                    .is_none()
                {
                    store::directory::insert_workspace(&mut *c, &ws, now).await?;
                }
                let ws = store::directory::workspace_by_slug(&mut *c, "default")
                    .await?
                    .unwrap_or(ws);
                store::directory::upsert_membership(&mut *c, &ws.id, &user_id, "owner", now)
                    .await?;
                crate::domain::audit::Audit::new("admin.setup", "success")
                    .actor(Some(&actor))
                    .record(c, now * 1000, &caller)
                    .await?;
                Ok(true)
            })
        })
        .await;
    match created {
        Ok(true) => message(StatusCode::OK, "Admin created", vec!["You can now sign in on the device page and manage Keyport with the admin commands.".into()]),
        Ok(false) => message(StatusCode::FORBIDDEN, "Link not valid", vec!["This setup link was used already.".into()]),
        Err(_) => message(StatusCode::SERVICE_UNAVAILABLE, "Setup failed", vec!["Could not save the admin; try again.".into()]),
    }
}
