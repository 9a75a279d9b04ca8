//! RFC 8628 §3.4–3.5: polling the token endpoint with a device code. Tokens
//! are released exactly once: redemption is a conditional update only one
//! poll can win. The winning response is kept, sealed under a key only the
//! device code derives, for the leeway: a CLI whose reply was lost (the
//! process died after the commit, the connection dropped) polls again and
//! gets the same tokens, never a second set.

use super::audit::Audit;
use super::clients::Client;
use super::scopes::Scopes;
use super::tokens::{Grant, open_reply, seal_reply};
use super::{Error, ErrorCode, Result};
use crate::crypto;
use crate::crypto::tokens::{Secret, device_code_key, new_refresh_token};
use crate::service::{Caller, Keyport};
use crate::store;
use crate::store::device::{DeviceAuthorization, Status};
use crate::store::sessions::Session;
use keyport_proto::{DEVICE_CODE_GRANT, TokenResponse};

/// A poll of the token endpoint with a device code.
#[derive(Debug)]
pub struct PollRequest {
    pub device_code: Secret,
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// Time a poll may come early and still count as on time: network jitter.
const POLL_TOLERANCE_MS: i64 = 250;

impl Keyport {
    /// RFC 8628 §3.4: one poll of the token endpoint. A poll of a pending
    /// code is a single statement (the hot path); the redemption, once per
    /// login, is a transaction of its own.
    pub async fn poll_device(
        &self,
        client: &Client,
        poll: PollRequest,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        super::device::ensure_device_grant(client)?;
        let narrowing = match &poll.scope {
            Some(text) => Some(
                Scopes::parse(text)
                    .ok_or_else(|| Error::oauth(ErrorCode::InvalidScope, "malformed scope"))?,
            ),
            None => None,
        };
        let code_key = device_code_key(&poll.device_code);
        let now_ms = self.clock.now_ms();
        if let Some(answer) = self.pending_poll(client, &poll, &code_key, now_ms).await? {
            return Err(answer);
        }
        let (client_id, resource, hash) =
            (client.id.clone(), poll.resource.clone(), code_key.clone());
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
            return self
                .unmatched_poll(client, &poll, &code_key, now_ms, caller)
                .await;
        };
        match decide_poll(&device, slowed) {
            PollDecision::Redeem => {
                self.redeem_device(client, device, narrowing, &poll.device_code, caller)
                    .await
            }
            PollDecision::Refuse(error) => Err(error),
        }
    }

    /// The answer to a poll of a pending code, when this instance alone
    /// polls its store: read, judged against the latest poll time (held in
    /// memory or written), answered, and its time held in memory rather
    /// than committed. `None` sends the poll to the statement path: a
    /// shared store, a code that is not pending, or a full table of times.
    async fn pending_poll(
        &self,
        client: &Client,
        poll: &PollRequest,
        code_key: &str,
        now_ms: i64,
    ) -> Result<Option<Error>> {
        if self.store.is_shared() {
            return Ok(None);
        }
        let Some(device) = store::device::by_device_code_hash(&self.store, code_key).await? else {
            return Ok(None);
        };
        let matches = device.client_id == client.id
            && poll
                .resource
                .as_ref()
                .is_none_or(|r| device.resource.as_ref() == Some(r))
            && device.status == Status::Pending
            && now_ms.div_euclid(1000) < device.expires_at;
        if !matches {
            return Ok(None);
        }
        let last = device
            .last_poll_ms
            .max(self.store.remembered_poll(code_key));
        if polled_too_fast(last, device.interval, now_ms) {
            let hash = code_key.to_string();
            let interval = self
                .store
                .write_one(move |c| {
                    Box::pin(async move { store::device::slow_down(c, &hash, now_ms).await })
                })
                .await?;
            let Some(interval) = interval else {
                return Ok(None);
            };
            let slowed = DeviceAuthorization { interval, ..device };
            return Ok(refusal(decide_poll(&slowed, true)));
        }
        if !self.store.remember_poll(code_key, now_ms, device.interval) {
            return Ok(None);
        }
        Ok(refusal(decide_poll(&device, false)))
    }

    /// A poll that matched no live authorization (the rare path): a retry of
    /// a redemption within the leeway gets the same tokens again; anything
    /// else is refused with its reason.
    async fn unmatched_poll(
        &self,
        client: &Client,
        poll: &PollRequest,
        code_key: &str,
        now_ms: i64,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        let found = store::device::by_device_code_hash(&self.store, code_key).await?;
        let leeway_ms = self.reply_leeway_ms(caller);
        match decide_unmatched(
            found.as_ref(),
            &client.id,
            poll.resource.as_deref(),
            now_ms,
            leeway_ms,
        ) {
            Unmatched::Replay(sealed) => open_reply(&poll.device_code, LEEWAY, code_key, &sealed)
                .unwrap_or_else(|| Err(already_used())),
            Unmatched::Refuse(error) => Err(error),
        }
    }

    /// How long a redeemed device code answers a retry with the same
    /// tokens. Through a `sqlos` mount, never: SqlOS documents its device
    /// codes as one-time, a reuse after a success being `invalid_grant`.
    fn reply_leeway_ms(&self, caller: &Caller) -> i64 {
        match caller.mount {
            Some(_) => 0,
            None => self.config.tokens.refresh_leeway * 1000,
        }
    }

    /// Signs the tokens of an approved authorization, then releases them in
    /// one transaction that re-checks the approver, redeems the code (only
    /// one poll wins) and stores the session with the sealed response.
    async fn redeem_device(
        &self,
        client: &Client,
        device: DeviceAuthorization,
        narrowing: Option<Scopes>,
        device_code: &Secret,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let user_id = device.user_id.clone().unwrap_or_default();
        let user = store::directory::user_by_id(self.store.pool(), &user_id).await?;
        let mut scope =
            Scopes::parse(device.granted_scope.as_deref().unwrap_or("")).unwrap_or_default();
        if let Some(narrow) = narrowing.filter(|n| !n.is_empty()) {
            if !narrow.is_subset(&scope) {
                return Err(Error::oauth(
                    ErrorCode::InvalidScope,
                    "the scope is wider than what was approved",
                ));
            }
            scope = narrow;
        }
        let metadata: super::metadata::DeviceMetadata =
            serde_json::from_str(&device.metadata).unwrap_or_default();
        let session = Session {
            id: crypto::random_id(),
            user_id: Some(user_id),
            client_id: device.client_id.clone(),
            workspace_id: device.workspace_id.clone(),
            role: device.role,
            scope: scope.to_scope_string(),
            resource: device.resource.clone(),
            label: metadata.cli_label.clone().or(metadata.dns_name.clone()),
            metadata: device.metadata.clone(),
            ip: device.ip.clone(),
            grant_type: DEVICE_CODE_GRANT.into(),
            auth_time: device.auth_time,
            created_at: now,
            last_used_at: now,
            revoked_at: None,
        };
        let refresh = scope
            .contains("offline_access")
            .then(|| new_refresh_token(&client.refresh_token_prefix));
        let refresh_hash = refresh.as_ref().map(Secret::hash);
        let minted = self.mint(
            client,
            Grant {
                session: session.clone(),
                refresh,
                user: user.clone(),
                id_token: true,
                nonce: None,
                scope,
            },
            caller,
        )?;
        let response = minted.response;
        let opaque = minted.opaque;
        let code_key = device_code_key(device_code);
        let sealed = (self.reply_leeway_ms(caller) > 0)
            .then(|| seal_reply(device_code, LEEWAY, &code_key, &response));
        let refresh_expires = self.refresh_expiry(now, session.created_at);
        let email = user.map(|u| u.email);
        let caller = caller.clone();
        self.store
            .write(move |c| {
                Box::pin(async move {
                    let released = Release {
                        device,
                        session,
                        refresh_hash,
                        refresh_expires,
                        sealed,
                        email,
                        opaque,
                    };
                    release(c, released, now_ms, &caller).await
                })
            })
            .await??;
        Ok(response)
    }
}

/// What one redemption writes.
struct Release {
    device: DeviceAuthorization,
    session: Session,
    refresh_hash: Option<String>,
    refresh_expires: i64,
    sealed: Option<String>,
    email: Option<String>,
    opaque: Option<super::tokens::OpaqueAccessToken>,
}

/// Inside the write transaction: the approver must still be able to sign
/// in and still be a member of the workspace; then the code is redeemed
/// exactly once and the session stored.
async fn release(
    c: &mut store::Conn,
    r: Release,
    now_ms: i64,
    caller: &Caller,
) -> store::Result<Result<()>> {
    let now = now_ms.div_euclid(1000);
    let d = &r.device;
    let user_id = d.user_id.clone().unwrap_or_default();
    let user = store::directory::user_by_id(&mut *c, &user_id).await?;
    // A sign-in lockout does not matter here: the approval came before it.
    let disabled = user.as_ref().is_none_or(|u| u.disabled);
    // The approver may have been removed from the workspace since.
    let still_member = match &d.workspace_id {
        Some(ws) => store::directory::role_in(&mut *c, &user_id, ws)
            .await?
            .is_some(),
        None => true,
    };
    if disabled || !still_member {
        store::device::deny(&mut *c, &d.id, &user_id, now).await?;
        return Ok(Err(Error::oauth(
            ErrorCode::AccessDenied,
            "the approving account can no longer sign in",
        )));
    }
    if !store::device::redeem(&mut *c, &d.id, now_ms, r.sealed.as_deref()).await? {
        return Ok(Err(already_used()));
    }
    let refresh = r.refresh_hash.as_deref().map(|h| (h, r.refresh_expires));
    store::sessions::open(&mut *c, &r.session, refresh, r.opaque.as_ref()).await?;
    Audit::new("token.issue", "success")
        .actor(r.email.as_deref())
        .client(&r.session.client_id)
        .session(&r.session.id)
        .detail(serde_json::json!({ "grant_type": DEVICE_CODE_GRANT, "scope": r.session.scope }))
        .record(c, now * 1000, caller)
        .await?;
    Ok(Ok(()))
}

/// RFC 8628 §3.5: a poll is too fast when it comes sooner than the interval
/// after the last one, less [`POLL_TOLERANCE_MS`] of network jitter. (The
/// poll statement, `store::device::poll`, applies the same rule in SQL.)
pub fn polled_too_fast(last_poll_ms: Option<i64>, interval: i64, now_ms: i64) -> bool {
    last_poll_ms.is_some_and(|last| last > now_ms - interval * 1000 + POLL_TOLERANCE_MS)
}

fn refusal(decision: PollDecision) -> Option<Error> {
    match decision {
        PollDecision::Refuse(error) => Some(error),
        PollDecision::Redeem => None,
    }
}

/// What a poll that matched a live authorization gets.
#[derive(Debug)]
pub enum PollDecision {
    /// Approved: sign the tokens and release them once.
    Redeem,
    Refuse(Error),
}

/// RFC 8628 §3.5, for the row the poll statement returned (`slowed` when
/// it came faster than the interval).
pub fn decide_poll(device: &DeviceAuthorization, slowed: bool) -> PollDecision {
    let refuse = |code, description: String| PollDecision::Refuse(Error::oauth(code, description));
    match device.status {
        Status::Pending if slowed => refuse(
            ErrorCode::SlowDown,
            format!("polled too fast; wait at least {} seconds", device.interval),
        ),
        Status::Pending => refuse(
            ErrorCode::AuthorizationPending,
            "the user has not approved yet".into(),
        ),
        Status::Denied => refuse(
            ErrorCode::AccessDenied,
            "the user denied the request".into(),
        ),
        Status::Redeemed => PollDecision::Refuse(already_used()),
        Status::Approved => PollDecision::Redeem,
    }
}

/// What a poll that matched no live authorization gets.
#[derive(Debug)]
pub enum Unmatched {
    /// A retry of a redemption within the leeway: the same sealed tokens.
    Replay(String),
    Refuse(Error),
}

/// The reason a poll matched nothing, from the row its code names (if any).
pub fn decide_unmatched(
    found: Option<&DeviceAuthorization>,
    client_id: &str,
    resource: Option<&str>,
    now_ms: i64,
    leeway_ms: i64,
) -> Unmatched {
    let now = now_ms.div_euclid(1000);
    match found {
        None => Unmatched::Refuse(Error::invalid_grant("unknown device code")),
        Some(d) if d.client_id != client_id => Unmatched::Refuse(Error::invalid_grant(
            "the device code belongs to another client",
        )),
        Some(d) if d.status == Status::Redeemed => {
            let same_resource = resource.is_none() || resource == d.resource.as_deref();
            let within = d.redeemed_ms.is_some_and(|at| now_ms - at < leeway_ms);
            match &d.sealed_tokens {
                Some(sealed) if within && same_resource => Unmatched::Replay(sealed.clone()),
                _ => Unmatched::Refuse(already_used()),
            }
        }
        Some(d) if now >= d.expires_at => Unmatched::Refuse(Error::oauth(
            ErrorCode::ExpiredToken,
            "the device code has expired",
        )),
        Some(_) => Unmatched::Refuse(Error::invalid_grant(
            "the resource differs from the one requested at start",
        )),
    }
}

fn already_used() -> Error {
    Error::invalid_grant("the device code was already used")
}

/// What the device-code leeway's sealed replies are derived for.
const LEEWAY: &[u8] = b"keyport device code leeway";

#[cfg(test)]
mod tests {
    use super::*;

    fn device(status: Status) -> DeviceAuthorization {
        DeviceAuthorization {
            id: "d".into(),
            client_id: "cli".into(),
            scope: "openid".into(),
            resource: Some("https://api".into()),
            metadata: "{}".into(),
            ip: None,
            created_at: 0,
            expires_at: 900,
            interval: 5,
            last_poll_ms: None,
            status,
            user_id: None,
            workspace_id: None,
            role: None,
            granted_scope: None,
            auth_time: None,
            redeemed_ms: Some(100_000),
            sealed_tokens: Some("sealed".into()),
        }
    }

    fn code(e: &Error) -> &'static str {
        match e {
            Error::OAuth { code, .. } => code.as_str(),
            _ => "other",
        }
    }

    #[test]
    fn a_poll_is_too_fast_inside_the_interval_less_the_tolerance() {
        let cases = [
            (None, 5, 0, false),
            (Some(0), 5, 1_000, true),
            (Some(0), 5, 4_749, true),
            (Some(0), 5, 4_750, false),
            (Some(0), 10, 9_000, true),
            (Some(0), 10, 10_000, false),
        ];
        for (last, interval, now, expected) in cases {
            assert_eq!(
                polled_too_fast(last, interval, now),
                expected,
                "{last:?} {interval} {now}"
            );
        }
    }

    #[test]
    fn each_status_answers_as_rfc_8628_says() {
        let cases = [
            (Status::Pending, false, "authorization_pending"),
            (Status::Pending, true, "slow_down"),
            (Status::Denied, false, "access_denied"),
            (Status::Redeemed, false, "invalid_grant"),
            (Status::Approved, false, "redeem"),
        ];
        for (status, slowed, expected) in cases {
            let got = match decide_poll(&device(status), slowed) {
                PollDecision::Redeem => "redeem",
                PollDecision::Refuse(e) => code(&e),
            };
            assert_eq!(got, expected, "{status:?} slowed={slowed}");
        }
    }

    #[test]
    fn an_unmatched_poll_is_a_replay_only_inside_the_leeway() {
        let redeemed = device(Status::Redeemed);
        let pending = device(Status::Pending);
        let api = Some("https://api");
        let cases = [
            (None, "cli", None, 100_500, "invalid_grant"),
            (Some(&redeemed), "other", None, 100_500, "invalid_grant"),
            (Some(&redeemed), "cli", None, 100_500, "replay"),
            (Some(&redeemed), "cli", api, 100_500, "replay"),
            (
                Some(&redeemed),
                "cli",
                Some("https://elsewhere"),
                100_500,
                "invalid_grant",
            ),
            (Some(&redeemed), "cli", None, 130_000, "invalid_grant"),
            (Some(&pending), "cli", None, 900_000, "expired_token"),
            (
                Some(&pending),
                "cli",
                Some("https://elsewhere"),
                10_000,
                "invalid_grant",
            ),
        ];
        for (found, client, resource, now_ms, expected) in cases {
            let got = match decide_unmatched(found, client, resource, now_ms, 30_000) {
                Unmatched::Replay(_) => "replay",
                Unmatched::Refuse(e) => code(&e),
            };
            assert_eq!(got, expected, "{client} {resource:?} at {now_ms}");
        }
    }
}
