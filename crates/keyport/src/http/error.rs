//! The only place that knows status codes: maps domain errors to RFC 6749
//! §5.2 JSON responses. 400 by default, 401 for `invalid_client` (with
//! `WWW-Authenticate`) and `invalid_token`, 403 for `account_locked` and
//! `insufficient_scope`, 404 for `not_found`, 413 for
//! oversized bodies, 429 with `Retry-After` for throttling, 503 when the
//! database is unreachable, 500 for the server's own faults.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyport_proto::{ErrorCode, ErrorResponse};

use crate::domain::Error;

/// An error on its way out as RFC 6749 JSON.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
        ApiError(Error::Store(e))
    }
}

impl ApiError {
    pub fn bad_request(description: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        ApiError(Error::invalid_request(description))
    }
}

pub fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = ErrorResponse {
        error: code.to_string(),
        error_description: Some(description.to_string()),
    };
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

/// RFC 6750 §3.1: a request to a protected resource without any token gets
/// a bare `Bearer` challenge, with no error code.
pub fn bearer_required() -> Response {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidRequest.as_str(),
        "a bearer token is required",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"keyport\""),
    );
    response
}

/// 408: the request, or its body, did not arrive in time. The connection
/// closes, since the rest of the request may still be on its way.
pub fn request_timeout(description: &str) -> Response {
    let mut response = json_error(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::InvalidRequest.as_str(),
        description,
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Gives an RFC 6749 §5.2 body to the errors the routing and timeout layers
/// answer with an empty one (405, 408, 413, …), keeping their headers (a
/// 405's `Allow`). A 408 also closes the connection: its request may still
/// be arriving.
pub async fn json_for_bare_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let body = match status {
        StatusCode::REQUEST_TIMEOUT => request_timeout("the request took too long"),
        _ => bare_error_body(status),
    };
    for (name, value) in body.headers() {
        parts.headers.insert(name, value.clone());
    }
    if status == StatusCode::TOO_MANY_REQUESTS && !parts.headers.contains_key(header::RETRY_AFTER) {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body.into_body())
}

fn bare_error_body(status: StatusCode) -> Response {
    let (code, description) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (ErrorCode::InvalidRequest, "method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            (ErrorCode::InvalidRequest, "the request body is too large")
        }
        StatusCode::TOO_MANY_REQUESTS => (ErrorCode::TooManyRequests, "too many requests"),
        s if s.is_server_error() => (ErrorCode::ServerError, "internal error"),
        _ => (ErrorCode::InvalidRequest, "the request was refused"),
    };
    json_error(status, code.as_str(), description)
}

pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            Error::OAuth { code, description } => {
                crate::telemetry::oauth_error(code.as_str());
                let status = match code {
                    ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
                    ErrorCode::MissingTotp | ErrorCode::InvalidTotp => StatusCode::UNAUTHORIZED,
                    ErrorCode::AccountLocked | ErrorCode::InsufficientScope => {
                        StatusCode::FORBIDDEN
                    }
                    ErrorCode::NotFound => StatusCode::NOT_FOUND,
                    ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_REQUEST,
                };
                let mut response = json_error(status, code.as_str(), &description);
                let challenge = match code {
                    ErrorCode::InvalidClient => Some("Basic realm=\"keyport\""),
                    ErrorCode::InvalidToken => {
                        Some("Bearer realm=\"keyport\", error=\"invalid_token\"")
                    }
                    ErrorCode::InsufficientScope => {
                        Some("Bearer realm=\"keyport\", error=\"insufficient_scope\"")
                    }
                    _ => None,
                };
                if let Some(challenge) = challenge {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                }
                response
            }
            Error::TwoStep { code, mode } => {
                crate::telemetry::oauth_error(code.as_str());
                let description = match code {
                    ErrorCode::MissingTotp => "a two-step verification code is required",
                    _ => "the two-step verification code is not right",
                };
                let body = serde_json::json!({
                    "error": code.as_str(),
                    "error_description": description,
                    "two_step_mode": mode,
                });
                let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                no_store(&mut response);
                response
            }
            Error::Throttled { retry_after } => {
                let mut response = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyRequests.as_str(),
                    "too many requests; retry later",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
                response
            }
            Error::Store(e) => {
                tracing::error!(error = %e, "store error");
                let mut response = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::TemporarilyUnavailable.as_str(),
                    "the database is unavailable; retry shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                response
            }
            Error::Internal(what) => {
                tracing::error!(error = what, "internal error");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::ServerError.as_str(),
                    "internal error",
                )
            }
        }
    }
}
