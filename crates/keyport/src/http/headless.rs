//! The headless API (`/api/headless`, seed 004): the hosted pages'
//! operations as JSON, for a team's own sign-in and approval UI.
//!
//! - `GET /requests/{id}`: a pending device request (client, scopes,
//!   resource, device), and who is signed in.
//! - `GET /session`: who is signed in, and their workspaces.
//! - `POST /sign-in` (`{"email","password"}`) and `POST /sign-in/code`
//!   (`{"code"}`): the hosted sign-in's two steps. They set the same
//!   browser-session cookie (`HttpOnly`, `SameSite=Lax`).
//! - `POST /device/resolve` (`{"userCode"}`), and `POST /device/approve`
//!   and `POST /device/deny` (`{"requestId"}` or `{"userCode"}`, plus an
//!   optional `"workspace"` to approve in).
//!
//! Cookies authenticate, so there is no CSRF token. Instead, every request
//! whose `Origin` is not Keyport's own or one of `[headless]
//! allowed_origins` is refused with 403, and so is a CORS preflight from
//! such an origin. Bodies must be `application/json`, which a cross-origin
//! page cannot send without a preflight. The throttles, lockout and audit
//! records are the hosted pages' own.

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{ApiError, json_error, no_store};
use crate::crypto::tokens::{Password, SessionCookie};
use crate::domain::device::{Consent, Decided};
use crate::domain::headless::RequestView;
use crate::domain::signin::{SignInError, SignedIn};
use crate::domain::two_step::SENT_CODE_SECS;
use crate::domain::{Error, ErrorCode, User};
use crate::pages::device::current_user;
use crate::pages::{cookies, read_cookie};
use crate::service::{Caller, Keyport};
use keyport_proto::ErrorCode as Code;

/// A browser session lasts this long, as on the hosted pages.
const SESSION_SECS: i64 = 12 * 3600;

pub fn router(kp: &Keyport) -> Router<Keyport> {
    Router::new()
        .route("/requests/{id}", get(request))
        .route("/session", get(session))
        .route("/sign-in", post(sign_in))
        .route("/sign-in/code", post(sign_in_code))
        .route("/device/resolve", post(resolve))
        .route("/device/approve", post(approve))
        .route("/device/deny", post(deny))
        .layer(axum::middleware::from_fn_with_state(kp.clone(), origins))
}

/// The issuer's own origin, `scheme://host[:port]`.
fn own_origin(kp: &Keyport) -> String {
    url::Url::parse(&kp.config.issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// Refuses other origins; answers CORS preflights; adds CORS headers for
/// the allowed ones.
async fn origins(State(kp): State<Keyport>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let foreign = origin.as_deref().filter(|o| *o != own_origin(&kp));
    let refused = || {
        json_error(
            StatusCode::FORBIDDEN,
            Code::InvalidRequest.as_str(),
            "pages of this origin may not call the headless API",
        )
    };
    if let Some(origin) = foreign
        && !kp.config.headless.allows(origin)
    {
        return refused();
    }
    if req.method() == Method::OPTIONS {
        let Some(origin) = foreign else {
            return refused();
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        allow(headers, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return response;
    }
    let foreign = foreign.map(str::to_string);
    let mut response = next.run(req).await;
    if let Some(origin) = foreign {
        allow(response.headers_mut(), &origin);
    }
    response
}

fn allow(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// A JSON body, or a 400 in RFC 6749's shape.
async fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::bad_request("send application/json").into_response());
    }
    let bytes = super::params::read_json_body(body)
        .await
        .map_err(IntoResponse::into_response)?;
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::bad_request("the body does not have the documented fields").into_response()
    })
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

fn view_json(view: &RequestView) -> Value {
    json!({
        "id": view.id,
        "view": "device",
        "client": { "id": view.client_id, "name": view.client_name },
        "scopes": view.requested.iter().collect::<Vec<_>>(),
        "resource": view.resource,
        "device": view.metadata,
        "expires_at": view.expires_at,
    })
}

/// The signed-in user with the session's sign-in time and cookie, or 401
/// `login_required`.
async fn signed_in(
    kp: &Keyport,
    headers: &HeaderMap,
) -> Result<(User, i64, SessionCookie), Response> {
    match current_user(kp, headers).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(json_error(
            StatusCode::UNAUTHORIZED,
            Code::LoginRequired.as_str(),
            "sign in first",
        )),
        Err(e) => Err(ApiError(e).into_response()),
    }
}

/// What a handler answers: the reply, or the refusal that stopped it.
type Answer = Result<Response, Response>;

/// A domain refusal as the endpoints answer it.
fn refused(e: Error) -> Response {
    ApiError(e).into_response()
}

/// `GET /api/headless/requests/{id}`.
async fn request(State(kp): State<Keyport>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let view = kp
        .device_request(&id)
        .await
        .map_err(refused)?
        .ok_or_else(|| {
            refused(Error::oauth(
                ErrorCode::NotFound,
                "no pending request with this id",
            ))
        })?;
    let user = current_user(&kp, &headers).await.map_err(refused)?;
    let mut body = view_json(&view);
    body["user"] = match user {
        Some((user, _, _)) => json!({ "email": user.email }),
        None => Value::Null,
    };
    Ok(reply(StatusCode::OK, body))
}

/// `GET /api/headless/session`.
async fn session(State(kp): State<Keyport>, headers: HeaderMap) -> Answer {
    let Some((user, _, _)) = current_user(&kp, &headers).await.map_err(refused)? else {
        return Ok(reply(StatusCode::OK, json!({ "signed_in": false })));
    };
    let workspaces: Vec<Value> = kp
        .workspaces_of(&user)
        .await
        .map_err(refused)?
        .into_iter()
        .map(|(ws, role)| json!({ "slug": ws.slug, "name": ws.name, "role": role.as_str() }))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({ "signed_in": true, "email": user.email, "workspaces": workspaces }),
    ))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// A refused sign-in step, in the token endpoint's words.
fn sign_in_refused(e: SignInError) -> Response {
    let text = e.to_string();
    match e {
        SignInError::Other(e) => ApiError(e).into_response(),
        SignInError::Throttled { retry_after } => {
            let response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                Code::SlowDown.as_str(),
                &text,
            );
            crate::pages::with_retry_after(response, retry_after)
        }
        SignInError::Locked { .. } => {
            json_error(StatusCode::FORBIDDEN, Code::AccountLocked.as_str(), &text)
        }
        SignInError::Expired => json_error(
            StatusCode::UNAUTHORIZED,
            Code::LoginRequired.as_str(),
            &text,
        ),
        SignInError::Invalid | SignInError::WrongCode => {
            json_error(StatusCode::UNAUTHORIZED, Code::InvalidGrant.as_str(), &text)
        }
    }
}

fn with_session(
    kp: &Keyport,
    mut response: Response,
    id: &SessionCookie,
    max_age: i64,
) -> Response {
    let names = cookies(kp);
    response.headers_mut().append(
        header::SET_COOKIE,
        names.set(names.session, id.expose(), Some(max_age)),
    );
    response
}

/// `POST /api/headless/sign-in`: `{"status": "signed_in"}`, or
/// `{"status": "code_required", "two_step_mode": …}` for `/sign-in/code`.
async fn sign_in(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let asked: Credentials = json_body(&headers, body).await?;
    let password = Password::new(asked.password);
    match kp.sign_in(&asked.email, &password, &caller).await {
        Ok(SignedIn::Done(session)) => {
            let email = asked.email.trim().to_lowercase();
            let body = json!({ "status": "signed_in", "email": email });
            Ok(with_session(
                &kp,
                reply(StatusCode::OK, body),
                &session.id,
                SESSION_SECS,
            ))
        }
        Ok(SignedIn::CodeNeeded { id, mode }) => {
            let body = json!({ "status": "code_required", "two_step_mode": mode.as_str() });
            Ok(with_session(
                &kp,
                reply(StatusCode::OK, body),
                &id,
                SENT_CODE_SECS,
            ))
        }
        Err(e) => Err(sign_in_refused(e)),
    }
}

/// `POST /api/headless/sign-in/code`: the second step.
async fn sign_in_code(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let asked: CodeBody = json_body(&headers, body).await?;
    let pending = read_cookie(&headers, cookies(&kp).session)
        .map(|c| SessionCookie::new(c.to_string()))
        .ok_or_else(|| sign_in_refused(SignInError::Expired))?;
    let session = kp
        .verify_sign_in_code(&pending, &asked.code, &caller)
        .await
        .map_err(sign_in_refused)?;
    let body = reply(StatusCode::OK, json!({ "status": "signed_in" }));
    Ok(with_session(&kp, body, &session.id, SESSION_SECS))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Which {
    request_id: Option<String>,
    user_code: Option<String>,
    workspace: Option<String>,
}

/// `POST /api/headless/device/resolve`: a typed user code to its request.
async fn resolve(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let asked: Which = json_body(&headers, body).await?;
    let (user, _, session) = signed_in(&kp, &headers).await?;
    let code = asked
        .user_code
        .ok_or_else(|| ApiError::bad_request("userCode is required").into_response())?;
    let pending = kp
        .resolve_user_code(&code, &user, Some(&session), &caller)
        .await
        .map_err(refused)?;
    Ok(reply(
        StatusCode::OK,
        view_json(&RequestView::from(pending)),
    ))
}

async fn decide(
    kp: &Keyport,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    approve: bool,
) -> Answer {
    let asked: Which = json_body(headers, body).await?;
    let (user, auth_time, session) = signed_in(kp, headers).await?;
    let id = match (asked.request_id, asked.user_code) {
        (Some(id), None) => id,
        (None, Some(code)) => {
            kp.resolve_user_code(&code, &user, Some(&session), caller)
                .await
                .map_err(refused)?
                .id
        }
        _ => return Err(ApiError::bad_request("send requestId or userCode").into_response()),
    };
    let consent = match approve {
        true => Consent::Approve {
            workspace: asked.workspace.as_deref(),
        },
        false => Consent::Deny,
    };
    let body = match kp
        .decide_device(&id, &user, consent, auth_time, caller)
        .await
        .map_err(refused)?
    {
        Decided::Approved {
            granted,
            refused: left_out,
        } => json!({ "status": "approved", "scope": granted, "refused": left_out }),
        Decided::Denied => json!({ "status": "denied" }),
    };
    Ok(reply(StatusCode::OK, body))
}

/// `POST /api/headless/device/approve`.
async fn approve(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    decide(&kp, &caller, &headers, body, true).await
}

/// `POST /api/headless/device/deny`.
async fn deny(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    decide(&kp, &caller, &headers, body, false).await
}
