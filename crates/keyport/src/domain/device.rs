//! RFC 8628 device authorization: start (§3.1–3.2), resolve a user code,
//! approve or deny it (the consent), and poll (§3.4–3.5). Tokens are released
//! exactly once: redemption is a conditional update only one poll can win.

use serde::{Deserialize, Serialize};

use super::audit::Audit;
use super::scopes::{Role, Scopes};
use super::tokens::{Grant, NewSession};
use super::{Error, ErrorCode, Result};
use crate::crypto::tokens::{Secret, UserCode, new_device_code, new_refresh_token};
use crate::crypto::{self, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store::device::{Approval, DeviceAuthorization, NewDevice, Status};
use crate::store::{self, Writes, clients::Client, directory::User};
use keyport_proto::{ClientInfo, DEVICE_CODE_GRANT, DeviceAuthorizationResponse, TokenResponse};

/// Device metadata a CLI may send; shown on the approval page and kept on
/// the session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

/// A device authorization request after parsing.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub metadata: DeviceMetadata,
}

/// A poll of the token endpoint with a device code.
#[derive(Debug)]
pub struct PollRequest {
    pub device_code: Secret,
    pub resource: Option<String>,
    pub scope: Option<String>,
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

const MAX_METADATA_LEN: usize = 200;

/// Time a poll may come early and still count as on time: network jitter.
const POLL_TOLERANCE_MS: i64 = 250;

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
        let scope = self.requested_scopes(client, request.scope.as_deref())?;
        let resource = self.check_resource(client, request.resource.as_deref())?;
        check_metadata(&request.metadata)?;
        let metadata = serde_json::to_string(&request.metadata).expect("metadata serializes");
        let limits = self.config.limits.clone();
        let tokens = self.config.tokens.clone();

        // A user code could collide with a live one; draw again then.
        for _ in 0..4 {
            let device_code = new_device_code();
            let user_code = UserCode::generate();
            let now = self.clock.now();
            let (id, code_hash) = (crypto::random_id(), device_code.hash());
            let (client_id, scope_text) = (client.id.clone(), scope.to_scope_string());
            let (resource, metadata, ip) = (resource.clone(), metadata.clone(), caller.ip_string());
            let stored_code = user_code.as_str().to_string();
            let limits = limits.clone();
            // Without rate counters the job is a single INSERT.
            let writes = if limits.enabled {
                Writes::Many
            } else {
                Writes::One
            };
            let outcome = self
                .store
                .write_as(writes, move |c| {
                    Box::pin(async move {
                        if limits.enabled {
                            let window = now - now.rem_euclid(60);
                            let by_client = format!("device-start:client:{client_id}");
                            let hits = store::limits::hit(&mut *c, &by_client, window).await?;
                            if hits > limits.device_starts_per_client_per_minute {
                                return Ok(Err(Error::oauth(
                                    ErrorCode::SlowDown,
                                    "too many device authorizations for this client; retry later",
                                )));
                            }
                            if let Some(ip) = &ip {
                                let by_ip = format!("device-start:ip:{ip}");
                                let hits = store::limits::hit(&mut *c, &by_ip, window).await?;
                                if hits > limits.device_starts_per_ip_per_minute {
                                    return Ok(Err(Error::oauth(
                                        ErrorCode::SlowDown,
                                        "too many device authorizations from this address; retry later",
                                    )));
                                }
                            }
                        }
                        store::device::insert(
                            c,
                            NewDevice {
                                id: &id,
                                device_code_hash: &code_hash,
                                user_code: &stored_code,
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
                    let verification_uri = format!("{}/device", self.config.issuer);
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

    /// The scopes asked for, within the client's allow-list; all of its
    /// allow-list when the request names none.
    pub(crate) fn requested_scopes(&self, client: &Client, scope: Option<&str>) -> Result<Scopes> {
        let allowed = Scopes::from_list(&client.scopes);
        let requested = match scope {
            None => return Ok(allowed),
            Some(text) => Scopes::parse(text)
                .ok_or_else(|| Error::oauth(ErrorCode::InvalidScope, "malformed scope"))?,
        };
        if requested.is_empty() {
            return Ok(allowed);
        }
        if let Some(outside) = requested.iter().find(|s| !allowed.contains(s)) {
            return Err(Error::oauth(
                ErrorCode::InvalidScope,
                format!("scope {outside} is not allowed for this client"),
            ));
        }
        Ok(requested)
    }

    /// RFC 8707: the one resource must be one of the client's audiences.
    pub(crate) fn check_resource(
        &self,
        client: &Client,
        resource: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(resource) = resource else {
            return Ok(None);
        };
        let absolute = url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none());
        if !absolute || !client.audiences.iter().any(|a| a == resource) {
            return Err(Error::oauth(
                ErrorCode::InvalidTarget,
                "the resource is not an audience of this client",
            ));
        }
        Ok(Some(resource.to_string()))
    }

    /// Finds the pending authorization behind a user code, for a signed-in
    /// user. Failed entries count against the user, the browser session and
    /// the IP address; past the limit entries are refused for the hour.
    pub async fn resolve_user_code(
        &self,
        input: &str,
        user: &User,
        browser_session: Option<&str>,
        caller: &Caller,
    ) -> Result<PendingRequest> {
        let now = self.clock.now();
        let window = now - now.rem_euclid(3600);
        let buckets = guess_buckets(user, browser_session, caller);
        if self.config.limits.enabled {
            for bucket in &buckets {
                let failures = store::limits::peek(self.store.pool(), bucket, window).await?;
                if failures >= self.config.limits.user_code_failures_per_hour {
                    return Err(Error::Throttled {
                        retry_after: window + 3600 - now,
                    });
                }
            }
        }
        let found = match UserCode::parse(input) {
            Some(code) => store::device::by_user_code(self.store.pool(), code.as_str()).await?,
            None => None,
        };
        let live = found.filter(|d| d.status == Status::Pending && d.expires_at > now);
        let Some(device) = live else {
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
        self.pending_request(device).await
    }

    async fn pending_request(&self, device: DeviceAuthorization) -> Result<PendingRequest> {
        let client = self
            .client(&device.client_id)
            .await?
            .ok_or_else(|| Error::invalid_grant("the client of this request no longer exists"))?;
        Ok(PendingRequest {
            user_code: UserCode::parse(&device.user_code)
                .ok_or(Error::internal("stored user code"))?,
            requested: Scopes::parse(&device.scope).unwrap_or_default(),
            metadata: serde_json::from_str(&device.metadata).unwrap_or_default(),
            id: device.id,
            client,
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
                                Audit::new("device.approve", "success")
                                    .actor(Some(&email))
                                    .client(&client_id)
                                    .detail(serde_json::json!({
                                        "workspace": workspace, "role": role_text, "scope": scope_for_audit
                                    }))
                                    .record(c, now * 1000, &caller)
                                    .await?;
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

    /// RFC 8628 §3.4: one poll of the token endpoint. A poll of a pending
    /// code is a single statement (the hot path); the redemption, once per
    /// login, is a transaction of its own.
    pub async fn poll_device(
        &self,
        client: &Client,
        poll: PollRequest,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        ensure_device_grant(client)?;
        let narrowing = match &poll.scope {
            Some(text) => Some(
                Scopes::parse(text)
                    .ok_or_else(|| Error::oauth(ErrorCode::InvalidScope, "malformed scope"))?,
            ),
            None => None,
        };
        let code_hash = hash_secret(poll.device_code.expose());
        let now_ms = self.clock.now_ms();
        let (client_id, resource, hash) =
            (client.id.clone(), poll.resource.clone(), code_hash.clone());
        let polled = self
            .store
            .write_one(move |c| {
                Box::pin(async move {
                    store::device::poll(
                        c,
                        &hash,
                        &client_id,
                        resource.as_deref(),
                        now_ms,
                        POLL_TOLERANCE_MS,
                    )
                    .await
                })
            })
            .await?;
        let Some((device, slowed)) = polled else {
            return Err(self
                .why_no_poll_matched(client, &code_hash, now_ms.div_euclid(1000))
                .await?);
        };
        match device.status {
            Status::Pending if slowed => Err(Error::oauth(
                ErrorCode::SlowDown,
                format!("polled too fast; wait at least {} seconds", device.interval),
            )),
            Status::Pending => Err(Error::oauth(
                ErrorCode::AuthorizationPending,
                "the user has not approved yet",
            )),
            Status::Denied => Err(Error::oauth(
                ErrorCode::AccessDenied,
                "the user denied the request",
            )),
            Status::Redeemed => Err(Error::invalid_grant("the device code was already used")),
            Status::Approved => self.redeem_device(device, narrowing, caller).await,
        }
    }

    /// Names the reason a poll matched no live authorization (the rare path).
    async fn why_no_poll_matched(
        &self,
        client: &Client,
        code_hash: &str,
        now: i64,
    ) -> Result<Error> {
        let found = store::device::by_device_code_hash(self.store.pool(), code_hash).await?;
        Ok(match found {
            None => Error::invalid_grant("unknown device code"),
            Some(d) if d.client_id != client.id => {
                Error::invalid_grant("the device code belongs to another client")
            }
            Some(d) if d.status == Status::Redeemed => {
                Error::invalid_grant("the device code was already used")
            }
            Some(d) if now >= d.expires_at => {
                Error::oauth(ErrorCode::ExpiredToken, "the device code has expired")
            }
            Some(_) => Error::invalid_grant("the resource differs from the one requested at start"),
        })
    }

    async fn redeem_device(
        &self,
        device: DeviceAuthorization,
        narrowing: Option<Scopes>,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        let refresh = new_refresh_token();
        let refresh_hash = refresh.hash();
        let session_id = crypto::random_id();
        let now = self.clock.now();
        let refresh_ttl = self.config.tokens.refresh_token_ttl;
        let caller = caller.clone();
        let outcome = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    redeem(
                        c,
                        device,
                        narrowing,
                        session_id,
                        &refresh_hash,
                        now,
                        refresh_ttl,
                        &caller,
                    )
                    .await
                })
            })
            .await?;
        let new_session = outcome?;
        let refresh = new_session.with_refresh.then_some(refresh);
        self.mint(Grant {
            session: new_session.session,
            refresh,
            user: new_session.user,
            id_token: true,
            scope: new_session.scope,
        })
    }
}

/// Releases the tokens of an approved authorization, exactly once.
#[allow(clippy::too_many_arguments)]
async fn redeem(
    c: &mut store::Conn,
    d: DeviceAuthorization,
    narrowing: Option<Scopes>,
    session_id: String,
    refresh_hash: &str,
    now: i64,
    refresh_ttl: i64,
    caller: &Caller,
) -> store::Result<Result<NewSession>> {
    let user_id = d.user_id.clone().unwrap_or_default();
    let user = store::directory::user_by_id(&mut *c, &user_id).await?;
    let locked = user
        .as_ref()
        .is_none_or(|u| u.disabled || u.locked_until.is_some_and(|t| t > now));
    // The approver may have been removed from the workspace since.
    let still_member = match &d.workspace_id {
        Some(ws) => store::directory::role_in(&mut *c, &user_id, ws)
            .await?
            .is_some(),
        None => true,
    };
    if locked || !still_member {
        store::device::deny(&mut *c, &d.id, &user_id, now).await?;
        return Ok(Err(Error::oauth(
            ErrorCode::AccessDenied,
            "the approving account can no longer sign in",
        )));
    }
    let mut scope = Scopes::parse(d.granted_scope.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some(narrow) = narrowing.filter(|n| !n.is_empty()) {
        if !narrow.is_subset(&scope) {
            return Ok(Err(Error::oauth(
                ErrorCode::InvalidScope,
                "the scope is wider than what was approved",
            )));
        }
        scope = narrow;
    }
    if !store::device::redeem(&mut *c, &d.id).await? {
        return Ok(Err(Error::invalid_grant(
            "the device code was already used",
        )));
    }
    let metadata: DeviceMetadata = serde_json::from_str(&d.metadata).unwrap_or_default();
    let session = store::sessions::Session {
        id: session_id,
        user_id: Some(user_id),
        client_id: d.client_id.clone(),
        workspace_id: d.workspace_id.clone(),
        role: d.role.clone(),
        scope: scope.to_scope_string(),
        resource: d.resource.clone(),
        label: metadata.cli_label.clone().or(metadata.dns_name.clone()),
        metadata: d.metadata.clone(),
        ip: d.ip.clone(),
        grant_type: DEVICE_CODE_GRANT.into(),
        auth_time: d.auth_time,
        created_at: now,
        last_used_at: now,
        revoked_at: None,
    };
    let with_refresh = scope.contains("offline_access");
    store::sessions::insert(&mut *c, &session).await?;
    if with_refresh {
        store::sessions::insert_refresh(&mut *c, refresh_hash, &session.id, now, now + refresh_ttl)
            .await?;
    }
    let email = user.as_ref().map(|u| u.email.clone());
    Audit::new("token.issue", "success")
        .actor(email.as_deref())
        .client(&session.client_id)
        .session(&session.id)
        .detail(serde_json::json!({ "grant_type": DEVICE_CODE_GRANT, "scope": session.scope }))
        .record(c, now * 1000, caller)
        .await?;
    Ok(Ok(NewSession {
        session,
        user,
        with_refresh,
        scope,
    }))
}

/// Start and poll both need the client to have the device grant.
fn ensure_device_grant(client: &Client) -> Result<()> {
    if client.grants.iter().any(|g| g == DEVICE_CODE_GRANT) {
        return Ok(());
    }
    Err(Error::oauth(
        ErrorCode::UnauthorizedClient,
        "the device grant is not enabled for this client",
    ))
}

fn guess_buckets(user: &User, browser_session: Option<&str>, caller: &Caller) -> Vec<String> {
    let mut buckets = vec![format!("user-code:user:{}", user.id)];
    if let Some(session) = browser_session {
        buckets.push(format!("user-code:session:{}", hash_secret(session)));
    }
    if let Some(ip) = caller.ip {
        buckets.push(format!("user-code:ip:{ip}"));
    }
    buckets
}

fn check_metadata(m: &DeviceMetadata) -> Result<()> {
    let fields = [
        m.cli_label.as_deref(),
        m.dns_name.as_deref(),
        m.os_type.as_deref(),
        m.os_version.as_deref(),
        m.client_info.as_ref().and_then(|i| i.name.as_deref()),
        m.client_info.as_ref().and_then(|i| i.version.as_deref()),
    ];
    for value in fields.into_iter().flatten() {
        if value.len() > MAX_METADATA_LEN || value.chars().any(char::is_control) {
            return Err(Error::invalid_request(
                "device metadata must be short, printable text",
            ));
        }
    }
    Ok(())
}
