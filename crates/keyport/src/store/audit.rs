//! The audit trail: an append-only table of security events.

use serde::Serialize;
use sqlx::Row;

use super::directory::Db;
use super::{Result, opt_text};

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub event: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
    /// The workspace the event concerns, if any.
    pub workspace_id: Option<String>,
    /// What the event acted on: a member's email, a session or key id.
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<serde_json::Value>,
}

pub async fn insert<'e>(db: impl Db<'e>, e: &AuditEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, at_ms, event, outcome, actor, client_id, session_id, ip, detail, \
         workspace_id, target) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&e.id)
    .bind(e.at_ms)
    .bind(&e.event)
    .bind(&e.outcome)
    .bind(&e.actor)
    .bind(&e.client_id)
    .bind(&e.session_id)
    .bind(&e.ip)
    .bind(e.detail.as_ref().map(|d| d.to_string()))
    .bind(&e.workspace_id)
    .bind(&e.target)
    .execute(db)
    .await?;
    Ok(())
}

const COLUMNS: &str =
    "id, at_ms, event, outcome, actor, client_id, session_id, workspace_id, target, ip, detail";

fn event(row: &sqlx::any::AnyRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        event: row.try_get("event")?,
        outcome: row.try_get("outcome")?,
        actor: opt_text(row, "actor")?,
        client_id: opt_text(row, "client_id")?,
        session_id: opt_text(row, "session_id")?,
        workspace_id: opt_text(row, "workspace_id")?,
        target: opt_text(row, "target")?,
        ip: opt_text(row, "ip")?,
        detail: opt_text(row, "detail")?.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// Events in time order, from `since_ms` on.
pub async fn list<'e>(db: impl Db<'e>, since_ms: i64) -> Result<Vec<AuditEvent>> {
    let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE at_ms >= $1 ORDER BY at_ms, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(since_ms)
        .fetch_all(db)
        .await?;
    rows.iter().map(event).collect()
}

/// Which of a workspace's events to read. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub event: Option<String>,
    pub client_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// A workspace's events, newest first, `limit` of them with ids below
/// `before` (ids start with the time, so they order events in time).
pub async fn page<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    filter: &Filter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE workspace_id = $1 AND id < $2 \
         AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR event = $4) \
         AND ($5 IS NULL OR client_id = $5) AND at_ms >= $6 AND at_ms < $7 \
         ORDER BY id DESC LIMIT $8"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(workspace_id)
        // Every id is 13 hex digits of time and more: "g" sorts after them all.
        .bind(before.unwrap_or("g"))
        .bind(&filter.actor)
        .bind(&filter.event)
        .bind(&filter.client_id)
        .bind(filter.from_ms.unwrap_or(0))
        .bind(filter.to_ms.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(event).collect()
}
