//! Signing people in: Argon2id passwords (hashed off the async workers, a
//! bounded number at a time), account lockout after repeated failures,
//! per-IP throttling, and browser sessions.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

use super::audit::Audit;
use super::{Error, ErrorCode, Result};
use crate::crypto;
use crate::crypto::tokens::{Password, SessionCookie};
use crate::service::{Caller, Keyport};
use crate::store::{self, directory::User};
use crate::telemetry::SecurityEvent;

/// The form every username is counted and looked up in: trimmed, lower
/// case, and no longer than any email address can be (a sprayed name of
/// kilobytes is counted by its first 320 characters).
pub fn normalise_username(name: &str) -> String {
    name.trim()
        .chars()
        .take(320)
        .collect::<String>()
        .to_lowercase()
}

/// How long a browser session lasts.
const BROWSER_SESSION_SECS: i64 = 12 * 3600;

/// A signed-in browser: the cookie's value is `id`, shown only to the browser.
#[derive(Debug)]
pub struct BrowserSession {
    /// The cookie's value, handed to the browser once.
    pub id: SessionCookie,
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
        password: &Password,
        caller: &Caller,
    ) -> Result<BrowserSession, SignInError> {
        let user = self.check_password(email, password, caller).await?;
        let id = SessionCookie::new(crypto::random_token());
        let now = self.clock.now();
        let (id_hash, user_id, ip) = (id.hash(), user.id.clone(), caller.ip_string());
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
    ///
    /// Failures count per normalised username, whether or not an account
    /// has it, so an unknown name locks exactly like a real one and the
    /// answers (and their timing) tell nothing about which accounts exist.
    /// A lockout only blocks new sign-ins; sessions already issued carry on.
    /// `--no-rate-limits` turns off the per-IP throttle, never the lockout.
    pub async fn check_password(
        &self,
        email: &str,
        password: &Password,
        caller: &Caller,
    ) -> Result<User, SignInError> {
        let now = self.clock.now();
        let limits = self.config.limits.clone();
        let username = normalise_username(email);
        let throttle_ip = caller.ip.filter(|_| limits.enabled);
        let name = username.clone();
        let (throttled, attempt) = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    if let Some(ip) = throttle_ip {
                        let window = now - now.rem_euclid(60);
                        let bucket = format!("sign-in:ip:{ip}");
                        let hits = store::limits::hit(&mut *c, &bucket, window).await?;
                        if hits > limits.sign_ins_per_ip_per_minute {
                            return Ok((Some(window + 60 - now), None));
                        }
                    }
                    let attempt =
                        store::lockout::begin_attempt(c, &name, now, limits.lockout_seconds)
                            .await?;
                    Ok((None, Some(attempt)))
                })
            })
            .await?;
        if let Some(retry_after) = throttled {
            crate::telemetry::record(SecurityEvent::SignInThrottled);
            return Err(SignInError::Throttled { retry_after });
        }
        let attempt = attempt.ok_or(Error::internal("sign-in attempt not counted"))?;
        let caller = caller.clone();
        let max = limits.failed_sign_ins_before_lockout;
        if attempt.locked_until.is_some_and(|until| until > now) || attempt.number > max {
            let until = attempt.locked_until.unwrap_or(now + limits.lockout_seconds);
            self.audit_sign_in_failure(&username, "locked", false, &caller)
                .await?;
            return Err(SignInError::Locked { until });
        }
        let user = store::directory::user_by_email(self.store.pool(), &username).await?;
        let phc = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(dummy_hash);
        let password = password.clone();
        let verified = self
            .password_work(move || verify_password(password.expose(), &phc))
            .await?;
        match user {
            Some(user) if verified && !user.disabled => {
                let (name, email) = (username.clone(), user.email.clone());
                self.store
                    .write(move |c| {
                        Box::pin(async move {
                            store::lockout::clear(&mut *c, &name).await?;
                            Audit::new("sign_in", "success")
                                .actor(Some(&email))
                                .detail(serde_json::json!({ "method": "password" }))
                                .record(c, now * 1000, &caller)
                                .await
                        })
                    })
                    .await?;
                Ok(user)
            }
            user => {
                let reason = match &user {
                    None => "unknown_user",
                    Some(u) if u.disabled => "disabled",
                    Some(_) => "bad_password",
                };
                let reached = attempt.number >= max;
                let locked = self
                    .audit_sign_in_failure(&username, reason, reached, &caller)
                    .await?;
                if locked {
                    crate::telemetry::record(SecurityEvent::Lockout);
                }
                Err(SignInError::Invalid)
            }
        }
    }

    /// Records a failed sign-in and, when `lock` is set, locks the name for
    /// the lockout window. True when this call set the lock.
    async fn audit_sign_in_failure(
        &self,
        username: &str,
        reason: &'static str,
        lock: bool,
        caller: &Caller,
    ) -> Result<bool> {
        let now = self.clock.now();
        let until = now + self.config.limits.lockout_seconds;
        let (name, caller) = (username.to_string(), caller.clone());
        Ok(self
            .store
            .write(move |c| {
                Box::pin(async move {
                    let locked = lock && store::lockout::lock(&mut *c, &name, now, until).await?;
                    Audit::new("sign_in", "failure")
                        .actor(Some(&name))
                        .detail(serde_json::json!({ "reason": reason, "locked": locked }))
                        .record(c, now * 1000, &caller)
                        .await?;
                    Ok(locked)
                })
            })
            .await?)
    }

    /// The user behind a browser session cookie, if it is live.
    pub async fn browser_user(&self, cookie: &SessionCookie) -> Result<Option<(User, i64)>> {
        let now = self.clock.now();
        let Some((user_id, auth_time)) =
            store::browser::find(self.store.pool(), &cookie.hash(), now).await?
        else {
            return Ok(None);
        };
        let user = store::directory::user_by_id(self.store.pool(), &user_id).await?;
        Ok(user.filter(|u| !u.disabled).map(|u| (u, auth_time)))
    }

    pub async fn sign_out(&self, cookie: &SessionCookie) -> Result<()> {
        let id_hash = cookie.hash();
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
