//! The sections of `keyport.toml` (`[limits]`, `[tokens]`, `[tls]`,
//! `[smtp]`, `[[clients]]`, …): their fields and defaults.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::scopes::Role;

/// `[limits]`: every rate limit, connection cap and timeout in one place.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Device authorization starts per client per minute from one network
    /// (an IPv4 /24 or an IPv6 /48), so a few addresses cannot use up a
    /// public client's budget for everyone else.
    pub device_starts_per_client_per_minute: i64,
    /// Device authorization starts per IP address per minute.
    pub device_starts_per_ip_per_minute: i64,
    /// Device authorization starts per minute for the whole server, all
    /// clients and networks together: bounds the rows a flood can add.
    pub device_starts_per_minute: i64,
    /// Failed user-code entries per hour, counted per browser session, per
    /// account, per IP and per client (GitHub allows 50 per app).
    pub user_code_failures_per_hour: i64,
    /// Failed sign-ins before an account is locked.
    pub failed_sign_ins_before_lockout: i64,
    /// How long a locked account stays locked.
    pub lockout_seconds: i64,
    /// Sign-in attempts per IP address per minute.
    pub sign_ins_per_ip_per_minute: i64,
    /// Argon2id hashes running at once (about one per core).
    pub password_hashes_in_flight: usize,
    /// Open connections at once, over all clients (also bounded by the
    /// process's open-file limit, which is raised at start).
    pub max_connections: usize,
    /// Open connections at once from one IP address. Trusted proxies are
    /// exempt: their connections carry many clients.
    pub max_connections_per_ip: usize,
    /// Seconds a connection may take to send a complete request head,
    /// counted from when it opens or from the end of its previous response;
    /// so it also closes idle keep-alive connections.
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take to send its whole body.
    pub request_body_timeout_secs: u64,
    /// Seconds a request may take from its head to its response.
    pub request_timeout_secs: u64,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// On SIGTERM, seconds `/readyz` answers 503 while requests are still
    /// served, so load balancers stop sending traffic before the listener closes.
    pub shutdown_drain_secs: u64,
    /// After the listener closes, seconds in-flight requests get to finish.
    pub shutdown_grace_secs: u64,
    /// RFC 7591 registrations per IP address per hour (when registration is on).
    pub registrations_per_ip_per_hour: i64,
    #[serde(skip)]
    pub enabled: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            device_starts_per_client_per_minute: 600,
            device_starts_per_ip_per_minute: 60,
            device_starts_per_minute: 6_000,
            user_code_failures_per_hour: 50,
            failed_sign_ins_before_lockout: 5,
            lockout_seconds: 900,
            sign_ins_per_ip_per_minute: 30,
            password_hashes_in_flight: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout_secs: 10,
            request_body_timeout_secs: 10,
            request_timeout_secs: 30,
            max_header_bytes: 16 * 1024,
            shutdown_drain_secs: 5,
            shutdown_grace_secs: 30,
            registrations_per_ip_per_hour: 10,
            enabled: true,
        }
    }
}

/// `[cimd]`: client ID metadata documents (an `https` URL as `client_id`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cimd {
    /// Also fetch `http://127.0.0.1` and `http://[::1]` documents. For tests
    /// only: it lets a client id reach this machine's own services.
    pub allow_loopback: bool,
}

/// `[tls]`: native TLS; the same as `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The PEM files `keyport serve` serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's certificate first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[registration]`: RFC 7591 dynamic client registration, off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    pub enabled: bool,
}

/// `[tokens]`: lifetimes in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    /// The longest a session lives, however often it refreshes (ASVS 10.4.8).
    pub session_max_lifetime: i64,
    pub device_code_ttl: i64,
    pub device_poll_interval: i64,
    /// How long a retry of the latest refresh (or of a device-code poll
    /// whose reply was lost) gets the same tokens again; 0 allows no retry.
    pub refresh_leeway: i64,
    /// Issue a fresh ID token on refresh as well.
    pub id_token_on_refresh: bool,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: 900,
            refresh_token_ttl: 30 * 86_400,
            session_max_lifetime: 90 * 86_400,
            device_code_ttl: 900,
            device_poll_interval: 5,
            refresh_leeway: 30,
            id_token_on_refresh: false,
        }
    }
}

/// `[retention]`: how long what no rule needs any more is kept, in days.
/// Housekeeping prunes the rest in small batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Audit events older than this are deleted.
    pub audit_days: i64,
    /// Ended sessions (revoked, or past their last refresh token's expiry or
    /// their absolute lifetime) are deleted, with their tokens, this long
    /// after they ended.
    pub ended_sessions_days: i64,
    /// Most rows one housekeeping statement deletes: each batch is a short
    /// write transaction of its own, so the writer is never held for long.
    pub batch_size: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            audit_days: 400,
            ended_sessions_days: 30,
            batch_size: 100,
        }
    }
}

/// `[keys]`: automatic signing-key rotation, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySettings {
    /// A signing key is replaced once it has signed this long.
    pub rotate_after: i64,
    /// The next key is published in the JWKS this long before it signs
    /// anything (longer than any JWKS cache).
    pub publish_ahead: i64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            rotate_after: 90 * 86_400,
            publish_ahead: 86_400,
        }
    }
}

/// A scope in the catalogue and the least role that may be granted it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDef {
    pub name: String,
    #[serde(default)]
    pub min_role: Option<Role>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `[headless]`: a team's own sign-in and approval UI on the headless API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Headless {
    /// With it, `/device?user_code=…` sends the browser to
    /// `ui_url?request=ID&view=device` instead of the hosted page.
    pub ui_url: Option<String>,
    /// Origins (`https://app.example.com`) whose pages may call
    /// `/api/headless` from the browser (CORS, with credentials); the
    /// origin of `ui_url` is one of them.
    pub allowed_origins: Vec<String>,
}

impl Headless {
    /// Whether a page at `origin` may call the headless API.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// Which seed system's API a profile serves (PRODUCT.md, "Seed API
/// profiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// Seed 000: `/api/oauth/{device,token,userinfo,revoke}`, JSON bodies.
    Anysola,
    /// Seed 001.
    Anny,
    /// Seed 002: `/api/auth/{device/code,device/token,refresh,revoke}`.
    Openskill,
    /// Seed 003.
    Anchor,
    /// Seed 004.
    Sqlos,
}

impl ProfileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Anysola => "anysola",
            ProfileKind::Anny => "anny",
            ProfileKind::Openskill => "openskill",
            ProfileKind::Anchor => "anchor",
            ProfileKind::Sqlos => "sqlos",
        }
    }

    /// The base path of the seed's own API.
    pub fn default_base(self) -> &'static str {
        match self {
            ProfileKind::Anysola => "/api/oauth",
            ProfileKind::Openskill => "/api/auth",
            ProfileKind::Anny | ProfileKind::Anchor => "/oauth",
            ProfileKind::Sqlos => "/sqlos/auth",
        }
    }
}

/// `[[profiles]]`: one seed system's documented API, mounted beside
/// Keyport's own and served by the same domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDecl {
    pub kind: ProfileKind,
    /// Requests that name no `client_id` act as this client.
    pub client: String,
    /// Replaces the seed's base path; "" serves the seed's own paths.
    #[serde(default)]
    pub prefix: String,
}

impl ProfileDecl {
    /// Where the profile's routes live: the prefix, or the seed's own base.
    pub fn base(&self) -> &str {
        match self.prefix.as_str() {
            "" => self.kind.default_base(),
            prefix => prefix,
        }
    }
}

/// A client declared in the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDecl {
    pub id: String,
    pub name: String,
    /// `public` or `confidential` (the same as `confidential = true`).
    #[serde(default, rename = "type")]
    pub kind: Option<ClientKind>,
    #[serde(default)]
    pub confidential: bool,
    /// SHA-256 (base64url) of the secret, for confidential clients; or
    /// `secret_env`, the name of a variable holding the secret.
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    pub grants: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    pub access_token_format: Option<String>,
    #[serde(default)]
    pub access_token_alg: Option<String>,
    #[serde(default)]
    pub access_token_prefix: Option<String>,
    #[serde(default)]
    pub refresh_token_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    Public,
    Confidential,
}

impl ClientDecl {
    pub fn is_confidential(&self) -> bool {
        self.confidential || self.kind == Some(ClientKind::Confidential)
    }

    pub fn spec(&self) -> crate::domain::clients::ClientSpec {
        crate::domain::clients::ClientSpec {
            id: self.id.clone(),
            name: self.name.clone(),
            confidential: self.is_confidential(),
            grants: self.grants.clone(),
            scopes: self.scopes.clone(),
            default_scopes: self.default_scopes.clone(),
            audiences: self.audiences.clone(),
            redirect_uris: self.redirect_uris.clone(),
            first_party: self.first_party,
            access_token_format: self.access_token_format.clone(),
            access_token_alg: self.access_token_alg.clone(),
            access_token_prefix: self.access_token_prefix.clone(),
            refresh_token_prefix: self.refresh_token_prefix.clone(),
        }
    }
}

/// `[smtp]`: where mail (two-step codes) goes. Without a host, mail is
/// written to `outbox/` in the data directory, one `.eml` file a message.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    pub host: Option<String>,
    /// Default 587 with STARTTLS, 25 without.
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, e.g. `Keyport <auth@example.com>`.
    pub from: String,
    /// STARTTLS before anything is sent (default on).
    pub starttls: bool,
}

impl Default for Smtp {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            username: None,
            password: None,
            from: "Keyport <keyport@localhost>".into(),
            starttls: true,
        }
    }
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from)
            .field("starttls", &self.starttls)
            .finish()
    }
}

/// `[sms]`: text-message codes are POSTed as JSON (`{"to", "text"}`) to
/// this webhook; without one they go to the outbox.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sms {
    pub webhook_url: Option<String>,
}
