//! Request parameters of the OAuth endpoints, parsed at the edge: form
//! bodies (`application/x-www-form-urlencoded`, any charset parameter) and
//! JSON objects, with RFC 6749 §3.1's rules — no repeated parameters, empty
//! values count as absent — plus a body size limit and strict UTF-8.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyport_proto::ErrorCode;
use percent_encoding::percent_decode;

use super::error::{ApiError, json_error, request_timeout};
use crate::crypto::tokens::{ClientSecret, Secret};
use crate::domain::Error;
use crate::domain::clients::ClientCredentials;

/// Largest body an OAuth endpoint reads.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
    /// `client_info` arrived as a JSON object.
    pub client_info_json: Option<serde_json::Value>,
    basic: Option<(String, String)>,
}

pub enum Rejection {
    TooLarge,
    /// The body did not arrive within the request-body deadline.
    TimedOut,
    Api(ApiError),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::TooLarge => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::InvalidRequest.as_str(),
                "the request body is too large",
            ),
            Rejection::TimedOut => request_timeout("the request body took too long to arrive"),
            Rejection::Api(e) => e.into_response(),
        }
    }
}

fn bad(description: impl Into<std::borrow::Cow<'static, str>>) -> Rejection {
    Rejection::Api(ApiError::bad_request(description))
}

impl Params {
    /// `value` for `name` when the request sent none (a seed profile's
    /// implied `client_id` or `grant_type`).
    pub fn or_default(mut self, name: &str, value: &str) -> Self {
        self.values
            .entry(name.to_string())
            .or_insert_with(|| value.to_string());
        self
    }

    /// The parameter `from` under the name `to`, as a seed's field named
    /// differently from RFC 6749's. Refused when the request sent both.
    pub fn renamed(mut self, from: &str, to: &str) -> Result<Self, ApiError> {
        if let Some(value) = self.values.remove(from) {
            if self.values.contains_key(to) {
                return Err(ApiError::bad_request(format!(
                    "send {from} or {to}, not both"
                )));
            }
            self.values.insert(to.to_string(), value);
        }
        Ok(self)
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Rejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(query) = req.uri().query() {
            refuse_credentials_in_query(query)?;
        }
        let basic = basic_credentials(req.headers())?;
        let kind = content_kind(req.headers());
        let bytes = read_body(req.into_body()).await?;
        let mut params = match kind {
            ContentKind::Form => parse_form(&bytes)?,
            ContentKind::Json => parse_json(&bytes)?,
            ContentKind::Other => {
                return Err(bad(
                    "use application/x-www-form-urlencoded or application/json",
                ));
            }
        };
        params.basic = basic;
        Ok(params)
    }
}

enum ContentKind {
    Form,
    Json,
    Other,
}

fn content_kind(headers: &HeaderMap) -> ContentKind {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return ContentKind::Other;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => ContentKind::Form,
        "application/json" => ContentKind::Json,
        _ => ContentKind::Other,
    }
}

fn decode_component(raw: &[u8]) -> Result<String, Rejection> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| bad("parameters must be UTF-8"))
}

/// A URL query, parsed as strictly as a form body (repeats refused).
pub fn parse_query(query: &str) -> Result<Params, Rejection> {
    parse_form(query.as_bytes())
}

/// An `application/x-www-form-urlencoded` body. Raw whitespace around a
/// pair (never part of an encoded name or value) is dropped, so a body
/// written across lines, as API documents show them, reads as one line.
pub fn parse_form(body: &[u8]) -> Result<Params, Rejection> {
    let mut params = Params::default();
    let pairs = body.split(|b| *b == b'&').map(<[u8]>::trim_ascii);
    for pair in pairs.filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let key = decode_component(key)?;
        let value = decode_component(value)?;
        params.insert(key, value)?;
    }
    Ok(params)
}

fn parse_json(body: &[u8]) -> Result<Params, Rejection> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not valid JSON"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("the JSON body must be an object"));
    };
    let mut params = Params::default();
    for (key, value) in map {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            object @ serde_json::Value::Object(_) if key == "client_info" => {
                params.client_info_json = Some(object);
                continue;
            }
            serde_json::Value::Array(_) if key == "resource" => {
                return Err(Rejection::Api(ApiError(Error::oauth(
                    ErrorCode::InvalidTarget,
                    "one resource per request",
                ))));
            }
            _ => return Err(bad(format!("parameter {key} must be a string"))),
        };
        params.insert(key, text)?;
    }
    Ok(params)
}

impl Params {
    fn insert(&mut self, key: String, value: String) -> Result<(), Rejection> {
        if key.contains('\0') || value.contains('\0') {
            return Err(bad("parameters cannot hold NUL characters"));
        }
        if value.is_empty() {
            return Ok(());
        }
        if self.values.contains_key(&key) {
            if key == "resource" {
                return Err(Rejection::Api(ApiError(Error::oauth(
                    ErrorCode::InvalidTarget,
                    "one resource per request",
                ))));
            }
            return Err(bad(format!("parameter {key} is repeated")));
        }
        self.values.insert(key, value);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every parameter, for forms whose field names carry data (one
    /// checkbox per scope).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn require(&self, key: &'static str) -> Result<&str, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::bad_request(format!("missing parameter {key}")))
    }

    pub fn secret(&self, key: &'static str) -> Result<Secret, ApiError> {
        Ok(Secret::new(self.require(key)?.to_string()))
    }

    /// RFC 6749 §2.3: credentials from the Basic header or the body, never both.
    pub fn client_credentials(&self) -> Result<ClientCredentials, ApiError> {
        match &self.basic {
            Some((id, secret)) => {
                if self.get("client_secret").is_some() {
                    return Err(ApiError::bad_request(
                        "use one client authentication method",
                    ));
                }
                if self.get("client_id").is_some_and(|body_id| body_id != id) {
                    return Err(ApiError::bad_request(
                        "client_id differs from the authenticated client",
                    ));
                }
                Ok(ClientCredentials {
                    client_id: Some(id.clone()),
                    secret: Some(ClientSecret::new(secret.clone())),
                    via_basic: true,
                })
            }
            None => Ok(ClientCredentials {
                client_id: self.get("client_id").map(str::to_string),
                secret: self
                    .get("client_secret")
                    .map(|s| ClientSecret::new(s.to_string())),
                via_basic: false,
            }),
        }
    }
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Rejection> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| bad("malformed Authorization header"))?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(bad("malformed Authorization header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let invalid = || {
        Rejection::Api(ApiError(Error::invalid_client(
            "malformed Basic credentials",
        )))
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = text.split_once(':').ok_or_else(invalid)?;
    Ok(Some((
        decode_component(id.as_bytes())?,
        decode_component(secret.as_bytes())?,
    )))
}

/// The bearer token of an `Authorization` header (RFC 6750 §2.1).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Turns a request body into bytes for handlers outside the OAuth endpoints.
pub async fn read_form(body: Body) -> Result<Params, Rejection> {
    parse_form(&read_body(body).await?)
}

/// A JSON body for endpoints whose parameters are nested (RFC 7591), with
/// the same size and time limits (413, 408) as every other body.
pub async fn read_json_body(body: Body) -> Result<axum::body::Bytes, Rejection> {
    read_body(body).await
}

/// Reads at most [`MAX_BODY`] bytes: 413 past that, 408 when the body's
/// deadline passes first.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Rejection> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let inner = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
        while let Some(error) = cause {
            if error.is::<http_body_util::LengthLimitError>() {
                return Rejection::TooLarge;
            }
            cause = error.source();
        }
        Rejection::TimedOut
    })
}

/// Parameters that are credentials never travel in a URL (RFC 6749 §2.3.1,
/// RFC 9700 §4.3): URLs end up in logs and browser histories.
const CREDENTIAL_PARAMETERS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "password",
    "refresh_token",
    "device_code",
    "code_verifier",
];

fn refuse_credentials_in_query(query: &str) -> Result<(), Rejection> {
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let key = decode_component(key.trim_ascii().as_bytes()).unwrap_or_default();
        if CREDENTIAL_PARAMETERS.contains(&key.as_str()) {
            return Err(bad(format!(
                "{key} must be sent in the request body, never in the URL"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_rules() {
        let p = parse_form(b"a=1&b=x+y%21&c=").ok().unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y!"));
        assert_eq!(p.get("c"), None);
        assert!(parse_form(b"a=1&a=2").is_err());
        assert!(parse_form(b"a=%FF").is_err());
        // As documents print them: one pair per line.
        let p = parse_form(b"grant_type=x&\nclient_id=acme-cli&\r\nresource=r\n")
            .ok()
            .unwrap();
        assert_eq!(p.get("client_id"), Some("acme-cli"));
        assert_eq!(p.get("resource"), Some("r"));
    }
}
