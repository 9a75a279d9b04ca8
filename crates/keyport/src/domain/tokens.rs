//! Tokens: RFC 9068 JWT access tokens, OIDC ID tokens, refresh-token
//! rotation with reuse detection (RFC 9700 §4.14) and its concurrency
//! leeway, client credentials, RFC 7009 revocation, RFC 7662 introspection
//! and userinfo.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::scopes::{Role, Scopes};
use super::{Error, ErrorCode, Result};
use crate::crypto::keys::KeySet;
use crate::crypto::seal::{derive_key, open_with, seal_with};
use crate::crypto::tokens::{Secret, is_well_formed_refresh_token, new_refresh_token};
use crate::crypto::{self, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store::sessions::{RefreshToken, Session};
use crate::store::{self, clients::Client, directory::User};
use keyport_proto::{Introspection, TokenResponse, Userinfo};

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

/// A session just created by a grant, before its tokens are signed.
pub struct NewSession {
    pub session: Session,
    pub user: Option<User>,
    pub with_refresh: bool,
    pub scope: Scopes,
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

/// How a refresh request ended inside its transaction.
enum Rotation {
    Rotated,
    /// A concurrent retry within the leeway: the same pair again, sealed
    /// under a key only the old refresh token derives.
    Replay(String),
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

    /// RFC 6749 §6 with rotation. Exactly one successor per refresh token;
    /// replaying a rotated token revokes the session, except for a retry of
    /// the session's latest rotation within the leeway, which gets the same
    /// pair back.
    pub async fn refresh(
        &self,
        client: &Client,
        presented: &Secret,
        scope: Option<&str>,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        if !client.grants.iter().any(|g| g == "refresh_token") {
            return Err(Error::oauth(
                ErrorCode::UnauthorizedClient,
                "the refresh grant is not enabled for this client",
            ));
        }
        if !is_well_formed_refresh_token(presented.expose()) {
            return Err(Error::invalid_grant("invalid refresh token"));
        }
        let hash = presented.hash();
        let token = store::sessions::refresh_by_hash(self.store.pool(), &hash)
            .await?
            .ok_or_else(|| Error::invalid_grant("invalid refresh token"))?;
        if token.session.client_id != client.id {
            return Err(Error::invalid_grant(
                "the refresh token belongs to another client",
            ));
        }
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        if token.rotated_at.is_some() {
            // Fast path of a replay: no new tokens to sign.
            return self.settle_replay(presented, hash, caller).await;
        }
        let session_end = token.session.created_at + self.config.tokens.session_max_lifetime;
        if token.session.revoked_at.is_some() || token.expires_at <= now || session_end <= now {
            return Err(Error::invalid_grant("the session has ended"));
        }
        let (session, user) = self.recheck_membership(&token, caller).await?;
        let granted = Scopes::parse(&session.scope).unwrap_or_default();
        let response_scope = match scope.map(Scopes::parse) {
            None => granted.clone(),
            Some(None) => return Err(Error::oauth(ErrorCode::InvalidScope, "malformed scope")),
            Some(Some(asked)) if asked.is_empty() => granted.clone(),
            Some(Some(asked)) if asked.is_subset(&granted) => asked,
            Some(Some(_)) => {
                return Err(Error::oauth(
                    ErrorCode::InvalidScope,
                    "the scope is wider than the grant",
                ));
            }
        };
        let successor = new_refresh_token();
        let successor_hash = successor.hash();
        let response = self.mint(Grant {
            session: session.clone(),
            refresh: Some(successor),
            user: user.clone(),
            id_token: self.config.tokens.id_token_on_refresh,
            scope: response_scope,
        })?;
        let leeway = self.config.tokens.refresh_leeway;
        // With no leeway there is nothing to hand back, so nothing is kept.
        let sealed = (leeway > 0).then(|| {
            seal_with(
                &leeway_key(presented),
                serde_json::to_string(&response)
                    .expect("token response serializes")
                    .as_bytes(),
                &hash,
            )
        });
        let successor_expires = self.refresh_expiry(now, session.created_at);
        let (caller_owned, old_hash) = (caller.clone(), hash.clone());
        let email = user.as_ref().map(|u| u.email.clone());
        let outcome = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    let rotated = store::sessions::rotate(
                        &mut *c,
                        &old_hash,
                        &successor_hash,
                        sealed.as_deref(),
                        now_ms,
                    )
                    .await?;
                    if rotated {
                        store::sessions::insert_refresh(
                            &mut *c,
                            &successor_hash,
                            &session.id,
                            now,
                            successor_expires,
                        )
                        .await?;
                        store::sessions::touch(
                            &mut *c,
                            &session.id,
                            now,
                            &session.scope,
                            session.role.as_deref(),
                        )
                        .await?;
                        Audit::new("token.refresh", "success")
                            .actor(email.as_deref())
                            .client(&session.client_id)
                            .session(&session.id)
                            .record(c, now * 1000, &caller_owned)
                            .await?;
                        return Ok(Ok(Rotation::Rotated));
                    }
                    replay_or_revoke(c, &old_hash, now_ms, leeway, &caller_owned).await
                })
            })
            .await??;
        match outcome {
            Rotation::Rotated => Ok(response),
            Rotation::Replay(sealed) => open_replay(presented, &hash, &sealed),
        }
    }

    /// When a refresh token minted `now` for a session created at
    /// `session_created` expires: its own lifetime, but never past the
    /// session's absolute lifetime, which no refresh extends.
    pub(crate) fn refresh_expiry(&self, now: i64, session_created: i64) -> i64 {
        let tokens = &self.config.tokens;
        (now + tokens.refresh_token_ttl).min(session_created + tokens.session_max_lifetime)
    }

    async fn settle_replay(
        &self,
        presented: &Secret,
        hash: String,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        let now_ms = self.clock.now_ms();
        let leeway = self.config.tokens.refresh_leeway;
        let (caller, old_hash) = (caller.clone(), hash.clone());
        let outcome = self
            .store
            .write(move |c| {
                Box::pin(
                    async move { replay_or_revoke(c, &old_hash, now_ms, leeway, &caller).await },
                )
            })
            .await??;
        match outcome {
            Rotation::Replay(sealed) => open_replay(presented, &hash, &sealed),
            Rotation::Rotated => Err(Error::internal("a replay cannot rotate")),
        }
    }

    /// Refresh re-checks the user's standing: scopes the current role no
    /// longer allows are dropped, and a removed member's session ends.
    async fn recheck_membership(
        &self,
        token: &RefreshToken,
        caller: &Caller,
    ) -> Result<(Session, Option<User>)> {
        let mut session = token.session.clone();
        let Some(user_id) = session.user_id.clone() else {
            return Ok((session, None));
        };
        let now = self.clock.now();
        let user = store::directory::user_by_id(self.store.pool(), &user_id).await?;
        // Only a disabled or removed account ends here: a sign-in lockout
        // blocks new sign-ins, never sessions already issued.
        let usable = user.as_ref().is_some_and(|u| !u.disabled);
        let role = match (&session.workspace_id, usable) {
            (_, false) => None,
            (Some(ws), true) => store::directory::role_in(self.store.pool(), &user_id, ws).await?,
            (None, true) => Some(String::new()),
        };
        let Some(role) = role else {
            let (sid, caller) = (session.id.clone(), caller.clone());
            self.store
                .write(move |c| {
                    Box::pin(async move {
                        if store::sessions::revoke(&mut *c, &sid, "membership", now).await? {
                            Audit::new("session.revoke", "membership_ended")
                                .session(&sid)
                                .record(c, now * 1000, &caller)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await?;
            return Err(Error::invalid_grant("the session has ended"));
        };
        if session.workspace_id.is_some() {
            let role = Role::parse(&role);
            let (granted, _) = self
                .catalogue
                .filter(&Scopes::parse(&session.scope).unwrap_or_default(), role);
            session.scope = granted.to_scope_string();
            session.role = role.map(|r| r.as_str().to_string());
        }
        Ok((session, user))
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

    /// RFC 7009. A refresh token ends its whole session; an access token is
    /// put on the revoked list until it expires. Unknown tokens are ignored;
    /// another client's token is refused and stays valid.
    pub async fn revoke(&self, client: &Client, token: &Secret, caller: &Caller) -> Result<()> {
        let now = self.clock.now();
        if is_well_formed_refresh_token(token.expose()) {
            let Some(found) =
                store::sessions::refresh_by_hash(self.store.pool(), &token.hash()).await?
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
        let keys = self.keys();
        let Some(claims) =
            keys.verify_access_token::<AccessClaims>(token.expose(), &self.config.issuer)
        else {
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
            Some(claims) => claims,
            None => {
                let claims: AccessClaims = self
                    .keys()
                    .verify_access_token(token, &self.config.issuer)
                    .ok_or_else(invalid)?;
                let claims = Arc::new(claims);
                self.remember_verified(token, claims.clone());
                claims
            }
        };
        let claims = AccessClaims::clone(&claims);
        if claims.exp <= self.clock.now() {
            return Err(invalid());
        }
        let state =
            store::sessions::access_state(self.store.pool(), &claims.jti, claims.sid.as_deref())
                .await?;
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

    /// OIDC userinfo for a user's access token, with workspace and role.
    pub async fn userinfo(&self, token: &str) -> Result<Userinfo> {
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
        if is_well_formed_refresh_token(token.expose()) {
            let Some(found) =
                store::sessions::refresh_by_hash(self.store.pool(), &token.hash()).await?
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
                role: s.role,
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

/// Inside the write transaction: a rotated token was presented again.
async fn replay_or_revoke(
    c: &mut store::Conn,
    hash: &str,
    now_ms: i64,
    leeway: i64,
    caller: &Caller,
) -> store::Result<Result<Rotation>> {
    let now = now_ms.div_euclid(1000);
    let Some(token) = store::sessions::refresh_by_hash(&mut *c, hash).await? else {
        return Ok(Err(Error::invalid_grant("invalid refresh token")));
    };
    if token.session.revoked_at.is_some() {
        return Ok(Err(Error::invalid_grant("the session has ended")));
    }
    // A rotation by an instance on the previous release has no milliseconds.
    let rotated_ms = token.rotated_ms.or(token.rotated_at.map(|at| at * 1000));
    let within_leeway = rotated_ms.is_some_and(|at| now_ms - at < leeway * 1000);
    let latest = within_leeway && token.successor_rotated_at.is_none();
    if let Some(sealed) = token.sealed_successor.filter(|_| latest) {
        return Ok(Ok(Rotation::Replay(sealed)));
    }
    let sid = token.session.id.clone();
    store::sessions::revoke(&mut *c, &sid, "refresh_token_reuse", now).await?;
    crate::telemetry::record(crate::telemetry::SecurityEvent::RefreshReuse);
    Audit::new("token.reuse_detected", "session_revoked")
        .client(&token.session.client_id)
        .session(&sid)
        .actor(token.session.user_id.as_deref())
        .record(c, now * 1000, caller)
        .await?;
    Ok(Err(Error::invalid_grant(
        "the refresh token was already used; the session is revoked",
    )))
}

fn leeway_key(presented: &Secret) -> [u8; 32] {
    derive_key(presented.expose().as_bytes(), b"keyport refresh leeway")
}

fn open_replay(presented: &Secret, hash: &str, sealed: &str) -> Result<TokenResponse> {
    let plain = open_with(&leeway_key(presented), sealed, hash)
        .map_err(|_| Error::invalid_grant("invalid refresh token"))?;
    serde_json::from_slice(&plain).map_err(|_| Error::internal("sealed token response"))
}

/// Hash of a browser session id as stored.
pub fn session_hash(id: &str) -> String {
    hash_secret(id)
}
