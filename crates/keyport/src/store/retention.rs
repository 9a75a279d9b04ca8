//! Pruning what no rule needs any more, a bounded batch per statement, so
//! housekeeping never holds the writer for long. Every statement deletes at
//! most `limit` rows chosen by a sub-select (`… IN (SELECT … LIMIT n)`),
//! which both engines accept.

use super::Result;
use super::directory::Db;

/// What one housekeeping statement prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Rotated refresh tokens past their own expiry: a replay is then plain
    /// `invalid_grant`, so reuse detection no longer needs them.
    ExpiredRotatedTokens,
    /// The refresh tokens of sessions ended before the cutoff.
    EndedSessionTokens,
    /// Sessions ended before the cutoff, once their tokens are gone.
    EndedSessions,
    /// Revoked access-token ids past their token's expiry.
    RevokedAccessTokens,
    /// Rate buckets whose window is long over.
    IdleRateBuckets,
    /// Browser sessions past their expiry.
    ExpiredBrowserSessions,
    /// Failed sign-in counts that no longer count or lock.
    StaleSignInFailures,
    /// Device authorizations that expired a day ago.
    ExpiredDeviceAuthorizations,
    /// Authorization codes that expired a day ago (kept that long so a
    /// late reuse still revokes what the code issued).
    ExpiredAuthorizationCodes,
    /// Opaque access tokens past their expiry.
    ExpiredOpaqueAccessTokens,
    /// Email and text-message codes past their expiry.
    ExpiredSignInCodes,
    /// Devices the password grant registered that have not been seen since
    /// the session cutoff.
    IdleDevices,
    /// Audit events older than the retention.
    OldAuditEvents,
}

impl Prune {
    pub const ALL: [Prune; 13] = [
        Prune::ExpiredRotatedTokens,
        Prune::EndedSessionTokens,
        Prune::EndedSessions,
        Prune::RevokedAccessTokens,
        Prune::IdleRateBuckets,
        Prune::ExpiredBrowserSessions,
        Prune::StaleSignInFailures,
        Prune::ExpiredDeviceAuthorizations,
        Prune::ExpiredAuthorizationCodes,
        Prune::ExpiredOpaqueAccessTokens,
        Prune::ExpiredSignInCodes,
        Prune::IdleDevices,
        Prune::OldAuditEvents,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Prune::ExpiredRotatedTokens => "expired_rotated_refresh_tokens",
            Prune::EndedSessionTokens => "ended_session_refresh_tokens",
            Prune::EndedSessions => "ended_sessions",
            Prune::RevokedAccessTokens => "revoked_access_token_ids",
            Prune::IdleRateBuckets => "idle_rate_buckets",
            Prune::ExpiredBrowserSessions => "expired_browser_sessions",
            Prune::StaleSignInFailures => "stale_sign_in_failures",
            Prune::ExpiredDeviceAuthorizations => "expired_device_authorizations",
            Prune::ExpiredAuthorizationCodes => "expired_authorization_codes",
            Prune::ExpiredOpaqueAccessTokens => "expired_opaque_access_tokens",
            Prune::ExpiredSignInCodes => "expired_sign_in_codes",
            Prune::IdleDevices => "idle_devices",
            Prune::OldAuditEvents => "old_audit_events",
        }
    }
}

/// The moments before which things count as over, all in unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct Cutoffs {
    pub now: i64,
    /// Sessions revoked before this are pruned.
    pub revoked_before: i64,
    /// Sessions last refreshed before this have no live token left and
    /// ended long enough ago.
    pub idle_before: i64,
    /// Sessions created before this are past their absolute lifetime and
    /// the retention.
    pub created_before: i64,
    /// Sign-in failure counts last touched before this no longer count.
    pub failures_before: i64,
    /// Audit events before this (unix ms) are pruned.
    pub audit_before_ms: i64,
}

/// A session that ended before the cutoffs (`s` is the sessions table;
/// binds: revoked before, idle before, created before).
const ENDED: &str = "((s.revoked_at IS NOT NULL AND s.revoked_at < $1) \
    OR s.last_used_at < $2 OR s.created_at < $3)";

/// Runs one bounded batch of `what`; returns the rows it removed.
pub async fn prune<'e>(db: impl Db<'e>, what: Prune, at: Cutoffs, limit: i64) -> Result<u64> {
    let ended = [at.revoked_before, at.idle_before, at.created_before, limit];
    let (sql, binds): (String, Vec<i64>) = match what {
        Prune::ExpiredRotatedTokens => (
            "DELETE FROM refresh_tokens WHERE hash IN (SELECT hash FROM refresh_tokens \
             WHERE rotated_at IS NOT NULL AND expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now, limit],
        ),
        Prune::EndedSessionTokens => (
            format!(
                // Ended sessions first (their columns are indexed), then
                // their tokens: never a scan of every refresh token.
                "DELETE FROM refresh_tokens WHERE hash IN (SELECT r.hash FROM sessions s \
                 CROSS JOIN refresh_tokens r WHERE r.session_id = s.id AND {ENDED} LIMIT $4)"
            ),
            ended.to_vec(),
        ),
        Prune::EndedSessions => (
            format!(
                "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s WHERE {ENDED} \
                 AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id) \
                 LIMIT $4)"
            ),
            ended.to_vec(),
        ),
        Prune::RevokedAccessTokens => (
            "DELETE FROM revoked_access_tokens WHERE jti IN \
             (SELECT jti FROM revoked_access_tokens WHERE expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now, limit],
        ),
        Prune::IdleRateBuckets => (
            // Windows are a minute or an hour long: two hours on, a bucket is idle.
            "DELETE FROM rate_counters WHERE bucket IN \
             (SELECT bucket FROM rate_counters WHERE window_start < $1 LIMIT $2)"
                .into(),
            vec![at.now - 7200, limit],
        ),
        Prune::ExpiredBrowserSessions => (
            "DELETE FROM browser_sessions WHERE id_hash IN \
             (SELECT id_hash FROM browser_sessions WHERE expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now, limit],
        ),
        Prune::StaleSignInFailures => (
            "DELETE FROM sign_in_failures WHERE username IN \
             (SELECT username FROM sign_in_failures WHERE last_failure_at < $1 \
              AND (locked_until IS NULL OR locked_until < $2) LIMIT $3)"
                .into(),
            vec![at.failures_before, at.now, limit],
        ),
        Prune::ExpiredDeviceAuthorizations => (
            "DELETE FROM device_authorizations WHERE id IN \
             (SELECT id FROM device_authorizations WHERE expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now - 86_400, limit],
        ),
        Prune::ExpiredAuthorizationCodes => (
            "DELETE FROM authorization_codes WHERE code_hash IN \
             (SELECT code_hash FROM authorization_codes WHERE expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now - 86_400, limit],
        ),
        Prune::ExpiredOpaqueAccessTokens => (
            "DELETE FROM access_tokens WHERE token_hash IN \
             (SELECT token_hash FROM access_tokens WHERE expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now, limit],
        ),
        Prune::ExpiredSignInCodes => (
            "DELETE FROM sign_in_codes WHERE user_id IN \
             (SELECT user_id FROM sign_in_codes WHERE expires_at < $1 LIMIT $2)"
                .into(),
            vec![at.now, limit],
        ),
        Prune::IdleDevices => (
            "DELETE FROM devices WHERE guid IN \
             (SELECT guid FROM devices WHERE last_seen_at < $1 LIMIT $2)"
                .into(),
            vec![at.idle_before, limit],
        ),
        Prune::OldAuditEvents => (
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at_ms < $1 LIMIT $2)"
                .into(),
            vec![at.audit_before_ms, limit],
        ),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in binds {
        query = query.bind(value);
    }
    Ok(query.execute(db).await?.rows_affected())
}
