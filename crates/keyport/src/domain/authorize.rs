//! RFC 6749 §4.1.1 authorization requests with RFC 7636 PKCE, OIDC `nonce`
//! and `prompt`, RFC 8707 `resource`, and the RFC 9207 `iss` on every
//! response. A request is checked in two stages: the client and its
//! redirect URI first (a failure there is shown on a page, never sent
//! anywhere, RFC 6749 §4.1.2.1), then everything else (a failure there goes
//! back to the client's redirect URI with `state` and `iss`).

use serde::Deserialize;

use super::audit::Audit;
use super::clients::Client;
use super::scopes::{Role, Scopes};
use super::{Error, ErrorCode, Result, pkce, redirect};
use crate::crypto::tokens::Secret;
use crate::crypto::{self, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store::codes::{CodeState, StoredCode};
use crate::store::directory::{User, Workspace};
use crate::store::{self};
use keyport_proto::GrantType;

/// How long an authorization code lives (RFC 6749 §4.1.2 recommends at
/// most ten minutes; a redirect takes a second).
pub const CODE_TTL: i64 = 60;

/// What a client with self-asserted redirect URIs is told of a malformed
/// request, on a page rather than at its redirect URI.
const UNVOUCHED_REFUSAL: &str = "The application sent a request Keyport cannot accept (check response_type, PKCE, scope and resource).";

/// Longest `state` and `nonce` accepted: they travel back in URLs and tokens.
const MAX_ECHOED: usize = 1024;

/// The query of `GET /oauth/authorize`, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    pub resource: Option<String>,
}

/// OIDC Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `none`: answer without showing anything, or fail.
    pub none: bool,
    /// `login`: sign the user in again even with a live browser session.
    pub login: bool,
    /// `consent`: ask even a first-party client's user.
    pub consent: bool,
}

impl Prompt {
    pub fn parse(text: Option<&str>) -> Option<Self> {
        let mut prompt = Prompt::default();
        for value in text.unwrap_or("").split_whitespace() {
            match value {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                // select_account: there is one account per browser here.
                "select_account" => {}
                _ => return None,
            }
        }
        // §3.1.2.1: `none` with any other value is an error.
        (!prompt.none || !(prompt.login || prompt.consent)).then_some(prompt)
    }
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scope: Scopes,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    pub resource: Option<String>,
}

/// A refused authorization request.
#[derive(Debug)]
pub enum Refusal {
    /// The client or redirect URI cannot be trusted: an error page, never a
    /// redirect (RFC 6749 §4.1.2.1, RFC 9700 §4.11).
    Page(&'static str),
    /// Everything else goes back to the client.
    Redirect(Redirect),
}

/// A response sent back to the client's redirect URI.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Code(Secret),
    Error(ErrorCode, String),
}

impl Redirect {
    pub fn error(request: &AuthorizeRequest, code: ErrorCode, description: &str) -> Self {
        Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            outcome: Outcome::Error(code, description.to_string()),
        }
    }

    /// The URL the browser is sent to: the registered URI with `code` (or
    /// `error`), `state` and RFC 9207 `iss` added to its query.
    pub fn url(&self, issuer: &str) -> String {
        let Ok(mut url) = url::Url::parse(&self.redirect_uri) else {
            return self.redirect_uri.clone();
        };
        {
            let mut query = url.query_pairs_mut();
            match &self.outcome {
                Outcome::Code(code) => {
                    query.append_pair("code", code.expose());
                }
                Outcome::Error(code, description) => {
                    query.append_pair("error", code.as_str());
                    query.append_pair("error_description", description);
                }
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", issuer);
        }
        url.into()
    }
}

/// Stage one: the client and the redirect URI.
pub fn check_redirect(client: Option<&Client>, p: &AuthorizeParams) -> Result<String, Refusal> {
    let Some(client) = client else {
        return Err(Refusal::Page("The application is not registered here."));
    };
    let Some(uri) = p.redirect_uri.as_deref() else {
        return Err(Refusal::Page("The request names no redirect URI."));
    };
    if !redirect::matches(&client.redirect_uris, uri) {
        return Err(Refusal::Page(
            "The redirect URI is not registered for this application.",
        ));
    }
    if p.state.as_ref().is_some_and(|s| s.len() > MAX_ECHOED) {
        return Err(Refusal::Page("The request's state is too long."));
    }
    Ok(uri.to_string())
}

/// Stage two, for a request whose redirect URI is trusted: what goes back
/// to the client as an error, in RFC 6749 §4.1.2.1's order.
pub fn check_request(
    client: &Client,
    redirect_uri: String,
    p: &AuthorizeParams,
    scope: impl FnOnce() -> Result<Scopes>,
    resource: impl FnOnce() -> Result<Option<String>>,
) -> Result<AuthorizeRequest, Redirect> {
    let refuse = |code: ErrorCode, description: &str| Redirect {
        redirect_uri: redirect_uri.clone(),
        state: p.state.clone(),
        outcome: Outcome::Error(code, description.to_string()),
    };
    match p.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(refuse(
                ErrorCode::InvalidRequest,
                "response_type is required",
            ));
        }
        Some(_) => {
            return Err(refuse(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(refuse(
            ErrorCode::UnauthorizedClient,
            "the authorization code grant is not enabled for this client",
        ));
    }
    let challenge = pkce::parse_challenge(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )
    .map_err(|why| refuse(ErrorCode::InvalidRequest, why))?;
    if challenge.is_none() && !client.confidential {
        return Err(refuse(
            ErrorCode::InvalidRequest,
            "a public client must send code_challenge with code_challenge_method=S256",
        ));
    }
    let prompt = Prompt::parse(p.prompt.as_deref())
        .ok_or_else(|| refuse(ErrorCode::InvalidRequest, "unsupported prompt"))?;
    if p.nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHOED) {
        return Err(refuse(ErrorCode::InvalidRequest, "nonce is too long"));
    }
    let scope = scope().map_err(|e| match e {
        Error::OAuth { code, description } => refuse(code, &description),
        _ => refuse(ErrorCode::ServerError, "internal error"),
    })?;
    let resource = resource().map_err(|e| match e {
        Error::OAuth { code, description } => refuse(code, &description),
        _ => refuse(ErrorCode::ServerError, "internal error"),
    })?;
    Ok(AuthorizeRequest {
        client: client.clone(),
        redirect_uri,
        state: p.state.clone(),
        scope,
        code_challenge: challenge,
        nonce: p.nonce.clone(),
        prompt,
        resource,
    })
}

impl AuthorizeRequest {
    /// Refuses this request before the user has acted (`prompt=none`).
    pub fn refuse_unattended(&self, code: ErrorCode, why: &'static str) -> Refusal {
        unattended(&self.client, Redirect::error(self, code, why), why)
    }
}

/// A refusal nobody has seen yet goes back to the client only when the
/// operator vouched for its redirect URIs. A metadata document's or an RFC
/// 7591 registration's URIs are whatever anyone wrote: redirecting there
/// unasked would make Keyport an open redirector (RFC 9700 §4.11.2), so
/// those get `page` instead.
fn unattended(client: &Client, redirect: Redirect, page: &'static str) -> Refusal {
    match client.redirects_vouched_for() {
        true => Refusal::Redirect(redirect),
        false => Refusal::Page(page),
    }
}

/// Which workspace an approval is for.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkspaceChoice<'a> {
    /// The user belongs to no workspace: tokens carry none.
    NoWorkspace,
    Chosen(&'a Workspace, Option<Role>),
    /// Several, and none named: the user must pick.
    Ask,
}

/// The workspace named by `slug`, or the only one; an unknown slug is an
/// error (the user is not a member there).
pub fn choose_workspace<'a>(
    memberships: &'a [(Workspace, String)],
    slug: Option<&str>,
) -> Result<WorkspaceChoice<'a>> {
    let chosen = match slug {
        Some(slug) => memberships
            .iter()
            .find(|(ws, _)| ws.slug == slug)
            .ok_or_else(|| Error::invalid_request("you are not a member of that workspace"))?,
        None => match memberships {
            [] => return Ok(WorkspaceChoice::NoWorkspace),
            [only] => only,
            _ => return Ok(WorkspaceChoice::Ask),
        },
    };
    Ok(WorkspaceChoice::Chosen(&chosen.0, Role::parse(&chosen.1)))
}

impl Keyport {
    /// Checks an authorization request: first the client and redirect URI,
    /// then the rest.
    pub async fn authorization_request(
        &self,
        p: &AuthorizeParams,
    ) -> Result<Result<AuthorizeRequest, Refusal>> {
        let client = match p.client_id.as_deref() {
            Some(id) => self.client(id).await?,
            None => None,
        };
        let redirect_uri = match check_redirect(client.as_deref(), p) {
            Ok(uri) => uri,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let client = client.expect("check_redirect refuses a missing client");
        let checked = check_request(
            &client,
            redirect_uri,
            p,
            || client.requested_scopes(p.scope.as_deref()),
            || client.check_resource(p.resource.as_deref()),
        );
        Ok(checked.map_err(|redirect| unattended(&client, redirect, UNVOUCHED_REFUSAL)))
    }

    /// The workspaces a user belongs to, with their role in each.
    pub async fn memberships(&self, user: &User) -> Result<Vec<(Workspace, String)>> {
        Ok(store::directory::memberships_of(self.store.pool(), &user.id).await?)
    }

    /// The user approved: a one-time code for the scopes their role allows
    /// in the chosen workspace, bound to the client, the redirect URI, the
    /// PKCE challenge and the nonce.
    pub async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        user: &User,
        workspace: Option<&str>,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<Redirect> {
        let memberships = self.memberships(user).await?;
        let (workspace, role) = match choose_workspace(&memberships, workspace)? {
            WorkspaceChoice::NoWorkspace => (None, None),
            WorkspaceChoice::Chosen(ws, role) => (Some(ws.slug.clone()), role),
            WorkspaceChoice::Ask => return Err(Error::invalid_request("choose a workspace")),
        };
        let (granted, _) = self.catalogue.filter(&request.scope, role);
        let code = Secret::new(format!("kp_ac_{}", crypto::random_token()));
        let now = self.clock.now();
        let stored = StoredCode {
            code_hash: hash_secret(code.expose()),
            client_id: request.client.id.to_string(),
            user_id: user.id.clone(),
            workspace_id: workspace,
            role,
            scope: granted.to_scope_string(),
            resource: request.resource.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time: Some(auth_time),
            ip: caller.ip_string(),
            created_at: now,
            expires_at: now + CODE_TTL,
            state: CodeState::Issued,
            session_id: None,
        };
        let (caller, email) = (caller.clone(), user.email.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::codes::insert(&mut *c, &stored).await?;
                    Audit::new("authorize.approve", "success")
                        .actor(Some(&email))
                        .client(&stored.client_id)
                        .detail(serde_json::json!({
                            "workspace": stored.workspace_id, "role": stored.role,
                            "scope": stored.scope, "redirect_uri": stored.redirect_uri,
                        }))
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await?;
        Ok(Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            outcome: Outcome::Code(code),
        })
    }

    /// The user said no: audited, and `access_denied` goes back.
    pub async fn deny_authorization(
        &self,
        request: &AuthorizeRequest,
        user: &User,
        caller: &Caller,
    ) -> Result<Redirect> {
        let now_ms = self.clock.now_ms();
        let (caller, email, client_id) = (
            caller.clone(),
            user.email.clone(),
            request.client.id.clone(),
        );
        self.store
            .write(move |c| {
                Box::pin(async move {
                    Audit::new("authorize.deny", "success")
                        .actor(Some(&email))
                        .client(&client_id)
                        .record(c, now_ms, &caller)
                        .await
                })
            })
            .await?;
        Ok(Redirect::error(
            request,
            ErrorCode::AccessDenied,
            "the user denied the request",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(confidential: bool) -> Client {
        let mut c = Client::new(
            "app",
            "App",
            confidential,
            BTreeSet::from([GrantType::AuthorizationCode]),
        );
        c.redirect_uris = vec!["https://app.example.com/cb".into()];
        c
    }

    fn params(pairs: &[(&str, &str)]) -> AuthorizeParams {
        let mut p = AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("app".into()),
            redirect_uri: Some("https://app.example.com/cb".into()),
            state: Some("s1".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            ..AuthorizeParams::default()
        };
        for (key, value) in pairs {
            let value = (!value.is_empty()).then(|| value.to_string());
            match *key {
                "response_type" => p.response_type = value,
                "redirect_uri" => p.redirect_uri = value,
                "code_challenge" => p.code_challenge = value,
                "code_challenge_method" => p.code_challenge_method = value,
                "prompt" => p.prompt = value,
                _ => unreachable!("{key}"),
            }
        }
        p
    }

    fn outcome(c: &Client, p: &AuthorizeParams) -> Result<(), String> {
        let uri = match check_redirect(Some(c), p) {
            Ok(uri) => uri,
            Err(Refusal::Page(_)) => return Err("page".into()),
            Err(Refusal::Redirect(_)) => unreachable!(),
        };
        check_request(c, uri, p, || Ok(Scopes::default()), || Ok(None))
            .map(|_| ())
            .map_err(|r| match r.outcome {
                Outcome::Error(code, _) => code.as_str().to_string(),
                Outcome::Code(_) => unreachable!(),
            })
    }

    #[test]
    fn each_refusal_is_a_page_or_a_redirect_as_rfc_6749_says() {
        let public = client(false);
        let confidential = client(true);
        type Case<'a> = (&'a Client, Vec<(&'a str, &'a str)>, Result<(), &'a str>);
        let cases: Vec<Case> = vec![
            (&public, vec![], Ok(())),
            (
                &public,
                vec![("redirect_uri", "https://evil.example/cb")],
                Err("page"),
            ),
            (&public, vec![("redirect_uri", "")], Err("page")),
            (
                &public,
                vec![("response_type", "token")],
                Err("unsupported_response_type"),
            ),
            (&public, vec![("response_type", "")], Err("invalid_request")),
            (
                &public,
                vec![("code_challenge", ""), ("code_challenge_method", "")],
                Err("invalid_request"),
            ),
            (
                &confidential,
                vec![("code_challenge", ""), ("code_challenge_method", "")],
                Ok(()),
            ),
            (
                &public,
                vec![("code_challenge_method", "plain")],
                Err("invalid_request"),
            ),
            (
                &public,
                vec![("code_challenge_method", "")],
                Err("invalid_request"),
            ),
            (
                &public,
                vec![("prompt", "none login")],
                Err("invalid_request"),
            ),
            (&public, vec![("prompt", "bogus")], Err("invalid_request")),
            (&public, vec![("prompt", "login consent")], Ok(())),
        ];
        for (c, pairs, expected) in cases {
            let got = outcome(c, &params(&pairs));
            assert_eq!(got, expected.map_err(str::to_string), "{pairs:?}");
        }
    }

    #[test]
    fn a_client_without_the_grant_is_told_so_at_its_redirect_uri() {
        let mut c = client(false);
        c.grants.clear();
        assert_eq!(outcome(&c, &params(&[])), Err("unauthorized_client".into()));
    }

    #[test]
    fn error_redirects_keep_the_registered_query_and_add_state_and_iss() {
        let redirect = Redirect {
            redirect_uri: "https://app.example.com/cb?tenant=a".into(),
            state: Some("x y".into()),
            outcome: Outcome::Error(ErrorCode::AccessDenied, "no".into()),
        };
        assert_eq!(
            redirect.url("https://id.example.com"),
            "https://app.example.com/cb?tenant=a&error=access_denied&error_description=no\
             &state=x+y&iss=https%3A%2F%2Fid.example.com"
        );
    }

    #[test]
    fn the_workspace_is_the_named_one_or_the_only_one() {
        let ws = |slug: &str| Workspace {
            id: slug.into(),
            slug: slug.into(),
            name: slug.into(),
        };
        let two = vec![
            (ws("a"), "admin".to_string()),
            (ws("b"), "viewer".to_string()),
        ];
        assert_eq!(
            choose_workspace(&[], None).unwrap(),
            WorkspaceChoice::NoWorkspace
        );
        assert_eq!(choose_workspace(&two, None).unwrap(), WorkspaceChoice::Ask);
        assert_eq!(
            choose_workspace(&two, Some("b")).unwrap(),
            WorkspaceChoice::Chosen(&two[1].0, Some(Role::Viewer))
        );
        assert!(choose_workspace(&two, Some("c")).is_err());
        assert_eq!(
            choose_workspace(&two[..1], None).unwrap(),
            WorkspaceChoice::Chosen(&two[0].0, Some(Role::Admin))
        );
    }
}
