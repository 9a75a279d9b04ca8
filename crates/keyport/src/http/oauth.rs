//! The OAuth endpoints: RFC 8414 / OIDC discovery, JWKS, RFC 8628 device
//! authorization, the token endpoint, RFC 7009 revocation, RFC 7662
//! introspection and OIDC userinfo.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keyport_proto::{ClientInfo, ErrorCode, GrantType};
use serde_json::json;

use super::error::{ApiError, bearer_required, no_store};
use super::params::{Params, bearer_token};
use crate::crypto::tokens::{AuthorizationCode, CodeVerifier, Password};
use crate::domain::Error;
use crate::domain::code::CodeExchange;
use crate::domain::device::StartRequest;
use crate::domain::metadata::DeviceMetadata;
use crate::domain::password::{DeviceReport, PasswordRequest};
use crate::domain::poll::PollRequest;
use crate::domain::registration::RegistrationRequest;
use crate::service::{Caller, Keyport};

fn json_no_store(value: impl serde::Serialize) -> Response {
    let mut response = axum::Json(value).into_response();
    no_store(&mut response);
    response
}

pub async fn metadata(State(kp): State<Keyport>, Extension(caller): Extension<Caller>) -> Response {
    let mut response = axum::Json(kp.discovery_for(&caller)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub async fn jwks(State(kp): State<Keyport>) -> Response {
    let keys = kp.keys();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        keys.jwks_json().to_string(),
    )
        .into_response()
}

/// RFC 8628 §3.1.
pub async fn device_authorization(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Response, ApiError> {
    let client = kp
        .authenticate_client(&params.client_credentials()?)
        .await?;
    let client_info = match (&params.client_info_json, params.get("client_info")) {
        (Some(object), _) => Some(object.clone()),
        (None, Some(text)) => Some(
            serde_json::from_str(text)
                .map_err(|_| ApiError::bad_request("client_info must be a JSON object"))?,
        ),
        (None, None) => None,
    };
    let client_info: Option<ClientInfo> = client_info
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| ApiError::bad_request("client_info must be {\"name\", \"version\"}"))?;
    let request = StartRequest {
        scope: params.get("scope").map(str::to_string),
        resource: params.get("resource").map(str::to_string),
        metadata: DeviceMetadata {
            guid: None,
            cli_label: params.get("cli_label").map(str::to_string),
            client_info,
            dns_name: params.get("dns_name").map(str::to_string),
            os_type: params.get("os_type").map(str::to_string),
            os_version: params.get("os_version").map(str::to_string),
        },
    };
    let response = kp
        .start_device_authorization(&client, request, &caller)
        .await?;
    Ok(json_no_store(response))
}

/// RFC 6749 §3.2, dispatching on `grant_type`.
pub async fn token(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Response, ApiError> {
    let grant = params.require("grant_type")?;
    let grant = GrantType::parse(grant).ok_or_else(|| {
        ApiError(Error::oauth(
            ErrorCode::UnsupportedGrantType,
            "unsupported grant_type",
        ))
    })?;
    let client = kp
        .authenticate_client(&params.client_credentials()?)
        .await?;
    let response = match grant {
        GrantType::DeviceCode => {
            let poll = PollRequest {
                device_code: params.secret("device_code")?,
                resource: params.get("resource").map(str::to_string),
                scope: params.get("scope").map(str::to_string),
            };
            kp.poll_device(&client, poll, &caller).await?
        }
        GrantType::RefreshToken => {
            let token = params.secret("refresh_token")?;
            let device = device_report(&params);
            kp.refresh(&client, &token, params.get("scope"), &device, &caller)
                .await?
        }
        GrantType::Password => {
            let request = PasswordRequest {
                username: params.require("username")?.to_string(),
                password: Password::new(params.require("password")?.to_string()),
                auth_code: params.get("auth_code").map(str::to_string),
                scope: params.get("scope").map(str::to_string),
                resource: params.get("resource").map(str::to_string),
                workspace: params.get("workspace").map(str::to_string),
                device: device_report(&params),
            };
            kp.password_grant(&client, request, &caller).await?
        }
        GrantType::AuthorizationCode => {
            let exchange = CodeExchange {
                code: AuthorizationCode::new(params.require("code")?.to_string()),
                redirect_uri: params.get("redirect_uri").map(str::to_string),
                code_verifier: params
                    .get("code_verifier")
                    .map(|v| CodeVerifier::new(v.to_string())),
                resource: params.get("resource").map(str::to_string),
            };
            kp.exchange_code(&client, exchange, &caller).await?
        }
        GrantType::ClientCredentials => {
            kp.client_credentials(
                &client,
                params.get("scope"),
                params.get("resource"),
                &caller,
            )
            .await?
        }
    };
    crate::telemetry::token_issued(grant.as_str());
    // Only a seed profile's client gets its seed's shape; every other
    // response is serialized once, as it is.
    match super::profiles::token_shape(&kp, client.id.as_str()) {
        Some(kind) => Ok(json_no_store(super::profiles::token_response(
            kind, response,
        ))),
        None => Ok(json_no_store(response)),
    }
}

/// Seed 003's device fields, on password and refresh requests.
fn device_report(params: &Params) -> DeviceReport {
    let field = |name| {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    DeviceReport {
        guid: field("guid"),
        dns_name: field("dns_name"),
        os_type: field("os_type"),
        os_version: field("os_version"),
    }
}

/// RFC 7591 §3: a JSON body of client metadata; 201 with the credentials.
pub async fn register(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(
            ApiError::bad_request("send the client metadata as application/json").into_response(),
        );
    }
    let bytes = super::params::read_json_body(body)
        .await
        .map_err(IntoResponse::into_response)?;
    let request: RegistrationRequest = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError(Error::oauth(
            ErrorCode::InvalidClientMetadata,
            "the body is not a client metadata object",
        ))
        .into_response()
    })?;
    let registered = kp
        .register_client(request, &caller)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    let mut response = (axum::http::StatusCode::CREATED, axum::Json(registered)).into_response();
    no_store(&mut response);
    Ok(response)
}

/// RFC 7009 §2: 200 for revoked and unknown tokens alike.
pub async fn revoke(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Response, ApiError> {
    let client = kp
        .authenticate_client(&params.client_credentials()?)
        .await?;
    let token = params.secret("token")?;
    kp.revoke(&client, &token, &caller).await?;
    let mut response = axum::Json(json!({})).into_response();
    no_store(&mut response);
    Ok(response)
}

/// RFC 7662 §2, for confidential clients (resource servers).
pub async fn introspect(State(kp): State<Keyport>, params: Params) -> Result<Response, ApiError> {
    let client = kp
        .authenticate_client(&params.client_credentials()?)
        .await?;
    if !client.confidential {
        return Err(Error::invalid_client("introspection is for confidential clients").into());
    }
    let token = params.secret("token")?;
    Ok(json_no_store(kp.introspect(&client, &token).await?))
}

/// OIDC Core §5.3, plus the token's workspace and role.
pub async fn userinfo(State(kp): State<Keyport>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some(token) = bearer_token(&headers) else {
        return Ok(bearer_required());
    };
    Ok(json_no_store(kp.userinfo(token).await?))
}
