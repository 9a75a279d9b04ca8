//! What a verified token is, and what a refused one is answered.

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Who a verified token speaks for, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub`: the user, or the client for client credentials.
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub workspace: Option<String>,
    pub role: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub kind: TokenKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An RFC 9068 JWT, verified locally.
    Jwt,
    /// An opaque access token, introspected.
    Opaque,
    /// A `kp_pat_` API key, introspected.
    ApiKey,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Every scope in `scopes`, or a 403 `insufficient_scope` naming them.
    pub fn require(&self, scopes: &[&str]) -> std::result::Result<(), Refusal> {
        if scopes.iter().all(|s| self.has_scope(s)) {
            return Ok(());
        }
        Err(Refusal {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: "the token lacks a scope this request needs".into(),
            scope: Some(scopes.join(" ")),
            resource_metadata: None,
        })
    }
}

/// A refused request: RFC 6750 §3's answer.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    /// `invalid_token`, `insufficient_scope`, `invalid_request`; none
    /// when no token was sent (RFC 6750 §3.1).
    pub error: Option<&'static str>,
    pub description: String,
    pub scope: Option<String>,
    pub(super) resource_metadata: Option<String>,
}

impl Refusal {
    pub(super) fn invalid_token(description: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: Some("invalid_token"),
            description: description.into(),
            scope: None,
            resource_metadata: None,
        }
    }

    pub(super) fn unavailable(description: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: Some("temporarily_unavailable"),
            description: description.into(),
            scope: None,
            resource_metadata: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.error.unwrap_or("unauthorized"),
            self.description
        )
    }
}

impl std::error::Error for Refusal {}

/// A quoted-string of RFC 9110 §5.6.4, with what cannot be in one dropped.
fn quoted(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .collect();
    format!("\"{clean}\"")
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut challenge = vec![];
        if let Some(error) = self.error {
            challenge.push(format!("error={}", quoted(error)));
            challenge.push(format!("error_description={}", quoted(&self.description)));
        }
        if let Some(scope) = &self.scope {
            challenge.push(format!("scope={}", quoted(scope)));
        }
        if let Some(url) = &self.resource_metadata {
            challenge.push(format!("resource_metadata={}", quoted(url)));
        }
        let value = match challenge.is_empty() {
            true => "Bearer".to_string(),
            false => format!("Bearer {}", challenge.join(", ")),
        };
        let body = Json(json!({
            "error": self.error.unwrap_or("invalid_token"),
            "error_description": self.description,
        }));
        let mut response = (self.status, body).into_response();
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
