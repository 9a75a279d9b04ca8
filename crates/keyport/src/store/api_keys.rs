//! API keys (`kp_pat_…`): stored as SHA-256 hashes, bound to a user and a
//! workspace.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::directory::Db;
use super::{Result, opt_text};
use crate::domain::scopes::Role;

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    pub workspace_id: String,
    pub workspace_slug: String,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key found by its hash, with what its use depends on now: the owner's
/// current role in the key's workspace (none: no longer a member) and
/// whether the account is disabled.
#[derive(Debug, Clone)]
pub struct KeyInUse {
    pub key: ApiKey,
    pub email: String,
    pub name: Option<String>,
    pub disabled: bool,
    pub role: Option<Role>,
}

const COLUMNS: &str = "k.id, k.user_id, k.workspace_id, w.slug AS workspace_slug, k.name, \
    k.scope, k.created_at, k.expires_at, k.last_used_at, k.revoked_at";

fn api_key(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        workspace_id: row.try_get("workspace_id")?,
        workspace_slug: row.try_get("workspace_slug")?,
        name: row.try_get("name")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub hash: &'a str,
    pub user_id: &'a str,
    pub workspace_id: &'a str,
    pub name: &'a str,
    pub scope: &'a str,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

pub async fn insert<'e>(db: impl Db<'e>, new: NewApiKey<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, hash, user_id, workspace_id, name, scope, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new.id)
    .bind(new.hash)
    .bind(new.user_id)
    .bind(new.workspace_id)
    .bind(new.name)
    .bind(new.scope)
    .bind(new.created_at)
    .bind(new.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// One read for a presented key: the key, its owner and the owner's role now.
pub async fn in_use_by_hash<'e>(db: impl Db<'e>, hash: &str) -> Result<Option<KeyInUse>> {
    let sql = format!(
        "SELECT {COLUMNS}, u.email, u.name AS user_name, u.disabled, m.role \
         FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id \
         JOIN users u ON u.id = k.user_id \
         LEFT JOIN memberships m ON m.workspace_id = k.workspace_id AND m.user_id = k.user_id \
         WHERE k.hash = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hash)
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(KeyInUse {
        key: api_key(&row)?,
        email: row.try_get("email")?,
        name: opt_text(&row, "user_name")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        role: opt_text(&row, "role")?.as_deref().and_then(Role::parse),
    }))
}

/// A user's keys, newest first, `limit` after the cursor `(created_at, id)`.
pub async fn list_of_user<'e>(
    db: impl Db<'e>,
    user_id: &str,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<ApiKey>> {
    let (at, id) = after.unwrap_or((i64::MAX, ""));
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id \
         WHERE k.user_id = $1 AND (k.created_at < $2 OR (k.created_at = $2 AND k.id < $3)) \
         ORDER BY k.created_at DESC, k.id DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(api_key).collect()
}

/// One of a user's keys by id.
pub async fn find_of_user<'e>(db: impl Db<'e>, id: &str, user_id: &str) -> Result<Option<ApiKey>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id \
         WHERE k.id = $1 AND k.user_id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(api_key).transpose()
}

/// Revokes one of a user's keys; false when it is not theirs or already revoked.
pub async fn revoke<'e>(db: impl Db<'e>, id: &str, user_id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a use, at most once a minute per key, so a busy script does not
/// turn every request into a write.
pub async fn touch<'e>(db: impl Db<'e>, id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = $2 \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2 - 60)",
    )
    .bind(id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
