//! `/dashboard/workspaces/{slug}/audit` (admins): the workspace's audit
//! trail, newest first, filtered by actor, event, client and dates, paged
//! by cursor; and its export as CSV or JSON, streamed in batches so a
//! trail of any length is never held in memory at once.

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::IntoResponse;
use futures_util::stream;

use super::{Answer, Nav, query_of, refused, signed_in};
use crate::domain::scopes::Role;
use crate::domain::workspaces::MAX_PAGE_SIZE;
use crate::domain::workspaces::{AuditFilter as Filter, AuditRow as AuditEvent};
use crate::domain::{Error, Workspace};
use crate::http::params::Params;
use crate::pages::device::url_encode;
use crate::pages::page;
use crate::service::Keyport;

/// The filter fields as typed, shown back in the form.
#[derive(Default)]
pub struct Typed {
    pub actor: String,
    pub event: String,
    pub client: String,
    pub from: String,
    pub to: String,
}

#[derive(Template)]
#[template(path = "dashboard/audit.html")]
struct AuditPage<'a> {
    nav: &'a Nav,
    csrf: &'a str,
    slug: &'a str,
    workspace: &'a str,
    filter: Typed,
    filter_query: String,
    /// (time, event, outcome, actor, target, client, ip)
    rows: Vec<(String, String, String, String, String, String, String)>,
    next: Option<String>,
}

/// A date (`YYYY-MM-DD`, UTC) as unix milliseconds at its start.
fn day_start_ms(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The filter a query asks for; a date that does not parse is refused.
fn filter_of(query: &Params) -> Result<(Filter, Typed), Error> {
    let text = |key| query.get(key).map(str::trim).filter(|v| !v.is_empty());
    let typed = Typed {
        actor: text("actor").unwrap_or("").to_string(),
        event: text("event").unwrap_or("").to_string(),
        client: text("client").unwrap_or("").to_string(),
        from: text("from").unwrap_or("").to_string(),
        to: text("to").unwrap_or("").to_string(),
    };
    let date = |key, what: &'static str| match text(key) {
        None => Ok(None),
        Some(day) => day_start_ms(day)
            .map(Some)
            .ok_or_else(|| Error::invalid_request(what)),
    };
    let filter = Filter {
        actor: text("actor").map(str::to_lowercase),
        event: text("event").map(str::to_string),
        client_id: text("client").map(str::to_string),
        from_ms: date("from", "the From date is YYYY-MM-DD")?,
        // "To" includes the whole day it names.
        to_ms: date("to", "the To date is YYYY-MM-DD")?.map(|ms| ms + 86_400_000),
    };
    Ok((filter, typed))
}

fn filter_query(typed: &Typed) -> String {
    [
        ("actor", &typed.actor),
        ("event", &typed.event),
        ("client", &typed.client),
        ("from", &typed.from),
        ("to", &typed.to),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("&{k}={}", url_encode(v)))
    .collect()
}

fn at_text(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `GET /dashboard/workspaces/{slug}/audit`.
pub async fn list(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    let (filter, typed) = filter_of(&query).map_err(|e| refused(&e))?;
    let (ws, found) = kp
        .audit_page(&v.user, &slug, &filter, query.get("after"), None)
        .await
        .map_err(|e| refused(&e))?;
    let csrf = v.csrf();
    let opt = |v: Option<String>| v.unwrap_or_default();
    let html = AuditPage {
        nav: &v.nav,
        csrf: &csrf.token,
        slug: &ws.slug,
        workspace: &ws.name,
        filter_query: filter_query(&typed),
        filter: typed,
        rows: found
            .items
            .into_iter()
            .map(|e| {
                (
                    at_text(e.at_ms),
                    e.event,
                    e.outcome,
                    opt(e.actor),
                    opt(e.target),
                    opt(e.client_id),
                    opt(e.ip),
                )
            })
            .collect(),
        next: found.next,
    };
    Ok(page(StatusCode::OK, html.render(), Some(&csrf)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// `GET /dashboard/workspaces/{slug}/audit/export?format=csv|json&…`: every
/// event the filter matches, newest first, streamed a batch at a time.
pub async fn export(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    let format = match query.get("format") {
        Some("json") => Format::Json,
        None | Some("csv") => Format::Csv,
        Some(_) => {
            return Err(refused(&Error::invalid_request(
                "the format is csv or json",
            )));
        }
    };
    let (filter, _) = filter_of(&query).map_err(|e| refused(&e))?;
    let (ws, _) = kp
        .workspace_as(&v.user, &slug, Role::Admin)
        .await
        .map_err(|e| refused(&e))?;
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    let disposition = format!("attachment; filename=\"audit-{}.{extension}\"", ws.slug);
    let body = Body::from_stream(batches(kp.clone(), ws, filter, format));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Where an export is: before its first batch, after some, or done.
enum Cursor {
    Start,
    Before(String),
    Done,
}

fn batches(
    kp: Keyport,
    ws: Workspace,
    filter: Filter,
    format: Format,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    stream::unfold(Cursor::Start, move |cursor| {
        let (kp, ws, filter) = (kp.clone(), ws.clone(), filter.clone());
        async move {
            let before = match &cursor {
                Cursor::Done => return None,
                Cursor::Start => None,
                Cursor::Before(id) => Some(id.as_str()),
            };
            let first = matches!(cursor, Cursor::Start);
            let found = match kp.audit_rows(&ws, &filter, before, MAX_PAGE_SIZE * 2).await {
                Ok(found) => found,
                // The response has begun: all that is left is to cut it short.
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), Cursor::Done)),
            };
            let last = found.next.is_none();
            let mut out = Vec::new();
            match format {
                Format::Csv => write_csv(&mut out, &ws, &found.items, first),
                Format::Json => write_json(&mut out, &ws, &found.items, first, last),
            }
            let next = match found.next {
                Some(id) => Cursor::Before(id),
                None => Cursor::Done,
            };
            Some((Ok(out), next))
        }
    })
}

/// A spreadsheet must not read a cell as a formula (CSV injection): text
/// that starts like one gets a leading apostrophe.
fn cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

fn write_csv(out: &mut Vec<u8>, ws: &Workspace, events: &[AuditEvent], header: bool) {
    let mut writer = csv::Writer::from_writer(out);
    if header {
        let _ = writer.write_record([
            "id",
            "at",
            "workspace",
            "event",
            "outcome",
            "actor",
            "target",
            "client_id",
            "session_id",
            "ip",
            "detail",
        ]);
    }
    for e in events {
        let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
        let detail = e.detail.as_ref().map(|d| d.to_string());
        let _ = writer.write_record([
            e.id.clone(),
            at_text(e.at_ms),
            ws.slug.clone(),
            cell(&e.event),
            cell(&e.outcome),
            opt(&e.actor),
            opt(&e.target),
            opt(&e.client_id),
            opt(&e.session_id),
            opt(&e.ip),
            opt(&detail),
        ]);
    }
    let _ = writer.flush();
}

fn write_json(out: &mut Vec<u8>, ws: &Workspace, events: &[AuditEvent], first: bool, last: bool) {
    if first {
        out.push(b'[');
    }
    for (i, e) in events.iter().enumerate() {
        if !(first && i == 0) {
            out.push(b',');
        }
        let row = serde_json::json!({
            "id": e.id, "at": at_text(e.at_ms), "workspace": ws.slug, "event": e.event,
            "outcome": e.outcome, "actor": e.actor, "target": e.target,
            "client_id": e.client_id, "session_id": e.session_id, "ip": e.ip,
            "detail": e.detail,
        });
        let _ = serde_json::to_writer(&mut *out, &row);
    }
    if last {
        out.push(b']');
    }
}
