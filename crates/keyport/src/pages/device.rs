//! The hosted verification page (RFC 8628 §3.3): sign in, enter or confirm
//! the code (§5.4: the code is always shown to compare with the terminal),
//! choose a workspace, review the request, then Approve or Deny.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{
    Csrf, checked_form, cookies, csrf_for, csrf_ok, describe_expiry, error_page, message, page,
    read_cookie, read_page_form, with_retry_after,
};
use crate::crypto::tokens::{Password, SessionCookie};
use crate::domain::Error;
use crate::domain::User;
use crate::domain::device::{Consent, Decided, PendingRequest};
use crate::domain::metadata::DeviceMetadata;
use crate::domain::scopes::Role;
use crate::domain::signin::{SignInError, SignedIn};
use crate::domain::two_step::SENT_CODE_SECS as TWO_STEP_COOKIE_SECS;
use crate::service::{Caller, Keyport};

#[derive(Template)]
#[template(path = "signin.html")]
pub(super) struct SignInPage<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    pub user_code: Option<String>,
    /// Where to go once signed in (an authorization request).
    pub next: Option<String>,
    pub client_name: Option<&'a str>,
    pub email: &'a str,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "device_entry.html")]
struct EntryPage<'a> {
    email: &'a str,
    error: Option<&'a str>,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "device_approve.html")]
struct ApprovePage<'a> {
    client_name: &'a str,
    user_code: String,
    /// What the device said about itself, (what, text): shown apart.
    reported: Vec<(&'static str, String)>,
    workspace: Option<String>,
    workspace_slug: Option<String>,
    role: Option<String>,
    resource: Option<String>,
    origin: String,
    network_differs: bool,
    expires: String,
    /// (scope, description, granted)
    scopes: Vec<(String, String, bool)>,
    csrf: &'a str,
    request_id: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
    workspace: Option<String>,
}

/// The signed-in user, if the session cookie names a live session.
pub(crate) async fn current_user(
    kp: &Keyport,
    headers: &HeaderMap,
) -> Result<Option<(User, i64, SessionCookie)>, Error> {
    let Some(cookie) = read_cookie(headers, cookies(kp).session) else {
        return Ok(None);
    };
    let cookie = SessionCookie::new(cookie.to_string());
    Ok(kp
        .browser_user(&cookie)
        .await?
        .map(|(user, auth_time)| (user, auth_time, cookie)))
}

fn sign_in_page(
    status: StatusCode,
    csrf: &Csrf,
    user_code: Option<String>,
    email: &str,
    error: Option<String>,
) -> Response {
    sign_in_with_next(status, csrf, user_code, None, email, error)
}

fn sign_in_with_next(
    status: StatusCode,
    csrf: &Csrf,
    user_code: Option<String>,
    next: Option<String>,
    email: &str,
    error: Option<String>,
) -> Response {
    page(
        status,
        SignInPage {
            action: "/device/sign-in",
            csrf: &csrf.token,
            user_code,
            next,
            client_name: None,
            email,
            error,
        }
        .render(),
        Some(csrf),
    )
}

fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        vec!["Keyport cannot reach its database right now.".into()],
    )
}

/// The sign-in form carries the code being approved in this hidden field.
/// Its name avoids "user", "email" and "password": form fillers (browsers'
/// and scripts') match those words, and must never overwrite it.
const PENDING_CODE_FIELD: &str = "pending_code";

/// `GET /device` and `GET /device?user_code=…`.
/// With `[headless] ui_url`: the team's own UI takes the browser, with
/// the request the code names (`?request=ID&view=device`), or with
/// `error=invalid_code` for a code that names none.
async fn to_headless_ui(
    kp: &Keyport,
    caller: &Caller,
    ui: &str,
    user_code: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(ui) else {
        return unavailable();
    };
    if let Some(code) = user_code {
        match kp.request_id_for_user_code(code, caller).await {
            Ok(Some(id)) => {
                url.query_pairs_mut().append_pair("request", &id);
            }
            Ok(None) => {
                url.query_pairs_mut().append_pair("error", "invalid_code");
            }
            Err(e) => return error_page(&e),
        }
    }
    url.query_pairs_mut().append_pair("view", "device");
    Redirect::to(url.as_str()).into_response()
}

pub async fn verification_page(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<DeviceQuery>,
) -> Response {
    let csrf = csrf_for(&kp, &headers);
    let user_code = query
        .user_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(ui) = &kp.config.headless.ui_url {
        return to_headless_ui(&kp, &caller, ui, user_code).await;
    }
    let Ok(signed_in) = current_user(&kp, &headers).await else {
        return unavailable();
    };
    let Some((user, _, session)) = signed_in else {
        return sign_in_page(
            StatusCode::OK,
            &csrf,
            user_code.map(str::to_uppercase),
            "",
            None,
        );
    };
    let Some(code) = user_code else {
        return page(
            StatusCode::OK,
            EntryPage {
                email: &user.email,
                error: None,
                csrf: &csrf.token,
            }
            .render(),
            Some(&csrf),
        );
    };
    let pending = match kp
        .resolve_user_code(code, &user, Some(&session), &caller)
        .await
    {
        Ok(pending) => pending,
        Err(Error::Throttled { retry_after }) => {
            let error = Some("Too many wrong codes. Wait an hour, then try again.");
            let page = page(
                StatusCode::TOO_MANY_REQUESTS,
                EntryPage {
                    email: &user.email,
                    error,
                    csrf: &csrf.token,
                }
                .render(),
                Some(&csrf),
            );
            return with_retry_after(page, retry_after);
        }
        Err(Error::OAuth { .. }) => {
            let error =
                Some("That code is not valid or has expired. Check your terminal and try again.");
            return page(
                StatusCode::BAD_REQUEST,
                EntryPage {
                    email: &user.email,
                    error,
                    csrf: &csrf.token,
                }
                .render(),
                Some(&csrf),
            );
        }
        Err(_) => return unavailable(),
    };
    let Ok(memberships) = kp.memberships(&user).await else {
        return unavailable();
    };
    let chosen = match query.workspace.as_deref() {
        Some(slug) => memberships.iter().find(|(ws, _)| ws.slug == slug),
        None if memberships.len() <= 1 => memberships.first(),
        None => None,
    };
    if chosen.is_none() && !memberships.is_empty() {
        let workspaces = memberships
            .iter()
            .map(|(ws, role)| (ws.slug.clone(), ws.name.clone(), role.clone()))
            .collect();
        let shown = pending.user_code.display();
        let html = super::WorkspacePage {
            action: "/device",
            client_name: &pending.client.name,
            user_code: Some(shown.clone()),
            fields: vec![("user_code", shown)],
            workspaces,
        };
        return page(StatusCode::OK, html.render(), Some(&csrf));
    }
    approve_page(
        &kp,
        &caller,
        &csrf,
        pending,
        chosen.map(|(ws, role)| (ws.slug.clone(), ws.name.clone(), role.clone())),
    )
}

fn approve_page(
    kp: &Keyport,
    caller: &Caller,
    csrf: &Csrf,
    pending: PendingRequest,
    chosen: Option<(String, String, String)>,
) -> Response {
    let role = chosen.as_ref().and_then(|(_, _, role)| Role::parse(role));
    let scopes = kp.catalogue.review(&pending.requested, role);
    let caller_ip = caller.ip_string();
    let network_differs = pending.ip.is_some() && caller_ip.is_some() && pending.ip != caller_ip;
    let reported = reported_by_device(&pending.metadata);
    let html = ApprovePage {
        client_name: &pending.client.name,
        user_code: pending.user_code.display(),
        reported,
        workspace: chosen.as_ref().map(|(_, name, _)| name.clone()),
        workspace_slug: chosen.as_ref().map(|(slug, _, _)| slug.clone()),
        role: role.map(|r| r.to_string()),
        resource: pending.resource.clone(),
        origin: pending.ip.clone().unwrap_or_else(|| "unknown".into()),
        network_differs,
        expires: describe_expiry(pending.expires_at, kp.clock.now()),
        scopes,
        csrf: &csrf.token,
        request_id: &pending.id,
    };
    page(StatusCode::OK, html.render(), Some(csrf))
}

/// The device's own account of itself, field by field, for the approval
/// page (the text was cleaned when the request arrived).
fn reported_by_device(m: &DeviceMetadata) -> Vec<(&'static str, String)> {
    let software = m.client_info.as_ref().map(|i| {
        format!(
            "{} {}",
            i.name.as_deref().unwrap_or(""),
            i.version.as_deref().unwrap_or("")
        )
        .trim()
        .to_string()
    });
    let os = m.os_type.as_ref().map(|os| {
        format!("{os} {}", m.os_version.as_deref().unwrap_or(""))
            .trim()
            .to_string()
    });
    [
        ("Device name", m.cli_label.clone()),
        ("Host name", m.dns_name.clone()),
        ("Operating system", os),
        ("Software", software),
    ]
    .into_iter()
    .filter_map(|(what, text)| Some((what, text.filter(|t| !t.is_empty())?)))
    .collect()
}

/// `POST /device/sign-in`.
pub async fn sign_in(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let csrf = csrf_for(&kp, &headers);
    let form = match read_page_form(body).await {
        Ok(form) => form,
        Err(page) => return page,
    };
    let user_code = form.get(PENDING_CODE_FIELD).map(str::to_string);
    let next = form
        .get("next")
        .filter(|n| super::is_local_path(n))
        .map(str::to_string);
    let email = form.get("email").unwrap_or("").to_string();
    let sign_in_page = |status, csrf: &Csrf, user_code, email: &str, error| {
        sign_in_with_next(status, csrf, user_code, next.clone(), email, error)
    };
    if !csrf_ok(&kp, &headers, form.get("csrf_token")) {
        let error = Some("Your session expired. Please sign in again.".to_string());
        return sign_in_page(StatusCode::FORBIDDEN, &csrf, user_code, &email, error);
    }
    let password = Password::new(form.get("password").unwrap_or("").to_string());
    let target = match (&next, &user_code) {
        (Some(next), _) => next.clone(),
        (None, Some(code)) => format!("/device?user_code={}", url_encode(code)),
        (None, None) => "/device".to_string(),
    };
    match kp.sign_in(&email, &password, &caller).await {
        Ok(signed_in) => {
            // With two-step verification the session waits on the code page.
            let (id, location, max_age) = match signed_in {
                SignedIn::Done(session) => (session.id, target, 12 * 3600),
                SignedIn::CodeNeeded { id, .. } => (
                    id,
                    format!("/signin/code?next={}", url_encode(&target)),
                    TWO_STEP_COOKIE_SECS,
                ),
            };
            let names = cookies(&kp);
            let mut response = Redirect::to(&location).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                names.set(names.session, id.expose(), Some(max_age)),
            );
            response
        }
        Err(SignInError::Other(e)) => error_page(&e),
        Err(e @ SignInError::Throttled { retry_after }) => with_retry_after(
            sign_in_page(
                StatusCode::TOO_MANY_REQUESTS,
                &csrf,
                user_code,
                &email,
                Some(e.to_string()),
            ),
            retry_after,
        ),
        Err(e) => sign_in_page(
            StatusCode::UNAUTHORIZED,
            &csrf,
            user_code,
            &email,
            Some(e.to_string()),
        ),
    }
}

/// `POST /device/decision`: Approve or Deny.
pub async fn decision(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match checked_form(&kp, &headers, body).await {
        Ok(form) => form,
        Err(page) => return page,
    };
    let Ok(signed_in) = current_user(&kp, &headers).await else {
        return unavailable();
    };
    let Some((user, auth_time, _)) = signed_in else {
        return Redirect::to("/device").into_response();
    };
    let Some(request_id) = form.get("request_id") else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            vec!["The request is missing.".into()],
        );
    };
    let consent = match form.get("decision") {
        Some("approve") => Consent::Approve {
            workspace: form.get("workspace"),
        },
        Some("deny") => Consent::Deny,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                vec!["Choose Approve or Deny.".into()],
            );
        }
    };
    match kp.decide_device(request_id, &user, consent, auth_time, &caller).await {
        Ok(Decided::Approved { granted, refused }) => {
            let mut lines = vec!["The device is signed in. You can close this window and return to your terminal.".to_string()];
            lines.push(format!("Granted: {}", if granted.is_empty() { "(nothing)" } else { &granted }));
            if !refused.is_empty() {
                lines.push(format!("Not granted (your role does not allow it): {}", refused.join(" ")));
            }
            message(StatusCode::OK, "Device approved", lines)
        }
        Ok(Decided::Denied) => message(
            StatusCode::OK,
            "Request denied",
            vec!["The device was not signed in. If you did not start this request, consider changing your password.".into()],
        ),
        Err(e) => error_page(&e),
    }
}

pub(super) fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `POST /device/sign-out`: ends the browser session (a shared computer).
pub async fn sign_out(State(kp): State<Keyport>, headers: HeaderMap, body: Body) -> Response {
    if let Err(page) = checked_form(&kp, &headers, body).await {
        return page;
    }
    let names = cookies(&kp);
    let signed_in = read_cookie(&headers, names.session);
    if let Some(cookie) = signed_in
        && kp
            .sign_out(&SessionCookie::new(cookie.to_string()))
            .await
            .is_err()
    {
        return unavailable();
    }
    let mut response = message(
        StatusCode::OK,
        "Signed out",
        vec!["You are signed out of Keyport in this browser.".into()],
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, names.set(names.session, "", Some(0)));
    response
}
