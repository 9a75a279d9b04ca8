//! Signing keys at rest (private halves sealed). State is `next` (published
//! ahead of use), `active` (signs), `previous` (still published for
//! verification) or `retired`. Each change of state is a conditional
//! statement, and at most one key per use is `next` or `active` (unique
//! indexes), so instances racing to rotate cannot both win.

use sqlx::Row;

use super::Result;
use super::directory::Db;
use crate::crypto::keys::{KeyUse, StoredKey};
use crate::domain::keys::{KeyState, KeyTimes};

/// The keys to publish: next, active and previous.
pub async fn published<'e>(db: impl Db<'e>) -> Result<Vec<StoredKey>> {
    let rows = sqlx::query(
        "SELECT kid, alg, key_use, public_jwk, sealed_private, state FROM signing_keys \
         WHERE state IN ('next', 'active', 'previous') ORDER BY created_at DESC, kid",
    )
    .fetch_all(db)
    .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let key_use: String = row.try_get("key_use")?;
        let Some(key_use) = KeyUse::parse(&key_use) else {
            continue;
        };
        keys.push(StoredKey {
            kid: row.try_get("kid")?,
            alg: row.try_get("alg")?,
            key_use,
            public_jwk: row.try_get("public_jwk")?,
            sealed_private: row.try_get("sealed_private")?,
            active: row.try_get::<String, _>("state")? == "active",
        });
    }
    Ok(keys)
}

/// The published keys' times, for the rotation schedule.
pub async fn times<'e>(db: impl Db<'e>) -> Result<Vec<KeyTimes>> {
    let rows = sqlx::query(
        "SELECT kid, key_use, state, created_at, activated_at, deactivated_at FROM signing_keys \
         WHERE state IN ('next', 'active', 'previous')",
    )
    .fetch_all(db)
    .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let key_use = KeyUse::parse(&row.try_get::<String, _>("key_use")?);
        let state = KeyState::parse(&row.try_get::<String, _>("state")?);
        let (Some(key_use), Some(state)) = (key_use, state) else {
            continue;
        };
        keys.push(KeyTimes {
            kid: row.try_get("kid")?,
            key_use,
            state,
            created_at: row.try_get("created_at")?,
            activated_at: row.try_get("activated_at")?,
            deactivated_at: row.try_get("deactivated_at")?,
        });
    }
    Ok(keys)
}

async fn insert<'e>(db: impl Db<'e>, key: &StoredKey, state: KeyState, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, key_use, public_jwk, sealed_private, state, \
         created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(key.key_use.as_str())
    .bind(&key.public_jwk)
    .bind(&key.sealed_private)
    .bind(state.as_str())
    .bind(now)
    .bind((state == KeyState::Active).then_some(now))
    .execute(db)
    .await?;
    Ok(())
}

/// Makes `key` the active key for its use at once (first start, or an
/// emergency rotation): the active one becomes previous and stays
/// published until its tokens expire.
pub async fn activate<'e, E>(db: &mut E, key: &StoredKey, now: i64) -> Result<()>
where
    for<'c> &'c mut E: Db<'c>,
{
    sqlx::query(
        "UPDATE signing_keys SET state = 'previous', deactivated_at = $2 \
         WHERE key_use = $1 AND state = 'active'",
    )
    .bind(key.key_use.as_str())
    .bind(now)
    .execute(&mut *db)
    .await?;
    insert(&mut *db, key, KeyState::Active, now).await
}

/// Publishes `key` as the next one for its use. False when another
/// instance published one first.
pub async fn publish_next<'e>(db: impl Db<'e>, key: &StoredKey, now: i64) -> Result<bool> {
    match insert(db, key, KeyState::Next, now).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The next key signs from now on and the active one becomes previous.
/// False when another instance promoted it first.
pub async fn promote<'e, E>(db: &mut E, active: &str, next: &str, now: i64) -> Result<bool>
where
    for<'c> &'c mut E: Db<'c>,
{
    let demoted = sqlx::query(
        "UPDATE signing_keys SET state = 'previous', deactivated_at = $2 \
         WHERE kid = $1 AND state = 'active'",
    )
    .bind(active)
    .bind(now)
    .execute(&mut *db)
    .await?;
    if demoted.rows_affected() == 0 {
        return Ok(false);
    }
    let promoted = sqlx::query(
        "UPDATE signing_keys SET state = 'active', activated_at = $2 \
         WHERE kid = $1 AND state = 'next'",
    )
    .bind(next)
    .bind(now)
    .execute(&mut *db)
    .await?;
    if promoted.rows_affected() == 0 {
        // Never leave a use without an active key: undo the demotion.
        return Err(super::Error::Invalid(format!(
            "signing key {next} is no longer next"
        )));
    }
    Ok(true)
}

/// Stops publishing a previous key. False when it was retired already.
pub async fn retire<'e>(db: impl Db<'e>, kid: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE signing_keys SET state = 'retired' WHERE kid = $1 AND state = 'previous'",
    )
    .bind(kid)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
