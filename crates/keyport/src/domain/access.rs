//! What a presented token is worth: RFC 7009 revocation, the full check of
//! an access token (signature, expiry, revoked `jti`, live session, usable
//! user), OIDC userinfo and RFC 7662 introspection.

use std::sync::Arc;

use super::audit::Audit;
use super::clients::Client;
use super::scopes::Scopes;
use super::tokens::AccessClaims;
use super::{Error, ErrorCode, Result};
use crate::crypto::hash_secret;
use crate::crypto::tokens::{Secret, is_api_key, is_opaque_token, is_well_formed_refresh_token};
use crate::service::{Caller, Keyport};
use crate::store;
use keyport_proto::{Introspection, Userinfo};

impl Keyport {
    /// RFC 7009. A refresh token ends its whole session; an access token is
    /// put on the revoked list until it expires. Unknown tokens are ignored;
    /// another client's token is refused and stays valid.
    pub async fn revoke(&self, client: &Client, token: &Secret, caller: &Caller) -> Result<()> {
        let now = self.clock.now();
        if is_well_formed_refresh_token(token.expose(), &client.refresh_token_prefix) {
            let Some(found) = store::sessions::refresh_by_hash(&self.store, &token.hash()).await?
            else {
                return Ok(());
            };
            if found.session.client_id != client.id {
                return Err(Error::oauth(
                    ErrorCode::UnauthorizedClient,
                    "the token was issued to another client",
                ));
            }
            let (sid, client_id, caller) =
                (found.session.id.clone(), client.id.clone(), caller.clone());
            self.store
                .write(move |c| {
                    Box::pin(async move {
                        if store::sessions::revoke(&mut *c, &sid, "revoked", now).await? {
                            Audit::new("token.revoke", "success")
                                .client(&client_id)
                                .session(&sid)
                                .detail(serde_json::json!({ "token_type": "refresh_token" }))
                                .record(c, now * 1000, &caller)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await?;
            return Ok(());
        }
        let Some(claims) = self.signed_claims(token.expose()).await? else {
            return Ok(());
        };
        if claims.client_id != client.id {
            return Err(Error::oauth(
                ErrorCode::UnauthorizedClient,
                "the token was issued to another client",
            ));
        }
        let caller = caller.clone();
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::sessions::revoke_access_token(&mut *c, &claims.jti, claims.exp).await?;
                    let mut audit = Audit::new("token.revoke", "success")
                        .client(&claims.client_id)
                        .detail(
                            serde_json::json!({ "token_type": "access_token", "jti": claims.jti }),
                        );
                    if let Some(sid) = &claims.sid {
                        audit = audit.session(sid);
                    }
                    audit.record(c, now * 1000, &caller).await
                })
            })
            .await?;
        Ok(())
    }

    /// Verifies an access token completely: signature, issuer, expiry, not
    /// revoked, its session live and its user still able to sign in.
    pub async fn check_access_token(
        &self,
        token: &str,
    ) -> Result<(AccessClaims, Option<(String, Option<String>)>)> {
        let invalid = || {
            Error::oauth(
                ErrorCode::InvalidToken,
                "the access token is invalid or expired",
            )
        };
        let claims = match self.verified_claims(token) {
            Some(claims) => AccessClaims::clone(&claims),
            None => self.signed_claims(token).await?.ok_or_else(invalid)?,
        };
        if claims.exp <= self.clock.now() {
            return Err(invalid());
        }
        let state =
            store::sessions::access_state(&self.store, &claims.jti, claims.sid.as_deref()).await?;
        if state.jti_revoked || state.session_live == Some(false) {
            return Err(invalid());
        }
        let user = match state.user {
            Some((_, _, true)) => return Err(invalid()),
            Some((email, name, false)) => Some((email, name)),
            None if claims.sid.is_some() => return Err(invalid()),
            None => None,
        };
        Ok((claims, user))
    }

    /// The claims an access token stands for, if Keyport issued it: a JWT
    /// whose signature, `typ` and issuer check out (remembered, so the
    /// signature is checked once), or an opaque token found by its hash.
    /// Expiry and revocation are the caller's to check.
    async fn signed_claims(&self, token: &str) -> Result<Option<AccessClaims>> {
        if is_opaque_token(token) {
            let stored = store::sessions::opaque_claims(&self.store, &hash_secret(token)).await?;
            return Ok(stored.and_then(|json| serde_json::from_str(&json).ok()));
        }
        let Some(claims) = self
            .keys()
            .verify_access_token::<AccessClaims>(token, self.issuers())
        else {
            return Ok(None);
        };
        self.remember_verified(token, Arc::new(claims.clone()));
        Ok(Some(claims))
    }

    /// OIDC userinfo for a user's access token, with workspace and role.
    pub async fn userinfo(&self, token: &str) -> Result<Userinfo> {
        if is_api_key(token) {
            // A key is its owner's own credential: it answers with their
            // address and name, and the scopes their role allows now.
            let p = self.bearer(token).await?;
            return Ok(Userinfo {
                sub: p.user_id,
                email: Some(p.email),
                email_verified: Some(false),
                name: p.name,
                workspace: p.workspace_slug,
                role: p.role.map(|r| r.to_string()),
                scope: Some(p.scope.to_scope_string()),
            });
        }
        let (claims, user) = self.check_access_token(token).await?;
        let Some((email, name)) = user else {
            return Err(Error::oauth(
                ErrorCode::InvalidToken,
                "the token does not belong to a user",
            ));
        };
        let scope = Scopes::parse(&claims.scope).unwrap_or_default();
        Ok(Userinfo {
            sub: claims.sub,
            email: scope.contains("email").then_some(email),
            email_verified: scope.contains("email").then_some(false),
            name: if scope.contains("profile") {
                name
            } else {
                None
            },
            workspace: claims.workspace,
            role: claims.role,
            scope: Some(claims.scope),
        })
    }

    /// RFC 7662 for an authenticated confidential client. A client learns
    /// about its own tokens and about access tokens whose audience includes
    /// it (its id, or one of its audiences); anything else, and every other
    /// client's refresh token, answers `{"active": false}` and nothing more.
    pub async fn introspect(&self, client: &Client, token: &Secret) -> Result<Introspection> {
        let inactive = Introspection::default();
        if is_api_key(token.expose()) {
            // Resource servers check API keys here: any authenticated
            // confidential client learns what a live key may do now.
            return match self.bearer(token.expose()).await {
                Ok(p) => Ok(Introspection {
                    active: true,
                    scope: Some(p.scope.to_scope_string()),
                    username: Some(p.email),
                    token_type: Some("api_key".into()),
                    exp: p.expires_at,
                    iat: Some(p.issued_at),
                    sub: Some(p.user_id),
                    iss: Some(self.config.issuer.clone()),
                    workspace: p.workspace_slug,
                    role: p.role.map(|r| r.to_string()),
                    ..inactive
                }),
                Err(Error::OAuth { .. }) => Ok(inactive),
                Err(e) => Err(e),
            };
        }
        if is_well_formed_refresh_token(token.expose(), &client.refresh_token_prefix) {
            let Some(found) = store::sessions::refresh_by_hash(&self.store, &token.hash()).await?
            else {
                return Ok(inactive);
            };
            let now = self.clock.now();
            if found.session.client_id != client.id
                || found.rotated_at.is_some()
                || found.session.revoked_at.is_some()
                || found.expires_at <= now
            {
                return Ok(inactive);
            }
            let s = found.session;
            return Ok(Introspection {
                active: true,
                scope: Some(s.scope),
                client_id: Some(s.client_id.clone()),
                token_type: Some("refresh_token".into()),
                exp: Some(found.expires_at),
                sub: s.user_id,
                iss: Some(self.config.issuer.clone()),
                sid: Some(s.id),
                workspace: s.workspace_id,
                role: s.role.map(|r| r.to_string()),
                ..inactive
            });
        }
        match self.check_access_token(token.expose()).await {
            Ok((claims, _))
                if claims.client_id != client.id
                    && claims.aud != client.id
                    && !client.audiences.contains(&claims.aud) =>
            {
                Ok(inactive)
            }
            Ok((claims, user)) => Ok(Introspection {
                active: true,
                scope: Some(claims.scope),
                client_id: Some(claims.client_id),
                username: user.map(|(email, _)| email),
                token_type: Some("Bearer".into()),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                sub: Some(claims.sub),
                aud: Some(claims.aud),
                iss: Some(claims.iss),
                jti: Some(claims.jti),
                sid: claims.sid,
                workspace: claims.workspace,
                role: claims.role,
            }),
            Err(Error::OAuth { .. }) => Ok(inactive),
            Err(e) => Err(e),
        }
    }
}
