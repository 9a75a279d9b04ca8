//! The end of a login, whichever grant it used (RFC 8628 device code, RFC 6749 §4.1 authorization code): the token response becomes the [`Credentials`] to store, with the user named.

use base64::Engine;
use keyport_proto::{ServerMetadata, TokenResponse};

use crate::error::Result;
use crate::http::{get_with_bearer, post_form};
use crate::secret::AccessToken;
use crate::store::Credentials;
use crate::unix_now;

/// The issuer, client and request a login started with: where its token
/// request goes and what its tokens are stored under.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) http: reqwest::Client,
    pub(crate) metadata: ServerMetadata,
    pub(crate) client_id: String,
    /// The requested scopes, space-separated; kept when the issuer's
    /// response does not echo them.
    pub(crate) scope: String,
    pub(crate) resource: Option<String>,
}

impl Grant {
    /// POSTs a token request (RFC 6749 §3.2) as a public client: `client_id`
    /// and, when the login named one, the RFC 8707 `resource` are added.
    pub(crate) async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let mut form = form.to_vec();
        form.push(("client_id", &self.client_id));
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        post_form(&self.http, &self.metadata.token_endpoint, &form).await
    }

    /// The credentials a successful token response makes, with the user
    /// named as far as the issuer tells.
    pub(crate) async fn credentials_from(&self, tokens: TokenResponse) -> Result<Credentials> {
        let id_token = tokens.id_token.clone();
        let mut credentials = Credentials {
            issuer: self.metadata.issuer.clone(),
            client_id: self.client_id.clone(),
            access_token: AccessToken::new(String::new()),
            refresh_token: None,
            expires_at: 0,
            scope: self.scope.clone(),
            resource: self.resource.clone(),
            token_endpoint: self.metadata.token_endpoint.clone(),
            revocation_endpoint: self.metadata.revocation_endpoint.clone(),
            userinfo_endpoint: self.metadata.userinfo_endpoint.clone(),
            subject: None,
            email: None,
        };
        credentials.apply(tokens, unix_now())?;
        self.identify(&mut credentials, id_token.as_deref()).await;
        Ok(credentials)
    }

    /// Learns who logged in, for "Logged in as …". Userinfo is asked first
    /// because the issuer vouches for it on every call; the ID token's
    /// claims are the fallback for issuers without userinfo. Failure here
    /// does not fail the login: the tokens are good either way.
    async fn identify(&self, credentials: &mut Credentials, id_token: Option<&str>) {
        if let Some(endpoint) = &credentials.userinfo_endpoint
            && let Ok(info) = get_with_bearer::<keyport_proto::Userinfo>(
                &self.http,
                endpoint,
                &credentials.access_token,
            )
            .await
        {
            credentials.subject = Some(info.sub);
            credentials.email = info.email;
            return;
        }
        if let Some(claims) = id_token.and_then(|t| id_token_claims(t, credentials)) {
            credentials.subject = claims.sub;
            credentials.email = claims.email;
        }
    }
}

#[derive(serde::Deserialize)]
struct IdTokenClaims {
    iss: String,
    #[serde(default)]
    aud: serde_json::Value,
    sub: Option<String>,
    email: Option<String>,
}

/// Reads an ID token's claims without checking its signature, which OIDC
/// Core §3.1.3.7 allows for a token received straight from the token
/// endpoint over TLS; `iss` and `aud` are still checked. Only used to name
/// the user, never to authorize anything.
fn id_token_claims(id_token: &str, credentials: &Credentials) -> Option<IdTokenClaims> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: IdTokenClaims = serde_json::from_slice(&bytes).ok()?;
    let audience_ok = match &claims.aud {
        serde_json::Value::String(aud) => *aud == credentials.client_id,
        serde_json::Value::Array(auds) => auds.iter().any(|a| *a == *credentials.client_id),
        _ => false,
    };
    (claims.iss == credentials.issuer && audience_ok).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn id_token_names_the_user_only_when_it_is_for_us() {
        let credentials = crate::store::sample_credentials("https://auth.example.com", 0);
        let ours = jwt(serde_json::json!({
            "iss": "https://auth.example.com", "aud": ["kp"], "sub": "u1", "email": "a@example.com"
        }));
        let claims = id_token_claims(&ours, &credentials).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("u1"));
        assert_eq!(claims.email.as_deref(), Some("a@example.com"));

        let foreign =
            jwt(serde_json::json!({"iss": "https://evil.example", "aud": "kp", "sub": "u1"}));
        assert!(id_token_claims(&foreign, &credentials).is_none());
        let other_client =
            jwt(serde_json::json!({"iss": "https://auth.example.com", "aud": "x", "sub": "u1"}));
        assert!(id_token_claims(&other_client, &credentials).is_none());
        assert!(id_token_claims("garbage", &credentials).is_none());
    }
}
