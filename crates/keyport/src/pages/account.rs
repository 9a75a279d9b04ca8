//! The two-step pages: the code page every hosted sign-in passes through
//! when the account has a second step (`/signin/code`), and the account's
//! security settings (`/account/security`): the authenticator with its QR
//! code and recovery codes, email codes, text-message codes and the
//! password.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::device::{current_user, url_encode};
use super::{
    Csrf, checked_form, cookies, csrf_for, error_page, message, page, read_cookie, with_retry_after,
};
use crate::crypto::tokens::{Password, SessionCookie};
use crate::domain::User;
use crate::domain::signin::SignInError;
use crate::domain::two_step::{TotpEnrolment, TwoStepMode};
use crate::http::params::parse_query;
use crate::service::{Caller, Keyport};

const SECURITY_PATH: &str = "/account/security";

#[derive(Template)]
#[template(path = "signin_code.html")]
struct CodePage<'a> {
    prompt: &'a str,
    csrf: &'a str,
    next: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "account_security.html")]
struct SecurityPage<'a> {
    email: &'a str,
    csrf: &'a str,
    totp_on: bool,
    recovery_left: i64,
    email_on: bool,
    phone: Option<&'a str>,
    notice: Option<&'a str>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "account_totp_setup.html")]
struct TotpSetupPage<'a> {
    qr_svg: String,
    secret: String,
    sealed: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "account_recovery_codes.html")]
struct RecoveryCodesPage<'a> {
    heading: &'a str,
    codes: Vec<String>,
}

/// What the code page tells the person to look at.
pub(super) fn prompt(mode: TwoStepMode) -> &'static str {
    match mode {
        TwoStepMode::Authenticator => {
            "Enter the 6-digit code from your authenticator app, or a recovery code."
        }
        TwoStepMode::Email => "We emailed you a 6-digit code. Enter it here, or a recovery code.",
        TwoStepMode::Sms => "We texted you a 6-digit code. Enter it here, or a recovery code.",
    }
}

/// Where to go after the code: a local path, else the security page.
fn next_of(next: Option<&str>) -> String {
    next.filter(|n| super::is_local_path(n))
        .unwrap_or(SECURITY_PATH)
        .to_string()
}

fn pending_cookie(kp: &Keyport, headers: &HeaderMap) -> Option<SessionCookie> {
    read_cookie(headers, cookies(kp).session).map(|c| SessionCookie::new(c.to_string()))
}

fn to_sign_in(next: &str) -> Response {
    Redirect::to(&format!("/signin?next={}", url_encode(next))).into_response()
}

fn code_page(
    status: StatusCode,
    csrf: &Csrf,
    mode: TwoStepMode,
    next: &str,
    error: Option<String>,
) -> Response {
    let html = CodePage {
        prompt: prompt(mode),
        csrf: &csrf.token,
        next,
        error,
    };
    page(status, html.render(), Some(csrf))
}

/// `GET /signin/code?next=…`: asks for the second step.
pub async fn code_form(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_query(query.as_deref().unwrap_or("")).unwrap_or_default();
    let next = next_of(query.get("next"));
    let pending = match pending_cookie(&kp, &headers) {
        Some(cookie) => kp.pending_sign_in(&cookie).await,
        None => Ok(None),
    };
    match pending {
        Ok(Some((_, mode))) => {
            let csrf = csrf_for(&kp, &headers);
            code_page(StatusCode::OK, &csrf, mode, &next, None)
        }
        Ok(None) => to_sign_in(&next),
        Err(e) => error_page(&e),
    }
}

/// `POST /signin/code`: checks the code; on success the browser is signed in.
pub async fn verify_code(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match checked_form(&kp, &headers, body).await {
        Ok(form) => form,
        Err(page) => return page,
    };
    let next = next_of(form.get("next"));
    let Some(cookie) = pending_cookie(&kp, &headers) else {
        return to_sign_in(&next);
    };
    let mode = match kp.pending_sign_in(&cookie).await {
        Ok(Some((_, mode))) => mode,
        Ok(None) => return to_sign_in(&next),
        Err(e) => return error_page(&e),
    };
    let code = form.get("code").unwrap_or("");
    match kp.verify_sign_in_code(&cookie, code, &caller).await {
        Ok(session) => {
            let names = cookies(&kp);
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                names.set(names.session, session.id.expose(), Some(12 * 3600)),
            );
            response
        }
        Err(SignInError::Expired) => to_sign_in(&next),
        Err(SignInError::Other(e)) => error_page(&e),
        Err(e @ SignInError::Throttled { retry_after }) => {
            let csrf = csrf_for(&kp, &headers);
            with_retry_after(
                code_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    &csrf,
                    mode,
                    &next,
                    Some(e.to_string()),
                ),
                retry_after,
            )
        }
        Err(e) => {
            let csrf = csrf_for(&kp, &headers);
            code_page(
                StatusCode::UNAUTHORIZED,
                &csrf,
                mode,
                &next,
                Some(e.to_string()),
            )
        }
    }
}

/// The signed-in user, or the response that sends the browser to sign in.
async fn signed_in(kp: &Keyport, headers: &HeaderMap) -> Result<User, Response> {
    match current_user(kp, headers).await {
        Ok(Some((user, _, _))) => Ok(user),
        Ok(None) => Err(to_sign_in(SECURITY_PATH)),
        Err(e) => Err(error_page(&e)),
    }
}

/// A posted settings form (CSRF checked) and the signed-in user behind it.
/// The sign-in must be recent: a session left open on a shared computer
/// cannot turn off a second step or change the password without signing
/// in (with that second step) again.
async fn signed_in_form(
    kp: &Keyport,
    headers: &HeaderMap,
    body: Body,
) -> Result<(crate::http::params::Params, User), Response> {
    let form = checked_form(kp, headers, body).await?;
    match current_user(kp, headers).await {
        Ok(Some((user, auth_time, _))) if kp.is_recent_sign_in(auth_time) => Ok((form, user)),
        Ok(_) => Err(to_sign_in(SECURITY_PATH)),
        Err(e) => Err(error_page(&e)),
    }
}

async fn security_page(
    kp: &Keyport,
    headers: &HeaderMap,
    user: &User,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let user = match kp.reload_user(user).await {
        Ok(Some(user)) => user,
        Ok(None) => return to_sign_in(SECURITY_PATH),
        Err(e) => return error_page(&e),
    };
    let recovery_left = match kp.recovery_codes_left(&user).await {
        Ok(n) => n,
        Err(e) => return error_page(&e),
    };
    let csrf = csrf_for(kp, headers);
    let html = SecurityPage {
        email: &user.email,
        csrf: &csrf.token,
        totp_on: user.totp_sealed.is_some(),
        recovery_left,
        email_on: user.email_codes,
        phone: user.phone.as_deref(),
        notice,
        error,
    };
    page(status, html.render(), Some(&csrf))
}

/// `GET /account/security`.
pub async fn security(State(kp): State<Keyport>, headers: HeaderMap) -> Response {
    match signed_in(&kp, &headers).await {
        Ok(user) => security_page(&kp, &headers, &user, StatusCode::OK, None, None).await,
        Err(response) => response,
    }
}

/// The QR code of an `otpauth://` URI as inline SVG.
fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build();
            // Inline in HTML the XML declaration has no place.
            match svg.find("<svg") {
                Some(start) => svg[start..].to_string(),
                None => svg,
            }
        }
        Err(_) => String::new(),
    }
}

fn setup_page(
    headers: &HeaderMap,
    kp: &Keyport,
    enrolment: &TotpEnrolment,
    error: Option<&str>,
) -> Response {
    let csrf = csrf_for(kp, headers);
    let html = TotpSetupPage {
        qr_svg: qr_svg(&enrolment.otpauth_uri),
        secret: enrolment.secret.base32(),
        sealed: &enrolment.sealed,
        csrf: &csrf.token,
        error,
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    page(status, html.render(), Some(&csrf))
}

fn recovery_page(heading: &str, codes: Vec<String>) -> Response {
    page(
        StatusCode::OK,
        RecoveryCodesPage { heading, codes }.render(),
        None,
    )
}

/// `POST /account/security/authenticator`: set up (`begin`, then `confirm`
/// with a code), new recovery codes, or turn off.
pub async fn authenticator(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (form, user) = match signed_in_form(&kp, &headers, body).await {
        Ok(both) => both,
        Err(response) => return response,
    };
    match form.get("action") {
        Some("begin") => setup_page(&headers, &kp, &kp.begin_totp_enrolment(&user), None),
        Some("confirm") => {
            let enrolment = form
                .get("enrolment")
                .and_then(|sealed| kp.reopen_totp_enrolment(&user, sealed));
            let Some(enrolment) = enrolment else {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    vec!["The setup expired. Start again from the security page.".into()],
                );
            };
            let code = form.get("code").unwrap_or("");
            match kp.confirm_totp(&user, &enrolment, code, &caller).await {
                Ok(Some(codes)) => recovery_page("Authenticator turned on", codes),
                Ok(None) => setup_page(
                    &headers,
                    &kp,
                    &enrolment,
                    Some("That code is not right. Enter the code your app shows now."),
                ),
                Err(e) => error_page(&e),
            }
        }
        Some("recovery") if user.totp_sealed.is_some() => {
            match kp.new_recovery_codes(&user, &caller).await {
                Ok(codes) => recovery_page("New recovery codes", codes),
                Err(e) => error_page(&e),
            }
        }
        Some("off") => match kp.turn_off_totp(&user, &caller).await {
            Ok(()) => {
                security_page(
                    &kp,
                    &headers,
                    &user,
                    StatusCode::OK,
                    Some("The authenticator is off."),
                    None,
                )
                .await
            }
            Err(e) => error_page(&e),
        },
        _ => message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            vec!["Choose one of the buttons on the security page.".into()],
        ),
    }
}

/// `POST /account/security/password`: the current password, then the new one.
pub async fn password(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (form, user) = match signed_in_form(&kp, &headers, body).await {
        Ok(both) => both,
        Err(response) => return response,
    };
    let current = Password::new(form.get("current_password").unwrap_or("").to_string());
    let new = Password::new(form.get("new_password").unwrap_or("").to_string());
    let (status, outcome) = match kp.change_password(&user, &current, &new, &caller).await {
        Ok(()) => (StatusCode::OK, Ok("Your password is changed.")),
        Err(SignInError::Other(crate::domain::Error::OAuth { description, .. })) => {
            (StatusCode::BAD_REQUEST, Err(format!("{description}.")))
        }
        Err(SignInError::Other(e)) => return error_page(&e),
        Err(SignInError::Invalid) => (
            StatusCode::UNAUTHORIZED,
            Err("The current password is not right.".to_string()),
        ),
        Err(e @ SignInError::Throttled { retry_after }) => {
            let page = security_page(
                &kp,
                &headers,
                &user,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some(e.to_string()),
            )
            .await;
            return with_retry_after(page, retry_after);
        }
        Err(e) => (StatusCode::UNAUTHORIZED, Err(e.to_string())),
    };
    let (notice, error) = match outcome {
        Ok(notice) => (Some(notice), None),
        Err(error) => (None, Some(error)),
    };
    security_page(&kp, &headers, &user, status, notice, error).await
}

/// `POST /account/security/email-codes`: `on` or `off`.
pub async fn email_codes(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (form, user) = match signed_in_form(&kp, &headers, body).await {
        Ok(both) => both,
        Err(response) => return response,
    };
    let on = match form.get("action") {
        Some("on") => true,
        Some("off") => false,
        _ => return error_page(&crate::domain::Error::invalid_request("choose on or off")),
    };
    match kp.set_email_codes(&user, on, &caller).await {
        Ok(()) => {
            let notice = if on {
                "Email codes are on."
            } else {
                "Email codes are off."
            };
            security_page(&kp, &headers, &user, StatusCode::OK, Some(notice), None).await
        }
        Err(e) => error_page(&e),
    }
}

/// `POST /account/security/sms-codes`: `on` with a phone number, or `off`.
pub async fn sms_codes(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (form, user) = match signed_in_form(&kp, &headers, body).await {
        Ok(both) => both,
        Err(response) => return response,
    };
    let phone = match form.get("action") {
        Some("on") => Some(form.get("phone").unwrap_or("").trim()),
        Some("off") => None,
        _ => return error_page(&crate::domain::Error::invalid_request("choose on or off")),
    };
    match kp.set_sms_codes(&user, phone, &caller).await {
        Ok(()) => {
            let notice = if phone.is_some() {
                "Text-message codes are on."
            } else {
                "Text-message codes are off."
            };
            security_page(&kp, &headers, &user, StatusCode::OK, Some(notice), None).await
        }
        Err(crate::domain::Error::OAuth { description, .. }) => {
            security_page(
                &kp,
                &headers,
                &user,
                StatusCode::BAD_REQUEST,
                None,
                Some(description.to_string()),
            )
            .await
        }
        Err(e) => error_page(&e),
    }
}
