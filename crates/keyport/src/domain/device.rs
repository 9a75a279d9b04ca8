//! RFC 8628 device authorization: start (§3.1–3.2), resolve a user code,
//! and approve or deny it (the consent). Polling is in [`super::poll`].

use std::net::IpAddr;

use super::audit::Audit;
use super::clients::Client;
use super::metadata::DeviceMetadata;
use super::scopes::{Role, Scopes};
use super::{Error, ErrorCode, Result};
use crate::crypto;
use crate::crypto::tokens::SessionCookie;
use crate::crypto::tokens::{UserCode, device_code_key, new_device_code};
use crate::service::{Caller, Keyport};
use crate::store::device::{Approval, DeviceAuthorization, NewDevice, Status};
use crate::store::{self, Writes, directory::User};
use crate::telemetry::SecurityEvent;
use keyport_proto::{DeviceAuthorizationResponse, GrantType};

/// A device authorization request after parsing.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub metadata: DeviceMetadata,
}

/// A pending authorization as the approval page shows it.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub id: String,
    pub user_code: UserCode,
    pub client: Client,
    pub requested: Scopes,
    pub resource: Option<String>,
    pub metadata: DeviceMetadata,
    pub ip: Option<String>,
    pub expires_at: i64,
}

/// The user's answer on the approval page (or through the service API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent<'a> {
    Approve { workspace: Option<&'a str> },
    Deny,
}

/// What resolving a user code to a specific decision produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Approved {
        granted: String,
        refused: Vec<String>,
    },
    Denied,
}

impl Keyport {
    /// RFC 8628 §3.1: validates the request strictly and creates a pending
    /// authorization. The client is already authenticated.
    pub async fn start_device_authorization(
        &self,
        client: &Client,
        request: StartRequest,
        caller: &Caller,
    ) -> Result<DeviceAuthorizationResponse> {
        ensure_device_grant(client)?;
        let scope = client.requested_scopes(request.scope.as_deref())?;
        let resource = client.check_resource(request.resource.as_deref())?;
        let metadata = request.metadata.cleaned();
        let metadata = serde_json::to_string(&metadata).expect("metadata serializes");
        let limits = self.config.limits.clone();
        let tokens = self.config.tokens.clone();

        // A user code could collide with a live one; draw again then.
        for _ in 0..4 {
            let now_ms = self.clock.now_ms();
            let now = now_ms.div_euclid(1000);
            // A code that begins with its time needs an instance that knows
            // the form to poll it: on a store others share, which may still
            // run the release before it, codes keep the bare form.
            let device_code = new_device_code((!self.store.is_shared()).then_some(now_ms));
            let user_code = UserCode::generate();
            let (id, code_key) = (crypto::ordered_id(now_ms), device_code_key(&device_code));
            let (client_id, scope_text) = (client.id.clone(), scope.to_scope_string());
            let (resource, metadata, ip) = (resource.clone(), metadata.clone(), caller.ip_string());
            let network = caller.ip.map(network_of);
            let user_code_hash = self.user_code_hash(&user_code);
            let limits = limits.clone();
            // Without rate counters the job is a single INSERT.
            let writes = if limits.enabled {
                Writes::Many
            } else {
                Writes::One
            };
            let outcome = self
                .store
                .write_either(writes, move |mut db| {
                    Box::pin(async move {
                        if limits.enabled {
                            let window = now - now.rem_euclid(60);
                            // Narrowest first, so a refused start counts
                            // nothing against the wider budgets.
                            let mut budgets = Vec::with_capacity(3);
                            if let Some(ip) = &ip {
                                budgets.push((
                                    format!("device-start:ip:{ip}"),
                                    limits.device_starts_per_ip_per_minute,
                                ));
                            }
                            let network = network.as_deref().unwrap_or("-");
                            budgets.push((
                                format!("device-start:client:{client_id}:net:{network}"),
                                limits.device_starts_per_client_per_minute,
                            ));
                            budgets.push((
                                "device-start:all".to_string(),
                                limits.device_starts_per_minute,
                            ));
                            for (bucket, limit) in budgets {
                                if store::limits::hit(db.reborrow(), &bucket, window).await? > limit
                                {
                                    return Ok(Err(Error::oauth(
                                        ErrorCode::SlowDown,
                                        "too many device authorizations; retry later",
                                    )));
                                }
                            }
                        }
                        store::device::insert(
                            db,
                            NewDevice {
                                id: &id,
                                device_code_hash: &code_key,
                                user_code_hash: &user_code_hash,
                                client_id: &client_id,
                                scope: &scope_text,
                                resource: resource.as_deref(),
                                metadata: &metadata,
                                ip: ip.as_deref(),
                                now,
                                expires_at: now + tokens.device_code_ttl,
                                interval: tokens.device_poll_interval,
                            },
                        )
                        .await?;
                        Ok(Ok(()))
                    })
                })
                .await;
            match outcome {
                Ok(Ok(())) => {
                    let verification_uri = format!("{}/device", self.issuer_for(caller));
                    return Ok(DeviceAuthorizationResponse {
                        verification_uri_complete: Some(format!(
                            "{verification_uri}?user_code={}",
                            user_code.display()
                        )),
                        verification_uri,
                        device_code: device_code.expose().to_string(),
                        user_code: user_code.display(),
                        expires_in: self.config.tokens.device_code_ttl as u64,
                        interval: self.config.tokens.device_poll_interval as u64,
                    });
                }
                Ok(Err(refusal)) => return Err(refusal),
                Err(e) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::internal("could not draw a unique user code"))
    }

    /// Finds the pending authorization behind a user code, for a signed-in
    /// user. Failed entries count against the user, the browser session and
    /// the IP address; past the limit entries are refused for the hour.
    pub async fn resolve_user_code(
        &self,
        input: &str,
        user: &User,
        browser_session: Option<&SessionCookie>,
        caller: &Caller,
    ) -> Result<PendingRequest> {
        let now = self.clock.now();
        let window = now - now.rem_euclid(3600);
        let buckets = guess_buckets(user, browser_session, caller);
        if self.config.limits.enabled {
            for bucket in &buckets {
                let failures = store::limits::peek(self.store.pool(), bucket, window).await?;
                if failures >= self.config.limits.user_code_failures_per_hour {
                    crate::telemetry::record(SecurityEvent::UserCodeThrottled);
                    return Err(Error::Throttled {
                        retry_after: window + 3600 - now,
                    });
                }
            }
        }
        let code = UserCode::parse(input);
        let found = match &code {
            Some(code) => {
                let hash = self.user_code_hash(code);
                store::device::by_user_code_hash(self.store.pool(), &hash).await?
            }
            None => None,
        };
        let live = found.filter(|d| d.status == Status::Pending && d.expires_at > now);
        let (Some(device), Some(code)) = (live, code) else {
            if self.config.limits.enabled {
                self.store
                    .write(move |c| {
                        Box::pin(async move {
                            for bucket in &buckets {
                                store::limits::hit(&mut *c, bucket, window).await?;
                            }
                            Ok(())
                        })
                    })
                    .await?;
            }
            return Err(Error::invalid_grant(
                "that code is not valid or has expired",
            ));
        };
        self.pending_request(device, code).await
    }

    async fn pending_request(
        &self,
        device: DeviceAuthorization,
        user_code: UserCode,
    ) -> Result<PendingRequest> {
        let client = self
            .client(&device.client_id)
            .await?
            .ok_or_else(|| Error::invalid_grant("the client of this request no longer exists"))?;
        Ok(PendingRequest {
            user_code,
            requested: Scopes::parse(&device.scope).unwrap_or_default(),
            metadata: serde_json::from_str(&device.metadata).unwrap_or_default(),
            id: device.id,
            client: std::sync::Arc::unwrap_or_clone(client),
            resource: device.resource,
            ip: device.ip,
            expires_at: device.expires_at,
        })
    }

    /// Approves or denies a pending request for `user`. Approval grants the
    /// requested scopes the user's role in the chosen workspace allows.
    pub async fn decide_device(
        &self,
        request_id: &str,
        user: &User,
        consent: Consent<'_>,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<Decided> {
        let device = store::device::by_id(self.store.pool(), request_id)
            .await?
            .ok_or_else(|| Error::invalid_grant("unknown request"))?;
        let now = self.clock.now();
        let ip = caller.ip_string();
        let (caller, user_id, email) = (caller.clone(), user.id.clone(), user.email.clone());
        let id = device.id.clone();
        let client_id = device.client_id.clone();
        match consent {
            Consent::Deny => {
                let denied = self
                    .store
                    .write(move |c| {
                        Box::pin(async move {
                            let denied = store::device::deny(&mut *c, &id, &user_id, now).await?;
                            if denied {
                                Audit::new("device.deny", "success")
                                    .actor(Some(&email))
                                    .client(&client_id)
                                    .record(c, now * 1000, &caller)
                                    .await?;
                            }
                            Ok(denied)
                        })
                    })
                    .await?;
                if !denied {
                    return Err(Error::invalid_grant("this request was already decided"));
                }
                Ok(Decided::Denied)
            }
            Consent::Approve { workspace } => {
                let memberships =
                    store::directory::memberships_of(self.store.pool(), &user.id).await?;
                let chosen = match workspace {
                    Some(slug) => Some(
                        memberships
                            .iter()
                            .find(|(ws, _)| ws.slug == slug)
                            .ok_or_else(|| {
                                Error::invalid_request("you are not a member of that workspace")
                            })?,
                    ),
                    None if memberships.len() == 1 => memberships.first(),
                    None if memberships.is_empty() => None,
                    None => return Err(Error::invalid_request("choose a workspace")),
                };
                let role = chosen.and_then(|(_, role)| Role::parse(role));
                let requested = Scopes::parse(&device.scope).unwrap_or_default();
                let (granted, refused) = self.catalogue.filter(&requested, role);
                let granted_text = granted.to_scope_string();
                let workspace = chosen.map(|(ws, _)| ws.slug.clone());
                let workspace_id = chosen.map(|(ws, _)| ws.id.clone());
                let role_text = role.map(|r| r.as_str().to_string());
                let scope_for_audit = granted_text.clone();
                let approved = self
                    .store
                    .write(move |c| {
                        Box::pin(async move {
                            let approval = Approval {
                                user_id: &user_id,
                                workspace_id: workspace.as_deref(),
                                role: role_text.as_deref(),
                                granted_scope: &scope_for_audit,
                                auth_time,
                                ip: ip.as_deref(),
                                now,
                            };
                            let approved = store::device::approve(&mut *c, &id, approval).await?;
                            if approved {
                                let mut audit = Audit::new("device.approve", "success")
                                    .actor(Some(&email))
                                    .client(&client_id)
                                    .detail(serde_json::json!({
                                        "workspace": workspace, "role": role_text, "scope": scope_for_audit
                                    }));
                                if let Some(ws) = &workspace_id {
                                    audit = audit.workspace(ws);
                                }
                                audit.record(c, now * 1000, &caller).await?;
                            }
                            Ok(approved)
                        })
                    })
                    .await?;
                if !approved {
                    return Err(Error::invalid_grant(
                        "this request was already decided or has expired",
                    ));
                }
                Ok(Decided::Approved {
                    granted: granted_text,
                    refused,
                })
            }
        }
    }
}

/// Start and poll both need the client to have the device grant.
pub(super) fn ensure_device_grant(client: &Client) -> Result<()> {
    client.require(GrantType::DeviceCode)
}

fn guess_buckets(
    user: &User,
    browser_session: Option<&SessionCookie>,
    caller: &Caller,
) -> Vec<String> {
    let mut buckets = vec![format!("user-code:user:{}", user.id)];
    if let Some(session) = browser_session {
        buckets.push(format!("user-code:session:{}", session.hash()));
    }
    if let Some(ip) = caller.ip {
        buckets.push(format!("user-code:ip:{ip}"));
    }
    buckets
}

/// The network an address belongs to, for budgets a few addresses must not
/// use up: its IPv4 /24 or its IPv6 /48 (a site's usual assignment).
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_group_neighbouring_addresses() {
        let net = |ip: &str| network_of(ip.parse().unwrap());
        assert_eq!(net("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(net("203.0.113.7"), net("203.0.113.250"));
        assert_ne!(net("203.0.113.7"), net("203.0.114.7"));
        assert_eq!(net("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(net("2001:db8:1:ffff::5"), net("2001:db8:1::1"));
        assert_eq!(net("::ffff:198.51.100.9"), "198.51.100.0/24");
    }
}
