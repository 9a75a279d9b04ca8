//! The admin commands' work (`keyport user …`, `client …`, `workspace …`,
//! `sessions …`, `keys rotate`, `audit export`, `backup`), shared by the
//! `keyport` binary and tests. Each runs against the same store as a
//! running server (SQLite WAL or PostgreSQL), so they are safe while it
//! serves.

use serde::Serialize;
use serde_json::{Value, json};

use crate::crypto::{self};
use crate::domain::audit::Audit;
use crate::domain::clients::{Client, ClientSpec};
use crate::domain::scopes::Role;
use crate::domain::signin::hash_password;
use crate::service::{Caller, Keyport};
use crate::store::directory::{NewUser, Workspace};
use crate::store::{self};
use keyport_proto::GrantType;

/// An admin command's failure, worded for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

impl From<store::Error> for AdminError {
    fn from(e: store::Error) -> Self {
        if e.is_unique_violation() {
            return AdminError("it exists already".into());
        }
        AdminError(e.to_string())
    }
}

impl From<crate::domain::Error> for AdminError {
    fn from(e: crate::domain::Error) -> Self {
        // The operator reads the sentence, not the RFC's error code.
        if let crate::domain::Error::OAuth { description, .. } = e {
            return AdminError(description.into_owned());
        }
        AdminError(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, AdminError>;

mod users;
pub use users::{add_user, disable_user, enable_user, reset_totp, unlock_user};

pub(crate) fn admin_caller() -> Caller {
    Caller::default()
}

pub(crate) async fn audit(kp: &Keyport, event: &'static str, detail: Value) -> Result<()> {
    let now_ms = kp.clock.now_ms();
    kp.store
        .write(move |c| {
            Box::pin(async move {
                Audit::new(event, "success")
                    .actor(Some("admin"))
                    .detail(detail)
                    .record(c, now_ms, &admin_caller())
                    .await
            })
        })
        .await?;
    Ok(())
}

/// `keyport client add`: the client's settings, checked by
/// [`ClientSpec::build`], and a secret printed once for a confidential one.
pub async fn add_client(kp: &Keyport, new: ClientSpec) -> Result<Value> {
    let (client, secret) = kp.save_new_client(new, "admin", &admin_caller()).await?;
    let mut out = client_json(&client);
    if let Some(secret) = secret {
        out["client_secret"] = Value::String(secret.expose().to_string());
    }
    Ok(out)
}

/// `keyport client secret rotate`: a new secret, printed once; the old one
/// keeps working for `grace` seconds so deployments can switch over.
pub async fn rotate_client_secret(kp: &Keyport, id: &str, grace: i64) -> Result<Value> {
    let secret = kp
        .rotate_secret(id, grace, "admin", &admin_caller())
        .await?;
    let until = kp.clock.now() + grace;
    Ok(json!({
        "client_id": id,
        "client_secret": secret.expose(),
        "previous_secret_expires_at": crate::domain::tokens::rfc3339(until),
    }))
}

fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.id, "name": c.name,
        "type": if c.confidential { "confidential" } else { "public" },
        "grants": c.grants, "scopes": c.scopes, "default_scopes": c.default_scopes,
        "first_party": c.first_party, "access_token_format": c.access_token_format.as_str(),
        "access_token_alg": c.access_token_alg.as_str(),
        "access_token_prefix": c.access_token_prefix, "refresh_token_prefix": c.refresh_token_prefix, "audiences": c.audiences, "redirect_uris": c.redirect_uris,
    })
}

pub async fn add_workspace(kp: &Keyport, slug: &str, name: &str) -> Result<Value> {
    let valid = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(AdminError(
            "a slug is lowercase letters, digits and dashes".into(),
        ));
    }
    let ws = Workspace {
        id: crypto::random_id(),
        slug: slug.into(),
        name: name.into(),
    };
    let now = kp.clock.now();
    let saved = ws.clone();
    kp.store
        .write(move |c| {
            Box::pin(async move { store::directory::insert_workspace(c, &saved, now).await })
        })
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                AdminError(format!("workspace {slug} exists already"))
            } else {
                e.into()
            }
        })?;
    audit(kp, "admin.workspace_add", json!({ "workspace": slug })).await?;
    Ok(json!({ "id": ws.id, "slug": ws.slug, "name": ws.name }))
}

pub async fn add_member(kp: &Keyport, slug: &str, email: &str, role: &str) -> Result<Value> {
    let role = Role::parse(role)
        .ok_or_else(|| AdminError("role must be viewer, member, admin or owner".into()))?;
    let ws = store::directory::workspace_by_slug(kp.store.pool(), slug)
        .await?
        .ok_or_else(|| AdminError(format!("no workspace {slug}")))?;
    let email = email.trim().to_lowercase();
    let user = store::directory::user_by_email(kp.store.pool(), &email)
        .await?
        .ok_or_else(|| AdminError(format!("no user {email}")))?;
    let now = kp.clock.now();
    let (ws_id, user_id) = (ws.id.clone(), user.id.clone());
    kp.store
        .write(move |c| {
            Box::pin(async move {
                store::directory::upsert_membership(c, &ws_id, &user_id, role.as_str(), now).await
            })
        })
        .await?;
    audit(
        kp,
        "admin.member_add",
        json!({ "workspace": slug, "email": email, "role": role.as_str() }),
    )
    .await?;
    Ok(json!({ "workspace": slug, "email": email, "role": role.as_str() }))
}

#[derive(Serialize)]
struct SessionRow {
    id: String,
    user: Option<String>,
    client_id: String,
    label: Option<String>,
    workspace: Option<String>,
    role: Option<String>,
    scope: String,
    ip: Option<String>,
    device: Value,
    created_at: i64,
    last_used_at: i64,
}

pub async fn list_sessions(kp: &Keyport, email: Option<&str>) -> Result<Value> {
    let user_id = match email {
        Some(email) => Some(
            store::directory::user_by_email(kp.store.pool(), &email.trim().to_lowercase())
                .await?
                .ok_or_else(|| AdminError(format!("no user {email}")))?
                .id,
        ),
        None => None,
    };
    let sessions = store::sessions::list_active(kp.store.pool(), user_id.as_deref()).await?;
    let mut rows = Vec::with_capacity(sessions.len());
    for s in sessions {
        let user = match &s.user_id {
            Some(id) => store::directory::user_by_id(kp.store.pool(), id)
                .await?
                .map(|u| u.email),
            None => None,
        };
        let mut device: Value = serde_json::from_str(&s.metadata).unwrap_or(Value::Null);
        // A registered device reports its name, OS and version again on refresh.
        if let Some(guid) = device.get("guid").and_then(Value::as_str)
            && let Some(now) = store::two_step::device_by_guid(kp.store.pool(), guid).await?
        {
            for (field, value) in [
                ("dns_name", now.dns_name),
                ("os_type", now.os_type),
                ("os_version", now.os_version),
            ] {
                if let Some(value) = value {
                    device[field] = Value::String(value);
                }
            }
        }
        rows.push(SessionRow {
            device,
            id: s.id,
            user,
            client_id: s.client_id,
            label: s.label,
            workspace: s.workspace_id,
            role: s.role.map(|r| r.to_string()),
            scope: s.scope,
            ip: s.ip,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
        });
    }
    Ok(serde_json::to_value(rows).expect("rows serialize"))
}

pub async fn revoke_session(kp: &Keyport, id: &str) -> Result<Value> {
    let now = kp.clock.now();
    let sid = id.to_string();
    let revoked = kp
        .store
        .write(move |c| {
            Box::pin(async move {
                let revoked = store::sessions::revoke(&mut *c, &sid, "admin", now).await?;
                if revoked {
                    Audit::new("session.revoke", "success")
                        .actor(Some("admin"))
                        .session(&sid)
                        .record(c, now * 1000, &admin_caller())
                        .await?;
                }
                Ok(revoked)
            })
        })
        .await?;
    if !revoked && store::sessions::find(kp.store.pool(), id).await?.is_none() {
        return Err(AdminError(format!("no session {id}")));
    }
    Ok(json!({ "id": id, "revoked": true }))
}

/// A consistent copy of the SQLite database, taken while the server runs
/// (`VACUUM INTO`: one read transaction, so no half-written change), into a
/// new file only its owner can read.
pub async fn backup(kp: &Keyport, to: &std::path::Path) -> Result<Value> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(to)
        .map_err(|e| AdminError(format!("cannot create {}: {e}", to.display())))?;
    if let Err(e) = kp.store.backup_to(to).await {
        let _ = std::fs::remove_file(to);
        return Err(e.into());
    }
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    // The copy itself only reads. Its audit row needs the write lock, which
    // a busy server may hold past the busy timeout: the backup stands anyway.
    let detail = json!({ "to": to.display().to_string() });
    if let Err(e) = audit(kp, "admin.backup", detail).await {
        eprintln!("warning: the backup is complete but was not audited: {e}");
    }
    Ok(json!({ "backup": to.display().to_string(), "bytes": bytes }))
}

pub async fn rotate_keys(kp: &Keyport) -> Result<Value> {
    let kids = kp
        .rotate_keys()
        .await
        .map_err(|e| AdminError(e.to_string()))?;
    audit(kp, "admin.keys_rotate", json!({ "active": kids })).await?;
    Ok(json!({ "active": kids }))
}

pub async fn export_audit(kp: &Keyport, since_ms: i64) -> Result<Value> {
    kp.store.settle_audit().await;
    let events = store::audit::list(kp.store.pool(), since_ms).await?;
    let rows: Vec<Value> = events
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).expect("event serializes");
            let at =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    });
            v["at"] = json!(at);
            v
        })
        .collect();
    Ok(Value::Array(rows))
}

/// `--demo`: a demo user, workspace and the public `kp` client. Returns the
/// demo password (new on every start).
pub async fn seed_demo(kp: &Keyport) -> Result<(String, String)> {
    let email = "demo@example.com".to_string();
    let password = crypto::random_token()[..20].to_string();
    let now = kp.clock.now();
    let phc = {
        let p = password.clone();
        kp.password_work(move || hash_password(&p)).await??
    };
    let mut client = ClientSpec {
        id: "kp".into(),
        name: "kp (Keyport CLI)".into(),
        grants: [
            GrantType::DeviceCode,
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
        ]
        .map(|g| g.as_str().to_string())
        .to_vec(),
        scopes: kp.catalogue.names(),
        // `kp login --web` listens on a loopback port of its choosing.
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        ..ClientSpec::default()
    }
    .build("demo")
    .map_err(AdminError)?;
    client.source = "demo".into();
    let demo_email = email.clone();
    kp.store
        .write(move |c| {
            Box::pin(async move {
                let user_id = match store::directory::user_by_email(&mut *c, &demo_email).await? {
                    Some(user) => {
                        store::directory::set_password_hash(&mut *c, &user.id, &phc).await?;
                        store::directory::set_disabled(&mut *c, &user.id, false).await?;
                        user.id
                    }
                    None => {
                        let id = crypto::random_id();
                        let user = NewUser {
                            id: &id,
                            email: &demo_email,
                            name: Some("Demo User"),
                            password_hash: &phc,
                            is_admin: true,
                            now,
                        };
                        store::directory::insert_user(&mut *c, user).await?;
                        id
                    }
                };
                let ws = match store::directory::workspace_by_slug(&mut *c, "demo").await? {
                    Some(ws) => ws,
                    None => {
                        let ws = Workspace {
                            id: crypto::random_id(),
                            slug: "demo".into(),
                            name: "Demo".into(),
                        };
                        store::directory::insert_workspace(&mut *c, &ws, now).await?;
                        ws
                    }
                };
                store::directory::upsert_membership(&mut *c, &ws.id, &user_id, "owner", now)
                    .await?;
                store::lockout::clear(&mut *c, &demo_email).await?;
                store::clients::save(&mut *c, &client, now, true).await
            })
        })
        .await?;
    kp.forget_client("kp");
    Ok((email, password))
}
