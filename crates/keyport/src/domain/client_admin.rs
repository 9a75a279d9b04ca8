//! Clients as owners manage them from the dashboard and `/api/v1`, and as
//! operators do with `keyport client …`: one path for adding a client and
//! rotating its secret, audited with whoever did it.

use super::audit::Audit;
use super::clients::{Client, ClientSpec};
use super::workspaces::{Page, forbidden, page_size};
use super::{Error, ErrorCode, Result, User};
use crate::crypto::tokens::{Secret, new_client_secret};
use crate::service::{Caller, Keyport};
use crate::store;

/// How long a rotated-out secret keeps working, unless the operator says.
pub const SECRET_GRACE_SECS: i64 = 24 * 3600;

impl Keyport {
    async fn may_manage_clients(&self, user: &User) -> Result<()> {
        if self.manages_clients(user).await? {
            Ok(())
        } else {
            Err(forbidden("only workspace owners manage clients"))
        }
    }

    /// A page of the clients stored on this server, by id.
    pub async fn clients_page(
        &self,
        user: &User,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<Client>> {
        self.may_manage_clients(user).await?;
        let limit = page_size(limit);
        let rows = store::clients::page(self.store.pool(), after, limit + 1).await?;
        Ok(Page::of(rows, limit, |c| c.id.as_str().to_string()))
    }

    /// An owner adds a client; a confidential one's secret is returned once.
    pub async fn add_client_as(
        &self,
        user: &User,
        spec: ClientSpec,
        caller: &Caller,
    ) -> Result<(Client, Option<Secret>)> {
        self.may_manage_clients(user).await?;
        self.save_new_client(spec, &user.email, caller).await
    }

    /// An owner rotates a confidential client's secret; the old one works
    /// for [`SECRET_GRACE_SECS`] more.
    pub async fn rotate_secret_as(&self, user: &User, id: &str, caller: &Caller) -> Result<Secret> {
        self.may_manage_clients(user).await?;
        self.rotate_secret(id, SECRET_GRACE_SECS, &user.email, caller)
            .await
    }

    /// Checks and stores a new client (`ClientSpec::build`), audited.
    pub async fn save_new_client(
        &self,
        spec: ClientSpec,
        actor: &str,
        caller: &Caller,
    ) -> Result<(Client, Option<Secret>)> {
        let source = if actor == "admin" {
            "admin"
        } else {
            "dashboard"
        };
        let mut client = spec
            .build(source)
            .map_err(|why| Error::oauth(ErrorCode::InvalidClientMetadata, why))?;
        let secret = client.confidential.then(new_client_secret);
        client.secret_hash = secret.as_ref().map(|s| s.hash());
        let now = self.clock.now();
        let (saved, actor, caller) = (client.clone(), actor.to_string(), caller.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::clients::save(&mut *c, &saved, now, false).await?;
                    Audit::new("client.add", "success")
                        .actor(Some(&actor))
                        .client(saved.id.as_str())
                        .target(saved.id.as_str())
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    Error::oauth(
                        ErrorCode::InvalidClientMetadata,
                        format!("a client with id {} exists already", client.id.as_str()),
                    )
                } else {
                    e.into()
                }
            })?;
        self.forget_client(&client.id);
        Ok((client, secret))
    }

    /// A new secret for a confidential client; the old one keeps working
    /// for `grace` seconds so deployments can switch over.
    pub async fn rotate_secret(
        &self,
        id: &str,
        grace: i64,
        actor: &str,
        caller: &Caller,
    ) -> Result<Secret> {
        let client = self
            .client(id)
            .await?
            .ok_or_else(|| super::workspaces::not_found("no such client"))?;
        if !client.confidential {
            return Err(Error::invalid_request(format!(
                "{id} is a public client: it has no secret"
            )));
        }
        if client.source == "config" {
            return Err(Error::invalid_request(format!(
                "{id} is declared in the configuration file: change its secret there"
            )));
        }
        if grace < 0 {
            return Err(Error::invalid_request(
                "the grace period cannot be negative",
            ));
        }
        let secret = new_client_secret();
        let now = self.clock.now();
        let (owned_id, hash, actor, caller) = (
            id.to_string(),
            secret.hash(),
            actor.to_string(),
            caller.clone(),
        );
        let rotated = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    let rotated =
                        store::clients::rotate_secret(&mut *c, &owned_id, &hash, now + grace)
                            .await?;
                    if rotated {
                        Audit::new("client.secret_rotate", "success")
                            .actor(Some(&actor))
                            .client(&owned_id)
                            .target(&owned_id)
                            .detail(serde_json::json!({ "grace_seconds": grace }))
                            .record(c, now * 1000, &caller)
                            .await?;
                    }
                    Ok(rotated)
                })
            })
            .await?;
        if !rotated {
            return Err(Error::invalid_request(format!(
                "{id} has no secret to rotate"
            )));
        }
        self.forget_client(id);
        Ok(secret)
    }
}
