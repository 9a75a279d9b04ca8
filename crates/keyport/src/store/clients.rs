//! Registered OAuth clients: one row each, the lists space-separated.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::directory::Db;
use super::{Result, opt_text, split_list};
use crate::domain::clients::{AccessTokenFormat, Client, SigningAlg};
use keyport_proto::{ClientId, GrantType};

fn client(row: &AnyRow) -> Result<Client> {
    let previous_hash = opt_text(row, "previous_secret_hash")?;
    let previous_until = row.try_get::<Option<i64>, _>("previous_secret_expires_at")?;
    Ok(Client {
        id: ClientId::new(row.try_get::<String, _>("id")?),
        name: row.try_get("name")?,
        confidential: row.try_get::<i64, _>("confidential")? != 0,
        secret_hash: opt_text(row, "secret_hash")?,
        previous_secret: previous_hash.zip(previous_until),
        // A grant this release does not know (written by a newer one during
        // a rolling upgrade) is not served here.
        grants: split_list(&row.try_get::<String, _>("grants")?)
            .iter()
            .filter_map(|g| GrantType::parse(g))
            .collect(),
        scopes: split_list(&row.try_get::<String, _>("scopes")?),
        default_scopes: split_list(&row.try_get::<String, _>("default_scopes")?),
        audiences: split_list(&row.try_get::<String, _>("audiences")?),
        redirect_uris: split_list(&row.try_get::<String, _>("redirect_uris")?),
        first_party: row.try_get::<i64, _>("first_party")? != 0,
        access_token_format: AccessTokenFormat::parse(
            &row.try_get::<String, _>("access_token_format")?,
        )
        .unwrap_or_default(),
        access_token_alg: SigningAlg::parse(&row.try_get::<String, _>("access_token_alg")?)
            .unwrap_or_default(),
        access_token_prefix: row.try_get("access_token_prefix")?,
        refresh_token_prefix: row.try_get("refresh_token_prefix")?,
        source: row.try_get("source")?,
    })
}

const COLUMNS: &str = "id, name, confidential, secret_hash, grants, scopes, default_scopes, \
    audiences, redirect_uris, first_party, access_token_format, access_token_alg, \
    access_token_prefix, refresh_token_prefix, source, created_at";

/// Inserts a client; with `replace`, a client of the same id is overwritten
/// (config-declared clients follow the file on every start).
pub async fn save<'e>(db: impl Db<'e>, c: &Client, now: i64, replace: bool) -> Result<()> {
    let values = "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
    let sql = if replace {
        format!(
            "INSERT INTO clients ({COLUMNS}) {values} ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, confidential = excluded.confidential, \
             secret_hash = excluded.secret_hash, grants = excluded.grants, \
             scopes = excluded.scopes, default_scopes = excluded.default_scopes, \
             audiences = excluded.audiences, redirect_uris = excluded.redirect_uris, \
             first_party = excluded.first_party, \
             access_token_format = excluded.access_token_format, \
             access_token_alg = excluded.access_token_alg, \
             access_token_prefix = excluded.access_token_prefix, \
             refresh_token_prefix = excluded.refresh_token_prefix, source = excluded.source"
        )
    } else {
        format!("INSERT INTO clients ({COLUMNS}) {values}")
    };
    let grants: Vec<&str> = c.grants.iter().map(|g| g.as_str()).collect();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(i64::from(c.confidential))
        .bind(&c.secret_hash)
        .bind(grants.join(" "))
        .bind(c.scopes.join(" "))
        .bind(c.default_scopes.join(" "))
        .bind(c.audiences.join(" "))
        .bind(c.redirect_uris.join(" "))
        .bind(i64::from(c.first_party))
        .bind(c.access_token_format.as_str())
        .bind(c.access_token_alg.as_str())
        .bind(&c.access_token_prefix)
        .bind(&c.refresh_token_prefix)
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

/// Replaces a client's secret; the one it replaces stays valid until
/// `previous_until`. False when there is no such confidential client.
pub async fn rotate_secret<'e>(
    db: impl Db<'e>,
    id: &str,
    new_hash: &str,
    previous_until: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE clients SET previous_secret_hash = secret_hash, \
         previous_secret_expires_at = $3, secret_hash = $2 \
         WHERE id = $1 AND confidential = 1 AND secret_hash IS NOT NULL",
    )
    .bind(id)
    .bind(new_hash)
    .bind(previous_until)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stored clients by id, `limit` after the id `after`.
pub async fn page<'e>(db: impl Db<'e>, after: Option<&str>, limit: i64) -> Result<Vec<Client>> {
    let rows = sqlx::query("SELECT * FROM clients WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(client).collect()
}
