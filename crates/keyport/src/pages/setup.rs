//! The first-run setup page: the form behind the one-time link
//! ([`crate::domain::setup`]) that creates the first admin.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{csrf_for, csrf_ok, message, page, read_page_form};
use crate::domain::setup::FirstAdmin;
use crate::domain::signin::hash_password;
use crate::service::{Caller, Keyport};

pub use crate::domain::setup::{SETUP_LINK_SECS, SETUP_TOKEN};

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

pub async fn form(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    if kp.live_setup_token(&token).await.is_none() {
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
        true => kp.live_setup_token(&token).await,
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
    let admin = FirstAdmin {
        email,
        name: form.get("name").map(str::to_string),
        password_hash: phc,
    };
    let created = kp.create_first_admin(stored, admin, &caller).await;
    match created {
        Ok(true) => message(StatusCode::OK, "Admin created", vec!["You can now sign in on the device page and manage Keyport with the admin commands.".into()]),
        Ok(false) => message(StatusCode::FORBIDDEN, "Link not valid", vec!["This setup link was used already, or a user exists now.".into()]),
        Err(_) => message(StatusCode::SERVICE_UNAVAILABLE, "Setup failed", vec!["Could not save the admin; try again.".into()]),
    }
}
