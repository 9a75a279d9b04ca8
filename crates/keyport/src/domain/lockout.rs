//! The sign-in lockout and its throttle: every attempt (password or
//! second-step code) is counted per normalised username before it is
//! checked, so under any concurrency no more attempts are checked than
//! `failed_sign_ins_before_lockout`; the attempt that reaches the limit
//! locks the name for `lockout_seconds`. An attempt over the limit only
//! because others are still being checked waits for their outcome.

use std::time::Duration;

use super::audit::Audit;
use super::signin::{SignInError, normalise_username};
use super::{Error, Result};
use crate::service::{Caller, Keyport};
use crate::store::{self, lockout::Attempt};
use crate::telemetry::SecurityEvent;

/// How long an attempt waits for room when the lockout limit is taken by
/// attempts still being checked, and how often it asks.
const ROOM_WAIT: Duration = Duration::from_secs(2);
const ROOM_POLL: Duration = Duration::from_millis(50);

/// What a counted sign-in attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptDecision {
    /// Check the password (or code): this is attempt `number`.
    Go(i64),
    /// The name is locked until then.
    Locked(i64),
    /// Attempts still being checked fill the limit: wait for their outcome.
    Wait,
}

/// Decides a counted attempt: locked, within the limit, or over it only
/// because others are still in flight (no lock is set yet).
fn decide_attempt(attempt: Attempt, now: i64, max: i64) -> AttemptDecision {
    match attempt.locked_until {
        Some(until) if until > now => AttemptDecision::Locked(until),
        _ if attempt.number > max => AttemptDecision::Wait,
        _ => AttemptDecision::Go(attempt.number),
    }
}

impl Keyport {
    /// Counts one sign-in attempt for `username` under the per-IP throttle
    /// and the lockout: the attempt's number, or why it may not go on.
    pub(super) async fn count_attempt(
        &self,
        username: &str,
        caller: &Caller,
    ) -> Result<i64, SignInError> {
        let now = self.clock.now();
        let limits = self.config.limits.clone();
        let throttle_ip = caller.ip.filter(|_| limits.enabled);
        let name = username.to_string();
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
        let mut attempt = attempt.ok_or(Error::internal("sign-in attempt not counted"))?;
        let max = limits.failed_sign_ins_before_lockout;
        let mut waited = Duration::ZERO;
        loop {
            let now = self.clock.now();
            match decide_attempt(attempt, now, max) {
                AttemptDecision::Go(number) => return Ok(number),
                AttemptDecision::Locked(until) => {
                    self.audit_sign_in_failure(username, "locked", false, caller)
                        .await?;
                    return Err(SignInError::Locked { until });
                }
                AttemptDecision::Wait => {
                    // The limit is taken by attempts still being checked:
                    // this one is taken back, and asks again shortly. When
                    // they fail the name locks; when one succeeds there is
                    // room again.
                    self.release_attempt(username).await?;
                    if waited >= ROOM_WAIT {
                        self.audit_sign_in_failure(username, "locked", false, caller)
                            .await?;
                        return Err(SignInError::Locked {
                            until: now + limits.lockout_seconds,
                        });
                    }
                    tokio::time::sleep(ROOM_POLL).await;
                    waited += ROOM_POLL;
                    let name = username.to_string();
                    let window = limits.lockout_seconds;
                    attempt = self
                        .store
                        .write_one(move |c| {
                            Box::pin(async move {
                                store::lockout::begin_attempt(c, &name, now, window).await
                            })
                        })
                        .await?;
                }
            }
        }
    }

    /// Takes back a counted attempt that turned out not to be one (nothing
    /// was checked, or the request was refused for another reason).
    pub(crate) async fn release_attempt(&self, email: &str) -> Result<()> {
        let name = normalise_username(email);
        self.store
            .write_one(move |c| Box::pin(async move { store::lockout::release(c, &name).await }))
            .await?;
        Ok(())
    }

    /// A failed attempt, already counted: audited, and the name locked when
    /// this attempt reached the limit.
    pub(super) async fn sign_in_failed(
        &self,
        username: &str,
        reason: &'static str,
        attempt: i64,
        caller: &Caller,
    ) -> Result<()> {
        let reached = attempt >= self.config.limits.failed_sign_ins_before_lockout;
        let locked = self
            .audit_sign_in_failure(username, reason, reached, caller)
            .await?;
        if locked {
            crate::telemetry::record(SecurityEvent::Lockout);
        }
        Ok(())
    }

    /// Records a failed sign-in and, when `lock` is set, locks the name for
    /// the lockout window. True when this call set the lock.
    pub(super) async fn audit_sign_in_failure(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_over_the_limit_waits_unless_the_name_is_locked() {
        use AttemptDecision::*;
        let at = |number, locked_until| Attempt {
            number,
            locked_until,
        };
        let cases = [
            (at(1, None), Go(1)),
            (at(5, None), Go(5)),
            (at(6, None), Wait),
            (at(6, Some(1_900)), Locked(1_900)),
            (at(1, Some(1_900)), Locked(1_900)),
            (at(1, Some(1_000)), Go(1)),
            (at(7, Some(999)), Wait),
        ];
        for (attempt, expected) in cases {
            assert_eq!(decide_attempt(attempt, 1_000, 5), expected, "{attempt:?}");
        }
    }
}
