//! RFC 6749 §6 refresh with rotation: exactly one successor per refresh
//! token, reuse detection that revokes the session (RFC 9700 §4.14), the
//! leeway in which a concurrent retry of the latest rotation gets the same
//! pair, the session's absolute lifetime, and the re-check of the user's
//! standing in the workspace.

use super::audit::Audit;
use super::clients::Client;
use super::password::{DeviceReport, refreshed_device};
use super::scopes::{Role, Scopes};
use super::tokens::{Grant, open_reply, seal_reply};
use super::{Error, ErrorCode, Result};
use crate::crypto::tokens::{Secret, is_well_formed_refresh_token, new_refresh_token};
use crate::service::{Caller, Keyport};
use crate::store::sessions::{RefreshToken, Session};
use crate::store::{self, Writes, directory::User};
use keyport_proto::{GrantType, TokenResponse};

/// How a refresh request ended inside its transaction.
enum Rotation {
    Rotated,
    /// A concurrent retry within the leeway: the same pair again, sealed
    /// under a key only the old refresh token derives.
    Replay(String),
}

impl Keyport {
    /// RFC 6749 §6 with rotation. Exactly one successor per refresh token;
    /// replaying a rotated token revokes the session, except for a retry of
    /// the session's latest rotation within the leeway, which gets the same
    /// pair back.
    ///
    /// A session registered for a device (the password grant's `guid`)
    /// also takes what the device `reports` about itself now.
    pub async fn refresh(
        &self,
        client: &Client,
        presented: &Secret,
        scope: Option<&str>,
        reports: &DeviceReport,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        client.require(GrantType::RefreshToken)?;
        if !is_well_formed_refresh_token(presented.expose(), &client.refresh_token_prefix) {
            return Err(Error::invalid_grant("invalid refresh token"));
        }
        let hash = presented.hash();
        let token = store::sessions::refresh_by_hash(&self.store, &hash).await?;
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let rules = RefreshRules {
            session_max_lifetime: self.config.tokens.session_max_lifetime,
            leeway_secs: self.config.tokens.refresh_leeway,
        };
        let token = match decide(token.as_ref(), &client.id, now, &rules) {
            RefreshDecision::Refuse(why) => return Err(Error::invalid_grant(why)),
            // Fast path of a replay: no new tokens to sign.
            RefreshDecision::Settle => return self.settle_replay(presented, hash, caller).await,
            RefreshDecision::Rotate => token.expect("a token to rotate was read"),
        };
        let (session, user) = self.recheck_membership(&token, caller).await?;
        let granted = Scopes::parse(&session.scope).unwrap_or_default();
        let response_scope = narrowed(&granted, scope)?;
        let successor = new_refresh_token(&client.refresh_token_prefix);
        let successor_hash = successor.hash();
        let minted = self.mint(
            client,
            Grant {
                session: session.clone(),
                refresh: Some(successor),
                user: user.clone(),
                id_token: self.config.tokens.id_token_on_refresh,
                nonce: None,
                scope: response_scope,
            },
            caller,
        )?;
        let (response, opaque) = (minted.response, minted.opaque);
        let device = refreshed_device(response.guid.as_deref(), reports);
        let leeway = self.config.tokens.refresh_leeway;
        // With no leeway there is nothing to hand back, so nothing is kept.
        let sealed = (leeway > 0).then(|| seal_reply(presented, LEEWAY, &hash, &response));
        let successor_expires = self.refresh_expiry(now, session.created_at);
        let (caller_owned, old_hash) = (caller.clone(), hash.clone());
        let (session_id, client_id) = (session.id.clone(), session.client_id.clone());
        let outcome = self
            .store
            .write_either(Writes::Many, move |mut db| {
                Box::pin(async move {
                    let rotated = store::sessions::rotate(
                        db.reborrow(),
                        &old_hash,
                        &successor_hash,
                        sealed.as_deref(),
                        now_ms,
                    )
                    .await?;
                    if rotated {
                        store::sessions::insert_refresh(
                            db.reborrow(),
                            &successor_hash,
                            &session.id,
                            now,
                            successor_expires,
                        )
                        .await?;
                        store::sessions::touch(
                            db.reborrow(),
                            &session.id,
                            now,
                            &session.scope,
                            session.role.map(Role::as_str),
                        )
                        .await?;
                        if let Some(record) = &opaque {
                            store::sessions::insert_opaque(db.reborrow(), record).await?;
                        }
                        if let Some(device) = &device {
                            store::two_step::update_device(db.reborrow(), device, now).await?;
                        }
                        return Ok(Ok(Rotation::Rotated));
                    }
                    replay_or_revoke(db, &old_hash, now_ms, leeway, &caller_owned).await
                })
            })
            .await??;
        match outcome {
            Rotation::Rotated => {
                // The rotation above is what the client is told of; its
                // audit row joins the queue (a crash may lose the last
                // moment's rows, never a rotation).
                Audit::new("token.refresh", "success")
                    .actor(user.as_ref().map(|u| u.email.as_str()))
                    .client(&client_id)
                    .session(&session_id)
                    .record_detached(&self.store, now * 1000, caller)
                    .await;
                Ok(response)
            }
            Rotation::Replay(sealed) => open_replay(presented, &hash, &sealed),
        }
    }

    /// When a refresh token minted `now` for a session created at
    /// `session_created` expires: its own lifetime, but never past the
    /// session's absolute lifetime, which no refresh extends.
    pub(crate) fn refresh_expiry(&self, now: i64, session_created: i64) -> i64 {
        let tokens = &self.config.tokens;
        (now + tokens.refresh_token_ttl).min(session_created + tokens.session_max_lifetime)
    }

    async fn settle_replay(
        &self,
        presented: &Secret,
        hash: String,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        let now_ms = self.clock.now_ms();
        let leeway = self.config.tokens.refresh_leeway;
        let (caller, old_hash) = (caller.clone(), hash.clone());
        let outcome = self
            .store
            .write_either(Writes::Many, move |db| {
                Box::pin(
                    async move { replay_or_revoke(db, &old_hash, now_ms, leeway, &caller).await },
                )
            })
            .await??;
        match outcome {
            Rotation::Replay(sealed) => open_replay(presented, &hash, &sealed),
            Rotation::Rotated => Err(Error::internal("a replay cannot rotate")),
        }
    }

    /// Refresh re-checks the user's standing: scopes the current role no
    /// longer allows are dropped, and a removed member's session ends.
    async fn recheck_membership(
        &self,
        token: &RefreshToken,
        caller: &Caller,
    ) -> Result<(Session, Option<User>)> {
        let mut session = token.session.clone();
        let Some(user_id) = session.user_id.clone() else {
            return Ok((session, None));
        };
        let now = self.clock.now();
        let workspace = session.workspace_id.as_deref();
        let found = store::directory::user_and_role(&self.store, &user_id, workspace).await?;
        // Only a disabled or removed account ends here: a sign-in lockout
        // blocks new sign-ins, never sessions already issued.
        let role = match (&found, workspace) {
            (Some((user, _)), _) if user.disabled => None,
            (None, _) => None,
            (Some((_, role)), Some(_)) => role.clone(),
            (Some(_), None) => Some(String::new()),
        };
        let user = found.map(|(user, _)| user);
        let Some(role) = role else {
            let (sid, caller) = (session.id.clone(), caller.clone());
            self.store
                .write(move |c| {
                    Box::pin(async move {
                        if store::sessions::revoke(&mut *c, &sid, "membership", now).await? {
                            Audit::new("session.revoke", "membership_ended")
                                .session(&sid)
                                .record(c, now * 1000, &caller)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await?;
            return Err(Error::invalid_grant("the session has ended"));
        };
        if session.workspace_id.is_some() {
            let role = Role::parse(&role);
            let (granted, _) = self
                .catalogue
                .filter(&Scopes::parse(&session.scope).unwrap_or_default(), role);
            session.scope = granted.to_scope_string();
            session.role = role;
        }
        Ok((session, user))
    }
}

/// Inside the write transaction: a rotated token was presented again.
async fn replay_or_revoke(
    mut db: store::reads::Source<'_>,
    hash: &str,
    now_ms: i64,
    leeway: i64,
    caller: &Caller,
) -> store::Result<Result<Rotation>> {
    let now = now_ms.div_euclid(1000);
    let token = store::sessions::refresh_by_hash(db.reborrow(), hash).await?;
    let token = match decide_replay(token.as_ref(), now_ms, leeway) {
        ReplayDecision::Refuse(why) => return Ok(Err(Error::invalid_grant(why))),
        ReplayDecision::SameReply(sealed) => return Ok(Ok(Rotation::Replay(sealed))),
        ReplayDecision::RevokeSession => token.expect("a token to revoke was read"),
    };
    let sid = token.session.id.clone();
    store::sessions::revoke(db.reborrow(), &sid, "refresh_token_reuse", now).await?;
    crate::telemetry::record(crate::telemetry::SecurityEvent::RefreshReuse);
    Audit::new("token.reuse_detected", "session_revoked")
        .client(&token.session.client_id)
        .session(&sid)
        .actor(token.session.user_id.as_deref())
        .record(db, now * 1000, caller)
        .await?;
    Ok(Err(Error::invalid_grant(
        "the refresh token was already used; the session is revoked",
    )))
}

/// The settings the refresh rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRules {
    /// Seconds a session lives from its creation, whatever its refreshes.
    pub session_max_lifetime: i64,
    /// Seconds in which a retry of the latest rotation gets the same pair.
    pub leeway_secs: i64,
}

/// What to do with a presented refresh token, before anything is signed.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Mint a successor; the store rotates the token conditionally, and a
    /// lost race is settled as a replay.
    Rotate,
    /// Already rotated: a retry within the leeway or a reuse, settled in
    /// one transaction by [`decide_replay`].
    Settle,
    Refuse(&'static str),
}

/// The rule for a presented refresh token.
pub fn decide(
    token: Option<&RefreshToken>,
    client_id: &str,
    now: i64,
    rules: &RefreshRules,
) -> RefreshDecision {
    let Some(token) = token else {
        return RefreshDecision::Refuse("invalid refresh token");
    };
    if token.session.client_id != client_id {
        return RefreshDecision::Refuse("the refresh token belongs to another client");
    }
    if token.rotated_at.is_some() {
        return RefreshDecision::Settle;
    }
    let session_end = token.session.created_at + rules.session_max_lifetime;
    if token.session.revoked_at.is_some() || token.expires_at <= now || session_end <= now {
        return RefreshDecision::Refuse("the session has ended");
    }
    RefreshDecision::Rotate
}

/// What a rotated token presented again gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayDecision {
    /// A retry of the session's latest rotation within the leeway: the
    /// sealed pair, which only the presented token opens.
    SameReply(String),
    /// Any other reuse: the token was stolen or the client is broken, so
    /// the session ends (RFC 9700 §4.14.2).
    RevokeSession,
    Refuse(&'static str),
}

/// The rule for a rotated token presented again, read inside the
/// transaction that carries it out.
pub fn decide_replay(
    token: Option<&RefreshToken>,
    now_ms: i64,
    leeway_secs: i64,
) -> ReplayDecision {
    let Some(token) = token else {
        return ReplayDecision::Refuse("invalid refresh token");
    };
    if token.session.revoked_at.is_some() {
        return ReplayDecision::Refuse("the session has ended");
    }
    // A rotation by an instance on the previous release has no milliseconds.
    let rotated_ms = token.rotated_ms.or(token.rotated_at.map(|at| at * 1000));
    let within_leeway = rotated_ms.is_some_and(|at| now_ms - at < leeway_secs * 1000);
    let latest = within_leeway && token.successor_rotated_at.is_none();
    match &token.sealed_successor {
        Some(sealed) if latest => ReplayDecision::SameReply(sealed.clone()),
        _ => ReplayDecision::RevokeSession,
    }
}

/// RFC 6749 §6: a request may narrow the granted scope, never widen it.
pub fn narrowed(granted: &Scopes, asked: Option<&str>) -> Result<Scopes> {
    match asked.map(Scopes::parse) {
        None => Ok(granted.clone()),
        Some(None) => Err(Error::oauth(ErrorCode::InvalidScope, "malformed scope")),
        Some(Some(asked)) if asked.is_empty() => Ok(granted.clone()),
        Some(Some(asked)) if asked.is_subset(granted) => Ok(asked),
        Some(Some(_)) => Err(Error::oauth(
            ErrorCode::InvalidScope,
            "the scope is wider than the grant",
        )),
    }
}

/// What the refresh leeway's sealed replies are derived for.
const LEEWAY: &[u8] = b"keyport refresh leeway";

fn open_replay(presented: &Secret, hash: &str, sealed: &str) -> Result<TokenResponse> {
    open_reply(presented, LEEWAY, hash, sealed)
        .unwrap_or_else(|| Err(Error::invalid_grant("invalid refresh token")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: RefreshRules = RefreshRules {
        session_max_lifetime: 1000,
        leeway_secs: 30,
    };

    fn token() -> RefreshToken {
        RefreshToken {
            hash: "h".into(),
            session: Session {
                id: "s".into(),
                user_id: Some("u".into()),
                client_id: "cli".into(),
                workspace_id: None,
                role: None,
                scope: "openid".into(),
                resource: None,
                label: None,
                metadata: "{}".into(),
                ip: None,
                grant_type: "refresh_token".into(),
                auth_time: None,
                created_at: 0,
                last_used_at: 0,
                revoked_at: None,
            },
            expires_at: 500,
            rotated_at: None,
            rotated_ms: None,
            successor_hash: None,
            sealed_successor: None,
            successor_rotated_at: None,
        }
    }

    #[test]
    fn a_presented_token_rotates_settles_or_is_refused() {
        let live = token();
        let mut rotated = token();
        rotated.rotated_at = Some(10);
        let mut revoked = token();
        revoked.session.revoked_at = Some(5);
        let mut old_session = token();
        old_session.expires_at = 5000;
        let cases = [
            (
                None,
                "cli",
                10,
                RefreshDecision::Refuse("invalid refresh token"),
            ),
            (
                Some(&live),
                "other",
                10,
                RefreshDecision::Refuse("the refresh token belongs to another client"),
            ),
            (Some(&live), "cli", 10, RefreshDecision::Rotate),
            (Some(&rotated), "cli", 10, RefreshDecision::Settle),
            (
                Some(&revoked),
                "cli",
                10,
                RefreshDecision::Refuse("the session has ended"),
            ),
            (
                Some(&live),
                "cli",
                500,
                RefreshDecision::Refuse("the session has ended"),
            ),
            (Some(&old_session), "cli", 999, RefreshDecision::Rotate),
            (
                Some(&old_session),
                "cli",
                1000,
                RefreshDecision::Refuse("the session has ended"),
            ),
        ];
        for (t, client, now, expected) in cases {
            assert_eq!(
                decide(t, client, now, &RULES),
                expected,
                "{client} at {now}"
            );
        }
    }

    #[test]
    fn only_a_retry_of_the_latest_rotation_inside_the_leeway_gets_the_same_pair() {
        let mut latest = token();
        latest.rotated_at = Some(100);
        latest.rotated_ms = Some(100_000);
        latest.sealed_successor = Some("sealed".into());
        let mut superseded = latest.clone();
        superseded.successor_rotated_at = Some(101);
        let mut unsealed = latest.clone();
        unsealed.sealed_successor = None;
        let mut revoked = latest.clone();
        revoked.session.revoked_at = Some(101);
        let mut old_release = latest.clone();
        old_release.rotated_ms = None;
        let same = ReplayDecision::SameReply("sealed".into());
        let cases = [
            (Some(&latest), 100_500, same.clone()),
            (Some(&latest), 129_999, same.clone()),
            (Some(&latest), 130_000, ReplayDecision::RevokeSession),
            (Some(&superseded), 100_500, ReplayDecision::RevokeSession),
            (Some(&unsealed), 100_500, ReplayDecision::RevokeSession),
            (
                Some(&revoked),
                100_500,
                ReplayDecision::Refuse("the session has ended"),
            ),
            (Some(&old_release), 100_500, same.clone()),
            (
                None,
                100_500,
                ReplayDecision::Refuse("invalid refresh token"),
            ),
        ];
        for (t, now_ms, expected) in cases {
            assert_eq!(
                decide_replay(t, now_ms, RULES.leeway_secs),
                expected,
                "at {now_ms}"
            );
        }
    }

    #[test]
    fn a_request_may_narrow_the_scope_but_not_widen_it() {
        let granted = Scopes::parse("openid offline_access agents:read").unwrap();
        let cases = [
            (None, Some("agents:read offline_access openid")),
            (Some(""), Some("agents:read offline_access openid")),
            (Some("openid"), Some("openid")),
            (Some("openid audit:read"), None),
            (Some("bad\u{1}scope"), None),
        ];
        for (asked, expected) in cases {
            let got = narrowed(&granted, asked).ok().map(|s| s.to_scope_string());
            assert_eq!(got.as_deref(), expected, "{asked:?}");
        }
    }
}
