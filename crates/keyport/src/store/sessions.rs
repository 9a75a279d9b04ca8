//! CLI sessions, their refresh tokens (stored as hashes) and revoked access
//! token ids.

use super::directory::Db;
use super::reads::{self, Arg, Columns, Source};
use super::{Result, opt_text};
use crate::domain::scopes::Role;
use std::sync::LazyLock;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user_id: Option<String>,
    pub client_id: String,
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
    pub scope: String,
    pub resource: Option<String>,
    pub label: Option<String>,
    pub metadata: String,
    pub ip: Option<String>,
    pub grant_type: String,
    pub auth_time: Option<i64>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub revoked_at: Option<i64>,
}

fn session(row: &dyn Columns) -> Result<Session> {
    Ok(Session {
        id: row.text("id")?,
        user_id: row.opt_text("user_id")?,
        client_id: row.text("client_id")?,
        workspace_id: row.opt_text("workspace_id")?,
        role: row.opt_text("role")?.as_deref().and_then(Role::parse),
        scope: row.text("scope")?,
        resource: row.opt_text("resource")?,
        label: row.opt_text("label")?,
        metadata: row.text("metadata")?,
        ip: row.opt_text("ip")?,
        grant_type: row.text("grant_type")?,
        auth_time: row.opt_int("auth_time")?,
        created_at: row.int("created_at")?,
        last_used_at: row.int("last_used_at")?,
        revoked_at: row.opt_int("revoked_at")?,
    })
}

const COLUMNS: &str = "s.id, s.user_id, s.client_id, s.workspace_id, s.role, s.scope, s.resource, \
    s.label, s.metadata, s.ip, s.grant_type, s.auth_time, s.created_at, s.last_used_at, s.revoked_at";

pub async fn insert<'e>(db: impl Db<'e>, s: &Session) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, client_id, workspace_id, role, scope, resource, label, \
         metadata, ip, grant_type, auth_time, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&s.id)
    .bind(&s.user_id)
    .bind(&s.client_id)
    .bind(&s.workspace_id)
    .bind(s.role.map(Role::as_str))
    .bind(&s.scope)
    .bind(&s.resource)
    .bind(&s.label)
    .bind(&s.metadata)
    .bind(&s.ip)
    .bind(&s.grant_type)
    .bind(s.auth_time)
    .bind(s.created_at)
    .bind(s.last_used_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn find<'e>(db: impl Db<'e>, id: &str) -> Result<Option<Session>> {
    let sql = format!("SELECT {COLUMNS} FROM sessions s WHERE s.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(|row| session(row)).transpose()
}

/// Live sessions, newest first; of one user when `user_id` is given.
pub async fn list_active<'e>(db: impl Db<'e>, user_id: Option<&str>) -> Result<Vec<Session>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions s WHERE s.revoked_at IS NULL \
         AND ($1 IS NULL OR s.user_id = $1) ORDER BY s.created_at DESC, s.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .fetch_all(db)
        .await?;
    rows.iter().map(|row| session(row)).collect()
}

/// Ends a session; its refresh tokens stop working and its access tokens
/// fail introspection and userinfo. False if it was already revoked.
pub async fn revoke<'e>(
    from: impl Into<Source<'e>>,
    id: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    const SQL: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
         WHERE id = $1 AND revoked_at IS NULL";
    let args = [Arg::Text(id), Arg::Int(now), Arg::Text(reason)];
    Ok(reads::execute(from, SQL, &args).await? == 1)
}

/// Ends every live session of a user (an admin disabled the account).
pub async fn revoke_all_of_user<'e>(
    db: impl Db<'e>,
    user_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn touch<'e>(
    from: impl Into<Source<'e>>,
    id: &str,
    now: i64,
    scope: &str,
    role: Option<&str>,
) -> Result<()> {
    const SQL: &str = "UPDATE sessions SET last_used_at = $2, scope = $3, role = $4 WHERE id = $1";
    let args = [
        Arg::Text(id),
        Arg::Int(now),
        Arg::Text(scope),
        Arg::OptText(role),
    ];
    reads::execute(from, SQL, &args).await?;
    Ok(())
}

/// A new session with its first tokens: the session row, its refresh token
/// (hash and expiry) when one was issued, and its opaque access token when
/// the client uses them. Every grant that opens a session writes this.
pub async fn open(
    c: &mut super::Conn,
    session: &Session,
    refresh: Option<(&str, i64)>,
    opaque: Option<&crate::domain::tokens::OpaqueAccessToken>,
) -> Result<()> {
    insert(&mut *c, session).await?;
    if let Some((hash, expires_at)) = refresh {
        insert_refresh(&mut *c, hash, &session.id, session.created_at, expires_at).await?;
    }
    if let Some(record) = opaque {
        insert_opaque(&mut *c, record).await?;
    }
    Ok(())
}

pub async fn insert_refresh<'e>(
    from: impl Into<Source<'e>>,
    hash: &str,
    session_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    const SQL: &str = "INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)";
    let args = [
        Arg::Text(hash),
        Arg::Text(session_id),
        Arg::Int(now),
        Arg::Int(expires_at),
    ];
    reads::execute(from, SQL, &args).await?;
    Ok(())
}

/// A refresh token with what its rotation decides on.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub hash: String,
    pub session: Session,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    /// The rotation's time in milliseconds, for the leeway.
    pub rotated_ms: Option<i64>,
    pub successor_hash: Option<String>,
    pub sealed_successor: Option<String>,
    /// When the successor was itself rotated (then the leeway no longer applies).
    pub successor_rotated_at: Option<i64>,
}

pub async fn refresh_by_hash<'e>(
    from: impl Into<Source<'e>>,
    hash: &str,
) -> Result<Option<RefreshToken>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS}, r.hash AS r_hash, r.expires_at AS r_expires_at, r.rotated_at AS r_rotated_at, r.rotated_ms AS r_rotated_ms, \
             r.successor_hash AS r_successor_hash, r.sealed_successor AS r_sealed_successor, \
             n.rotated_at AS n_rotated_at \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             LEFT JOIN refresh_tokens n ON n.hash = r.successor_hash WHERE r.hash = $1"
        )
    });
    reads::fetch_optional(from, &SQL, &[Arg::Text(hash)], |row| {
        Ok(RefreshToken {
            session: session(row)?,
            hash: row.text("r_hash")?,
            expires_at: row.int("r_expires_at")?,
            rotated_at: row.opt_int("r_rotated_at")?,
            rotated_ms: row.opt_int("r_rotated_ms")?,
            successor_hash: row.opt_text("r_successor_hash")?,
            sealed_successor: row.opt_text("r_sealed_successor")?,
            successor_rotated_at: row.opt_int("n_rotated_at")?,
        })
    })
    .await
}

/// Marks `hash` rotated to `successor_hash`. Exactly one caller wins: false
/// means the token had already been rotated.
pub async fn rotate<'e>(
    from: impl Into<Source<'e>>,
    hash: &str,
    successor_hash: &str,
    sealed_successor: Option<&str>,
    now_ms: i64,
) -> Result<bool> {
    const SQL: &str = "UPDATE refresh_tokens SET rotated_at = $2, rotated_ms = $3, \
         successor_hash = $4, sealed_successor = $5 WHERE hash = $1 AND rotated_at IS NULL";
    let args = [
        Arg::Text(hash),
        Arg::Int(now_ms.div_euclid(1000)),
        Arg::Int(now_ms),
        Arg::Text(successor_hash),
        Arg::OptText(sealed_successor),
    ];
    Ok(reads::execute(from, SQL, &args).await? == 1)
}

/// Drops the sealed leeway replies of rotations older than `before_ms`:
/// past the leeway nobody may have them again.
pub async fn forget_sealed_successors<'e>(db: impl Db<'e>, before_ms: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET sealed_successor = NULL \
         WHERE sealed_successor IS NOT NULL AND COALESCE(rotated_ms, rotated_at * 1000) < $1",
    )
    .bind(before_ms)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn revoke_access_token<'e>(db: impl Db<'e>, jti: &str, expires_at: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// What the server knows of a signed access token beyond its signature.
#[derive(Debug, Clone)]
pub struct AccessState {
    pub jti_revoked: bool,
    /// `None` when the token names no session (client credentials).
    pub session_live: Option<bool>,
    pub user: Option<(String, Option<String>, bool)>,
}

/// One read deciding whether an access token still stands: its `jti` not
/// revoked, its session live and its user (email, name, disabled) present.
pub async fn access_state<'e>(
    from: impl Into<Source<'e>>,
    jti: &str,
    sid: Option<&str>,
) -> Result<AccessState> {
    const SQL: &str = "SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = $1) AS revoked, \
         s.revoked_at, s.id AS sid, u.email, u.name, u.disabled \
         FROM (SELECT 1 AS one) AS x \
         LEFT JOIN sessions s ON s.id = $2 \
         LEFT JOIN users u ON u.id = s.user_id";
    let state = reads::fetch_optional(from, SQL, &[Arg::Text(jti), Arg::OptText(sid)], |row| {
        let session_live = match sid {
            None => None,
            Some(_) => Some(row.opt_text("sid")?.is_some() && row.opt_int("revoked_at")?.is_none()),
        };
        let user = match row.opt_text("email")? {
            Some(email) => Some((
                email,
                row.opt_text("name")?,
                row.opt_int("disabled")?.unwrap_or(0) != 0,
            )),
            None => None,
        };
        Ok(AccessState {
            jti_revoked: row.int("revoked")? > 0,
            session_live,
            user,
        })
    })
    .await?;
    // The select's one-row table always gives a row.
    state.ok_or_else(|| super::Error::Invalid("the access-state read found no row".into()))
}

/// Stores an opaque access token (its hash and the claims it stands for).
pub async fn insert_opaque<'e>(
    from: impl Into<Source<'e>>,
    token: &crate::domain::tokens::OpaqueAccessToken,
) -> Result<()> {
    const SQL: &str = "INSERT INTO access_tokens (token_hash, session_id, client_id, claims, \
         expires_at) VALUES ($1, $2, $3, $4, $5)";
    let claims = serde_json::to_string(&token.claims).expect("access claims serialize");
    let args = [
        Arg::Text(&token.token_hash),
        Arg::OptText(token.session_id.as_deref()),
        Arg::Text(&token.client_id),
        Arg::Text(&claims),
        Arg::Int(token.claims.exp),
    ];
    reads::execute(from, SQL, &args).await?;
    Ok(())
}

/// The claims of an opaque access token, by its hash.
pub async fn opaque_claims<'e>(
    from: impl Into<Source<'e>>,
    token_hash: &str,
) -> Result<Option<String>> {
    const SQL: &str = "SELECT claims FROM access_tokens WHERE token_hash = $1";
    reads::fetch_optional(from, SQL, &[Arg::Text(token_hash)], |row| {
        row.text("claims")
    })
    .await
}

/// A live session as the dashboard lists it: with its user's email.
#[derive(Debug, Clone)]
pub struct ListedSession {
    pub session: Session,
    pub email: Option<String>,
}

/// Whose live sessions to list: one user's (by id), or a workspace's (by
/// slug: a session's `workspace_id` column holds the slug).
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    User(&'a str),
    Workspace(&'a str),
}

/// Live sessions, newest first, `limit` after the cursor `(created_at, id)`.
pub async fn page<'e>(
    db: impl Db<'e>,
    owner: Owner<'_>,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<ListedSession>> {
    let (column, value) = match owner {
        Owner::User(id) => ("s.user_id", id),
        Owner::Workspace(id) => ("s.workspace_id", id),
    };
    let (at, id) = after.unwrap_or((i64::MAX, ""));
    let sql = format!(
        "SELECT {COLUMNS}, u.email FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
         WHERE {column} = $1 AND s.revoked_at IS NULL AND s.user_id IS NOT NULL \
         AND (s.created_at < $2 OR (s.created_at = $2 AND s.id < $3)) \
         ORDER BY s.created_at DESC, s.id DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ListedSession {
                session: session(row)?,
                email: opt_text(row, "email")?,
            })
        })
        .collect()
}
