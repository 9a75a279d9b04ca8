//! Two-step verification at rest: the authenticator's sealed secret and
//! last step, recovery codes, the live email or text-message code, and the
//! devices the password grant registers. Every one-time use is a
//! conditional write whose row count names the single winner.

use sqlx::Row;

use super::Result;
use super::directory::Db;

/// Turns the authenticator on: `sealed`, with the step its confirming code
/// used.
pub async fn set_totp<'e>(
    db: impl Db<'e>,
    user_id: &str,
    sealed: &str,
    last_step: i64,
) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET totp_secret = $2, totp_last_step = $3 WHERE id = $1")
        .bind(user_id)
        .bind(sealed)
        .bind(last_step)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Turns the authenticator off: true when it was on.
pub async fn clear_totp<'e>(db: impl Db<'e>, user_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET totp_secret = NULL, totp_last_step = NULL \
         WHERE id = $1 AND totp_secret IS NOT NULL",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records `step` as used, unless it or a later one already was: true for
/// the one request that may accept this authenticator code.
pub async fn use_totp_step<'e>(db: impl Db<'e>, user_id: &str, step: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_secret IS NOT NULL \
         AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(user_id)
    .bind(step)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_email_codes<'e>(db: impl Db<'e>, user_id: &str, on: bool) -> Result<()> {
    sqlx::query("UPDATE users SET email_codes = $2 WHERE id = $1")
        .bind(user_id)
        .bind(i64::from(on))
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_phone<'e>(db: impl Db<'e>, user_id: &str, phone: Option<&str>) -> Result<()> {
    sqlx::query("UPDATE users SET phone = $2 WHERE id = $1")
        .bind(user_id)
        .bind(phone)
        .execute(db)
        .await?;
    Ok(())
}

/// Replaces a user's recovery codes with `hashes`.
pub async fn replace_recovery_codes(
    c: &mut super::Conn,
    user_id: &str,
    hashes: &[String],
) -> Result<()> {
    delete_recovery_codes(&mut *c, user_id).await?;
    for hash in hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(hash)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

pub async fn delete_recovery_codes<'e>(db: impl Db<'e>, user_id: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Marks a recovery code used: true for the one request that may accept it.
pub async fn use_recovery_code<'e>(
    db: impl Db<'e>,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $3 \
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(hash)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn unused_recovery_codes<'e>(db: impl Db<'e>, user_id: &str) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(row.try_get("n")?)
}

/// Stores a new email or text-message code, replacing any earlier one.
pub async fn put_sign_in_code<'e>(
    db: impl Db<'e>,
    user_id: &str,
    hash: &str,
    channel: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sign_in_codes (user_id, code_hash, channel, created_at, expires_at, attempts) \
         VALUES ($1, $2, $3, $4, $5, 0) \
         ON CONFLICT (user_id) DO UPDATE SET code_hash = $2, channel = $3, created_at = $4, \
         expires_at = $5, attempts = 0",
    )
    .bind(user_id)
    .bind(hash)
    .bind(channel)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Counts one attempt on the user's live code and returns its hash, or
/// `None` when there is no live code or its attempts are used up.
pub async fn attempt_sign_in_code<'e>(
    db: impl Db<'e>,
    user_id: &str,
    now: i64,
    max_attempts: i64,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "UPDATE sign_in_codes SET attempts = attempts + 1 \
         WHERE user_id = $1 AND expires_at > $2 AND attempts < $3 RETURNING code_hash",
    )
    .bind(user_id)
    .bind(now)
    .bind(max_attempts)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.try_get("code_hash")).transpose()?)
}

/// Spends the code `hash`: true for the one request that may accept it.
pub async fn consume_sign_in_code<'e>(db: impl Db<'e>, user_id: &str, hash: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM sign_in_codes WHERE user_id = $1 AND code_hash = $2")
        .bind(user_id)
        .bind(hash)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// What a device reported about itself when it signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub guid: String,
    pub dns_name: Option<String>,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
}

/// The registered device with this guid.
pub async fn device_by_guid<'e>(db: impl Db<'e>, guid: &str) -> Result<Option<Device>> {
    let row =
        sqlx::query("SELECT guid, dns_name, os_type, os_version FROM devices WHERE guid = $1")
            .bind(guid)
            .fetch_optional(db)
            .await?;
    row.map(|r| {
        Ok(Device {
            guid: r.try_get("guid")?,
            dns_name: super::opt_text(&r, "dns_name")?,
            os_type: super::opt_text(&r, "os_type")?,
            os_version: super::opt_text(&r, "os_version")?,
        })
    })
    .transpose()
}

/// Whether `guid` names a device of `user_id`.
pub async fn device_of<'e>(db: impl Db<'e>, guid: &str, user_id: &str) -> Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM devices WHERE guid = $1 AND user_id = $2")
        .bind(guid)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

/// Registers the device, or updates what it reports about itself. A guid
/// of another user's device is never touched.
pub async fn upsert_device<'e>(
    db: impl Db<'e>,
    user_id: &str,
    device: &Device,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO devices (guid, user_id, dns_name, os_type, os_version, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (guid) DO UPDATE SET \
         dns_name = COALESCE($3, devices.dns_name), os_type = COALESCE($4, devices.os_type), \
         os_version = COALESCE($5, devices.os_version), last_seen_at = $6 \
         WHERE devices.user_id = $2",
    )
    .bind(&device.guid)
    .bind(user_id)
    .bind(device.dns_name.as_deref())
    .bind(device.os_type.as_deref())
    .bind(device.os_version.as_deref())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Updates what a registered device reports about itself.
pub async fn update_device<'e>(
    from: impl Into<super::reads::Source<'e>>,
    device: &Device,
    now: i64,
) -> Result<()> {
    use super::reads::Arg;
    const SQL: &str = "UPDATE devices SET dns_name = COALESCE($2, dns_name), \
         os_type = COALESCE($3, os_type), os_version = COALESCE($4, os_version), \
         last_seen_at = $5 WHERE guid = $1";
    let args = [
        Arg::Text(&device.guid),
        Arg::OptText(device.dns_name.as_deref()),
        Arg::OptText(device.os_type.as_deref()),
        Arg::OptText(device.os_version.as_deref()),
        Arg::Int(now),
    ];
    super::reads::execute(from, SQL, &args).await?;
    Ok(())
}
