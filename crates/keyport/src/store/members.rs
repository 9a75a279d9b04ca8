//! Workspace members and invitations by link (the link's token kept as
//! SHA-256, accepted once).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::directory::{Db, Workspace};
use super::{Result, opt_text};
use crate::domain::scopes::Role;

#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub joined_at: i64,
}

fn member(row: &AnyRow) -> Result<Member> {
    Ok(Member {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        name: opt_text(row, "name")?,
        role: Role::parse(&row.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
        joined_at: row.try_get("created_at")?,
    })
}

/// A workspace's members by email, `limit` after the email `after`.
pub async fn list<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT m.user_id, u.email, u.name, m.role, m.created_at FROM memberships m \
         JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 AND u.email > $2 \
         ORDER BY u.email LIMIT $3",
    )
    .bind(workspace_id)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(member).collect()
}

pub async fn find<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<Member>> {
    let row = sqlx::query(
        "SELECT m.user_id, u.email, u.name, m.role, m.created_at FROM memberships m \
         JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 AND m.user_id = $2",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(member).transpose()
}

pub async fn count_owners<'e>(db: impl Db<'e>, workspace_id: &str) -> Result<i64> {
    Ok(sqlx::query(
        "SELECT COUNT(*) AS n FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(workspace_id)
    .fetch_one(db)
    .await?
    .try_get("n")?)
}

/// Changes a member's role; false when they are not a member.
pub async fn set_role<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    user_id: &str,
    role: Role,
) -> Result<bool> {
    let done =
        sqlx::query("UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .bind(role.as_str())
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn remove<'e>(db: impl Db<'e>, workspace_id: &str, user_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
        .bind(workspace_id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a user's live sessions in one workspace, named by slug as sessions
/// name it (they left or were removed).
pub async fn end_sessions_in<'e>(
    db: impl Db<'e>,
    workspace_slug: &str,
    user_id: &str,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $3, revoked_reason = 'membership' \
         WHERE workspace_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(workspace_slug)
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: String,
    pub workspace: Workspace,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
}

pub struct NewInvitation<'a> {
    pub id: &'a str,
    pub hash: &'a str,
    pub workspace_id: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub invited_by: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert_invitation<'e>(db: impl Db<'e>, new: NewInvitation<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO invitations (id, hash, workspace_id, email, role, invited_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new.id)
    .bind(new.hash)
    .bind(new.workspace_id)
    .bind(new.email)
    .bind(new.role.as_str())
    .bind(new.invited_by)
    .bind(new.created_at)
    .bind(new.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

const INVITATION_COLUMNS: &str = "i.id, i.email, i.role, i.invited_by, i.created_at, \
    i.expires_at, i.accepted_at, w.id AS workspace_id, w.slug, w.name AS workspace_name";

fn invitation(row: &AnyRow) -> Result<Invitation> {
    Ok(Invitation {
        id: row.try_get("id")?,
        workspace: Workspace {
            id: row.try_get("workspace_id")?,
            slug: row.try_get("slug")?,
            name: row.try_get("workspace_name")?,
        },
        email: row.try_get("email")?,
        role: Role::parse(&row.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
        invited_by: row.try_get("invited_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
    })
}

pub async fn invitation_by_hash<'e>(db: impl Db<'e>, hash: &str) -> Result<Option<Invitation>> {
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM invitations i \
         JOIN workspaces w ON w.id = i.workspace_id WHERE i.hash = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hash)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(invitation).transpose()
}

/// A workspace's invitations not yet accepted nor expired, newest first.
pub async fn pending_invitations<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    now: i64,
) -> Result<Vec<Invitation>> {
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM invitations i JOIN workspaces w ON w.id = i.workspace_id \
         WHERE i.workspace_id = $1 AND i.accepted_at IS NULL AND i.expires_at > $2 \
         ORDER BY i.created_at DESC, i.id DESC LIMIT 200"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(workspace_id)
        .bind(now)
        .fetch_all(db)
        .await?;
    rows.iter().map(invitation).collect()
}

/// Spends an invitation: true for the one acceptance that wins.
pub async fn accept_invitation<'e>(
    db: impl Db<'e>,
    id: &str,
    user_id: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE invitations SET accepted_at = $3, accepted_by = $2 \
         WHERE id = $1 AND accepted_at IS NULL AND expires_at > $3",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
