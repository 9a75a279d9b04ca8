//! Browser sessions behind the session cookie (only the id's hash is stored).

use sqlx::Row;

use super::Result;
use super::directory::Db;

pub async fn insert<'e>(
    db: impl Db<'e>,
    id_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
    ip: Option<&str>,
) -> Result<()> {
    sqlx::query("INSERT INTO browser_sessions (id_hash, user_id, auth_time, expires_at, ip) VALUES ($1, $2, $3, $4, $5)")
        .bind(id_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(ip)
        .execute(db)
        .await?;
    Ok(())
}

/// The user id and sign-in time of a live browser session.
pub async fn find<'e>(db: impl Db<'e>, id_hash: &str, now: i64) -> Result<Option<(String, i64)>> {
    let row = sqlx::query(
        "SELECT user_id, auth_time FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
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
