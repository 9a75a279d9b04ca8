//! Small named values: the first-run setup link's hash and the like.

use sqlx::Row;

use super::Result;
use super::directory::Db;

pub async fn get<'e>(db: impl Db<'e>, name: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.try_get("value")).transpose()?)
}

pub async fn set<'e>(db: impl Db<'e>, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the value only if it is still `expected`; true when it was.
pub async fn take<'e>(db: impl Db<'e>, name: &str, expected: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM settings WHERE name = $1 AND value = $2")
        .bind(name)
        .bind(expected)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete<'e>(db: impl Db<'e>, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM settings WHERE name = $1")
        .bind(name)
        .execute(db)
        .await?;
    Ok(())
}
