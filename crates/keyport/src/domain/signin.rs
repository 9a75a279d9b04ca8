//! Signing people in: Argon2id passwords (hashed off the async workers, a
//! bounded number at a time), account lockout after repeated failures,
//! per-IP throttling, and browser sessions.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

use super::audit::Audit;
use super::{Error, ErrorCode, Result};
use crate::crypto::{self, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store::{self, directory::User};

/// How long a browser session lasts.
const BROWSER_SESSION_SECS: i64 = 12 * 3600;

/// A signed-in browser: the cookie's value is `id`, shown only to the browser.
#[derive(Debug)]
pub struct BrowserSession {
    pub id: String,
    pub user: User,
    pub auth_time: i64,
}

/// Why a sign-in failed, in words the page can show.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    Invalid,
    #[error("this account is locked after too many failed sign-ins; try again later")]
    Locked { until: i64 },
    #[error("too many sign-in attempts from your network; wait a minute")]
    Throttled { retry_after: i64 },
    #[error(transparent)]
    Other(#[from] Error),
}

impl From<store::Error> for SignInError {
    fn from(e: store::Error) -> Self {
        SignInError::Other(e.into())
    }
}

impl SignInError {
    /// The RFC-shaped error for token-endpoint use (the password grant).
    pub fn into_oauth(self) -> Error {
        match self {
            SignInError::Invalid => Error::invalid_grant("wrong username or password"),
            SignInError::Locked { .. } => {
                Error::oauth(ErrorCode::AccountLocked, "the account is locked")
            }
            SignInError::Throttled { retry_after } => Error::Throttled { retry_after },
            SignInError::Other(e) => e,
        }
    }
}

/// OWASP's Argon2id setting with 46 MiB and one pass (as strong as 19 MiB
/// with two). Its single allocation is above glibc's largest mmap threshold
/// (32 MiB), so it is always mapped and returned to the system when the hash
/// is done; 19 MiB buffers would stay resident in per-thread malloc arenas
/// after every sign-in.
fn argon2() -> Argon2<'static> {
    let params = Params::new(47_104, 1, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_password(password: &str) -> Result<String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| Error::internal("password hashing failed"))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        // The stored hash names its own parameters; verification uses those.
        argon2().verify_password(password.as_bytes(), &hash).is_ok()
    })
}

/// Verified against when the email is unknown, so the answer takes as long
/// as for a real account: a hash of a random password, made once.
fn dummy_hash() -> String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(&crypto::random_token()).unwrap_or_default())
        .clone()
}

impl Keyport {
    /// Checks email and password; on success opens a browser session.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        caller: &Caller,
    ) -> Result<BrowserSession, SignInError> {
        let user = self.check_password(email, password, caller).await?;
        let id = crypto::random_token();
        let now = self.clock.now();
        let (id_hash, user_id, ip) = (hash_secret(&id), user.id.clone(), caller.ip_string());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::browser::insert(
                        c,
                        &id_hash,
                        &user_id,
                        now,
                        now + BROWSER_SESSION_SECS,
                        ip.as_deref(),
                    )
                    .await
                })
            })
            .await?;
        Ok(BrowserSession {
            id,
            user,
            auth_time: now,
        })
    }

    /// Email + password with lockout and per-IP throttling; audited.
    pub async fn check_password(
        &self,
        email: &str,
        password: &str,
        caller: &Caller,
    ) -> Result<User, SignInError> {
        let now = self.clock.now();
        let limits = self.config.limits.clone();
        if let Some(ip) = caller.ip.filter(|_| limits.enabled) {
            let window = now - now.rem_euclid(60);
            let bucket = format!("sign-in:ip:{ip}");
            let hits = self
                .store
                .write(move |c| {
                    Box::pin(async move { store::limits::hit(c, &bucket, window).await })
                })
                .await?;
            if hits > limits.sign_ins_per_ip_per_minute {
                return Err(SignInError::Throttled {
                    retry_after: window + 60 - now,
                });
            }
        }
        let email = email.trim().to_lowercase();
        let user = store::directory::user_by_email(self.store.pool(), &email).await?;
        let phc = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(dummy_hash);
        let password = password.to_string();
        let verified = self
            .password_work(move || verify_password(&password, &phc))
            .await?;
        let caller = caller.clone();
        let Some(user) = user else {
            let actor = email.clone();
            self.store
                .write(move |c| {
                    Box::pin(async move {
                        Audit::new("sign_in", "failure")
                            .actor(Some(&actor))
                            .detail(serde_json::json!({ "reason": "unknown_user" }))
                            .record(c, now * 1000, &caller)
                            .await
                    })
                })
                .await?;
            return Err(SignInError::Invalid);
        };
        if let Some(until) = user.locked_until.filter(|until| *until > now) {
            self.audit_sign_in(&user, "failure", "locked", &caller)
                .await?;
            return Err(SignInError::Locked { until });
        }
        if user.disabled || !verified {
            let (user_id, email) = (user.id.clone(), user.email.clone());
            let (max, lock) = (
                limits.failed_sign_ins_before_lockout,
                limits.lockout_seconds,
            );
            let enabled = limits.enabled;
            let locked = self
                .store
                .write(move |c| {
                    Box::pin(async move {
                        let locked = if enabled {
                            store::directory::record_login_failure(&mut *c, &user_id, now, max, lock).await?
                        } else {
                            None
                        };
                        Audit::new("sign_in", "failure")
                            .actor(Some(&email))
                            .detail(serde_json::json!({ "reason": "bad_password", "locked": locked.is_some() }))
                            .record(c, now * 1000, &caller)
                            .await?;
                        Ok(locked)
                    })
                })
                .await?;
            return Err(match locked {
                Some(until) => SignInError::Locked { until },
                None => SignInError::Invalid,
            });
        }
        self.audit_sign_in(&user, "success", "password", &caller)
            .await?;
        Ok(user)
    }

    async fn audit_sign_in(
        &self,
        user: &User,
        outcome: &'static str,
        how: &'static str,
        caller: &Caller,
    ) -> Result<()> {
        let now = self.clock.now();
        let (user_id, email, caller) = (user.id.clone(), user.email.clone(), caller.clone());
        let reset = outcome == "success" && user.failed_logins > 0;
        self.store
            .write(move |c| {
                Box::pin(async move {
                    if reset {
                        store::directory::reset_login_failures(&mut *c, &user_id).await?;
                    }
                    Audit::new("sign_in", outcome)
                        .actor(Some(&email))
                        .detail(serde_json::json!({ "method": how }))
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await?;
        Ok(())
    }

    /// The user behind a browser session cookie, if it is live.
    pub async fn browser_user(&self, cookie: &str) -> Result<Option<(User, i64)>> {
        let now = self.clock.now();
        let Some((user_id, auth_time)) =
            store::browser::find(self.store.pool(), &hash_secret(cookie), now).await?
        else {
            return Ok(None);
        };
        let user = store::directory::user_by_id(self.store.pool(), &user_id).await?;
        Ok(user.filter(|u| !u.disabled).map(|u| (u, auth_time)))
    }

    pub async fn sign_out(&self, cookie: &str) -> Result<()> {
        let id_hash = hash_secret(cookie);
        self.store
            .write(move |c| Box::pin(async move { store::browser::delete(c, &id_hash).await }))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_parses_and_passwords_round_trip() {
        assert!(PasswordHash::new(&dummy_hash()).is_ok());
        let phc = hash_password("hunter2 hunter2").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"), "{phc}");
        assert!(verify_password("hunter2 hunter2", &phc));
        assert!(!verify_password("hunter3", &phc));
    }
}
