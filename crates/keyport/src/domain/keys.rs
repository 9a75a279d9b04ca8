//! Automatic signing-key rotation. A key signs for `rotate_after`; its
//! successor is published in the JWKS `publish_ahead` earlier, so every
//! cached JWKS knows it before it signs anything; a replaced key stays
//! published until every token it signed has expired. The rule is a plain
//! function of the stored keys and the time; the store carries each step out
//! with a conditional statement, so across instances each happens once.

use crate::config::KeySettings;
use crate::crypto::keys::KeyUse;

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    /// Signs new tokens.
    Active,
    /// Stopped signing; published until its tokens have expired.
    Previous,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Previous => "previous",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "next" => Some(KeyState::Next),
            "active" => Some(KeyState::Active),
            "previous" => Some(KeyState::Previous),
            _ => None,
        }
    }
}

/// A published key's times, in unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimes {
    pub kid: String,
    pub key_use: KeyUse,
    pub state: KeyState,
    pub created_at: i64,
    /// When it began signing.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub deactivated_at: Option<i64>,
}

/// One step of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStep {
    /// Create and publish the key that will sign next.
    PublishNext(KeyUse),
    /// The next key signs from now on; the active one becomes previous.
    Promote {
        key_use: KeyUse,
        active: String,
        next: String,
    },
    /// Every token this key signed has expired: stop publishing it.
    Retire(String),
}

/// Slack for clocks that differ between instances and verifiers.
pub const CLOCK_SKEW: i64 = 60;

/// What is due at `now`. `token_ttl` is the longest a token signed by any
/// key lives.
pub fn plan(keys: &[KeyTimes], now: i64, settings: &KeySettings, token_ttl: i64) -> Vec<KeyStep> {
    let mut steps = Vec::new();
    for key_use in KeyUse::ALL {
        let mine = |state| {
            keys.iter()
                .filter(move |k| k.key_use == key_use && k.state == state)
        };
        let Some(active) = mine(KeyState::Active).next() else {
            continue;
        };
        let since = active.activated_at.unwrap_or(active.created_at);
        let due = since + settings.rotate_after;
        match mine(KeyState::Next).next() {
            None if now >= due - settings.publish_ahead => {
                steps.push(KeyStep::PublishNext(key_use));
            }
            Some(next) if now >= due && now >= next.created_at + settings.publish_ahead => {
                steps.push(KeyStep::Promote {
                    key_use,
                    active: active.kid.clone(),
                    next: next.kid.clone(),
                });
            }
            _ => {}
        }
        for old in mine(KeyState::Previous) {
            let stopped = old.deactivated_at.unwrap_or(old.created_at);
            if now > stopped + token_ttl + CLOCK_SKEW {
                steps.push(KeyStep::Retire(old.kid.clone()));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn key(
        kid: &str,
        state: KeyState,
        created: i64,
        active: Option<i64>,
        stop: Option<i64>,
    ) -> KeyTimes {
        KeyTimes {
            kid: kid.into(),
            key_use: KeyUse::AccessToken,
            state,
            created_at: created,
            activated_at: active,
            deactivated_at: stop,
        }
    }

    #[test]
    fn a_rotation_publishes_ahead_then_promotes_then_retires() {
        let settings = KeySettings {
            rotate_after: 90 * DAY,
            publish_ahead: DAY,
        };
        let ttl = 900;
        let active = key("a", KeyState::Active, 0, Some(0), None);
        let plan_at = |keys: &[KeyTimes], now| plan(keys, now, &settings, ttl);
        assert!(plan_at(std::slice::from_ref(&active), 89 * DAY - 1).is_empty());
        assert_eq!(
            plan_at(std::slice::from_ref(&active), 89 * DAY),
            vec![KeyStep::PublishNext(KeyUse::AccessToken)]
        );
        let next = key("b", KeyState::Next, 89 * DAY, None, None);
        let both = [active.clone(), next.clone()];
        assert!(plan_at(&both, 90 * DAY - 1).is_empty(), "not yet due");
        let promote = KeyStep::Promote {
            key_use: KeyUse::AccessToken,
            active: "a".into(),
            next: "b".into(),
        };
        assert_eq!(plan_at(&both, 90 * DAY), vec![promote.clone()]);
        // A next key published late waits out its own publish-ahead.
        let late = key("b", KeyState::Next, 95 * DAY, None, None);
        assert!(plan_at(&[active.clone(), late.clone()], 95 * DAY + 10).is_empty());
        assert_eq!(
            plan_at(&[active, late], 96 * DAY),
            vec![KeyStep::Promote {
                key_use: KeyUse::AccessToken,
                active: "a".into(),
                next: "b".into()
            }]
        );
        // The old key is published until its last token has expired.
        let old = key("a", KeyState::Previous, 0, Some(0), Some(90 * DAY));
        let now_active = key("b", KeyState::Active, 89 * DAY, Some(90 * DAY), None);
        let after = [old, now_active];
        assert!(plan_at(&after, 90 * DAY + ttl + CLOCK_SKEW).is_empty());
        assert_eq!(
            plan_at(&after, 90 * DAY + ttl + CLOCK_SKEW + 1),
            vec![KeyStep::Retire("a".into())]
        );
    }
}
