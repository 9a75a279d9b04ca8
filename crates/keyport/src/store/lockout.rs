//! Failed sign-ins, counted per normalised username whether or not an
//! account has that name. Each attempt is counted before its password is
//! checked, so under any concurrency no more attempts are checked than the
//! lockout allows.

use sqlx::Row;

use super::Result;
use super::directory::Db;

/// The count after an attempt was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Attempts since the last success, this one included.
    pub number: i64,
    /// Set while the name is locked.
    pub locked_until: Option<i64>,
}

/// Registers one sign-in attempt for `username`. A count whose last
/// failure is older than `window` seconds, or whose lock has ended, starts
/// over; a locked name's count is left alone.
pub async fn begin_attempt<'e>(
    db: impl Db<'e>,
    username: &str,
    now: i64,
    window: i64,
) -> Result<Attempt> {
    let row = sqlx::query(
        "INSERT INTO sign_in_failures (username, failures, last_failure_at, locked_until) \
         VALUES ($1, 1, $2, NULL) \
         ON CONFLICT (username) DO UPDATE SET \
         failures = CASE \
             WHEN sign_in_failures.locked_until > $2 THEN sign_in_failures.failures \
             WHEN sign_in_failures.locked_until IS NOT NULL \
                  OR sign_in_failures.last_failure_at <= $3 THEN 1 \
             ELSE sign_in_failures.failures + 1 END, \
         last_failure_at = CASE WHEN sign_in_failures.locked_until > $2 \
             THEN sign_in_failures.last_failure_at ELSE $2 END, \
         locked_until = CASE WHEN sign_in_failures.locked_until > $2 \
             THEN sign_in_failures.locked_until ELSE NULL END \
         RETURNING failures, locked_until",
    )
    .bind(username)
    .bind(now)
    .bind(now - window)
    .fetch_one(db)
    .await?;
    Ok(Attempt {
        number: row.try_get("failures")?,
        locked_until: row.try_get("locked_until")?,
    })
}

/// Locks `username` until `until`, unless it is locked already. True when
/// this call set the lock.
pub async fn lock<'e>(db: impl Db<'e>, username: &str, now: i64, until: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sign_in_failures SET locked_until = $3 \
         WHERE username = $1 AND (locked_until IS NULL OR locked_until <= $2)",
    )
    .bind(username)
    .bind(now)
    .bind(until)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets the count: after a successful sign-in, or `keyport user unlock`.
pub async fn clear<'e>(db: impl Db<'e>, username: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM sign_in_failures WHERE username = $1")
        .bind(username)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes back an attempt that was counted but never checked (it waited
/// for room under the limit and gave up or will try again). A locked
/// name's count is left alone.
pub async fn release<'e>(db: impl Db<'e>, username: &str) -> Result<()> {
    sqlx::query(
        "UPDATE sign_in_failures SET failures = failures - 1 \
         WHERE username = $1 AND failures > 0 AND locked_until IS NULL",
    )
    .bind(username)
    .execute(db)
    .await?;
    Ok(())
}
