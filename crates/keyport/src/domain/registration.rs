//! RFC 7591 dynamic client registration, when `[registration] enabled` is
//! set: rate-limited per address, never first-party, and limited to the
//! grants a self-registered client may have.

use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::clients::ClientSpec;
use super::{Error, ErrorCode, Result};
use crate::crypto::tokens::new_client_secret;
use crate::crypto::{self};
use crate::service::{Caller, Keyport};
use crate::store;
use keyport_proto::GrantType;

/// RFC 7591 §2 client metadata, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// RFC 7591 §3.2.1. No `Debug`: it carries the new client's secret.
#[derive(Serialize)]
pub struct RegistrationResponse {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scope: String,
}

/// What a self-registered client may use.
const OPEN_GRANTS: [GrantType; 2] = [GrantType::AuthorizationCode, GrantType::RefreshToken];

/// The client spec a registration asks for, or the RFC 7591 error.
pub fn spec_of(request: RegistrationRequest, id: String) -> Result<(ClientSpec, String)> {
    let metadata_error =
        |why: &str| Error::oauth(ErrorCode::InvalidClientMetadata, why.to_string());
    let method = request
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".into());
    let confidential = match method.as_str() {
        "none" => false,
        "client_secret_basic" | "client_secret_post" => true,
        _ => return Err(metadata_error("unsupported token_endpoint_auth_method")),
    };
    let grants = request
        .grant_types
        .unwrap_or_else(|| vec![GrantType::AuthorizationCode.as_str().into()]);
    for grant in &grants {
        if !GrantType::parse(grant).is_some_and(|g| OPEN_GRANTS.contains(&g)) {
            return Err(metadata_error(
                "a registered client may use authorization_code and refresh_token",
            ));
        }
    }
    if let Some(types) = &request.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err(metadata_error("only the code response type is supported"));
    }
    if request.redirect_uris.len() > 10 {
        return Err(Error::oauth(
            ErrorCode::InvalidRedirectUri,
            "at most 10 redirect URIs",
        ));
    }
    for uri in &request.redirect_uris {
        if super::redirect::check_registrable(uri).is_err() {
            return Err(Error::oauth(
                ErrorCode::InvalidRedirectUri,
                format!("redirect URI {uri:?} cannot be registered"),
            ));
        }
    }
    // Self-asserted: cleaned like a device's text, and shown with the host
    // it returns to, so it cannot pass for an application the operator
    // registered.
    let name = request
        .client_name
        .as_deref()
        .and_then(super::metadata::clean_device_text)
        .unwrap_or_else(|| "Unnamed application".into());
    let host = request
        .redirect_uris
        .first()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| {
            u.host_str()
                .map_or_else(|| format!("{}:", u.scheme()), str::to_string)
        })
        .unwrap_or_default();
    let name = format!("{name} ({host}, self-registered)");
    let spec = ClientSpec {
        id,
        name,
        confidential,
        grants,
        scopes: request.scope.into_iter().collect(),
        redirect_uris: request.redirect_uris,
        ..ClientSpec::default()
    };
    Ok((spec, method))
}

impl Keyport {
    /// RFC 7591 §3: registers a client and returns its credentials once.
    pub async fn register_client(
        &self,
        request: RegistrationRequest,
        caller: &Caller,
    ) -> Result<RegistrationResponse> {
        if !self.config.registration.enabled {
            return Err(Error::oauth(
                ErrorCode::AccessDenied,
                "dynamic client registration is not enabled",
            ));
        }
        let (spec, method) = spec_of(request, format!("kp_client_{}", crypto::random_id()))?;
        let mut client = spec
            .build("registered")
            .map_err(|why| Error::oauth(ErrorCode::InvalidClientMetadata, why))?;
        // Only scopes this server knows, so a registration cannot invent any.
        let catalogue = self.catalogue.names();
        if let Some(unknown) = client.scopes.iter().find(|s| !catalogue.contains(s)) {
            return Err(Error::oauth(
                ErrorCode::InvalidClientMetadata,
                format!("unknown scope {unknown}"),
            ));
        }
        let secret = client.confidential.then(new_client_secret);
        client.secret_hash = secret.as_ref().map(|s| s.hash());
        let now = self.clock.now();
        let limit = self.config.limits.registrations_per_ip_per_hour;
        let enabled = self.config.limits.enabled;
        let bucket = format!("register:ip:{}", caller.ip_string().unwrap_or_default());
        let (saved, caller_owned) = (client.clone(), caller.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    let window = now - now.rem_euclid(3600);
                    if enabled && store::limits::hit(&mut *c, &bucket, window).await? > limit {
                        return Ok(Err(Error::Throttled {
                            retry_after: window + 3600 - now,
                        }));
                    }
                    store::clients::save(&mut *c, &saved, now, false).await?;
                    Audit::new("client.register", "success")
                        .client(&saved.id)
                        .detail(serde_json::json!({ "name": saved.name, "redirect_uris": saved.redirect_uris }))
                        .record(c, now * 1000, &caller_owned)
                        .await?;
                    Ok(Ok(()))
                })
            })
            .await??;
        Ok(RegistrationResponse {
            client_id: client.id.to_string(),
            client_secret: secret.map(|s| s.expose().to_string()),
            client_id_issued_at: now,
            client_secret_expires_at: client.confidential.then_some(0),
            client_name: client.name,
            redirect_uris: client.redirect_uris,
            grant_types: client
                .grants
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            response_types: vec!["code".into()],
            token_endpoint_auth_method: method,
            scope: client.scopes.join(" "),
        })
    }
}
