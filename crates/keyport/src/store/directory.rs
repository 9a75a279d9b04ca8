//! Users, workspaces and memberships.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Result;
use super::reads::{self, Arg, Columns, Source};
use std::sync::LazyLock;

pub trait Db<'e>: sqlx::Executor<'e, Database = sqlx::Any> {}
impl<'e, T: sqlx::Executor<'e, Database = sqlx::Any>> Db<'e> for T {}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    /// The authenticator's secret, sealed under the master key.
    pub totp_sealed: Option<Sealed>,
    /// The last authenticator time step accepted (each code works once).
    pub totp_last_step: Option<i64>,
    /// Whether one-time codes by email are turned on.
    pub email_codes: bool,
    /// The number text-message codes go to, when they are turned on.
    pub phone: Option<String>,
}

/// Ciphertext under the master key: not secret, but never printed either.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[sealed]")
    }
}

const USER_COLUMNS: &str = "id, email, name, password_hash, is_admin, disabled, \
                            totp_secret, totp_last_step, email_codes, phone";

fn user(row: &dyn Columns) -> Result<User> {
    Ok(User {
        id: row.text("id")?,
        email: row.text("email")?,
        name: row.opt_text("name")?,
        password_hash: row.opt_text("password_hash")?,
        is_admin: row.int("is_admin")? != 0,
        disabled: row.int("disabled")? != 0,
        totp_sealed: row.opt_text("totp_secret")?.map(Sealed),
        totp_last_step: row.opt_int("totp_last_step")?,
        email_codes: row.int("email_codes")? != 0,
        phone: row.opt_text("phone")?,
    })
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub now: i64,
}

pub async fn insert_user<'e>(db: impl Db<'e>, new: NewUser<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, is_admin, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new.id)
    .bind(new.email)
    .bind(new.name)
    .bind(new.password_hash)
    .bind(i64::from(new.is_admin))
    .bind(new.now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn user_by_email<'e>(db: impl Db<'e>, email: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(email)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(|row| user(row)).transpose()
}

pub async fn user_by_id<'e>(db: impl Db<'e>, id: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(|row| user(row)).transpose()
}

/// The user with this id and, when `workspace` (a slug) is given, their
/// role in it (`None` for a non-member), in one read.
pub async fn user_and_role<'e>(
    from: impl Into<Source<'e>>,
    id: &str,
    workspace: Option<&str>,
) -> Result<Option<(User, Option<String>)>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {USER_COLUMNS}, (SELECT m.role FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = users.id AND w.slug = $2) AS member_role \
             FROM users WHERE id = $1"
        )
    });
    let args = [Arg::Text(id), Arg::OptText(workspace)];
    reads::fetch_optional(from, &SQL, &args, |row| {
        Ok((user(row)?, row.opt_text("member_role")?))
    })
    .await
}

pub async fn count_users<'e>(db: impl Db<'e>) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(db)
        .await?
        .try_get("n")?)
}

/// Disables or re-enables an account; false when no user has that id.
pub async fn set_disabled<'e>(db: impl Db<'e>, user_id: &str, disabled: bool) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
        .bind(user_id)
        .bind(i64::from(disabled))
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_password_hash<'e>(db: impl Db<'e>, user_id: &str, phc: &str) -> Result<()> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user_id)
        .bind(phc)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub slug: String,
    pub name: String,
}

fn workspace(row: &AnyRow) -> Result<Workspace> {
    Ok(Workspace {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
    })
}

pub async fn insert_workspace<'e>(db: impl Db<'e>, ws: &Workspace, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO workspaces (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&ws.id)
        .bind(&ws.slug)
        .bind(&ws.name)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn workspace_by_slug<'e>(db: impl Db<'e>, slug: &str) -> Result<Option<Workspace>> {
    let row = sqlx::query("SELECT id, slug, name FROM workspaces WHERE slug = $1")
        .bind(slug)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(workspace).transpose()
}

pub async fn workspace_by_id<'e>(db: impl Db<'e>, id: &str) -> Result<Option<Workspace>> {
    let row = sqlx::query("SELECT id, slug, name FROM workspaces WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(workspace).transpose()
}

/// Adds a member, or changes the role of an existing one.
pub async fn upsert_membership<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// The workspaces a user belongs to, with the role in each, by slug.
pub async fn memberships_of<'e>(
    db: impl Db<'e>,
    user_id: &str,
) -> Result<Vec<(Workspace, String)>> {
    let rows = sqlx::query(
        "SELECT w.id, w.slug, w.name, m.role FROM memberships m \
         JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 ORDER BY w.slug",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| Ok((workspace(row)?, row.try_get("role")?)))
        .collect()
}

/// The user's role in the workspace with this slug, if a member.
pub async fn role_in<'e>(db: impl Db<'e>, user_id: &str, slug: &str) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT m.role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.user_id = $1 AND w.slug = $2",
    )
    .bind(user_id)
    .bind(slug)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.try_get("role")).transpose()?)
}
