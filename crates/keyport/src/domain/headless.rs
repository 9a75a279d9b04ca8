//! What the headless API (a team's own sign-in and approval UI) may learn
//! about a device request before anyone has signed in: the request by its
//! id, and the id behind a typed user code. Signing in, resolving for a
//! user and deciding are the hosted pages' own operations.

use super::device::PendingRequest;
use super::metadata::DeviceMetadata;
use super::scopes::Scopes;
use super::{Error, Result};
use crate::crypto::tokens::UserCode;
use crate::service::{Caller, Keyport};
use crate::store::{self, device::Status};

/// A pending device request as a sign-in UI shows it.
#[derive(Debug, Clone)]
pub struct RequestView {
    pub id: String,
    pub client_id: String,
    pub client_name: String,
    pub requested: Scopes,
    pub resource: Option<String>,
    pub metadata: DeviceMetadata,
    pub expires_at: i64,
}

impl From<PendingRequest> for RequestView {
    fn from(p: PendingRequest) -> Self {
        RequestView {
            id: p.id,
            client_id: p.client.id.as_str().to_string(),
            client_name: p.client.name,
            requested: p.requested,
            resource: p.resource,
            metadata: p.metadata,
            expires_at: p.expires_at,
        }
    }
}

impl Keyport {
    /// The pending, unexpired request with this id; `None` otherwise (ids
    /// are random, so knowing one is having been sent it).
    pub async fn device_request(&self, id: &str) -> Result<Option<RequestView>> {
        let Some(device) = store::device::by_id(self.store.pool(), id).await? else {
            return Ok(None);
        };
        if device.status != Status::Pending || device.expires_at <= self.clock.now() {
            return Ok(None);
        }
        let Some(client) = self.client(&device.client_id).await? else {
            return Ok(None);
        };
        Ok(Some(RequestView {
            id: device.id,
            client_id: client.id.as_str().to_string(),
            client_name: client.name.clone(),
            requested: Scopes::parse(&device.scope).unwrap_or_default(),
            resource: device.resource,
            metadata: serde_json::from_str(&device.metadata).unwrap_or_default(),
            expires_at: device.expires_at,
        }))
    }

    /// The id of the pending request a typed user code names, for the
    /// redirect to a headless UI. Wrong codes count against the address
    /// as they do on the hosted page; past the limit, `Throttled`.
    pub async fn request_id_for_user_code(
        &self,
        input: &str,
        caller: &Caller,
    ) -> Result<Option<String>> {
        let now = self.clock.now();
        let window = now - now.rem_euclid(3600);
        let bucket = caller.ip.map(|ip| format!("user-code:ip:{ip}"));
        let limits = &self.config.limits;
        if let (true, Some(bucket)) = (limits.enabled, &bucket) {
            let failures = store::limits::peek(self.store.pool(), bucket, window).await?;
            if failures >= limits.user_code_failures_per_hour {
                return Err(Error::Throttled {
                    retry_after: window + 3600 - now,
                });
            }
        }
        let found = match UserCode::parse(input) {
            Some(code) => {
                let hash = self.user_code_hash(&code);
                store::device::by_user_code_hash(self.store.pool(), &hash).await?
            }
            None => None,
        };
        match found.filter(|d| d.status == Status::Pending && d.expires_at > now) {
            Some(device) => Ok(Some(device.id)),
            None => {
                if let (true, Some(bucket)) = (limits.enabled, bucket) {
                    self.store
                        .write(move |c| {
                            Box::pin(async move {
                                store::limits::hit(&mut *c, &bucket, window).await?;
                                Ok(())
                            })
                        })
                        .await?;
                }
                Ok(None)
            }
        }
    }
}
