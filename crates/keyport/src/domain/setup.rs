//! First-run setup: on an empty database `keyport serve` makes a one-time
//! link to create the first admin (owner of a `default` workspace). The
//! link is stored only as its expiry and hash, works for an hour, and dies
//! the moment any user exists, however that user was made (checked on
//! every use and again in the transaction that creates the admin).

use crate::crypto::{self, constant_time_eq, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store::{self, directory::NewUser, directory::Workspace};

pub const SETUP_TOKEN: &str = "setup_token_hash";

/// How long a setup link works.
pub const SETUP_LINK_SECS: i64 = 3600;

/// The first admin, as the setup form gave them.
pub struct FirstAdmin {
    pub email: String,
    pub name: Option<String>,
    /// The Argon2id PHC string of their password.
    pub password_hash: String,
}

impl Keyport {
    /// Creates a fresh one-time setup link when no user exists yet (replacing
    /// any earlier one); once users exist, forgets any link left over.
    pub async fn setup_link(&self) -> Result<Option<String>, store::Error> {
        let expires_at = self.clock.now() + SETUP_LINK_SECS;
        let token = crypto::random_token();
        let stored = stored_value(expires_at, &hash_secret(&token));
        let created = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    if store::directory::count_users(&mut *c).await? > 0 {
                        store::settings::delete(c, SETUP_TOKEN).await?;
                        return Ok(false);
                    }
                    store::settings::set(c, SETUP_TOKEN, &stored).await?;
                    Ok(true)
                })
            })
            .await?;
        Ok(created.then(|| format!("{}/setup?token={token}", self.config.issuer)))
    }

    /// The stored value of a setup token that still works: not expired, it
    /// matches, and no user exists yet.
    pub async fn live_setup_token(&self, token: &str) -> Option<String> {
        let pool = self.store.pool();
        let stored = store::settings::get(pool, SETUP_TOKEN).await.ok()??;
        let (expires_at, expected) = stored.split_once(':')?;
        let live = expires_at.parse::<i64>().ok()? > self.clock.now()
            && constant_time_eq(expected.as_bytes(), hash_secret(token).as_bytes())
            && store::directory::count_users(pool).await.ok()? == 0;
        live.then_some(stored)
    }

    /// Creates the first admin with the setup link's stored value, in one
    /// transaction that takes the link and checks no user exists. False
    /// when the link was used or a user exists now.
    pub async fn create_first_admin(
        &self,
        stored: String,
        admin: FirstAdmin,
        caller: &Caller,
    ) -> Result<bool, store::Error> {
        let now = self.clock.now();
        let user_id = crypto::random_id();
        let (email, name, phc, actor) = (
            admin.email.clone(),
            admin.name,
            admin.password_hash,
            admin.email,
        );
        let caller = caller.clone();
        self.store
            .write(move |c| {
                Box::pin(async move {
                    // Taken in the same transaction that adds the first user, and
                    // only while there is none: one admin, once.
                    if !store::settings::take(&mut *c, SETUP_TOKEN, &stored).await?
                        || store::directory::count_users(&mut *c).await? > 0
                    {
                        return Ok(false);
                    }
                    let user = NewUser {
                        id: &user_id,
                        email: &email,
                        name: name.as_deref(),
                        password_hash: &phc,
                        is_admin: true,
                        now,
                    };
                    store::directory::insert_user(&mut *c, user).await?;
                    let ws = Workspace {
                        id: crypto::random_id(),
                        slug: "default".into(),
                        name: "Default".into(),
                    };
                    if store::directory::workspace_by_slug(&mut *c, "default")
                        .await?
                        .is_none()
                    {
                        store::directory::insert_workspace(&mut *c, &ws, now).await?;
                    }
                    let ws = store::directory::workspace_by_slug(&mut *c, "default")
                        .await?
                        .unwrap_or(ws);
                    store::directory::upsert_membership(&mut *c, &ws.id, &user_id, "owner", now)
                        .await?;
                    crate::domain::audit::Audit::new("admin.setup", "success")
                        .actor(Some(&actor))
                        .record(c, now * 1000, &caller)
                        .await?;
                    Ok(true)
                })
            })
            .await
    }
}

/// What the settings table keeps: the expiry and the token's hash.
fn stored_value(expires_at: i64, hash: &str) -> String {
    format!("{expires_at}:{hash}")
}
