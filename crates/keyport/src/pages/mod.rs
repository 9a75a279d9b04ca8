//! Server-rendered pages (one askama template struct per page): the device
//! verification page and first-run setup. They work without JavaScript,
//! label every input and carry a CSRF token in every form.

pub mod account;
pub mod authorize;
pub mod dashboard;
pub mod device;
pub mod setup;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::crypto::{self, constant_time_eq};
use crate::domain::{Error, ErrorCode};
use crate::http::params::{Params, read_form};
use crate::service::Keyport;

pub const STYLESHEET: &str = include_str!("../../templates/keyport.css");

/// Cookie names: `__Host-` prefixed (and `Secure`) when the issuer is https.
pub struct Cookies {
    pub session: &'static str,
    pub csrf: &'static str,
    secure: bool,
}

pub fn cookies(kp: &Keyport) -> Cookies {
    if kp.config.issuer_is_https() {
        Cookies {
            session: "__Host-kp_session",
            csrf: "__Host-kp_csrf",
            secure: true,
        }
    } else {
        Cookies {
            session: "kp_session",
            csrf: "kp_csrf",
            secure: false,
        }
    }
}

impl Cookies {
    pub fn set(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&cookie).expect("cookie values are base64url")
    }
}

pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// CSRF protection by signed double submit: the form carries an HMAC of the
/// browser's random CSRF cookie, so a forged form needs both the cookie and
/// the server's key.
pub struct Csrf {
    pub token: String,
    /// Set-Cookie for a browser that had no CSRF cookie yet.
    pub new_cookie: Option<HeaderValue>,
}

fn csrf_mac(kp: &Keyport, cookie: &str) -> String {
    crypto::keyed_hash(&kp.master.derive("csrf"), cookie)
}

pub fn csrf_for(kp: &Keyport, headers: &HeaderMap) -> Csrf {
    let names = cookies(kp);
    match read_cookie(headers, names.csrf) {
        Some(value) => Csrf {
            token: csrf_mac(kp, value),
            new_cookie: None,
        },
        None => {
            let value = crypto::random_token();
            Csrf {
                token: csrf_mac(kp, &value),
                new_cookie: Some(names.set(names.csrf, &value, None)),
            }
        }
    }
}

/// Checks a submitted form's token against the CSRF cookie, and refuses
/// cross-site submissions outright (Fetch Metadata and Origin).
pub fn csrf_ok(kp: &Keyport, headers: &HeaderMap, submitted: Option<&str>) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return false;
    }
    // Under `Referrer-Policy: no-referrer` browsers send `Origin: null` even
    // for same-origin posts; the signed token below still has to match.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin.is_some_and(|origin| origin != "null" && origin != issuer_origin(kp)) {
        return false;
    }
    let names = cookies(kp);
    match (read_cookie(headers, names.csrf), submitted) {
        (Some(cookie), Some(token)) => {
            constant_time_eq(csrf_mac(kp, cookie).as_bytes(), token.as_bytes())
        }
        _ => false,
    }
}

/// `scheme://host[:port]` of the issuer, as browsers send it in `Origin`.
fn issuer_origin(kp: &Keyport) -> String {
    url::Url::parse(&kp.config.issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// A path on this server, safe to redirect to after sign-in: no scheme, no
/// host, no `//` or `/\` that a browser would read as another host.
pub fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control())
        && next.len() <= 8 * 1024
}

/// Reads a posted form; a body that is no form becomes the "Bad request" page.
pub async fn read_page_form(body: Body) -> Result<Params, Response> {
    read_form(body).await.map_err(|_| {
        message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            vec!["The form could not be read.".into()],
        )
    })
}

/// Reads a posted form and checks its CSRF token; either failure becomes a page.
pub async fn checked_form(
    kp: &Keyport,
    headers: &HeaderMap,
    body: Body,
) -> Result<Params, Response> {
    let form = read_page_form(body).await?;
    if !csrf_ok(kp, headers, form.get("csrf_token")) {
        return Err(message(
            StatusCode::FORBIDDEN,
            "Request refused",
            vec!["The form expired. Go back, reload the page and try again.".into()],
        ));
    }
    Ok(form)
}

/// Renders a template, attaching the CSRF cookie when one was minted.
pub fn page(
    status: StatusCode,
    html: Result<String, askama::Error>,
    csrf: Option<&Csrf>,
) -> Response {
    let mut response = match html {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    };
    if let Some(cookie) = csrf.and_then(|c| c.new_cookie.clone()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The one mapping from a domain error to a page, as `http::error` is for
/// the JSON API: a refusal explains itself, a throttle says when to come
/// back, and a storage failure asks the user to retry.
pub fn error_page(e: &Error) -> Response {
    match e {
        Error::OAuth {
            code: ErrorCode::InsufficientScope,
            description,
        } => message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            vec![description.to_string()],
        ),
        Error::OAuth {
            code: ErrorCode::NotFound,
            description,
        } => message(
            StatusCode::NOT_FOUND,
            "Not found",
            vec![description.to_string()],
        ),
        Error::OAuth { description, .. } => message(
            StatusCode::BAD_REQUEST,
            "Nothing changed",
            vec![description.to_string()],
        ),
        Error::TwoStep { mode, .. } => message(
            StatusCode::UNAUTHORIZED,
            "Two-step verification",
            vec![account::prompt(*mode).to_string()],
        ),
        Error::Throttled { retry_after } => with_retry_after(
            message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                vec!["Wait a while, then try again.".into()],
            ),
            *retry_after,
        ),
        Error::Store(_) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            vec!["Keyport cannot reach its database right now.".into()],
        ),
        Error::Internal(what) => {
            tracing::error!(what, "internal error");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                vec!["Keyport could not finish this request.".into()],
            )
        }
    }
}

/// The pages' Content Security Policy, with `form-action` also admitting
/// `target` (where a posted form may end up after redirects).
pub fn csp_with_form_action(target: &str) -> String {
    crate::http::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {target}"),
    )
}

/// A 429 page says when to come back (RFC 6585 §4).
pub fn with_retry_after(mut response: Response, seconds: i64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// The workspace choice, for the device page and the authorization flow:
/// a GET form back to `action` carrying `fields`.
#[derive(askama::Template)]
#[template(path = "workspace.html")]
pub struct WorkspacePage<'a> {
    pub action: &'a str,
    pub client_name: &'a str,
    /// The device's code, shown again beside the choice.
    pub user_code: Option<String>,
    pub fields: Vec<(&'static str, String)>,
    /// (slug, name, role)
    pub workspaces: Vec<(String, String, String)>,
}

#[derive(askama::Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub heading: &'a str,
    pub lines: Vec<String>,
}

pub fn message(status: StatusCode, heading: &str, lines: Vec<String>) -> Response {
    use askama::Template;
    page(status, MessagePage { heading, lines }.render(), None)
}

pub async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// "14:05:09 UTC (in 14 minutes)".
pub fn describe_expiry(at: i64, now: i64) -> String {
    let clock = time::OffsetDateTime::from_unix_timestamp(at)
        .map(|t| format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second()))
        .unwrap_or_default();
    let minutes = ((at - now).max(0) + 59) / 60;
    format!(
        "{clock} (in {minutes} minute{})",
        if minutes == 1 { "" } else { "s" }
    )
}
