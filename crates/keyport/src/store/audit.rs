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
    pub ip: Option<String>,
    pub detail: Option<serde_json::Value>,
}

pub async fn insert<'e>(db: impl Db<'e>, e: &AuditEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, at_ms, event, outcome, actor, client_id, session_id, ip, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    .execute(db)
    .await?;
    Ok(())
}

/// Events in time order, from `since_ms` on.
pub async fn list<'e>(db: impl Db<'e>, since_ms: i64) -> Result<Vec<AuditEvent>> {
    let rows = sqlx::query(
        "SELECT id, at_ms, event, outcome, actor, client_id, session_id, ip, detail \
         FROM audit_events WHERE at_ms >= $1 ORDER BY at_ms, id",
    )
    .bind(since_ms)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEvent {
                id: row.try_get("id")?,
                at_ms: row.try_get("at_ms")?,
                event: row.try_get("event")?,
                outcome: row.try_get("outcome")?,
                actor: opt_text(row, "actor")?,
                client_id: opt_text(row, "client_id")?,
                session_id: opt_text(row, "session_id")?,
                ip: opt_text(row, "ip")?,
                detail: opt_text(row, "detail")?.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })
        .collect()
}
