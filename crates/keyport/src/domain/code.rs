//! RFC 6749 §4.1.3 code exchange with RFC 7636 verification. A code gets
//! one redemption attempt: a wrong verifier or redirect URI burns it, and
//! presenting a redeemed code again revokes what it issued (§4.1.2,
//! RFC 9700 §4.2.4).

use super::audit::Audit;
use super::clients::Client;
use super::scopes::Scopes;
use super::tokens::Grant;
use super::{Error, ErrorCode, Result, pkce};
use crate::crypto::tokens::{AuthorizationCode, CodeVerifier, Secret};
use crate::crypto::{self};
use crate::service::{Caller, Keyport};
use crate::store::codes::{CodeState, StoredCode};
use crate::store::sessions::Session;
use crate::store::{self};
use keyport_proto::{GrantType, TokenResponse};

/// What the token endpoint presented with `grant_type=authorization_code`.
#[derive(Debug)]
pub struct CodeExchange {
    pub code: AuthorizationCode,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<CodeVerifier>,
    /// RFC 8707 §2.2: a resource named again at the token endpoint must be
    /// the one authorized.
    pub resource: Option<String>,
}

/// What to do with a presented code.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeDecision {
    /// Mint tokens, mark the code redeemed, store the session.
    Redeem,
    /// The one attempt failed: mark the code burned, then refuse.
    Burn(&'static str),
    /// A redeemed code came back: revoke the session it created.
    RevokeIssued(Option<String>),
    /// Refuse, changing nothing.
    Refuse(&'static str),
    /// A resource other than the authorized one (`invalid_target`); the
    /// code stays usable.
    WrongTarget,
}

/// The rule, from what was read to what must happen.
pub fn decide(
    code: Option<&StoredCode>,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    resource: Option<&str>,
    now: i64,
) -> CodeDecision {
    let Some(code) = code else {
        return CodeDecision::Refuse("unknown authorization code");
    };
    // Another client's code is refused without using it up, so one client
    // cannot burn another's codes.
    if code.client_id != client_id {
        return CodeDecision::Refuse("the code was issued to another client");
    }
    match code.state {
        CodeState::Redeemed => return CodeDecision::RevokeIssued(code.session_id.clone()),
        CodeState::Burned => return CodeDecision::Refuse("the code was already used"),
        CodeState::Issued => {}
    }
    if now >= code.expires_at {
        return CodeDecision::Refuse("the authorization code has expired");
    }
    if resource.is_some() && resource != code.resource.as_deref() {
        return CodeDecision::WrongTarget;
    }
    if redirect_uri != Some(code.redirect_uri.as_str()) {
        return CodeDecision::Burn("redirect_uri differs from the authorization request");
    }
    match (&code.code_challenge, verifier) {
        (Some(challenge), Some(v)) if pkce::verifier_matches(challenge, v) => CodeDecision::Redeem,
        (Some(_), Some(_)) => CodeDecision::Burn("the code_verifier does not match"),
        (Some(_), None) => CodeDecision::Burn("code_verifier is required"),
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge
        // is a PKCE downgrade attempt.
        (None, Some(_)) => CodeDecision::Burn("code_verifier sent for a code without a challenge"),
        (None, None) => CodeDecision::Redeem,
    }
}

impl Keyport {
    /// RFC 6749 §4.1.3: exchanges a code for tokens.
    pub async fn exchange_code(
        &self,
        client: &Client,
        exchange: CodeExchange,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        client.require(GrantType::AuthorizationCode)?;
        let code_hash = exchange.code.hash();
        let stored = store::codes::by_hash(self.store.pool(), &code_hash).await?;
        let now = self.clock.now();
        let decision = decide(
            stored.as_ref(),
            &client.id,
            exchange.redirect_uri.as_deref(),
            exchange.code_verifier.as_ref().map(CodeVerifier::expose),
            exchange.resource.as_deref(),
            now,
        );
        match decision {
            CodeDecision::Refuse(why) => Err(Error::invalid_grant(why)),
            CodeDecision::WrongTarget => Err(Error::oauth(
                ErrorCode::InvalidTarget,
                "the resource differs from the one authorized",
            )),
            CodeDecision::Burn(why) => {
                let hash = code_hash.clone();
                self.store
                    .write_one(move |c| Box::pin(async move { store::codes::burn(c, &hash).await }))
                    .await?;
                Err(Error::invalid_grant(why))
            }
            CodeDecision::RevokeIssued(session) => {
                self.revoke_reused_code(client, session, caller).await?;
                Err(Error::invalid_grant(
                    "the code was already used; the tokens it issued are revoked",
                ))
            }
            CodeDecision::Redeem => {
                let code = stored.expect("a redeemable code was read");
                self.redeem_code(client, code, caller).await
            }
        }
    }

    async fn redeem_code(
        &self,
        client: &Client,
        code: StoredCode,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        let now = self.clock.now();
        let user = store::directory::user_by_id(self.store.pool(), &code.user_id).await?;
        let scope = Scopes::parse(&code.scope).unwrap_or_default();
        let session = Session {
            id: crypto::random_id(),
            user_id: Some(code.user_id.clone()),
            client_id: client.id.to_string(),
            workspace_id: code.workspace_id.clone(),
            role: code.role,
            scope: code.scope.clone(),
            resource: code.resource.clone(),
            label: Some(client.name.clone()),
            metadata: "{}".into(),
            ip: caller.ip_string(),
            grant_type: GrantType::AuthorizationCode.as_str().into(),
            auth_time: code.auth_time,
            created_at: now,
            last_used_at: now,
            revoked_at: None,
        };
        let refresh = (scope.contains("offline_access") && client.allows(GrantType::RefreshToken))
            .then(|| crate::crypto::tokens::new_refresh_token(&client.refresh_token_prefix));
        let refresh_hash = refresh.as_ref().map(Secret::hash);
        let minted = self.mint(
            client,
            Grant {
                session: session.clone(),
                refresh,
                user: user.clone(),
                id_token: true,
                nonce: code.nonce.clone(),
                scope,
            },
            caller,
        )?;
        let refresh_expires = self.refresh_expiry(now, now);
        let (caller, email) = (caller.clone(), user.map(|u| u.email));
        let opaque = minted.opaque.clone();
        let outcome = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    let user = store::directory::user_by_id(&mut *c, &code.user_id).await?;
                    let member = match &code.workspace_id {
                        Some(ws) => store::directory::role_in(&mut *c, &code.user_id, ws)
                            .await?
                            .is_some(),
                        None => true,
                    };
                    if user.is_none_or(|u| u.disabled) || !member {
                        return Ok(Err(Error::invalid_grant(
                            "the approving account can no longer sign in",
                        )));
                    }
                    if !store::codes::redeem(&mut *c, &code.code_hash, &session.id, now).await? {
                        // Another exchange won the race: this is a reuse too,
                        // so what the winner got is revoked as well.
                        let won = store::codes::by_hash(&mut *c, &code.code_hash).await?;
                        if let Some(sid) = won.and_then(|w| w.session_id) {
                            revoke_for_reuse(c, &session.client_id, &sid, now, &caller).await?;
                        }
                        return Ok(Err(Error::invalid_grant("the code was already used")));
                    }
                    let refresh = refresh_hash.as_deref().map(|h| (h, refresh_expires));
                    store::sessions::open(&mut *c, &session, refresh, opaque.as_ref()).await?;
                    Audit::new("token.issue", "success")
                        .actor(email.as_deref())
                        .client(&session.client_id)
                        .session(&session.id)
                        .detail(serde_json::json!({
                            "grant_type": GrantType::AuthorizationCode.as_str(),
                            "scope": session.scope,
                        }))
                        .record(c, now * 1000, &caller)
                        .await?;
                    Ok(Ok(()))
                })
            })
            .await?;
        outcome.map(|()| minted.response)
    }

    async fn revoke_reused_code(
        &self,
        client: &Client,
        session: Option<String>,
        caller: &Caller,
    ) -> Result<()> {
        let now = self.clock.now();
        let (caller, client_id) = (caller.clone(), client.id.clone());
        let Some(sid) = session else {
            return Ok(());
        };
        self.store
            .write(move |c| {
                Box::pin(async move { revoke_for_reuse(c, &client_id, &sid, now, &caller).await })
            })
            .await?;
        Ok(())
    }
}

/// Inside a write: a redeemed code came back, so the session it created
/// ends (RFC 6749 §4.1.2), audited and counted.
async fn revoke_for_reuse(
    c: &mut store::Conn,
    client_id: &str,
    session_id: &str,
    now: i64,
    caller: &Caller,
) -> store::Result<()> {
    if store::sessions::revoke(&mut *c, session_id, "code_reuse", now).await? {
        crate::telemetry::record(crate::telemetry::SecurityEvent::CodeReuse);
        Audit::new("token.code_reuse_detected", "session_revoked")
            .client(client_id)
            .session(session_id)
            .record(c, now * 1000, caller)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const URI: &str = "https://app.example.com/cb";

    fn code(state: CodeState, challenge: Option<&str>) -> StoredCode {
        StoredCode {
            code_hash: "h".into(),
            client_id: "app".into(),
            user_id: "u".into(),
            workspace_id: None,
            role: None,
            scope: "openid".into(),
            resource: None,
            redirect_uri: URI.into(),
            code_challenge: challenge.map(str::to_string),
            nonce: None,
            auth_time: None,
            ip: None,
            created_at: 0,
            expires_at: 60,
            state,
            session_id: Some("s".into()),
        }
    }

    #[test]
    fn one_attempt_per_code() {
        use CodeDecision::*;
        let pkce = code(CodeState::Issued, Some(CHALLENGE));
        let plain = code(CodeState::Issued, None);
        let redeemed = code(CodeState::Redeemed, Some(CHALLENGE));
        let burned = code(CodeState::Burned, Some(CHALLENGE));
        let wrong = "x".repeat(43);
        type Case<'a> = (
            Option<&'a StoredCode>,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            i64,
            CodeDecision,
        );
        let cases: Vec<Case> = vec![
            (Some(&pkce), "app", Some(URI), Some(VERIFIER), 10, Redeem),
            (Some(&plain), "app", Some(URI), None, 10, Redeem),
            (
                None,
                "app",
                Some(URI),
                Some(VERIFIER),
                10,
                Refuse("unknown authorization code"),
            ),
            (
                Some(&pkce),
                "other",
                Some(URI),
                Some(VERIFIER),
                10,
                Refuse("the code was issued to another client"),
            ),
            (
                Some(&pkce),
                "app",
                Some(URI),
                Some(VERIFIER),
                60,
                Refuse("the authorization code has expired"),
            ),
            (
                Some(&pkce),
                "app",
                Some(URI),
                Some(&wrong),
                10,
                Burn("the code_verifier does not match"),
            ),
            (
                Some(&pkce),
                "app",
                Some(URI),
                None,
                10,
                Burn("code_verifier is required"),
            ),
            (
                Some(&plain),
                "app",
                Some(URI),
                Some(VERIFIER),
                10,
                Burn("code_verifier sent for a code without a challenge"),
            ),
            (
                Some(&pkce),
                "app",
                Some("https://app.example.com/cb/"),
                Some(VERIFIER),
                10,
                Burn("redirect_uri differs from the authorization request"),
            ),
            (
                Some(&pkce),
                "app",
                None,
                Some(VERIFIER),
                10,
                Burn("redirect_uri differs from the authorization request"),
            ),
            (
                Some(&redeemed),
                "app",
                Some(URI),
                Some(VERIFIER),
                10,
                RevokeIssued(Some("s".into())),
            ),
            (
                Some(&burned),
                "app",
                Some(URI),
                Some(VERIFIER),
                10,
                Refuse("the code was already used"),
            ),
        ];
        assert_eq!(
            decide(
                Some(&pkce),
                "app",
                Some(URI),
                Some(VERIFIER),
                Some("https://other"),
                10
            ),
            WrongTarget
        );
        for (stored, client, uri, verifier, now, expected) in cases {
            assert_eq!(
                decide(stored, client, uri, verifier, None, now),
                expected,
                "{client} {uri:?} {verifier:?} {now}"
            );
        }
    }
}
