//! Browser sessions behind the session cookie (only the id's hash is stored).

use sqlx::Row;

use super::Result;
use super::directory::Db;

/// A browser session; `pending_two_step` while the second step is owed.
pub struct NewBrowserSession<'a> {
    pub id_hash: &'a str,
    pub user_id: &'a str,
    pub now: i64,
    pub expires_at: i64,
    pub ip: Option<&'a str>,
    pub pending_two_step: bool,
}

pub async fn insert<'e>(db: impl Db<'e>, new: NewBrowserSession<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO browser_sessions (id_hash, user_id, auth_time, expires_at, ip, pending_two_step) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new.id_hash)
    .bind(new.user_id)
    .bind(new.now)
    .bind(new.expires_at)
    .bind(new.ip)
    .bind(i64::from(new.pending_two_step))
    .execute(db)
    .await?;
    Ok(())
}

/// The user id and sign-in time of a live browser session that has
/// finished signing in.
pub async fn find<'e>(db: impl Db<'e>, id_hash: &str, now: i64) -> Result<Option<(String, i64)>> {
    find_in_state(db, id_hash, now, false).await
}

/// The user id of a live browser session still owing its second step.
pub async fn find_pending<'e>(
    db: impl Db<'e>,
    id_hash: &str,
    now: i64,
) -> Result<Option<(String, i64)>> {
    find_in_state(db, id_hash, now, true).await
}

/// The second step is done: the session becomes a signed-in one from `now`,
/// under a new id (`new_hash`), so the pending cookie is worth nothing after.
pub async fn complete_two_step<'e>(
    db: impl Db<'e>,
    id_hash: &str,
    new_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE browser_sessions SET pending_two_step = 0, auth_time = $2, expires_at = $3, \
         id_hash = $4 WHERE id_hash = $1 AND pending_two_step = 1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .bind(expires_at)
    .bind(new_hash)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn find_in_state<'e>(
    db: impl Db<'e>,
    id_hash: &str,
    now: i64,
    pending: bool,
) -> Result<Option<(String, i64)>> {
    let row = sqlx::query(
        "SELECT user_id, auth_time FROM browser_sessions \
         WHERE id_hash = $1 AND expires_at > $2 AND pending_two_step = $3",
    )
    .bind(id_hash)
    .bind(now)
    .bind(i64::from(pending))
    .fetch_optional(db)
    .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("user_id")?, r.try_get("auth_time")?)))
        .transpose()?)
}

pub async fn delete<'e>(db: impl Db<'e>, id_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Signs a user out of every browser.
pub async fn delete_all_of_user<'e>(db: impl Db<'e>, user_id: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
