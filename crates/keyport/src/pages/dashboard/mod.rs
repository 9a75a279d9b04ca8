//! The dashboard (`/dashboard/…`): a signed-in person's CLI sessions and
//! API keys, and for a workspace's admins its members, invitations, CLI
//! sessions and audit trail; for owners the clients. Server-rendered, no
//! JavaScript, CSRF on every form; without a session every path sends the
//! browser to `/signin?next=…` (303).

pub mod api_keys;
pub mod audit;
pub mod clients;
pub mod members;
pub mod sessions;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::device::{current_user, url_encode};
use super::{Csrf, checked_form, csrf_for, error_page, message};
use crate::domain::User;
use crate::domain::scopes::Role;
use crate::http::params::Params;
use crate::service::Keyport;

/// What every dashboard page shows around its content: who is signed in,
/// and links to what they may see.
pub struct Nav {
    pub email: String,
    /// (slug, name, whether the user is an admin there)
    pub workspaces: Vec<(String, String, bool)>,
    pub clients: bool,
}

/// A signed-in person's request to the dashboard: what every page needs to
/// answer it.
pub(crate) struct Visit<'a> {
    pub kp: &'a Keyport,
    pub headers: &'a HeaderMap,
    pub user: User,
    pub nav: Nav,
}

impl Visit<'_> {
    /// The CSRF token and cookie for a page about to be rendered.
    pub fn csrf(&self) -> Csrf {
        csrf_for(self.kp, self.headers)
    }
}

/// What a dashboard handler answers: a page, or the page that stopped it
/// early (sign in first, a refused form).
pub type Answer = Result<Response, Response>;

/// The signed-in visit, or the redirect to sign in.
pub(crate) async fn signed_in<'a>(
    kp: &'a Keyport,
    headers: &'a HeaderMap,
    uri: &Uri,
) -> Result<Visit<'a>, Response> {
    let user = match current_user(kp, headers).await {
        Ok(Some((user, _, _))) => user,
        Ok(None) => {
            let next = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/dashboard");
            return Err(Redirect::to(&format!("/signin?next={}", url_encode(next))).into_response());
        }
        Err(e) => return Err(error_page(&e)),
    };
    let nav = nav_for(kp, &user).await.map_err(|e| error_page(&e))?;
    Ok(Visit {
        kp,
        headers,
        user,
        nav,
    })
}

async fn nav_for(kp: &Keyport, user: &User) -> Result<Nav, crate::domain::Error> {
    let workspaces = kp.workspaces_of(user).await?;
    let clients = user.is_admin || workspaces.iter().any(|(_, r)| *r == Role::Owner);
    Ok(Nav {
        email: user.email.clone(),
        workspaces: workspaces
            .into_iter()
            .map(|(ws, role)| (ws.slug, ws.name, role >= Role::Admin))
            .collect(),
        clients,
    })
}

/// A posted dashboard form: its CSRF token checked, and the signed-in visit.
pub(crate) async fn signed_in_form<'a>(
    kp: &'a Keyport,
    headers: &'a HeaderMap,
    uri: &Uri,
    body: Body,
) -> Result<(Params, Visit<'a>), Response> {
    let form = checked_form(kp, headers, body).await?;
    let visit = signed_in(kp, headers, uri).await?;
    Ok((form, visit))
}

/// `GET /dashboard`.
pub async fn home() -> Response {
    Redirect::to("/dashboard/sessions").into_response()
}

/// A form's own redirect back: a local dashboard path only.
pub(crate) fn back_to(form: &Params, default: &str) -> Response {
    let back = form
        .get("back")
        .filter(|b| super::is_local_path(b) && b.starts_with("/dashboard"))
        .unwrap_or(default);
    Redirect::to(back).into_response()
}

/// "2026-12-06 17:41 UTC".
pub(crate) fn when(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

pub(crate) fn when_opt(secs: Option<i64>) -> String {
    secs.map(when).unwrap_or_else(|| "never".into())
}

/// The query string's parameters; a malformed one reads as none.
pub(crate) fn query_of(uri: &Uri) -> Params {
    crate::http::params::parse_query(uri.query().unwrap_or("")).unwrap_or_default()
}

/// A page answering a refused form: the refusal explained, the status kept.
pub(crate) fn refused(e: &crate::domain::Error) -> Response {
    error_page(e)
}

pub(crate) fn bad_form(why: &str) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "Bad request",
        vec![why.to_string()],
    )
}
