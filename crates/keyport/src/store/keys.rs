//! Signing keys at rest (private halves sealed). State is `active` (signs),
//! `previous` (still published for verification) or `retired`.

use sqlx::Row;

use super::Result;
use super::directory::Db;
use crate::crypto::keys::{KeyUse, StoredKey};

/// The keys to publish: active and previous.
pub async fn published<'e>(db: impl Db<'e>) -> Result<Vec<StoredKey>> {
    let rows = sqlx::query(
        "SELECT kid, alg, key_use, public_jwk, sealed_private, state FROM signing_keys \
         WHERE state IN ('active', 'previous') ORDER BY created_at DESC, kid",
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

/// Makes `key` the active key for its use: the active one becomes previous
/// and any older previous key retires.
pub async fn activate<'e, E>(db: &mut E, key: &StoredKey, now: i64) -> Result<()>
where
    for<'c> &'c mut E: Db<'c>,
{
    let key_use = key.key_use.as_str();
    sqlx::query(
        "UPDATE signing_keys SET state = 'retired' WHERE key_use = $1 AND state = 'previous'",
    )
    .bind(key_use)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "UPDATE signing_keys SET state = 'previous' WHERE key_use = $1 AND state = 'active'",
    )
    .bind(key_use)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, key_use, public_jwk, sealed_private, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'active', $6)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(key_use)
    .bind(&key.public_jwk)
    .bind(&key.sealed_private)
    .bind(now)
    .execute(&mut *db)
    .await?;
    Ok(())
}
