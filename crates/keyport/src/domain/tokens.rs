//! Issuing tokens: RFC 9068 JWT access tokens, OIDC ID tokens, and the
//! client credentials grant (RFC 6749 §4.4). Refresh is in
//! [`super::refresh`]; revocation, introspection and userinfo in
//! [`super::access`].

use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::scopes::Scopes;
use super::{Error, ErrorCode, Result};
use crate::crypto;
use crate::crypto::keys::KeySet;
use crate::crypto::seal::{derive_key, open_with, seal_with};
use crate::crypto::tokens::Secret;
use crate::service::{Caller, Keyport};
use crate::store::sessions::Session;
use crate::store::{clients::Client, directory::User};
use keyport_proto::TokenResponse;

/// Claims of a Keyport access token (RFC 9068 §2.2 plus workspace and role).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    at_hash: String,
    sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// What to sign for one token response.
pub struct Grant {
    pub session: Session,
    pub refresh: Option<Secret>,
    pub user: Option<User>,
    pub id_token: bool,
    /// The scope of this response (a request may narrow the session's).
    pub scope: Scopes,
}

impl Keyport {
    /// Signs the access token (and ID token when `openid` was granted) for a
    /// session.
    pub(crate) fn mint(&self, grant: Grant) -> Result<TokenResponse> {
        let keys = self.keys();
        let now = self.clock.now();
        let ttl = self.config.tokens.access_token_ttl;
        let session = &grant.session;
        let scope = grant.scope.to_scope_string();
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: session
                .user_id
                .clone()
                .unwrap_or_else(|| session.client_id.clone()),
            aud: session
                .resource
                .clone()
                .unwrap_or_else(|| self.config.issuer.clone()),
            client_id: session.client_id.clone(),
            scope: scope.clone(),
            exp: now + ttl,
            iat: now,
            jti: crypto::random_id(),
            sid: session.user_id.as_ref().map(|_| session.id.clone()),
            auth_time: session.auth_time,
            workspace: session.workspace_id.clone(),
            role: session.role.clone(),
        };
        let access_token = keys.sign_access_token(&claims);
        let id_token = match (
            &grant.user,
            grant.id_token && grant.scope.contains("openid"),
        ) {
            (Some(user), true) => Some(
                keys.sign_id_token(&IdClaims {
                    iss: &self.config.issuer,
                    sub: &user.id,
                    aud: &session.client_id,
                    exp: now + ttl,
                    iat: now,
                    auth_time: session.auth_time,
                    at_hash: KeySet::at_hash(&access_token),
                    sid: &session.id,
                    email: grant.scope.contains("email").then_some(user.email.as_str()),
                    email_verified: grant.scope.contains("email").then_some(false),
                    name: grant
                        .scope
                        .contains("profile")
                        .then_some(user.name.as_deref())
                        .flatten(),
                }),
            ),
            _ => None,
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl as u64,
            refresh_token: grant.refresh.map(|r| r.expose().to_string()),
            scope,
            id_token,
            expires_at: Some(now + ttl),
        })
    }

    /// RFC 6749 §4.4 for confidential clients: no user, no session, no
    /// refresh token (`offline_access` grants nothing here).
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
        resource: Option<&str>,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        if !client.confidential || !client.grants.iter().any(|g| g == "client_credentials") {
            return Err(Error::oauth(
                ErrorCode::UnauthorizedClient,
                "client credentials are not enabled for this client",
            ));
        }
        let mut scope = self.requested_scopes(client, scope)?;
        scope.retain(|s| s != "offline_access" && s != "openid");
        let resource = self.check_resource(client, resource)?;
        let now = self.clock.now();
        let session = Session {
            id: crypto::random_id(),
            user_id: None,
            client_id: client.id.clone(),
            workspace_id: None,
            role: None,
            scope: scope.to_scope_string(),
            resource,
            label: None,
            metadata: "{}".into(),
            ip: caller.ip_string(),
            grant_type: "client_credentials".into(),
            auth_time: None,
            created_at: now,
            last_used_at: now,
            revoked_at: None,
        };
        let (client_id, caller_owned, scope_text) =
            (client.id.clone(), caller.clone(), session.scope.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    Audit::new("token.issue", "success")
                        .client(&client_id)
                        .detail(serde_json::json!({ "grant_type": "client_credentials", "scope": scope_text }))
                        .record(c, now * 1000, &caller_owned)
                        .await
                })
            })
            .await?;
        self.mint(Grant {
            session,
            refresh: None,
            user: None,
            id_token: false,
            scope,
        })
    }
}

/// A token response kept for a retry whose reply was lost (a refresh raced
/// by a second process, a device-code poll whose connection dropped): sealed
/// under a key derived from the presented secret, so only its holder can
/// open it, with the secret's stored hash as associated data. `purpose`
/// keeps the keys of different grants apart.
pub(super) fn seal_reply(
    presented: &Secret,
    purpose: &[u8],
    hash: &str,
    response: &TokenResponse,
) -> String {
    let json = serde_json::to_string(response).expect("token response serializes");
    seal_with(&reply_key(presented, purpose), json.as_bytes(), hash)
}

/// Opens what [`seal_reply`] sealed; `None` when the secret does not open it.
pub(super) fn open_reply(
    presented: &Secret,
    purpose: &[u8],
    hash: &str,
    sealed: &str,
) -> Option<Result<TokenResponse>> {
    let plain = open_with(&reply_key(presented, purpose), sealed, hash).ok()?;
    Some(serde_json::from_slice(&plain).map_err(|_| Error::internal("sealed token response")))
}

fn reply_key(presented: &Secret, purpose: &[u8]) -> [u8; 32] {
    derive_key(presented.expose().as_bytes(), purpose)
}
