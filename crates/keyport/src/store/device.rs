//! RFC 8628 device authorizations. Every state change is a conditional
//! `UPDATE` on the current status, so two instances (or two polls) can never
//! both approve, deny or redeem the same authorization.

use sqlx::Row;

use super::Result;
use super::directory::Db;
use super::reads::{self, Arg, Columns, Source};
use crate::domain::scopes::Role;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// Tokens were released; the device code is spent.
    Redeemed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Redeemed => "redeemed",
        }
    }

    fn parse(text: &str) -> Status {
        match text {
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "redeemed" => Status::Redeemed,
            _ => Status::Pending,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub id: String,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    /// JSON object: `cli_label`, `client_info`, `dns_name`, `os_type`, `os_version`.
    pub metadata: String,
    pub ip: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval: i64,
    pub last_poll_ms: Option<i64>,
    pub status: Status,
    pub user_id: Option<String>,
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
    pub granted_scope: Option<String>,
    pub auth_time: Option<i64>,
    /// When the tokens were released (unix ms).
    pub redeemed_ms: Option<i64>,
    /// The token response, sealed under a key only the device code derives,
    /// kept for the leeway after redemption.
    pub sealed_tokens: Option<String>,
}

fn row_to_device(row: &dyn Columns) -> Result<DeviceAuthorization> {
    Ok(DeviceAuthorization {
        id: row.text("id")?,
        client_id: row.text("client_id")?,
        scope: row.text("scope")?,
        resource: row.opt_text("resource")?,
        metadata: row.text("metadata")?,
        ip: row.opt_text("ip")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        interval: row.int("poll_interval")?,
        last_poll_ms: row.opt_int("last_poll_ms")?,
        status: Status::parse(&row.text("status")?),
        user_id: row.opt_text("user_id")?,
        workspace_id: row.opt_text("workspace_id")?,
        role: row.opt_text("role")?.as_deref().and_then(Role::parse),
        granted_scope: row.opt_text("granted_scope")?,
        auth_time: row.opt_int("auth_time")?,
        redeemed_ms: row.opt_int("redeemed_ms")?,
        sealed_tokens: row.opt_text("sealed_tokens")?,
    })
}

const COLUMNS: &str = "id, client_id, scope, resource, metadata, ip, created_at, expires_at, \
    poll_interval, last_poll_ms, status, user_id, workspace_id, role, granted_scope, auth_time, \
    redeemed_ms, sealed_tokens";

pub struct NewDevice<'a> {
    pub id: &'a str,
    /// `crypto::tokens::device_code_key`: the code's SHA-256 hash, after
    /// the code's time when it begins with one.
    pub device_code_hash: &'a str,
    /// A keyed hash of the user code: the code itself is never stored.
    pub user_code_hash: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    pub metadata: &'a str,
    pub ip: Option<&'a str>,
    pub now: i64,
    pub expires_at: i64,
    pub interval: i64,
}

/// Stores a new device authorization. The `user_code` column, unread since
/// user codes became keyed hashes (migration 3), is still `NOT NULL
/// UNIQUE`: it takes the row's id, which begins with the time, so its index
/// grows at the end rather than taking a random page per row as a second
/// copy of the hash did.
pub async fn insert<'e>(from: impl Into<Source<'e>>, d: NewDevice<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO device_authorizations (id, device_code_hash, user_code_hash, \
         user_code, client_id, scope, resource, metadata, ip, created_at, expires_at, \
         poll_interval, status) \
         VALUES ($1, $2, $3, $1, $4, $5, $6, $7, $8, $9, $10, $11, 'pending')";
    let args = [
        Arg::Text(d.id),
        Arg::Text(d.device_code_hash),
        Arg::Text(d.user_code_hash),
        Arg::Text(d.client_id),
        Arg::Text(d.scope),
        Arg::OptText(d.resource),
        Arg::Text(d.metadata),
        Arg::OptText(d.ip),
        Arg::Int(d.now),
        Arg::Int(d.expires_at),
        Arg::Int(d.interval),
    ];
    reads::execute(from, SQL, &args).await?;
    Ok(())
}

pub async fn by_device_code_hash<'e>(
    from: impl Into<Source<'e>>,
    hash: &str,
) -> Result<Option<DeviceAuthorization>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {COLUMNS} FROM device_authorizations WHERE device_code_hash = $1")
    });
    reads::fetch_optional(from, &SQL, &[Arg::Text(hash)], row_to_device).await
}

pub async fn by_user_code_hash<'e>(
    db: impl Db<'e>,
    user_code_hash: &str,
) -> Result<Option<DeviceAuthorization>> {
    let sql = format!("SELECT {COLUMNS} FROM device_authorizations WHERE user_code_hash = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_code_hash)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(|row| row_to_device(row)).transpose()
}

pub async fn by_id<'e>(db: impl Db<'e>, id: &str) -> Result<Option<DeviceAuthorization>> {
    let sql = format!("SELECT {COLUMNS} FROM device_authorizations WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(|row| row_to_device(row)).transpose()
}

/// One poll of the token endpoint, in a single statement: records the poll
/// time of a live, unredeemed authorization of `client_id` (and `resource`,
/// when the poll names one) and, for a pending one polled sooner than its
/// interval allows (less `tolerance_ms` for network jitter), applies RFC 8628
/// §3.5's five-second increase. Returns the row as it now is and whether
/// this poll was too fast; `None` when nothing matched.
pub async fn poll<'e>(
    db: impl Db<'e>,
    code_hash: &str,
    client_id: &str,
    resource: Option<&str>,
    now_ms: i64,
    tolerance_ms: i64,
) -> Result<Option<(DeviceAuthorization, bool)>> {
    let sql = format!(
        "UPDATE device_authorizations SET \
         poll_interval = CASE WHEN status = 'pending' AND last_poll_ms > $4 - poll_interval * 1000 + $5 \
             THEN poll_interval + 5 ELSE poll_interval END, \
         slowed_ms = CASE WHEN status = 'pending' AND last_poll_ms > $4 - poll_interval * 1000 + $5 \
             THEN $4 ELSE slowed_ms END, \
         last_poll_ms = CASE WHEN status = 'pending' THEN $4 ELSE last_poll_ms END \
         WHERE device_code_hash = $1 AND client_id = $2 AND ($3 IS NULL OR resource = $3) \
         AND status <> 'redeemed' AND expires_at > $6 \
         RETURNING {COLUMNS}, slowed_ms"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(code_hash)
        .bind(client_id)
        .bind(resource)
        .bind(now_ms)
        .bind(tolerance_ms)
        .bind(now_ms.div_euclid(1000))
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let slowed = row.try_get::<Option<i64>, _>("slowed_ms")? == Some(now_ms);
    Ok(Some((row_to_device(&row)?, slowed)))
}

/// RFC 8628 §3.5 for a pending code polled too fast: five more seconds of
/// interval, and the poll's time. Returns the new interval, or `None` when
/// the code is no longer pending.
pub async fn slow_down<'e>(db: impl Db<'e>, code_hash: &str, now_ms: i64) -> Result<Option<i64>> {
    let row = sqlx::query(
        "UPDATE device_authorizations SET poll_interval = poll_interval + 5, slowed_ms = $2, \
         last_poll_ms = $2 WHERE device_code_hash = $1 AND status = 'pending' \
         RETURNING poll_interval",
    )
    .bind(code_hash)
    .bind(now_ms)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| row.try_get("poll_interval")).transpose()?)
}

pub struct Approval<'a> {
    pub user_id: &'a str,
    pub workspace_id: Option<&'a str>,
    pub role: Option<&'a str>,
    pub granted_scope: &'a str,
    pub auth_time: i64,
    pub ip: Option<&'a str>,
    pub now: i64,
}

/// Pending → approved; false if it was no longer pending (or expired).
pub async fn approve<'e>(db: impl Db<'e>, id: &str, a: Approval<'_>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE device_authorizations SET status = 'approved', user_id = $2, workspace_id = $3, \
         role = $4, granted_scope = $5, auth_time = $6, approver_ip = $7, decided_at = $8 \
         WHERE id = $1 AND status = 'pending' AND expires_at > $8",
    )
    .bind(id)
    .bind(a.user_id)
    .bind(a.workspace_id)
    .bind(a.role)
    .bind(a.granted_scope)
    .bind(a.auth_time)
    .bind(a.ip)
    .bind(a.now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending → denied; false if it was no longer pending.
pub async fn deny<'e>(db: impl Db<'e>, id: &str, user_id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE device_authorizations SET status = 'denied', user_id = $2, decided_at = $3 \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Approved → redeemed, keeping the sealed token response for a retry
/// within the leeway. Exactly one caller ever sees `true`.
pub async fn redeem<'e>(
    db: impl Db<'e>,
    id: &str,
    now_ms: i64,
    sealed_tokens: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE device_authorizations SET status = 'redeemed', redeemed_ms = $2, sealed_tokens = $3 \
         WHERE id = $1 AND status = 'approved'",
    )
    .bind(id)
    .bind(now_ms)
    .bind(sealed_tokens)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Drops the sealed token responses of redemptions older than `before_ms`:
/// past the leeway nobody may have them again.
pub async fn forget_sealed_tokens<'e>(db: impl Db<'e>, before_ms: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE device_authorizations SET sealed_tokens = NULL \
         WHERE sealed_tokens IS NOT NULL AND redeemed_ms < $1",
    )
    .bind(before_ms)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
