//! First-run setup: on an empty database `keyport serve` prints a one-time
//! link; this page creates the first admin (owner of a `default` workspace).
//! The link is stored only as a hash, expires after an hour, and dies the
//! moment any user exists, however that user was made (checked on every use).

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

/// How long a setup link works.
pub const SETUP_LINK_SECS: i64 = 3600;

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

/// Creates a fresh one-time setup link when no user exists yet (replacing
/// any earlier one); once users exist, forgets any link left over.
pub async fn setup_link(kp: &Keyport) -> Result<Option<String>, store::Error> {
    let expires_at = kp.clock.now() + SETUP_LINK_SECS;
    let token = crypto::random_token();
    let stored = stored_value(expires_at, &hash_secret(&token));
    let created = kp
        .store
        .write(move |c| {
            Box::pin(async move {
                if store::directory::count_users(&mut *c).await? > 0 {
                    store::settings::delete(c, SETUP_TOKEN).await?;
                    return Ok(false);
                }
                store::settings::set(c, SETUP_TOKEN, &stored).await?;
                Ok(true)
            })
        })
        .await?;
    Ok(created.then(|| format!("{}/setup?token={token}", kp.config.issuer)))
}

/// What the settings table keeps: the expiry and the token's hash.
fn stored_value(expires_at: i64, hash: &str) -> String {
    format!("{expires_at}:{hash}")
}

/// The stored value of a setup token that still works: not expired, it
/// matches, and no user exists yet.
async fn live_token(kp: &Keyport, token: &str) -> Option<String> {
    let pool = kp.store.pool();
    let stored = store::settings::get(pool, SETUP_TOKEN).await.ok()??;
    let (expires_at, expected) = stored.split_once(':')?;
    let live = expires_at.parse::<i64>().ok()? > kp.clock.now()
        && constant_time_eq(expected.as_bytes(), hash_secret(token).as_bytes())
        && store::directory::count_users(pool).await.ok()? == 0;
    live.then_some(stored)
}

pub async fn form(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    if live_token(&kp, &token).await.is_none() {
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
    let live = match csrf_ok(&kp, &headers, form.get("csrf_token")) {
        true => live_token(&kp, &token).await,
        false => None,
    };
    let Some(stored) = live else {
        return message(
            StatusCode::FORBIDDEN,
            "Request refused",
            vec!["Open the setup link again.".into()],
        );
    };
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
    let user_id = crypto::random_id();
    let actor = email.clone();
    let created = kp
        .store
        .write(move |c| {
            Box::pin(async move {
                // Taken in the same transaction that adds the first user, and
                // only while there is none: one admin, once.
                if !store::settings::take(&mut *c, SETUP_TOKEN, &stored).await?
                    || store::directory::count_users(&mut *c).await? > 0
                {
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
        Ok(false) => message(StatusCode::FORBIDDEN, "Link not valid", vec!["This setup link was used already, or a user exists now.".into()]),
        Err(_) => message(StatusCode::SERVICE_UNAVAILABLE, "Setup failed", vec!["Could not save the admin; try again.".into()]),
    }
}
