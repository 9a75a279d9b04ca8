//! Two-step verification: which second step an account asks for, sending
//! email and text-message codes, checking a code of any kind (authenticator,
//! emailed or texted, recovery), and turning each method on or off.
//!
//! Every code is spent by one conditional write, so two requests racing
//! with the same code cannot both pass.

use serde::Serialize;

use super::totp::TotpSecret;
use super::{Error, ErrorCode, Result, User};
use crate::crypto::{self, constant_time_eq, keyed_hash};
use crate::service::{Caller, Keyport};
use crate::store;

use super::audit::Audit;

/// How long an email or text-message code lives.
pub const SENT_CODE_SECS: i64 = 600;
/// Attempts one email or text-message code allows.
pub const SENT_CODE_ATTEMPTS: i64 = 5;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Recovery codes: 10 characters of this alphabet (no 0/o, 1/l/i), about 49 bits.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// The second step an account asks for (seed 003's `two_step_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TwoStepMode {
    Authenticator,
    Email,
    Sms,
}

impl TwoStepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TwoStepMode::Authenticator => "authenticator",
            TwoStepMode::Email => "email",
            TwoStepMode::Sms => "sms",
        }
    }
}

/// The second step `user` has turned on; with several, the authenticator.
pub fn mode_of(user: &User) -> Option<TwoStepMode> {
    if user.totp_sealed.is_some() {
        Some(TwoStepMode::Authenticator)
    } else if user.email_codes {
        Some(TwoStepMode::Email)
    } else if user.phone.is_some() {
        Some(TwoStepMode::Sms)
    } else {
        None
    }
}

/// The shapes a typed code can have: six digits, or a recovery code.
#[derive(Debug, PartialEq, Eq)]
enum TypedCode {
    Digits(String),
    Recovery(String),
    Neither,
}

fn classify(code: &str) -> TypedCode {
    let compact: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    if compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()) {
        TypedCode::Digits(compact)
    } else if compact.len() == 10 && compact.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
        TypedCode::Recovery(compact)
    } else {
        TypedCode::Neither
    }
}

/// A new recovery code, shown as `xxxxx-xxxxx`.
fn new_recovery_code() -> String {
    let bytes = crypto::random_bytes::<10>();
    let chars: String = bytes
        .iter()
        .map(|b| RECOVERY_ALPHABET[*b as usize % RECOVERY_ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// A new six-digit code for email or text message.
fn new_sent_code() -> String {
    let n = u32::from_be_bytes(crypto::random_bytes::<4>()) % 1_000_000;
    format!("{n:06}")
}

/// An authenticator being set up: the secret to show, and the same secret
/// sealed for the form that confirms it (nothing is stored until then).
#[derive(Debug)]
pub struct TotpEnrolment {
    pub secret: TotpSecret,
    pub otpauth_uri: String,
    /// The secret sealed under the master key for this user only.
    pub sealed: String,
}

impl Keyport {
    fn code_key(&self, purpose: &str) -> [u8; 32] {
        self.master.derive(purpose)
    }

    fn sent_code_hash(&self, user_id: &str, digits: &str) -> String {
        keyed_hash(
            &self.code_key("sign-in-code"),
            &format!("{user_id}:{digits}"),
        )
    }

    fn recovery_hash(&self, user_id: &str, compact: &str) -> String {
        keyed_hash(
            &self.code_key("recovery-code"),
            &format!("{user_id}:{compact}"),
        )
    }

    fn totp_aad(user_id: &str) -> String {
        format!("totp:{user_id}")
    }

    fn open_totp(&self, user: &User) -> Option<TotpSecret> {
        let sealed = user.totp_sealed.as_ref()?;
        let bytes = self
            .master
            .open(&sealed.0, &Self::totp_aad(&user.id))
            .ok()?;
        Some(TotpSecret::from_bytes(bytes))
    }

    /// For email and text-message codes: makes a code, keeps its HMAC and
    /// sends it to the account's own address or number. Nothing to do for
    /// the authenticator.
    pub async fn send_sign_in_code(&self, user: &User, mode: TwoStepMode) -> Result<()> {
        let (channel, to) = match mode {
            TwoStepMode::Authenticator => return Ok(()),
            TwoStepMode::Email => ("email", user.email.clone()),
            TwoStepMode::Sms => match &user.phone {
                Some(phone) => ("sms", phone.clone()),
                None => return Err(Error::internal("no phone number for text-message codes")),
            },
        };
        let code = new_sent_code();
        let hash = self.sent_code_hash(&user.id, &code);
        let now = self.clock.now();
        let user_id = user.id.clone();
        self.store
            .write_one(move |c| {
                Box::pin(async move {
                    store::two_step::put_sign_in_code(
                        c,
                        &user_id,
                        &hash,
                        channel,
                        now,
                        now + SENT_CODE_SECS,
                    )
                    .await
                })
            })
            .await?;
        let sent = match mode {
            TwoStepMode::Email => {
                let body = format!(
                    "Your Keyport sign-in code is {code}\n\nIt expires in 10 minutes. \
                     If you did not try to sign in, change your password.\n"
                );
                self.outbound
                    .send_email(&to, &format!("Keyport sign-in code {code}"), &body)
                    .await
            }
            _ => {
                let text = format!("Keyport sign-in code: {code} (expires in 10 minutes)");
                self.outbound.send_sms(&to, &text).await
            }
        };
        sent.map_err(|e| {
            tracing::error!(error = %e, channel, "a sign-in code could not be sent");
            Error::oauth(
                ErrorCode::TemporarilyUnavailable,
                "the sign-in code could not be sent; try again shortly",
            )
        })
    }

    /// Whether `code` passes `user`'s second step: an authenticator code
    /// (once each), the emailed or texted code (once, within its attempts),
    /// or one of the recovery codes (once each). Spends what it accepts.
    pub async fn check_second_step(&self, user: &User, code: &str) -> Result<bool> {
        let now = self.clock.now();
        let user_id = user.id.clone();
        match classify(code) {
            TypedCode::Neither => Ok(false),
            TypedCode::Recovery(compact) => {
                let hash = self.recovery_hash(&user.id, &compact);
                Ok(self
                    .store
                    .write_one(move |c| {
                        Box::pin(async move {
                            store::two_step::use_recovery_code(c, &user_id, &hash, now).await
                        })
                    })
                    .await?)
            }
            TypedCode::Digits(digits) => {
                if let Some(secret) = self.open_totp(user) {
                    let Some(step) = secret.verify(&digits, now, user.totp_last_step) else {
                        return Ok(false);
                    };
                    return Ok(self
                        .store
                        .write_one(move |c| {
                            Box::pin(async move {
                                store::two_step::use_totp_step(c, &user_id, step).await
                            })
                        })
                        .await?);
                }
                let presented = self.sent_code_hash(&user.id, &digits);
                Ok(self
                    .store
                    .write(move |c| {
                        Box::pin(async move {
                            let Some(stored) = store::two_step::attempt_sign_in_code(
                                &mut *c,
                                &user_id,
                                now,
                                SENT_CODE_ATTEMPTS,
                            )
                            .await?
                            else {
                                return Ok(false);
                            };
                            if !constant_time_eq(stored.as_bytes(), presented.as_bytes()) {
                                return Ok(false);
                            }
                            store::two_step::consume_sign_in_code(c, &user_id, &stored).await
                        })
                    })
                    .await?)
            }
        }
    }

    /// A new authenticator secret for `user`, not yet stored.
    pub fn begin_totp_enrolment(&self, user: &User) -> TotpEnrolment {
        self.enrolment(user, TotpSecret::generate())
    }

    /// Reopens an enrolment from its sealed form (the confirm form).
    pub fn reopen_totp_enrolment(&self, user: &User, sealed: &str) -> Option<TotpEnrolment> {
        let bytes = self.master.open(sealed, &Self::enrol_aad(&user.id)).ok()?;
        Some(self.enrolment(user, TotpSecret::from_bytes(bytes)))
    }

    fn enrol_aad(user_id: &str) -> String {
        format!("enrol:{user_id}")
    }

    fn enrolment(&self, user: &User, secret: TotpSecret) -> TotpEnrolment {
        let host = url::Url::parse(&self.config.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let otpauth_uri = secret.otpauth_uri(&format!("Keyport {host}"), &user.email);
        let sealed = self
            .master
            .seal(secret.expose(), &Self::enrol_aad(&user.id));
        TotpEnrolment {
            secret,
            otpauth_uri,
            sealed,
        }
    }

    /// One change to how `user` signs in, made by `change` (given the
    /// user id) and audited as `event` in the same transaction.
    async fn change_sign_in<F>(
        &self,
        user: &User,
        event: &'static str,
        detail: Option<serde_json::Value>,
        caller: &Caller,
        change: F,
    ) -> Result<()>
    where
        F: for<'c> FnOnce(&'c mut store::Conn, String) -> store::BoxFuture<'c, store::Result<()>>
            + Send
            + 'static,
    {
        let now = self.clock.now();
        let (user_id, email, caller) = (user.id.clone(), user.email.clone(), caller.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    change(&mut *c, user_id).await?;
                    let audit = Audit::new(event, "success").actor(Some(&email));
                    match detail {
                        Some(detail) => audit.detail(detail),
                        None => audit,
                    }
                    .record(c, now * 1000, &caller)
                    .await
                })
            })
            .await?;
        Ok(())
    }

    /// Turns the authenticator on when `code` matches the enrolment's
    /// secret; returns the ten new recovery codes to show once.
    pub async fn confirm_totp(
        &self,
        user: &User,
        enrolment: &TotpEnrolment,
        code: &str,
        caller: &Caller,
    ) -> Result<Option<Vec<String>>> {
        let Some(step) = enrolment.secret.verify(code, self.clock.now(), None) else {
            return Ok(None);
        };
        let sealed = self
            .master
            .seal(enrolment.secret.expose(), &Self::totp_aad(&user.id));
        let (codes, hashes) = self.make_recovery_codes(&user.id);
        self.change_sign_in(user, "account.totp_enabled", None, caller, move |c, id| {
            Box::pin(async move {
                store::two_step::set_totp(&mut *c, &id, &sealed, step).await?;
                store::two_step::replace_recovery_codes(c, &id, &hashes).await
            })
        })
        .await?;
        Ok(Some(codes))
    }

    /// Turns the authenticator off and forgets the recovery codes.
    pub async fn turn_off_totp(&self, user: &User, caller: &Caller) -> Result<()> {
        self.change_sign_in(user, "account.totp_disabled", None, caller, |c, id| {
            Box::pin(async move { reset_totp(c, &id).await.map(|_| ()) })
        })
        .await
    }

    /// Ten new recovery codes in place of the old ones, to show once.
    pub async fn new_recovery_codes(&self, user: &User, caller: &Caller) -> Result<Vec<String>> {
        let (codes, hashes) = self.make_recovery_codes(&user.id);
        let event = "account.recovery_codes_replaced";
        self.change_sign_in(user, event, None, caller, move |c, id| {
            Box::pin(async move { store::two_step::replace_recovery_codes(c, &id, &hashes).await })
        })
        .await?;
        Ok(codes)
    }

    /// New recovery codes and the HMACs the store keeps of them.
    fn make_recovery_codes(&self, user_id: &str) -> (Vec<String>, Vec<String>) {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes = codes
            .iter()
            .map(|c| self.recovery_hash(user_id, &c.replace('-', "")))
            .collect();
        (codes, hashes)
    }

    /// Turns email codes on or off for `user`.
    pub async fn set_email_codes(&self, user: &User, on: bool, caller: &Caller) -> Result<()> {
        let event = match on {
            true => "account.email_codes_enabled",
            false => "account.email_codes_disabled",
        };
        self.change_sign_in(user, event, None, caller, move |c, id| {
            Box::pin(async move { store::two_step::set_email_codes(c, &id, on).await })
        })
        .await
    }

    /// Turns text-message codes on (to `phone`) or off (`None`).
    pub async fn set_sms_codes(
        &self,
        user: &User,
        phone: Option<&str>,
        caller: &Caller,
    ) -> Result<()> {
        if let Some(phone) = phone
            && !is_phone_number(phone)
        {
            return Err(Error::invalid_request(
                "a phone number is + and 8 to 15 digits",
            ));
        }
        let phone = phone.map(str::to_string);
        let detail = serde_json::json!({ "on": phone.is_some() });
        let event = "account.sms_codes_changed";
        self.change_sign_in(user, event, Some(detail), caller, move |c, id| {
            Box::pin(async move { store::two_step::set_phone(c, &id, phone.as_deref()).await })
        })
        .await
    }

    /// Recovery codes `user` has left.
    pub async fn recovery_codes_left(&self, user: &User) -> Result<i64> {
        Ok(store::two_step::unused_recovery_codes(self.store.pool(), &user.id).await?)
    }

    /// The user as stored now (after a setting changed).
    pub async fn reload_user(&self, user: &User) -> Result<Option<User>> {
        Ok(store::directory::user_by_id(self.store.pool(), &user.id).await?)
    }
}

/// E.164: `+` and 8 to 15 digits.
pub fn is_phone_number(text: &str) -> bool {
    text.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Turns the authenticator off and forgets the recovery codes (`keyport user
/// totp reset`, for someone who lost their phone).
pub(crate) async fn reset_totp(c: &mut store::Conn, user_id: &str) -> store::Result<bool> {
    let had = store::two_step::clear_totp(&mut *c, user_id).await?;
    store::two_step::delete_recovery_codes(&mut *c, user_id).await?;
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_codes_are_told_apart() {
        assert_eq!(classify(" 123 456 "), TypedCode::Digits("123456".into()));
        assert_eq!(
            classify("ABCDE-fghjk"),
            TypedCode::Recovery("abcdefghjk".into())
        );
        assert_eq!(classify("12345"), TypedCode::Neither);
        assert_eq!(classify("abcde-fghj0"), TypedCode::Neither);
        assert_eq!(classify(""), TypedCode::Neither);
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert!(matches!(classify(&code), TypedCode::Recovery(_)));
        assert!(matches!(classify(&new_sent_code()), TypedCode::Digits(_)));
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert!(is_phone_number("+15550100123"));
        assert!(!is_phone_number("15550100123"));
        assert!(!is_phone_number("+1555"));
        assert!(!is_phone_number("+1555010012x"));
    }
}
