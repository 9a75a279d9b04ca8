//! Authorization codes (RFC 6749 §4.1), by SHA-256 of the code. Each
//! transition is one conditional `UPDATE` whose row count names the winner.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::directory::Db;
use super::{Result, opt_text};
use crate::domain::scopes::Role;

/// Where a code is in its one-time life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeState {
    Issued,
    Redeemed,
    /// A failed redemption (wrong PKCE verifier, wrong redirect URI) used
    /// the code's one attempt.
    Burned,
}

impl CodeState {
    fn as_str(self) -> &'static str {
        match self {
            CodeState::Issued => "issued",
            CodeState::Redeemed => "redeemed",
            CodeState::Burned => "burned",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
    pub scope: String,
    pub resource: Option<String>,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: CodeState,
    pub session_id: Option<String>,
}

fn code(row: &AnyRow) -> Result<StoredCode> {
    let state = match row.try_get::<String, _>("state")?.as_str() {
        "issued" => CodeState::Issued,
        "redeemed" => CodeState::Redeemed,
        _ => CodeState::Burned,
    };
    Ok(StoredCode {
        code_hash: row.try_get("code_hash")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        workspace_id: opt_text(row, "workspace_id")?,
        role: opt_text(row, "role")?.as_deref().and_then(Role::parse),
        scope: row.try_get("scope")?,
        resource: opt_text(row, "resource")?,
        redirect_uri: row.try_get("redirect_uri")?,
        code_challenge: opt_text(row, "code_challenge")?,
        nonce: opt_text(row, "nonce")?,
        auth_time: row.try_get("auth_time")?,
        ip: opt_text(row, "ip")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        state,
        session_id: opt_text(row, "session_id")?,
    })
}

pub async fn insert<'e>(db: impl Db<'e>, c: &StoredCode) -> Result<()> {
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, workspace_id, role, \
         scope, resource, redirect_uri, code_challenge, nonce, auth_time, ip, created_at, \
         expires_at, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&c.code_hash)
    .bind(&c.client_id)
    .bind(&c.user_id)
    .bind(&c.workspace_id)
    .bind(c.role.map(Role::as_str))
    .bind(&c.scope)
    .bind(&c.resource)
    .bind(&c.redirect_uri)
    .bind(&c.code_challenge)
    .bind(&c.nonce)
    .bind(c.auth_time)
    .bind(&c.ip)
    .bind(c.created_at)
    .bind(c.expires_at)
    .bind(CodeState::Issued.as_str())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn by_hash<'e>(db: impl Db<'e>, code_hash: &str) -> Result<Option<StoredCode>> {
    let row = sqlx::query("SELECT * FROM authorization_codes WHERE code_hash = $1")
        .bind(code_hash)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(code).transpose()
}

/// Marks a live code redeemed by `session_id`. False when another request
/// redeemed or burned it first, or it expired.
pub async fn redeem<'e>(
    db: impl Db<'e>,
    code_hash: &str,
    session_id: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE authorization_codes SET state = 'redeemed', session_id = $2 \
         WHERE code_hash = $1 AND state = 'issued' AND expires_at > $3",
    )
    .bind(code_hash)
    .bind(session_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Uses up a live code's one attempt without issuing anything.
pub async fn burn<'e>(db: impl Db<'e>, code_hash: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE authorization_codes SET state = 'burned' WHERE code_hash = $1 AND state = 'issued'",
    )
    .bind(code_hash)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
