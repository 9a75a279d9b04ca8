//! Signing people in: Argon2id passwords (hashed off the async workers, a
//! bounded number at a time), account lockout after repeated failures,
//! per-IP throttling, and browser sessions.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

use super::audit::Audit;
use super::two_step::{self, TwoStepMode};
use super::{Error, ErrorCode, Result};
use crate::crypto;
use crate::crypto::tokens::{Password, SessionCookie};
use crate::service::{Caller, Keyport};
use crate::store::{self, directory::User};

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

/// PRODUCT.md's rule for a new password: 8 to 1,024 characters, no
/// composition rules.
pub fn check_new_password(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        0..8 => Err("a password needs at least 8 characters"),
        8..=1024 => Ok(()),
        _ => Err("a password has at most 1,024 characters"),
    }
}

/// How recent a sign-in must be to change how the account signs in
/// (password, second steps): older sessions sign in again first.
pub const RECENT_SIGN_IN_SECS: i64 = 15 * 60;

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
    #[error("that code is not right; try again")]
    WrongCode,
    #[error("the sign-in has expired; sign in again")]
    Expired,
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
            SignInError::WrongCode | SignInError::Expired => {
                Error::invalid_grant("the sign-in did not complete")
            }
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

/// Checks `password` against a stored PHC string, on the calling thread
/// (the server runs it on its hashing threads; the benchmark measures it).
pub fn check_password_hash(password: &str, phc: &str) -> bool {
    verify_password(password, phc)
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        // The stored hash names its own parameters; verification uses those.
        argon2().verify_password(password.as_bytes(), &hash).is_ok()
    })
}

/// Makes the dummy hash ahead of the first unknown name (on a hashing
/// thread, at start), so that answer takes no longer than any other.
pub(crate) fn prepare_dummy_hash() {
    let _ = dummy_hash();
}

/// Verified against when the email is unknown, so the answer takes as long
/// as for a real account: a hash of a random password, made once.
fn dummy_hash() -> String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(&crypto::random_token()).unwrap_or_default())
        .clone()
}

/// The password was right. The attempt stays counted until the sign-in
/// finishes ([`Keyport::finish_sign_in`]), so a missing or wrong second
/// step counts toward the lockout like a wrong password.
#[derive(Debug)]
pub struct PasswordChecked {
    pub user: User,
    attempt: i64,
}

/// Where a browser sign-in stands after the password.
#[derive(Debug)]
pub enum SignedIn {
    /// Signed in: the session is live.
    Done(BrowserSession),
    /// The account has two-step verification: the session (cookie `id`)
    /// becomes live once a code passes on the code page.
    CodeNeeded {
        id: SessionCookie,
        mode: TwoStepMode,
    },
}

impl Keyport {
    /// Email and password, then the second step when the account has one.
    /// Opens a browser session: a live one, or one waiting for its code.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &Password,
        caller: &Caller,
    ) -> Result<SignedIn, SignInError> {
        let checked = self.check_password(email, password, caller).await?;
        let mode = two_step::mode_of(&checked.user);
        if let Some(mode) = mode {
            self.send_sign_in_code(&checked.user, mode).await?;
        } else {
            self.finish_sign_in(email, &checked.user, "password", caller)
                .await?;
        }
        let id = SessionCookie::new(crypto::random_token());
        let now = self.clock.now();
        let (id_hash, user_id, ip) = (id.hash(), checked.user.id.clone(), caller.ip_string());
        let (pending, expires_at) = match mode {
            Some(_) => (true, now + two_step::SENT_CODE_SECS),
            None => (false, now + BROWSER_SESSION_SECS),
        };
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::browser::insert(
                        c,
                        store::browser::NewBrowserSession {
                            id_hash: &id_hash,
                            user_id: &user_id,
                            now,
                            expires_at,
                            ip: ip.as_deref(),
                            pending_two_step: pending,
                        },
                    )
                    .await
                })
            })
            .await?;
        Ok(match mode {
            Some(mode) => SignedIn::CodeNeeded { id, mode },
            None => SignedIn::Done(BrowserSession {
                id,
                user: checked.user,
                auth_time: now,
            }),
        })
    }

    /// The account and its second step behind a session still owing a code.
    pub async fn pending_sign_in(
        &self,
        cookie: &SessionCookie,
    ) -> Result<Option<(User, TwoStepMode)>> {
        let now = self.clock.now();
        let Some((user_id, _)) =
            store::browser::find_pending(self.store.pool(), &cookie.hash(), now).await?
        else {
            return Ok(None);
        };
        let user = store::directory::user_by_id(self.store.pool(), &user_id).await?;
        Ok(user
            .filter(|u| !u.disabled)
            .and_then(|u| two_step::mode_of(&u).map(|mode| (u, mode))))
    }

    /// The code page: checks the code for a session waiting for one. Counts
    /// toward the lockout like a password; on success the session is live
    /// under a new cookie value, returned here.
    pub async fn verify_sign_in_code(
        &self,
        cookie: &SessionCookie,
        code: &str,
        caller: &Caller,
    ) -> Result<BrowserSession, SignInError> {
        let Some((user, _)) = self.pending_sign_in(cookie).await? else {
            return Err(SignInError::Expired);
        };
        let username = normalise_username(&user.email);
        let attempt = self.count_attempt(&username, caller).await?;
        if !self.check_second_step(&user, code).await? {
            return Err(self
                .sign_in_failed(&username, "wrong_code", attempt, caller)
                .await
                .map(|()| SignInError::WrongCode)?);
        }
        self.finish_sign_in(&user.email, &user, "two_step", caller)
            .await?;
        let now = self.clock.now();
        let id = SessionCookie::new(crypto::random_token());
        let (id_hash, new_hash) = (cookie.hash(), id.hash());
        let expires_at = now + BROWSER_SESSION_SECS;
        let completed = self
            .store
            .write_one(move |c| {
                Box::pin(async move {
                    store::browser::complete_two_step(c, &id_hash, &new_hash, now, expires_at).await
                })
            })
            .await?;
        if !completed {
            return Err(SignInError::Expired);
        }
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
    /// A right password leaves the attempt counted until
    /// [`Keyport::finish_sign_in`].
    pub async fn check_password(
        &self,
        email: &str,
        password: &Password,
        caller: &Caller,
    ) -> Result<PasswordChecked, SignInError> {
        let username = normalise_username(email);
        let attempt = self.count_attempt(&username, caller).await?;
        let user = store::directory::user_by_email(self.store.pool(), &username).await?;
        let phc = user.as_ref().and_then(|u| u.password_hash.clone());
        let password = password.clone();
        let verified = match self
            .password_work(move || {
                let phc = phc.unwrap_or_else(dummy_hash);
                verify_password(password.expose(), &phc)
            })
            .await
        {
            Ok(verified) => verified,
            Err(e) => {
                // Never checked (the hashing queue was full): not a failure.
                self.release_attempt(&username).await?;
                return Err(e.into());
            }
        };
        match user {
            Some(user) if verified && !user.disabled => Ok(PasswordChecked { user, attempt }),
            user => {
                let reason = match &user {
                    None => "unknown_user",
                    Some(u) if u.disabled => "disabled",
                    Some(_) => "bad_password",
                };
                self.sign_in_failed(&username, reason, attempt, caller)
                    .await?;
                Err(SignInError::Invalid)
            }
        }
    }

    /// Whether a browser session signed in at `auth_time` may change the
    /// account's sign-in settings without signing in again.
    pub fn is_recent_sign_in(&self, auth_time: i64) -> bool {
        self.clock.now() - auth_time <= RECENT_SIGN_IN_SECS
    }

    /// The second step of a password sign-in was missing or wrong: counted
    /// like a wrong password (the attempt already is), and locks at the limit.
    pub async fn second_step_failed(
        &self,
        checked: &PasswordChecked,
        reason: &'static str,
        caller: &Caller,
    ) -> Result<()> {
        let username = normalise_username(&checked.user.email);
        self.sign_in_failed(&username, reason, checked.attempt, caller)
            .await
    }

    /// Every step passed: the failure count starts over; audited.
    pub async fn finish_sign_in(
        &self,
        email: &str,
        user: &User,
        method: &'static str,
        caller: &Caller,
    ) -> Result<()> {
        let now = self.clock.now();
        let (name, email, caller) = (
            normalise_username(email),
            user.email.clone(),
            caller.clone(),
        );
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::lockout::clear(&mut *c, &name).await?;
                    Audit::new("sign_in", "success")
                        .actor(Some(&email))
                        .detail(serde_json::json!({ "method": method }))
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await?;
        Ok(())
    }

    /// The user behind a browser session cookie, if it is live.
    /// The account with this email address (compared as stored: lowercase).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.trim().to_lowercase();
        Ok(store::directory::user_by_email(self.store.pool(), &email).await?)
    }

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

    /// Changes a signed-in user's password after checking the current one
    /// (a wrong one counts toward the lockout like any sign-in). Audited.
    pub async fn change_password(
        &self,
        user: &User,
        current: &Password,
        new: &Password,
        caller: &Caller,
    ) -> Result<(), SignInError> {
        if let Err(why) = check_new_password(new.expose()) {
            return Err(SignInError::Other(Error::invalid_request(why)));
        }
        let checked = self.check_password(&user.email, current, caller).await?;
        self.finish_sign_in(&user.email, &checked.user, "password_change", caller)
            .await?;
        let new = new.clone();
        let phc = self
            .password_work(move || hash_password(new.expose()))
            .await??;
        let now = self.clock.now();
        let (user_id, email, caller) = (user.id.clone(), user.email.clone(), caller.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::directory::set_password_hash(&mut *c, &user_id, &phc).await?;
                    Audit::new("account.password_changed", "success")
                        .actor(Some(&email))
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await?;
        Ok(())
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
    fn new_passwords_have_8_to_1024_characters() {
        assert!(check_new_password("seven77").is_err());
        assert!(check_new_password("eight888").is_ok());
        assert!(check_new_password(&"é".repeat(1024)).is_ok());
        assert!(check_new_password(&"é".repeat(1025)).is_err());
    }

    #[test]
    fn dummy_hash_parses_and_passwords_round_trip() {
        assert!(PasswordHash::new(&dummy_hash()).is_ok());
        let phc = hash_password("hunter2 hunter2").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"), "{phc}");
        assert!(verify_password("hunter2 hunter2", &phc));
        assert!(!verify_password("hunter3", &phc));
    }
}
