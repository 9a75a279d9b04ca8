//! OAuth clients: what one may do (grants, scopes, redirect URIs, token
//! settings) and client authentication at the token, revocation and
//! introspection endpoints (RFC 6749 §2.3): `client_secret_basic`,
//! `client_secret_post`, and `none` for public clients.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::scopes::Scopes;
use super::{Error, ErrorCode, Result};
use crate::crypto::constant_time_eq;
use crate::crypto::tokens::ClientSecret;
use crate::service::Keyport;
use keyport_proto::{ClientId, GrantType, REFRESH_TOKEN_PREFIX};

/// The prefix of opaque access tokens unless a client sets its own.
pub const ACCESS_TOKEN_PREFIX: &str = "kp_at_";

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub confidential: bool,
    pub secret_hash: Option<String>,
    /// The secret a rotation replaced, and until when it still works.
    pub previous_secret: Option<(String, i64)>,
    pub grants: BTreeSet<GrantType>,
    pub scopes: Vec<String>,
    /// Granted when a request names no scope; empty means all of `scopes`.
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    /// Consent is not asked of the user (the operator's own apps).
    pub first_party: bool,
    pub access_token_format: AccessTokenFormat,
    pub access_token_alg: SigningAlg,
    pub access_token_prefix: String,
    pub refresh_token_prefix: String,
    /// `admin`, `config`, `registered` (RFC 7591) or `metadata` (a client
    /// ID metadata document).
    pub source: String,
}

impl Client {
    /// A client with Keyport's defaults for everything but what is given.
    #[cfg(test)]
    pub fn new(id: &str, name: &str, confidential: bool, grants: BTreeSet<GrantType>) -> Self {
        Client {
            id: ClientId::new(id),
            name: name.to_string(),
            confidential,
            secret_hash: None,
            previous_secret: None,
            grants,
            scopes: Vec::new(),
            default_scopes: Vec::new(),
            audiences: Vec::new(),
            redirect_uris: Vec::new(),
            first_party: false,
            access_token_format: AccessTokenFormat::Jwt,
            access_token_alg: SigningAlg::EdDsa,
            access_token_prefix: ACCESS_TOKEN_PREFIX.to_string(),
            refresh_token_prefix: REFRESH_TOKEN_PREFIX.to_string(),
            source: "admin".to_string(),
        }
    }

    /// Whether the operator registered this client's redirect URIs. A
    /// metadata document's or an RFC 7591 registration's URIs are whatever
    /// anyone wrote: redirecting there before the user acted would make
    /// Keyport an open redirector.
    pub fn redirects_vouched_for(&self) -> bool {
        !matches!(self.source.as_str(), "metadata" | "registered")
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant)
    }

    /// The scopes asked for, within the client's allow-list; its default
    /// scopes (all of the allow-list when it sets none) when the request
    /// names none.
    pub fn requested_scopes(&self, scope: Option<&str>) -> Result<Scopes> {
        let allowed = Scopes::from_list(&self.scopes);
        let defaults = match self.default_scopes.is_empty() {
            true => allowed.clone(),
            false => Scopes::from_list(&self.default_scopes),
        };
        let requested = match scope {
            None => return Ok(defaults),
            Some(text) => Scopes::parse(text)
                .ok_or_else(|| Error::oauth(ErrorCode::InvalidScope, "malformed scope"))?,
        };
        if requested.is_empty() {
            return Ok(defaults);
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
    pub fn check_resource(&self, resource: Option<&str>) -> Result<Option<String>> {
        let Some(resource) = resource else {
            return Ok(None);
        };
        let absolute = url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none());
        if !absolute || !self.audiences.iter().any(|a| a == resource) {
            return Err(Error::oauth(
                ErrorCode::InvalidTarget,
                "the resource is not an audience of this client",
            ));
        }
        Ok(Some(resource.to_string()))
    }

    /// The refusal for a grant this client may not use.
    pub fn require(&self, grant: GrantType) -> Result<()> {
        if self.allows(grant) {
            Ok(())
        } else {
            Err(Error::oauth(
                super::ErrorCode::UnauthorizedClient,
                format!(
                    "the {} grant is not enabled for this client",
                    grant.as_str()
                ),
            ))
        }
    }
}

/// How a client's access tokens look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessTokenFormat {
    /// RFC 9068 JWT, verifiable offline against the JWKS.
    #[default]
    Jwt,
    /// `kp_at_…`, meaningful only through introspection and userinfo.
    Opaque,
}

impl AccessTokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTokenFormat::Jwt => "jwt",
            AccessTokenFormat::Opaque => "opaque",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "jwt" => Some(AccessTokenFormat::Jwt),
            "opaque" => Some(AccessTokenFormat::Opaque),
            _ => None,
        }
    }
}

/// The JWS algorithm of a client's JWT access tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SigningAlg {
    #[default]
    EdDsa,
    Es256,
    Rs256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::EdDsa, SigningAlg::Es256, SigningAlg::Rs256];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDsa => "EdDSA",
            SigningAlg::Es256 => "ES256",
            SigningAlg::Rs256 => "RS256",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// A client as an operator describes it (config file, `keyport client add`,
/// RFC 7591 registration): text, checked once by [`ClientSpec::build`].
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    pub id: String,
    pub name: String,
    pub confidential: bool,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub first_party: bool,
    pub access_token_format: Option<String>,
    pub access_token_alg: Option<String>,
    pub access_token_prefix: Option<String>,
    pub refresh_token_prefix: Option<String>,
}

impl ClientSpec {
    /// The client this describes, or what is wrong with it. Scopes default
    /// to the OpenID ones and `offline_access`.
    pub fn build(self, source: &str) -> std::result::Result<Client, String> {
        if self.id.is_empty()
            || self.id.len() > 255
            || self.id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("a client id is 1 to 255 characters without spaces".into());
        }
        let mut grants = BTreeSet::new();
        for name in &self.grants {
            let grant = GrantType::parse(name).ok_or_else(|| {
                let known: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
                format!("unknown grant {name:?}; known grants: {}", known.join(", "))
            })?;
            grants.insert(grant);
        }
        if grants.contains(&GrantType::ClientCredentials) && !self.confidential {
            return Err("client_credentials needs a confidential client".into());
        }
        if self.first_party && !self.confidential {
            // RFC 8252 §8.6: anything on the machine can pose as a public
            // client, so its user is always asked.
            return Err("first_party needs a confidential client".into());
        }
        if grants.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err("the authorization_code grant needs a redirect URI".into());
        }
        for audience in &self.audiences {
            if url::Url::parse(audience).is_err() {
                return Err(format!("audience {audience:?} is not an absolute URL"));
            }
        }
        for uri in &self.redirect_uris {
            super::redirect::check_registrable(uri)
                .map_err(|why| format!("redirect URI {uri:?}: {why}"))?;
        }
        let split = |list: Vec<String>| -> Vec<String> {
            list.iter()
                .flat_map(|s| s.split_whitespace().map(str::to_string))
                .collect()
        };
        let scopes = match split(self.scopes) {
            s if s.is_empty() => ["openid", "profile", "email", "offline_access"]
                .map(String::from)
                .to_vec(),
            s => s,
        };
        let default_scopes = split(self.default_scopes);
        if let Some(outside) = default_scopes.iter().find(|s| !scopes.contains(s)) {
            return Err(format!(
                "default scope {outside:?} is not among the client's scopes"
            ));
        }
        let access_token_format = match self.access_token_format.as_deref() {
            None => AccessTokenFormat::Jwt,
            Some(text) => AccessTokenFormat::parse(text)
                .ok_or_else(|| format!("access token format {text:?}: use jwt or opaque"))?,
        };
        let access_token_alg = match self.access_token_alg.as_deref() {
            None => SigningAlg::EdDsa,
            Some(text) => SigningAlg::parse(text)
                .ok_or_else(|| format!("access token alg {text:?}: use EdDSA, ES256 or RS256"))?,
        };
        let prefix = |given: Option<String>, default: &str| match given {
            None => Ok(default.to_string()),
            Some(p)
                if (1..=32).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Ok(p)
            }
            Some(p) => Err(format!(
                "token prefix {p:?}: 1 to 32 letters, digits, '_' or '-'"
            )),
        };
        Ok(Client {
            id: ClientId::new(self.id),
            name: self.name,
            confidential: self.confidential,
            secret_hash: None,
            previous_secret: None,
            grants,
            scopes,
            default_scopes,
            audiences: self.audiences,
            redirect_uris: self.redirect_uris,
            first_party: self.first_party,
            access_token_format,
            access_token_alg,
            access_token_prefix: prefix(self.access_token_prefix, ACCESS_TOKEN_PREFIX)?,
            refresh_token_prefix: prefix(self.refresh_token_prefix, REFRESH_TOKEN_PREFIX)?,
            source: source.to_string(),
        })
    }
}

/// One answer for an unknown client, a wrong secret and a secret sent for a
/// public client, so the answer tells nothing about which clients exist.
const AUTHENTICATION_FAILED: &str = "client authentication failed";

/// The credentials a request presented.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub secret: Option<ClientSecret>,
    /// True when they came in an `Authorization: Basic` header (a failure
    /// then answers 401 with `WWW-Authenticate`).
    pub via_basic: bool,
}

/// Whether `given` is the client's secret, or the secret a rotation
/// replaced while its grace period lasts. Both are compared in constant time.
pub fn secret_matches(client: &Client, given: &ClientSecret, now: i64) -> bool {
    let given = given.hash();
    let current = client
        .secret_hash
        .as_ref()
        .is_some_and(|h| constant_time_eq(h.as_bytes(), given.as_bytes()));
    let previous = client
        .previous_secret
        .as_ref()
        .is_some_and(|(h, until)| now < *until && constant_time_eq(h.as_bytes(), given.as_bytes()));
    current | previous
}

impl Keyport {
    /// Finds the client and checks its secret. A confidential client must
    /// present its secret; a public client must not claim one.
    pub async fn authenticate_client(&self, creds: &ClientCredentials) -> Result<Arc<Client>> {
        let Some(id) = creds.client_id.as_deref() else {
            return Err(Error::invalid_client("client authentication is required"));
        };
        let client = self
            .client(id)
            .await?
            .ok_or_else(|| Error::invalid_client(AUTHENTICATION_FAILED))?;
        match &creds.secret {
            Some(given) if client.confidential => {
                if secret_matches(&client, given, self.clock.now()) {
                    Ok(client)
                } else {
                    Err(Error::invalid_client(AUTHENTICATION_FAILED))
                }
            }
            None if client.confidential => Err(Error::invalid_client(AUTHENTICATION_FAILED)),
            Some(_) => Err(Error::invalid_client(AUTHENTICATION_FAILED)),
            None => Ok(client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hash_secret;

    #[test]
    fn a_request_without_scope_gets_the_default_scopes() {
        let mut client = Client::new("c", "C", false, BTreeSet::new());
        client.scopes = vec!["openid".into(), "email".into(), "agents:read".into()];
        let cases = [
            (vec![], None, Ok("agents:read email openid")),
            (vec!["openid"], None, Ok("openid")),
            (vec!["openid"], Some(""), Ok("openid")),
            (vec!["openid"], Some("email"), Ok("email")),
            (vec![], Some("audit:read"), Err(())),
            (vec![], Some("bad\u{7}"), Err(())),
        ];
        for (defaults, asked, expected) in cases {
            client.default_scopes = defaults.iter().map(|s| s.to_string()).collect();
            let got = client
                .requested_scopes(asked)
                .map(|s| s.to_scope_string())
                .map_err(|_| ());
            assert_eq!(got, expected.map(str::to_string), "{defaults:?} {asked:?}");
        }
    }

    #[test]
    fn the_previous_secret_works_only_during_its_grace_period() {
        let mut client = Client::new("c", "C", true, BTreeSet::new());
        client.secret_hash = Some(hash_secret("new"));
        client.previous_secret = Some((hash_secret("old"), 100));
        let cases = [
            ("new", 50, true),
            ("new", 500, true),
            ("old", 99, true),
            ("old", 100, false),
            ("other", 50, false),
        ];
        for (given, now, expected) in cases {
            let matched = secret_matches(&client, &ClientSecret::new(given.into()), now);
            assert_eq!(matched, expected, "{given} at {now}");
        }
    }
}
