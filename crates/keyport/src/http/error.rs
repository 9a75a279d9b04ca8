//! The only place that knows status codes: maps domain errors to RFC 6749
//! §5.2 JSON responses. 400 by default, 401 for `invalid_client` (with
//! `WWW-Authenticate`) and `invalid_token`, 403 for `account_locked`, 413 for
//! oversized bodies, 429 with `Retry-After` for throttling, 503 when the
//! database is unreachable, 500 for the server's own faults.

use axum::http::{HeaderValue, StatusCode, header};
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

pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            Error::OAuth { code, description } => {
                super::metrics::METRICS.oauth_error(code);
                let status = match code {
                    ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
                    ErrorCode::MissingTotp | ErrorCode::InvalidTotp => StatusCode::UNAUTHORIZED,
                    ErrorCode::AccountLocked => StatusCode::FORBIDDEN,
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
