//! The authorization code grant from a CLI: RFC 6749 §4.1 with PKCE S256 (RFC 7636), a loopback redirect on a random port (RFC 8252 §7.3) and the issuer check of RFC 9207.

use std::collections::BTreeMap;
use std::time::Duration;

use keyport_proto::ErrorResponse;

use crate::discovery::Issuer;
use crate::error::{Error, Result, printable};
use crate::grant::Grant;
use crate::http::check_transport;
use crate::loopback::{Callback, Loopback};
use crate::pkce::{CHALLENGE_METHOD, random_token};
use crate::secret::{AuthorizationCode, CodeVerifier};
use crate::store::Credentials;

/// What to ask for when starting a web login.
#[derive(Debug, Clone, Default)]
pub struct WebLoginRequest {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator: the API the tokens are meant for.
    pub resource: Option<String>,
}

/// A started web login: open [`WebLogin::authorization_url`] in the user's
/// browser, then [`WebLogin::finish`]. It listens on 127.0.0.1 from the
/// start, so the browser can come back before `finish` is called.
pub struct WebLogin {
    grant: Grant,
    loopback: Loopback,
    redirect_uri: String,
    authorization_url: String,
    state: String,
    verifier: CodeVerifier,
    /// The metadata promised `iss` in every authorization response
    /// (RFC 9207 §3), so a response without one is refused.
    iss_required: bool,
}

impl std::fmt::Debug for WebLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebLogin")
            .field("issuer", &self.grant.metadata.issuer)
            .field("client_id", &self.grant.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Prepares an authorization code login: binds 127.0.0.1 on a random
    /// port for the redirect, and makes a fresh PKCE verifier and `state`.
    /// Nothing is sent to the issuer until the browser opens the URL.
    pub async fn start_web_login(&self, request: &WebLoginRequest) -> Result<WebLogin> {
        let metadata = self.metadata();
        let fail = |reason: String| Error::Discovery {
            issuer: self.issuer().to_owned(),
            reason,
        };
        let endpoint = metadata.authorization_endpoint.as_deref().ok_or_else(|| {
            fail(
                "the issuer does not offer the authorization code flow (no authorization_endpoint)"
                    .into(),
            )
        })?;
        // The URL is opened in a browser: only a web URL, over TLS unless on loopback.
        let mut url = check_transport(endpoint).map_err(fail)?;
        let methods = &metadata.code_challenge_methods_supported;
        if !methods.is_empty() && !methods.iter().any(|m| m == CHALLENGE_METHOD) {
            return Err(fail(format!(
                "the issuer does not accept PKCE with {CHALLENGE_METHOD} (RFC 7636)"
            )));
        }

        let loopback = Loopback::bind().await.map_err(Error::Loopback)?;
        let redirect_uri = loopback.redirect_uri();
        let state = random_token();
        let verifier = CodeVerifier::random();
        let scope = request.scopes.join(" ");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &request.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &verifier.challenge())
                .append_pair("code_challenge_method", CHALLENGE_METHOD);
            if !scope.is_empty() {
                query.append_pair("scope", &scope);
            }
            if let Some(resource) = &request.resource {
                query.append_pair("resource", resource);
            }
        }

        Ok(WebLogin {
            grant: Grant {
                http: self.http().clone(),
                metadata: metadata.clone(),
                client_id: request.client_id.clone(),
                scope,
                resource: request.resource.clone(),
            },
            loopback,
            redirect_uri,
            authorization_url: url.into(),
            state,
            verifier,
            iss_required: metadata.authorization_response_iss_parameter_supported,
        })
    }
}

impl WebLogin {
    /// How long [`WebLogin::finish`] should wait for the browser unless the
    /// caller knows better: as long as a Keyport device code lives, so
    /// either kind of login gives the user the same time.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(900);

    /// The issuer's authorization endpoint with the request in its query:
    /// the page to open in the browser.
    pub fn authorization_url(&self) -> &str {
        &self.authorization_url
    }

    /// `http://127.0.0.1:{port}/callback`, where the browser comes back.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits up to `timeout` for the browser to come back, checks the
    /// response's `state` and `iss`, exchanges the code (with the PKCE
    /// verifier) and returns the credentials to store. The browser is
    /// answered with a page saying how it went, and then nothing listens
    /// any more: only the first request to the callback path counts.
    pub async fn finish(self, timeout: Duration) -> Result<Credentials> {
        let callback = match tokio::time::timeout(timeout, self.loopback.next_callback()).await {
            Ok(callback) => callback.map_err(Error::Loopback)?,
            Err(_) => return Err(Error::LoginTimedOut { after: timeout }),
        };
        let expected = Expected {
            state: &self.state,
            issuer: &self.grant.metadata.issuer,
            iss_required: self.iss_required,
        };
        let outcome = match read_authorization_response(&callback.query, &expected) {
            Ok(code) => exchange(&self.grant, &code, &self.redirect_uri, &self.verifier).await,
            Err(error) => Err(error),
        };
        answer_browser(callback, &outcome).await;
        outcome
    }
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.5: the redirect URI is repeated
/// exactly as sent, and the verifier proves this is the client that asked.
async fn exchange(
    grant: &Grant,
    code: &AuthorizationCode,
    redirect_uri: &str,
    verifier: &CodeVerifier,
) -> Result<Credentials> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.secret()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier.secret()),
    ];
    let tokens = grant.token_request(&form).await?;
    grant.credentials_from(tokens).await
}

async fn answer_browser(callback: Callback, outcome: &Result<Credentials>) {
    const RETURN: &str = "You can close this tab and return to the terminal.";
    match outcome {
        Ok(_) => callback.respond(true, "Signed in", RETURN).await,
        Err(error) => {
            let message = format!("{}. {RETURN}", capitalized(&error.to_string()));
            callback.respond(false, "Sign-in failed", &message).await;
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// What a genuine response to this login carries.
struct Expected<'a> {
    state: &'a str,
    issuer: &'a str,
    iss_required: bool,
}

/// Reads the redirect's query (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207 §2):
/// the code, or the error the issuer redirected with. `state` is checked
/// first, so a stray or forged redirect is named as such whatever it
/// carries, then `iss`, so that no response from another issuer is acted on.
fn read_authorization_response(query: &str, expected: &Expected<'_>) -> Result<AuthorizationCode> {
    let mut params = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        // RFC 6749 §3.1: no parameter may appear twice.
        if params.insert(name.clone(), value).is_some() {
            return Err(Error::InvalidResponse(format!(
                "authorization response (it repeats {:?})",
                printable(&name, 40)
            )));
        }
    }
    let state_matches = params.get("state").is_some_and(|state| {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            state.as_bytes(),
            expected.state.as_bytes(),
        )
        .is_ok()
    });
    if !state_matches {
        return Err(Error::StateMismatch);
    }
    match params.get("iss") {
        Some(iss) if iss == expected.issuer => {}
        None if !expected.iss_required => {}
        actual => {
            return Err(Error::IssuerMismatch {
                expected: expected.issuer.to_owned(),
                actual: actual.map(|iss| printable(iss, 200)),
            });
        }
    }
    if let Some(error) = params.get("error") {
        if error == "access_denied" {
            return Err(Error::AccessDenied);
        }
        return Err(Error::from_response(ErrorResponse {
            error: error.to_string(),
            error_description: params.get("error_description").map(|d| d.to_string()),
        }));
    }
    match params.get("code") {
        Some(code) if !code.is_empty() => Ok(AuthorizationCode::new(code.as_ref())),
        _ => Err(Error::InvalidResponse(
            "authorization response (it has neither code nor error)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use keyport_proto::{ErrorCode, ServerMetadata};

    use super::*;

    const ISSUER: &str = "https://auth.example.com";
    const STATE: &str = "Zm9vYmFyLXN0YXRlLXZhbHVlLXRoYXQtaXMtbG9uZw";

    fn read(query: &str) -> Result<AuthorizationCode> {
        read_authorization_response(
            query,
            &Expected {
                state: STATE,
                issuer: ISSUER,
                iss_required: true,
            },
        )
    }

    fn iss() -> String {
        url::form_urlencoded::byte_serialize(ISSUER.as_bytes()).collect()
    }

    #[test]
    fn a_matching_response_yields_its_code() {
        let code = read(&format!("code=abc%2Fdef&state={STATE}&iss={}", iss())).unwrap();
        assert_eq!(code.secret(), "abc/def");
    }

    #[test]
    fn another_state_or_none_is_a_mismatch_whatever_else_it_says() {
        let other = format!("code=abc&state=x{STATE}&iss={}", iss());
        assert!(matches!(read(&other), Err(Error::StateMismatch)));
        let missing = format!("code=abc&iss={}", iss());
        assert!(matches!(read(&missing), Err(Error::StateMismatch)));
        let error = format!("error=access_denied&state=nope&iss={}", iss());
        assert!(matches!(read(&error), Err(Error::StateMismatch)));
        assert!(matches!(read(""), Err(Error::StateMismatch)));
    }

    #[test]
    fn another_issuer_is_a_mix_up() {
        let other = format!("code=abc&state={STATE}&iss=https%3A%2F%2Fevil.example");
        match read(&other) {
            Err(Error::IssuerMismatch { expected, actual }) => {
                assert_eq!(expected, ISSUER);
                assert_eq!(actual.as_deref(), Some("https://evil.example"));
            }
            other => panic!("{other:?}"),
        }
        // A trailing slash is another issuer identifier (RFC 9207 §2.4: simple string comparison).
        let slash = format!("code=abc&state={STATE}&iss={}%2F", iss());
        assert!(matches!(read(&slash), Err(Error::IssuerMismatch { .. })));
        let error = read(&other).unwrap_err().to_string();
        assert!(error.contains("\"https://evil.example\""), "{error}");
        assert!(error.contains("issuer mismatch"), "{error}");
    }

    #[test]
    fn iss_is_required_only_when_the_issuer_promised_it() {
        let without = format!("code=abc&state={STATE}");
        assert!(matches!(
            read(&without),
            Err(Error::IssuerMismatch { actual: None, .. })
        ));
        let lenient = Expected {
            state: STATE,
            issuer: ISSUER,
            iss_required: false,
        };
        assert!(read_authorization_response(&without, &lenient).is_ok());
        // Present, it must match even when not promised.
        let wrong = format!("code=abc&state={STATE}&iss=https%3A%2F%2Fevil.example");
        assert!(matches!(
            read_authorization_response(&wrong, &lenient),
            Err(Error::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn error_redirects_become_errors() {
        let denied = format!("error=access_denied&state={STATE}&iss={}", iss());
        assert!(matches!(read(&denied), Err(Error::AccessDenied)));

        let scope = format!(
            "error=invalid_scope&error_description=no+such+scope%1B%5B2J&state={STATE}&iss={}",
            iss()
        );
        let error = read(&scope).unwrap_err();
        assert_eq!(error.oauth_code(), Some(ErrorCode::InvalidScope));
        // Text from the query reaches the terminal without escape sequences.
        assert_eq!(
            error.to_string(),
            "the issuer answered invalid_scope: no such scope[2J"
        );
    }

    #[test]
    fn malformed_responses_are_refused() {
        let no_code = format!("state={STATE}&iss={}", iss());
        assert!(matches!(read(&no_code), Err(Error::InvalidResponse(_))));
        let empty_code = format!("code=&state={STATE}&iss={}", iss());
        assert!(matches!(read(&empty_code), Err(Error::InvalidResponse(_))));
        let twice = format!("code=a&code=b&state={STATE}&iss={}", iss());
        assert!(matches!(read(&twice), Err(Error::InvalidResponse(_))));
    }

    fn issuer(metadata: ServerMetadata) -> Issuer {
        Issuer::from_metadata(crate::http_client().unwrap(), ISSUER, metadata).unwrap()
    }

    fn metadata() -> ServerMetadata {
        ServerMetadata {
            issuer: ISSUER.into(),
            authorization_endpoint: Some(format!("{ISSUER}/oauth/authorize")),
            token_endpoint: format!("{ISSUER}/oauth/token"),
            code_challenge_methods_supported: vec!["S256".into()],
            authorization_response_iss_parameter_supported: true,
            ..ServerMetadata::default()
        }
    }

    #[tokio::test]
    async fn the_authorization_url_carries_the_pkce_challenge_and_loopback_redirect() {
        let login = issuer(metadata())
            .start_web_login(&WebLoginRequest {
                client_id: "kp".into(),
                scopes: vec!["openid".into(), "offline_access".into()],
                resource: Some("https://api.example.com".into()),
            })
            .await
            .unwrap();
        let url = url::Url::parse(login.authorization_url()).unwrap();
        assert_eq!(url.origin().ascii_serialization(), ISSUER);
        assert_eq!(url.path(), "/oauth/authorize");
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "kp");
        assert_eq!(query["redirect_uri"], login.redirect_uri());
        assert!(
            login.redirect_uri().starts_with("http://127.0.0.1:")
                && login.redirect_uri().ends_with("/callback"),
            "{}",
            login.redirect_uri()
        );
        assert_eq!(query["state"], login.state);
        assert_eq!(query["state"].len(), 43);
        assert_eq!(query["code_challenge"], login.verifier.challenge());
        assert_ne!(query["code_challenge"], login.verifier.secret());
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["scope"], "openid offline_access");
        assert_eq!(query["resource"], "https://api.example.com");
        assert!(login.iss_required);
    }

    #[tokio::test]
    async fn issuers_without_the_code_flow_or_s256_are_refused_up_front() {
        let request = WebLoginRequest {
            client_id: "kp".into(),
            ..WebLoginRequest::default()
        };
        let without = ServerMetadata {
            authorization_endpoint: None,
            ..metadata()
        };
        let error = issuer(without).start_web_login(&request).await.unwrap_err();
        assert!(
            error.to_string().contains("authorization code flow"),
            "{error}"
        );

        let plain_only = ServerMetadata {
            code_challenge_methods_supported: vec!["plain".into()],
            ..metadata()
        };
        let error = issuer(plain_only)
            .start_web_login(&request)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("S256"), "{error}");

        let cleartext = ServerMetadata {
            authorization_endpoint: Some("http://auth.example.com/oauth/authorize".into()),
            ..metadata()
        };
        let error = issuer(cleartext)
            .start_web_login(&request)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Discovery { .. }), "{error}");
    }

    /// The browser following the issuer's redirect.
    async fn come_back(redirect_uri: &str, query: &str) -> (u16, String) {
        let response = reqwest::get(format!("{redirect_uri}?{query}"))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn a_forged_redirect_fails_the_login_and_the_browser_is_told() {
        let login = issuer(metadata())
            .start_web_login(&WebLoginRequest::default())
            .await
            .unwrap();
        let redirect_uri = login.redirect_uri().to_owned();
        let finishing = tokio::spawn(login.finish(Duration::from_secs(60)));

        let (status, _) = come_back(&redirect_uri.replace("/callback", "/favicon.ico"), "").await;
        assert_eq!(status, 404);
        let query = format!("code=stolen&state=guessed&iss={}", iss());
        let (status, page) = come_back(&redirect_uri, &query).await;
        assert_eq!(status, 400);
        assert!(page.contains("<h1>Sign-in failed</h1>"), "{page}");
        assert!(page.contains("state mismatch"), "{page}");
        assert!(matches!(
            finishing.await.unwrap(),
            Err(Error::StateMismatch)
        ));
        // Only one callback is accepted: nothing listens any more.
        assert!(reqwest::get(&redirect_uri).await.is_err());
    }

    #[tokio::test]
    async fn a_denial_in_the_browser_ends_the_login_as_denied() {
        let login = issuer(metadata())
            .start_web_login(&WebLoginRequest::default())
            .await
            .unwrap();
        let redirect_uri = login.redirect_uri().to_owned();
        let query = format!("error=access_denied&state={}&iss={}", login.state, iss());
        let finishing = tokio::spawn(login.finish(Duration::from_secs(60)));
        let (status, page) = come_back(&redirect_uri, &query).await;
        assert_eq!(status, 400);
        assert!(page.contains("The login was denied."), "{page}");
        assert!(matches!(finishing.await.unwrap(), Err(Error::AccessDenied)));
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_coming_back_times_out() {
        let login = issuer(metadata())
            .start_web_login(&WebLoginRequest::default())
            .await
            .unwrap();
        let error = login.finish(Duration::from_secs(900)).await.unwrap_err();
        assert!(
            matches!(error, Error::LoginTimedOut { after } if after.as_secs() == 900),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "the browser did not come back within 900 s"
        );
    }
}
