//! The resource-server side: an API that accepts Keyport's access tokens.
//!
//! [`ResourceServer`] checks a bearer token the way RFC 9068 and RFC 6750
//! say a resource server should:
//! - **JWT access tokens** (`typ: at+jwt`) are verified against the
//!   issuer's JWKS, cached. A token signed by a key the cache does not
//!   know makes it fetch the JWKS again (by default at most every 10 s), so key
//!   rotation is followed without a restart. It then checks `iss`, `aud`
//!   (the audience this API was built for) and `exp`.
//! - **Opaque tokens and API keys** are asked about through RFC 7662
//!   introspection, as a confidential client. Each answer is cached for
//!   `cache_ttl` (never past the token's own expiry).
//! - With [`Builder::check_revocation`], JWTs are introspected too, so a
//!   revoked session is refused within `cache_ttl`.
//!
//! [`Bearer`] is the axum extractor. It answers a refusal with 401 or 403,
//! a `WWW-Authenticate: Bearer` header carrying `error`, `error_description`,
//! `scope` and RFC 9728's `resource_metadata`, and an RFC 6749-shaped JSON
//! body. [`ResourceServer::metadata_router`] serves the RFC 9728 document at
//! `/.well-known/oauth-protected-resource`.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use keyport_client::resource::{Bearer, ResourceServer};
//!
//! async fn todos(Bearer(who): Bearer) -> Result<String, keyport_client::resource::Refusal> {
//!     who.require(&["todos:read"])?;
//!     Ok(format!("the todos of {}", who.subject))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let rs = ResourceServer::builder("https://auth.acme.com", "https://api.acme.com")
//!     .introspection("acme-api", "the client secret")
//!     .build()
//!     .await?;
//! let app: Router = Router::new()
//!     .route("/todos", get(todos))
//!     .with_state(rs.clone())
//!     .merge(rs.metadata_router());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod bearer;
mod principal;

pub use bearer::Bearer;
pub use principal::{Principal, Refusal, TokenKind};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::routing::get;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyport_proto::Introspection;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::RwLock;

use crate::discovery::Issuer;
use crate::error::{Error, Result};
use crate::http::http_client;

/// How long an introspection answer is trusted by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// The JWKS is fetched again for an unknown key at most this often, by default.
pub const DEFAULT_JWKS_REFETCH: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp`.
const LEEWAY_SECS: u64 = 30;
/// Introspection answers kept at most; past it the expired go, then all.
const CACHE_ENTRIES: usize = 10_000;

/// Configures a [`ResourceServer`].
pub struct Builder {
    issuer: String,
    audience: String,
    introspection: Option<(String, String)>,
    cache_ttl: Duration,
    check_revocation: bool,
    scopes_supported: Vec<String>,
    http: Option<reqwest::Client>,
    jwks_refetch: Duration,
}

impl Builder {
    /// How often, at most, a token signed by an unknown key makes the JWKS
    /// be fetched again ([`DEFAULT_JWKS_REFETCH`]).
    pub fn jwks_refetch(mut self, interval: Duration) -> Self {
        self.jwks_refetch = interval;
        self
    }

    /// Credentials of a confidential client for RFC 7662 introspection:
    /// needed for opaque tokens, API keys and [`Builder::check_revocation`].
    pub fn introspection(mut self, client_id: &str, client_secret: &str) -> Self {
        self.introspection = Some((client_id.into(), client_secret.into()));
        self
    }

    /// How long an introspection answer is trusted ([`DEFAULT_CACHE_TTL`]):
    /// the bound on how late a revocation is noticed.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Introspect JWTs too (cached), so a revoked session is refused
    /// within `cache_ttl` rather than when its token expires.
    pub fn check_revocation(mut self, on: bool) -> Self {
        self.check_revocation = on;
        self
    }

    /// Scopes listed in the protected-resource metadata.
    pub fn scopes_supported(mut self, scopes: &[&str]) -> Self {
        self.scopes_supported = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A caller-built HTTP client (proxies, extra CAs).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Discovers the issuer (RFC 8414) and fetches its JWKS.
    pub async fn build(self) -> Result<ResourceServer> {
        let http = match self.http {
            Some(http) => http,
            None => http_client()?,
        };
        let issuer = Issuer::discover_with(http.clone(), &self.issuer).await?;
        let metadata = issuer.metadata();
        let jwks_uri = metadata.jwks_uri.clone().ok_or_else(|| Error::Discovery {
            issuer: self.issuer.clone(),
            reason: "the metadata names no jwks_uri".into(),
        })?;
        let introspection =
            match self.introspection {
                Some((id, secret)) => {
                    let endpoint = metadata.introspection_endpoint.clone().ok_or_else(|| {
                        Error::Discovery {
                            issuer: self.issuer.clone(),
                            reason: "the metadata names no introspection_endpoint".into(),
                        }
                    })?;
                    Some(IntrospectionClient {
                        endpoint,
                        id,
                        secret,
                    })
                }
                None => None,
            };
        let document = json!({
            "resource": self.audience,
            "authorization_servers": [metadata.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": self.scopes_supported,
        });
        let rs = ResourceServer(Arc::new(Inner {
            http,
            issuer: metadata.issuer.clone(),
            audience: self.audience,
            jwks_uri,
            introspection,
            cache_ttl: self.cache_ttl,
            check_revocation: self.check_revocation,
            jwks_refetch: self.jwks_refetch,
            keys: RwLock::new(HashMap::new()),
            fetched_at: tokio::sync::Mutex::new(None),
            answers: Mutex::new(HashMap::new()),
            document,
        }));
        rs.fetch_keys().await.map_err(|refusal| Error::Discovery {
            issuer: rs.0.issuer.clone(),
            reason: refusal.description,
        })?;
        Ok(rs)
    }
}

struct IntrospectionClient {
    endpoint: String,
    id: String,
    secret: String,
}

type Keys = HashMap<String, (Algorithm, DecodingKey)>;
/// SHA-256 of a token → when it was asked about, and the answer.
type Answers = HashMap<[u8; 32], (Instant, Option<Principal>)>;

struct Inner {
    http: reqwest::Client,
    issuer: String,
    audience: String,
    jwks_uri: String,
    introspection: Option<IntrospectionClient>,
    cache_ttl: Duration,
    check_revocation: bool,
    jwks_refetch: Duration,
    keys: RwLock<Keys>,
    fetched_at: tokio::sync::Mutex<Option<Instant>>,
    answers: Mutex<Answers>,
    document: serde_json::Value,
}

/// Verifies Keyport access tokens for one API (one audience). Cheap to
/// clone; share one per process.
#[derive(Clone)]
pub struct ResourceServer(Arc<Inner>);

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
    exp: i64,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

impl ResourceServer {
    /// A resource server for `audience` (the `resource` clients ask tokens
    /// for) trusting `issuer`.
    pub fn builder(issuer: &str, audience: &str) -> Builder {
        Builder {
            issuer: issuer.into(),
            audience: audience.into(),
            introspection: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            check_revocation: false,
            scopes_supported: Vec::new(),
            http: None,
            jwks_refetch: DEFAULT_JWKS_REFETCH,
        }
    }

    /// Where the RFC 9728 document is served, for `resource_metadata`.
    pub fn metadata_url(&self) -> String {
        let resource = self.0.audience.trim_end_matches('/');
        format!("{resource}/.well-known/oauth-protected-resource")
    }

    /// `GET /.well-known/oauth-protected-resource` (RFC 9728 §3).
    pub fn metadata_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let document = self.0.document.clone();
        Router::new().route(
            "/.well-known/oauth-protected-resource",
            get(move || async move { Json(document) }),
        )
    }

    /// Checks `token`: who it is for and what it may do, or why not.
    pub async fn verify(&self, token: &str) -> std::result::Result<Principal, Refusal> {
        let looks_like_jwt = token.split('.').count() == 3;
        let principal = match looks_like_jwt {
            true => {
                let principal = self.verify_jwt(token).await?;
                if self.0.check_revocation {
                    self.introspect(token).await?;
                }
                principal
            }
            false => self.introspect(token).await?,
        };
        Ok(principal)
    }

    async fn verify_jwt(&self, token: &str) -> std::result::Result<Principal, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::invalid_token("the token is not a JWT"))?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(Refusal::invalid_token("the JWT is not an access token"));
        }
        let kid = header
            .kid
            .ok_or_else(|| Refusal::invalid_token("the JWT names no key"))?;
        let found = self.0.keys.read().await.get(&kid).cloned();
        let (alg, key) = match found {
            Some(found) => found,
            // A key the cache does not know: perhaps a rotation.
            None => {
                self.fetch_keys().await?;
                self.0
                    .keys
                    .read()
                    .await
                    .get(&kid)
                    .cloned()
                    .ok_or_else(|| Refusal::invalid_token("signed by an unknown key"))?
            }
        };
        if header.alg != alg {
            return Err(Refusal::invalid_token(
                "the JWT's algorithm is not its key's",
            ));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.0.issuer]);
        validation.set_audience(&[&self.0.audience]);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Refusal::invalid_token("the token has expired")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    Refusal::invalid_token("the token is for another audience")
                }
                _ => Refusal::invalid_token("the token does not verify"),
            })?
            .claims;
        Ok(Principal {
            subject: claims.sub,
            client_id: claims.client_id,
            scopes: split_scopes(&claims.scope),
            workspace: claims.workspace,
            role: claims.role,
            expires_at: Some(claims.exp),
            kind: TokenKind::Jwt,
        })
    }

    /// Fetches the JWKS, unless it was fetched under `jwks_refetch` ago.
    async fn fetch_keys(&self) -> std::result::Result<(), Refusal> {
        let mut fetched_at = self.0.fetched_at.lock().await;
        if fetched_at.is_some_and(|at| at.elapsed() < self.0.jwks_refetch) {
            return Ok(());
        }
        let set: JwkSet = async {
            let response = self.0.http.get(&self.0.jwks_uri).send().await.ok()?;
            response.error_for_status().ok()?.json().await.ok()
        }
        .await
        .ok_or_else(|| Refusal::unavailable("the issuer's keys cannot be fetched"))?;
        let mut keys = Keys::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (&jwk.common.key_id, jwk.common.key_algorithm) else {
                continue;
            };
            let (Ok(alg), Ok(key)) = (Algorithm::try_from(alg), DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(kid.clone(), (alg, key));
        }
        *self.0.keys.write().await = keys;
        *fetched_at = Some(Instant::now());
        Ok(())
    }

    /// RFC 7662, cached by the token's hash.
    async fn introspect(&self, token: &str) -> std::result::Result<Principal, Refusal> {
        let Some(client) = &self.0.introspection else {
            return Err(Refusal::invalid_token(
                "only JWT access tokens are accepted here",
            ));
        };
        let key: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let now = crate::unix_now();
        if let Some(answer) = self.cached(&key, now) {
            return answer.ok_or_else(|| Refusal::invalid_token("the token is not active"));
        }
        let response = self
            .0
            .http
            .post(&client.endpoint)
            .basic_auth(&client.id, Some(&client.secret))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|_| Refusal::unavailable("the issuer cannot be reached"))?;
        if !response.status().is_success() {
            return Err(Refusal::unavailable("introspection failed"));
        }
        let answer: Introspection = response
            .json()
            .await
            .map_err(|_| Refusal::unavailable("introspection answered no JSON"))?;
        let principal = self.principal_of(answer, now);
        self.remember(key, principal.clone());
        principal.ok_or_else(|| Refusal::invalid_token("the token is not active"))
    }

    /// An active answer for this API: its audience, or an API key (bound to
    /// a workspace, not an audience).
    fn principal_of(&self, answer: Introspection, now: i64) -> Option<Principal> {
        let kind = match answer.token_type.as_deref() {
            Some("api_key") => TokenKind::ApiKey,
            _ => TokenKind::Opaque,
        };
        let audience_fits = match &answer.aud {
            Some(aud) => *aud == self.0.audience,
            None => kind == TokenKind::ApiKey,
        };
        let live = answer.active && answer.exp.is_none_or(|exp| exp > now);
        if !(live && audience_fits) {
            return None;
        }
        Some(Principal {
            subject: answer.sub?,
            client_id: answer.client_id,
            scopes: split_scopes(answer.scope.as_deref().unwrap_or("")),
            workspace: answer.workspace,
            role: answer.role,
            expires_at: answer.exp,
            kind,
        })
    }

    fn cached(&self, key: &[u8; 32], now: i64) -> Option<Option<Principal>> {
        let answers = self.0.answers.lock().expect("cache lock");
        let (at, answer) = answers.get(key)?;
        let fresh = at.elapsed() < self.0.cache_ttl;
        let unexpired = answer
            .as_ref()
            .is_none_or(|p| p.expires_at.is_none_or(|exp| exp > now));
        (fresh && unexpired).then(|| answer.clone())
    }

    fn remember(&self, key: [u8; 32], answer: Option<Principal>) {
        let mut answers = self.0.answers.lock().expect("cache lock");
        if answers.len() >= CACHE_ENTRIES {
            let ttl = self.0.cache_ttl;
            answers.retain(|_, (at, _)| at.elapsed() < ttl);
            if answers.len() >= CACHE_ENTRIES {
                answers.clear();
            }
        }
        answers.insert(key, (Instant::now(), answer));
    }

    pub(super) fn refusal(&self, mut refusal: Refusal) -> Refusal {
        refusal.resource_metadata = Some(self.metadata_url());
        refusal
    }
}

fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_string).collect()
}
