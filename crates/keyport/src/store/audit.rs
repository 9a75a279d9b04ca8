//! The audit trail: an append-only table of security events.

use serde::Serialize;
use sqlx::Row;

use super::directory::Db;
use super::reads::{self, Arg, Source};
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

/// Inserts one event.
pub async fn insert<'e>(from: impl Into<Source<'e>>, e: &AuditEvent) -> Result<()> {
    insert_many(from, std::slice::from_ref(e)).await
}

/// Rows per `INSERT` in [`insert_many`]. SQLite looks a `$n` parameter's
/// name up by walking the statement's list of them, so binding costs grow
/// with the square of a statement's parameters: 16 rows (176 of them) keep
/// that small and still save most of the statements.
const ROWS_PER_INSERT: usize = 16;

/// The `INSERT` for 1, 2, … [`ROWS_PER_INSERT`] rows, made once.
static INSERTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (1..=ROWS_PER_INSERT)
        .map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|row| {
                    let params: Vec<String> = (row * 11 + 1..=row * 11 + 11)
                        .map(|n| format!("${n}"))
                        .collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO audit_events (id, at_ms, event, outcome, actor, client_id, \
                 session_id, ip, detail, workspace_id, target) VALUES {}",
                values.join(", ")
            )
        })
        .collect()
});

/// Inserts `events`, many rows to a statement through sqlx. On the
/// writer's own connection each row is its own statement: a statement there
/// costs no crossing, and one row's eleven parameters are bound without the
/// walk of a long parameter list.
pub async fn insert_many<'e>(from: impl Into<Source<'e>>, events: &[AuditEvent]) -> Result<()> {
    let mut from = from.into();
    let per_statement = match from {
        Source::Writing(_) => 1,
        _ => ROWS_PER_INSERT,
    };
    for chunk in events.chunks(per_statement) {
        let details: Vec<Option<String>> = chunk
            .iter()
            .map(|e| e.detail.as_ref().map(|d| d.to_string()))
            .collect();
        let args: Vec<Arg<'_>> = chunk
            .iter()
            .zip(&details)
            .flat_map(|(e, detail)| event_args(e, detail.as_deref()))
            .collect();
        reads::execute(from.reborrow(), &INSERTS[chunk.len() - 1], &args).await?;
    }
    Ok(())
}

/// One event's arguments, in the order of the `INSERT`'s columns.
fn event_args<'a>(e: &'a AuditEvent, detail: Option<&'a str>) -> [Arg<'a>; 11] {
    [
        Arg::Text(&e.id),
        Arg::Int(e.at_ms),
        Arg::Text(&e.event),
        Arg::Text(&e.outcome),
        Arg::OptText(e.actor.as_deref()),
        Arg::OptText(e.client_id.as_deref()),
        Arg::OptText(e.session_id.as_deref()),
        Arg::OptText(e.ip.as_deref()),
        Arg::OptText(detail),
        Arg::OptText(e.workspace_id.as_deref()),
        Arg::OptText(e.target.as_deref()),
    ]
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

/// An id bound for a time: ids begin with the time in 13 lowercase hex
/// digits, so `at_ms >= t` holds exactly when `id >= id_at(t)`. `None` past
/// what 13 digits hold (the year 144,683).
fn id_at(at_ms: i64) -> Option<String> {
    (0..1 << 52)
        .contains(&at_ms)
        .then(|| format!("{at_ms:013x}"))
}

/// A workspace's events, newest first, `limit` of them with ids below
/// `before` (ids start with the time, so they order events in time).
///
/// Only the filters asked for reach the SQL, and the time range becomes a
/// range of ids: every page, filtered or not, is one walk down the
/// `(workspace_id, id)` index.
pub async fn page<'e>(
    db: impl Db<'e>,
    workspace_id: &str,
    filter: &Filter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    // Every id is 13 hex digits of time and more: "g" sorts after them all.
    let mut upper = before.unwrap_or("g").to_string();
    if let Some(to) = filter.to_ms.map(|ms| id_at(ms.max(0))) {
        upper = upper.min(to.unwrap_or_else(|| "g".into()));
    }
    let lower = filter
        .from_ms
        .map(|ms| id_at(ms.max(0)).unwrap_or_else(|| "g".into()))
        .unwrap_or_default();
    let mut sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE workspace_id = $1 AND id < $2 AND id >= $3"
    );
    let mut binds: Vec<&str> = Vec::new();
    for (column, value) in [
        ("actor", &filter.actor),
        ("event", &filter.event),
        ("client_id", &filter.client_id),
    ] {
        if let Some(value) = value {
            binds.push(value);
            sql.push_str(&format!(" AND {column} = ${}", binds.len() + 3));
        }
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", binds.len() + 4));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(workspace_id)
        .bind(upper)
        .bind(lower);
    for value in binds {
        query = query.bind(value);
    }
    let rows = query.bind(limit).fetch_all(db).await?;
    rows.iter().map(event).collect()
}

#[cfg(test)]
mod tests {
    use super::id_at;

    #[test]
    fn time_bounds_order_ids_as_their_times() {
        let id = |ms: i64| format!("{ms:013x}0123456789ab");
        let t = 1_780_000_000_123;
        let bound = id_at(t).unwrap();
        assert!(
            id(t).as_str() >= bound.as_str(),
            "an event at the bound is in"
        );
        assert!(id(t - 1).as_str() < bound.as_str(), "one before it is out");
        assert!(id(t + 1).as_str() >= bound.as_str());
        assert!(id(0).as_str() >= id_at(0).unwrap().as_str());
        assert_eq!(id_at(-1), None);
        assert_eq!(id_at(1 << 52), None, "past 13 digits there is no bound");
    }
}
