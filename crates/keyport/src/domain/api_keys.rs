//! API keys (`kp_pat_…`) and who a bearer token speaks for. A key is made
//! only from a signed-in browser, scoped no wider than its creator's role
//! at creation, and on every use filtered again by the creator's current
//! role in the key's workspace: a demoted member's key loses scopes, a
//! removed member's key stops working.

use super::audit::Audit;
use super::scopes::{Role, Scopes};
use super::workspaces::{Page, forbidden, page_size, parse_time_cursor, time_cursor};
use super::{Error, ErrorCode, Result, User};
use crate::crypto::tokens::{Secret, is_api_key, new_api_key};
use crate::crypto::{self, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store::api_keys::{ApiKey, NewApiKey};
use crate::store::{self};

/// The longest a key may live, in days.
pub const MAX_KEY_DAYS: i64 = 3650;

/// How a bearer token came to speak for its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    AccessToken {
        client_id: String,
        session_id: Option<String>,
        jti: String,
    },
    ApiKey {
        id: String,
    },
}

/// A user as a checked bearer token presents them: the workspace it is
/// bound to, the user's role there now, and the scopes that role still
/// allows of those the token carries.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub workspace_id: Option<String>,
    pub workspace_slug: Option<String>,
    pub role: Option<Role>,
    pub scope: Scopes,
    pub via: Via,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
}

impl Principal {
    /// The workspace this token acts in, when it is `slug`, with the
    /// current role; otherwise the refusal.
    pub fn in_workspace(&self, slug: &str, min: Role) -> Result<(&str, Role)> {
        match (
            &self.workspace_id,
            self.workspace_slug.as_deref(),
            self.role,
        ) {
            (Some(id), Some(bound), Some(role)) if bound == slug => {
                if role < min {
                    return Err(forbidden(format!("this needs the {min} role or above")));
                }
                Ok((id, role))
            }
            _ => Err(forbidden("the token is not bound to this workspace")),
        }
    }

    /// Refuses unless the token acts as an owner of its workspace: clients
    /// serve the whole server, so a token bound to a workspace where its
    /// user is less than owner does not manage them, whatever the user is
    /// elsewhere. A server admin's token manages them as `keyport client`
    /// does.
    pub fn acts_as_owner(&self, user: &User) -> Result<()> {
        if user.is_admin || self.role == Some(Role::Owner) {
            Ok(())
        } else {
            Err(forbidden("only workspace owners manage clients"))
        }
    }

    /// Refuses unless the token carries `scope` (and the role still allows it).
    pub fn needs(&self, scope: &str) -> Result<()> {
        if self.scope.contains(scope) {
            Ok(())
        } else {
            Err(forbidden(format!("the token lacks the {scope} scope")))
        }
    }
}

/// The settings of a key about to be made.
#[derive(Debug, Clone)]
pub struct KeyRequest<'a> {
    pub name: &'a str,
    pub workspace: &'a str,
    pub scopes: &'a [String],
    /// Days until it expires; none: it does not.
    pub expires_in_days: Option<i64>,
}

fn invalid_token() -> Error {
    Error::oauth(ErrorCode::InvalidToken, "the token is invalid or expired")
}

impl Keyport {
    /// The scopes a key may carry: the catalogue's workspace scopes (those
    /// with a least role), with that role.
    pub fn key_scopes(&self) -> Vec<(String, Role, String)> {
        self.catalogue.workspace_scopes()
    }

    /// Makes an API key for the signed-in user; the key is returned once.
    pub async fn create_api_key(
        &self,
        user: &User,
        asked: &KeyRequest<'_>,
        caller: &Caller,
    ) -> Result<(ApiKey, Secret)> {
        let name = super::metadata::clean_device_text(asked.name.trim())
            .filter(|n| !n.is_empty() && n.chars().count() <= 100)
            .ok_or_else(|| Error::invalid_request("give the key a name of up to 100 characters"))?;
        let (ws, role) = self.membership(user, asked.workspace).await?;
        if asked.scopes.is_empty() {
            return Err(Error::oauth(
                ErrorCode::InvalidScope,
                "choose at least one scope",
            ));
        }
        let offered = self.key_scopes();
        for scope in asked.scopes {
            match offered.iter().find(|(name, _, _)| name == scope) {
                None => {
                    return Err(Error::oauth(
                        ErrorCode::InvalidScope,
                        format!("{scope} is not a scope an API key can carry"),
                    ));
                }
                Some((_, min, _)) if role < *min => {
                    return Err(Error::oauth(
                        ErrorCode::InvalidScope,
                        format!("your role ({role}) does not allow {scope}"),
                    ));
                }
                Some(_) => {}
            }
        }
        let now = self.clock.now();
        let expires_at = match asked.expires_in_days {
            None => None,
            Some(days) if (1..=MAX_KEY_DAYS).contains(&days) => Some(now + days * 86_400),
            Some(_) => {
                return Err(Error::invalid_request(
                    "a key expires in 1 to 3650 days, or never",
                ));
            }
        };
        let scope = Scopes::from_list(asked.scopes).to_scope_string();
        let secret = new_api_key();
        let key = ApiKey {
            id: crypto::random_id(),
            user_id: user.id.clone(),
            workspace_id: ws.id.clone(),
            workspace_slug: ws.slug.clone(),
            name,
            scope,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        let (saved, hash, email, caller) = (
            key.clone(),
            secret.hash(),
            user.email.clone(),
            caller.clone(),
        );
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::api_keys::insert(
                        &mut *c,
                        NewApiKey {
                            id: &saved.id,
                            hash: &hash,
                            user_id: &saved.user_id,
                            workspace_id: &saved.workspace_id,
                            name: &saved.name,
                            scope: &saved.scope,
                            created_at: saved.created_at,
                            expires_at: saved.expires_at,
                        },
                    )
                    .await?;
                    Audit::new("api_key.create", "success")
                        .actor(Some(&email))
                        .workspace(&saved.workspace_id)
                        .target(&saved.id)
                        .detail(serde_json::json!({
                            "name": saved.name,
                            "scope": saved.scope,
                            "expires_at": saved.expires_at,
                        }))
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await?;
        Ok((key, secret))
    }

    /// A page of the user's keys, newest first, revoked ones included.
    pub async fn api_keys_of(
        &self,
        user: &User,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<ApiKey>> {
        let limit = page_size(limit);
        let rows = store::api_keys::list_of_user(
            self.store.pool(),
            &user.id,
            parse_time_cursor(after),
            limit + 1,
        )
        .await?;
        Ok(Page::of(rows, limit, |k| time_cursor(k.created_at, &k.id)))
    }

    /// Revokes one of the user's keys; not found when it is not theirs.
    pub async fn revoke_api_key(&self, user: &User, id: &str, caller: &Caller) -> Result<()> {
        let now = self.clock.now();
        let (id, user_id, email, caller) = (
            id.to_string(),
            user.id.clone(),
            user.email.clone(),
            caller.clone(),
        );
        let revoked = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    let found = store::api_keys::find_of_user(&mut *c, &id, &user_id).await?;
                    let Some(key) = found else { return Ok(false) };
                    if !store::api_keys::revoke(&mut *c, &id, &user_id, now).await? {
                        return Ok(true);
                    }
                    Audit::new("api_key.revoke", "success")
                        .actor(Some(&email))
                        .workspace(&key.workspace_id)
                        .target(&id)
                        .record(c, now * 1000, &caller)
                        .await?;
                    Ok(true)
                })
            })
            .await?;
        if !revoked {
            return Err(super::workspaces::not_found("no such API key"));
        }
        Ok(())
    }

    /// The account a checked bearer token speaks for, read again: the
    /// domain's operations take a `User`, and an account disabled or
    /// deleted since the token was checked makes the token invalid.
    pub async fn user_of(&self, principal: &Principal) -> Result<User> {
        store::directory::user_by_id(self.store.pool(), &principal.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid_token)
    }

    /// Who a bearer token (an access token or an API key) speaks for, with
    /// the scopes the user's current role still allows. A token without a
    /// user (client credentials) speaks for no one here.
    pub async fn bearer(&self, token: &str) -> Result<Principal> {
        if is_api_key(token) {
            return self.api_key_principal(token).await;
        }
        let (claims, user) = self.check_access_token(token).await?;
        let Some((email, name)) = user else {
            return Err(forbidden("this API acts for a user; the token has none"));
        };
        let bound = match &claims.workspace {
            Some(slug) => store::directory::workspace_by_slug(self.store.pool(), slug)
                .await?
                .map(|ws| (ws.id, ws.slug)),
            None => None,
        };
        let role = match &bound {
            Some((_, slug)) => store::directory::role_in(self.store.pool(), &claims.sub, slug)
                .await?
                .as_deref()
                .and_then(Role::parse),
            None => None,
        };
        let asked = Scopes::parse(&claims.scope).unwrap_or_default();
        let (scope, _) = self.catalogue.filter(&asked, role);
        let (workspace_id, workspace_slug) = bound.unzip();
        Ok(Principal {
            user_id: claims.sub,
            email,
            name,
            workspace_id,
            workspace_slug,
            role,
            scope,
            via: Via::AccessToken {
                client_id: claims.client_id,
                session_id: claims.sid,
                jti: claims.jti,
            },
            issued_at: claims.iat,
            expires_at: Some(claims.exp),
        })
    }

    async fn api_key_principal(&self, token: &str) -> Result<Principal> {
        let now = self.clock.now();
        let found = store::api_keys::in_use_by_hash(self.store.pool(), &hash_secret(token))
            .await?
            .filter(|k| {
                k.key.revoked_at.is_none()
                    && k.key.expires_at.is_none_or(|at| at > now)
                    && !k.disabled
                    && k.role.is_some()
            })
            .ok_or_else(invalid_token)?;
        if found.key.last_used_at.is_none_or(|at| at < now - 60) {
            let id = found.key.id.clone();
            self.store
                .write_one(move |c| {
                    Box::pin(async move { store::api_keys::touch(c, &id, now).await })
                })
                .await?;
        }
        let stored = Scopes::parse(&found.key.scope).unwrap_or_default();
        let (scope, _) = self.catalogue.filter(&stored, found.role);
        Ok(Principal {
            user_id: found.key.user_id,
            email: found.email,
            name: found.name,
            workspace_id: Some(found.key.workspace_id),
            workspace_slug: Some(found.key.workspace_slug),
            role: found.role,
            scope,
            via: Via::ApiKey { id: found.key.id },
            issued_at: found.key.created_at,
            expires_at: found.key.expires_at,
        })
    }
}
