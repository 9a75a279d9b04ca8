//! Fixed-window rate counters kept in the database, so every instance on
//! one database shares the same budget.

use sqlx::Row;

use super::Result;
use super::directory::Db;

/// Counts one hit in `bucket` for the window starting at `window_start` and
/// returns the hits so far in that window (this one included).
pub async fn hit<'e>(db: impl Db<'e>, bucket: &str, window_start: i64) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO rate_counters (bucket, window_start, hits) VALUES ($1, $2, 1) \
         ON CONFLICT (bucket) DO UPDATE SET \
         hits = CASE WHEN rate_counters.window_start = excluded.window_start \
                THEN rate_counters.hits + 1 ELSE 1 END, \
         window_start = excluded.window_start \
         RETURNING hits",
    )
    .bind(bucket)
    .bind(window_start)
    .fetch_one(db)
    .await?;
    Ok(row.try_get("hits")?)
}

/// Hits so far in the current window, without counting one.
pub async fn peek<'e>(db: impl Db<'e>, bucket: &str, window_start: i64) -> Result<i64> {
    let row = sqlx::query("SELECT hits FROM rate_counters WHERE bucket = $1 AND window_start = $2")
        .bind(bucket)
        .bind(window_start)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.try_get("hits")).transpose()?.unwrap_or(0))
}
