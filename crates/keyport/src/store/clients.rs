//! Registered OAuth clients.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::directory::Db;
use super::{Result, opt_text, split_list};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub confidential: bool,
    pub secret_hash: Option<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    /// `admin` when added by a command, `config` when declared in the file.
    pub source: String,
}

fn client(row: &AnyRow) -> Result<Client> {
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        confidential: row.try_get::<i64, _>("confidential")? != 0,
        secret_hash: opt_text(row, "secret_hash")?,
        grants: split_list(&row.try_get::<String, _>("grants")?),
        scopes: split_list(&row.try_get::<String, _>("scopes")?),
        audiences: split_list(&row.try_get::<String, _>("audiences")?),
        redirect_uris: split_list(&row.try_get::<String, _>("redirect_uris")?),
        source: row.try_get("source")?,
    })
}

/// Inserts a client; with `replace`, a client of the same id is overwritten
/// (config-declared clients follow the file on every start).
pub async fn save<'e>(db: impl Db<'e>, c: &Client, now: i64, replace: bool) -> Result<()> {
    let sql = if replace {
        "INSERT INTO clients (id, name, confidential, secret_hash, grants, scopes, audiences, \
         redirect_uris, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, confidential = excluded.confidential, \
         secret_hash = excluded.secret_hash, grants = excluded.grants, scopes = excluded.scopes, \
         audiences = excluded.audiences, redirect_uris = excluded.redirect_uris, source = excluded.source"
    } else {
        "INSERT INTO clients (id, name, confidential, secret_hash, grants, scopes, audiences, \
         redirect_uris, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    };
    sqlx::query(sql)
        .bind(&c.id)
        .bind(&c.name)
        .bind(i64::from(c.confidential))
        .bind(&c.secret_hash)
        .bind(c.grants.join(" "))
        .bind(c.scopes.join(" "))
        .bind(c.audiences.join(" "))
        .bind(c.redirect_uris.join(" "))
        .bind(&c.source)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn find<'e>(db: impl Db<'e>, id: &str) -> Result<Option<Client>> {
    let row = sqlx::query("SELECT * FROM clients WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(client).transpose()
}
