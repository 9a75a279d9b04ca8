//! Fixed-window rate counters kept in the database, so every instance on
//! one database shares the same budget.

use sqlx::Row;

use super::directory::Db;
use super::reads::{self, Arg, Source};
use super::{Error, Result};

/// Counts one hit in `bucket` for the window starting at `window_start` and
/// returns the hits so far in that window (this one included).
pub async fn hit<'e>(from: impl Into<Source<'e>>, bucket: &str, window_start: i64) -> Result<i64> {
    const SQL: &str = "INSERT INTO rate_counters (bucket, window_start, hits) VALUES ($1, $2, 1) \
         ON CONFLICT (bucket) DO UPDATE SET \
         hits = CASE WHEN rate_counters.window_start = excluded.window_start \
                THEN rate_counters.hits + 1 ELSE 1 END, \
         window_start = excluded.window_start \
         RETURNING hits";
    let args = [Arg::Text(bucket), Arg::Int(window_start)];
    let hits = reads::fetch_optional(from, SQL, &args, |row| row.int("hits")).await?;
    hits.ok_or_else(|| Error::Invalid("a rate counter's upsert returned no row".into()))
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
