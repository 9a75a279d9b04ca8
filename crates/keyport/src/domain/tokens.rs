//! Issuing tokens: RFC 9068 JWT access tokens, OIDC ID tokens, and the
//! client credentials grant (RFC 6749 §4.4). Refresh is in
//! [`super::refresh`]; revocation, introspection and userinfo in
//! [`super::access`].

use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::clients::Client;
use super::clients::{AccessTokenFormat, SigningAlg};
use super::scopes::Scopes;
use super::{Error, ErrorCode, Result};
use crate::crypto;
use crate::crypto::keys::KeySet;
use crate::crypto::seal::{derive_key, open_with, seal_with};
use crate::crypto::tokens::{Secret, new_opaque_access_token};
use crate::service::{Caller, Keyport};
use crate::store::sessions::Session;
use crate::store::{self, directory::User};
use keyport_proto::{GrantType, TokenResponse};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
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
    /// OIDC `nonce` from the authorization request, into the ID token.
    pub nonce: Option<String>,
    /// The scope of this response (a request may narrow the session's).
    pub scope: Scopes,
}

/// A signed token response, and for an opaque access token the row that
/// makes it valid (the grant's transaction stores it with the session).
pub struct Minted {
    pub response: TokenResponse,
    pub opaque: Option<OpaqueAccessToken>,
}

/// What the store keeps of an opaque access token.
#[derive(Debug, Clone)]
pub struct OpaqueAccessToken {
    pub token_hash: String,
    pub session_id: Option<String>,
    pub client_id: String,
    pub claims: AccessClaims,
}

impl Keyport {
    /// Signs the access token (a JWT, or an opaque token as the client
    /// chose) and the ID token when `openid` was granted.
    pub(crate) fn mint(&self, client: &Client, grant: Grant, caller: &Caller) -> Result<Minted> {
        let keys = self.keys();
        let issuer = self.issuer_for(caller);
        let now = self.clock.now();
        let ttl = self.config.tokens.access_token_ttl;
        let session = &grant.session;
        let scope = grant.scope.to_scope_string();
        let claims = AccessClaims {
            iss: issuer.to_string(),
            sub: session
                .user_id
                .clone()
                .unwrap_or_else(|| session.client_id.clone()),
            aud: session
                .resource
                .clone()
                .unwrap_or_else(|| issuer.to_string()),
            client_id: session.client_id.clone(),
            scope: scope.clone(),
            exp: now + ttl,
            iat: now,
            jti: crypto::random_id(),
            sid: session.user_id.as_ref().map(|_| session.id.clone()),
            auth_time: session.auth_time,
            workspace: session.workspace_id.clone(),
            role: session.role.map(|r| r.to_string()),
        };
        let (access_token, opaque) = match client.access_token_format {
            AccessTokenFormat::Jwt => {
                let alg = match client.access_token_alg {
                    SigningAlg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
                    SigningAlg::Es256 => jsonwebtoken::Algorithm::ES256,
                    SigningAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
                };
                (keys.sign_access_token_with(&claims, alg), None)
            }
            AccessTokenFormat::Opaque => {
                let token = new_opaque_access_token(&client.access_token_prefix);
                let record = OpaqueAccessToken {
                    token_hash: token.hash(),
                    session_id: claims.sid.clone(),
                    client_id: claims.client_id.clone(),
                    claims,
                };
                (token.expose().to_string(), Some(record))
            }
        };
        let id_token = match (
            &grant.user,
            grant.id_token && grant.scope.contains("openid"),
        ) {
            (Some(user), true) => Some(
                keys.sign_id_token(&IdClaims {
                    iss: &issuer,
                    sub: &user.id,
                    aud: &session.client_id,
                    exp: now + ttl,
                    iat: now,
                    auth_time: session.auth_time,
                    nonce: grant.nonce.as_deref(),
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
        let response = TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl as u64,
            refresh_token: grant.refresh.map(|r| r.expose().to_string()),
            scope,
            id_token,
            expires_at: Some(rfc3339(now + ttl)),
            guid: device_guid(&grant.session.metadata),
        };
        Ok(Minted { response, opaque })
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
        let (scope, resource) = decide_client_credentials(client, scope, resource)?;
        let now = self.clock.now();
        let session = Session {
            // No session is opened, so no id is drawn: a token with no user
            // carries no `sid` (see `mint`).
            id: String::new(),
            user_id: None,
            client_id: client.id.to_string(),
            workspace_id: None,
            role: None,
            scope: scope.to_scope_string(),
            resource,
            label: None,
            metadata: "{}".into(),
            ip: caller.ip_string(),
            grant_type: GrantType::ClientCredentials.as_str().into(),
            auth_time: None,
            created_at: now,
            last_used_at: now,
            revoked_at: None,
        };
        let scope_text = session.scope.clone();
        let minted = self.mint(
            client,
            Grant {
                session,
                refresh: None,
                user: None,
                id_token: false,
                nonce: None,
                scope,
            },
            caller,
        )?;
        match minted.opaque {
            // An opaque token is valid only once its row has committed.
            Some(record) => {
                let (client_id, caller_owned) = (client.id.clone(), caller.clone());
                self.store
                    .write(move |c| {
                        Box::pin(async move {
                            store::sessions::insert_opaque(&mut *c, &record).await?;
                            issued(&client_id, &scope_text)
                                .record(c, now * 1000, &caller_owned)
                                .await
                        })
                    })
                    .await?
            }
            // A JWT stands on its own: its audit row commits with the next
            // flush, off the response's path. A crash in between loses the
            // row of a token that expires within the access-token lifetime.
            None => {
                issued(&client.id, &scope_text)
                    .record_detached(&self.store, now * 1000, caller)
                    .await
            }
        }
        Ok(minted.response)
    }
}

/// The audit record of a client credentials grant.
fn issued<'a>(client_id: &'a str, scope: &str) -> Audit<'a> {
    let grant = GrantType::ClientCredentials.as_str();
    Audit::new("token.issue", "success")
        .client(client_id)
        .detail(serde_json::json!({ "grant_type": grant, "scope": scope }))
}

/// RFC 6749 §4.4: what a client credentials request is granted. No user,
/// so no `openid`; and `offline_access` grants nothing (no refresh token).
pub fn decide_client_credentials(
    client: &Client,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Result<(Scopes, Option<String>)> {
    client.require(GrantType::ClientCredentials)?;
    if !client.confidential {
        return Err(Error::oauth(
            ErrorCode::UnauthorizedClient,
            "client credentials need a confidential client",
        ));
    }
    let mut scope = client.requested_scopes(scope)?;
    scope.retain(|s| s != "offline_access" && s != "openid");
    Ok((scope, client.check_resource(resource)?))
}

/// `2026-03-30T10:00:00Z`: the absolute expiry seed 001's clients read.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
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

/// The `guid` of the device a session was registered for, if any.
fn device_guid(metadata: &str) -> Option<String> {
    // Most sessions have no device: no JSON parse on their token path.
    if !metadata.contains("\"guid\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(metadata).ok()?;
    Some(value.get("guid")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn client_credentials_grant_the_asked_scopes_minus_user_ones() {
        let mut rs = Client::new(
            "rs",
            "RS",
            true,
            BTreeSet::from([GrantType::ClientCredentials]),
        );
        rs.scopes = vec![
            "openid".into(),
            "offline_access".into(),
            "agents:read".into(),
        ];
        rs.audiences = vec!["https://api.example.com".into()];
        let mut public = rs.clone();
        public.confidential = false;
        let mut no_grant = rs.clone();
        no_grant.grants.clear();
        let api = Some("https://api.example.com");
        type Case<'a> = (
            &'a Client,
            Option<&'a str>,
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let cases: [Case; 7] = [
            (&rs, None, None, Ok("agents:read")),
            (
                &rs,
                Some("openid offline_access agents:read"),
                None,
                Ok("agents:read"),
            ),
            (&rs, Some("agents:read"), api, Ok("agents:read")),
            (&rs, Some("audit:read"), None, Err("invalid_scope")),
            (&rs, None, Some("https://elsewhere"), Err("invalid_target")),
            (&public, None, None, Err("unauthorized_client")),
            (&no_grant, None, None, Err("unauthorized_client")),
        ];
        for (client, scope, resource, expected) in cases {
            let got = match decide_client_credentials(client, scope, resource) {
                Ok((scopes, _)) => Ok(scopes.to_scope_string()),
                Err(Error::OAuth { code, .. }) => Err(code.as_str()),
                Err(e) => panic!("{e}"),
            };
            assert_eq!(got, expected.map(str::to_string), "{scope:?} {resource:?}");
        }
    }
}
