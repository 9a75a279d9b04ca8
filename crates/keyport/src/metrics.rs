//! Counters of security events the domain and the server loop raise, read
//! by `GET /metrics` (`http::metrics` renders them). A relaxed atomic
//! increment is all an event costs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Something an operator wants to alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    /// A user-code entry refused because too many wrong codes came first.
    UserCodeThrottled,
    /// A sign-in refused by the per-IP throttle.
    SignInThrottled,
    /// A username locked after repeated failed sign-ins.
    Lockout,
    /// A rotated refresh token presented again: its session was revoked.
    RefreshReuse,
    /// A connection refused because the server or its address was at its cap.
    ConnectionRefused,
}

impl SecurityEvent {
    pub const ALL: [SecurityEvent; 5] = [
        SecurityEvent::UserCodeThrottled,
        SecurityEvent::SignInThrottled,
        SecurityEvent::Lockout,
        SecurityEvent::RefreshReuse,
        SecurityEvent::ConnectionRefused,
    ];

    /// The metric name, without the `keyport_` prefix and `_total` suffix.
    pub fn name(self) -> &'static str {
        match self {
            SecurityEvent::UserCodeThrottled => "user_code_throttled",
            SecurityEvent::SignInThrottled => "sign_in_throttled",
            SecurityEvent::Lockout => "lockouts",
            SecurityEvent::RefreshReuse => "refresh_token_reuse",
            SecurityEvent::ConnectionRefused => "connections_refused",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            SecurityEvent::UserCodeThrottled => {
                "User-code entries refused after too many wrong codes."
            }
            SecurityEvent::SignInThrottled => "Sign-ins refused by the per-IP throttle.",
            SecurityEvent::Lockout => "Usernames locked after repeated failed sign-ins.",
            SecurityEvent::RefreshReuse => {
                "Rotated refresh tokens presented again (the session was revoked)."
            }
            SecurityEvent::ConnectionRefused => {
                "Connections refused at the total or per-address cap."
            }
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static EVENTS: [AtomicU64; 5] = [ZERO; 5];

/// Counts one event.
pub fn record(event: SecurityEvent) {
    EVENTS[event.index()].fetch_add(1, Ordering::Relaxed);
}

/// How many times `event` happened in this process.
pub fn count(event: SecurityEvent) -> u64 {
    EVENTS[event.index()].load(Ordering::Relaxed)
}
