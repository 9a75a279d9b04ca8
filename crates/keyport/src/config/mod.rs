//! One `Config`, loaded from `keyport.toml`, `KEYPORT_*` environment
//! variables and flags (flags win, then the environment, then the file),
//! and passed explicitly to everything that needs it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

mod sections;

pub use sections::{
    Cimd, ClientDecl, ClientKind, Headless, KeySettings, Limits, ProfileDecl, ProfileKind,
    Registration, Retention, ScopeDef, Sms, Smtp, TlsFiles, TlsSection, TokenSettings,
};

/// Flags every command shares: where the data lives.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Directory for the SQLite database, master key and outbox
    #[arg(long, env = "KEYPORT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL (postgres://…) or SQLite (sqlite://…) URL; default: SQLite in the data directory
    #[arg(
        long,
        env = "KEYPORT_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Configuration file (TOML)
    #[arg(long, env = "KEYPORT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// Flags of `keyport serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "KEYPORT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Issuer URL (https, except on loopback); default http:// + the listen
    /// address, or https:// with --tls-cert
    #[arg(long, env = "KEYPORT_ISSUER")]
    pub issuer: Option<String>,
    /// Serve TLS with this certificate chain (PEM, server certificate
    /// first); needs --tls-key. Re-read on SIGHUP
    #[arg(long, env = "KEYPORT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1);
    /// needs --tls-cert. Re-read on SIGHUP
    #[arg(long, env = "KEYPORT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Seed a demo user, workspace and the public `kp` client
    #[arg(long)]
    pub demo: bool,
    /// Turn off rate limits and throttles (for load tests); `slow_down` on fast polling stays
    #[arg(long)]
    pub no_rate_limits: bool,
}

/// The file's shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub issuer: Option<String>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub tls: TlsSection,
    pub limits: Limits,
    pub tokens: TokenSettings,
    pub retention: Retention,
    pub keys: KeySettings,
    pub cimd: Cimd,
    pub registration: Registration,
    pub smtp: Smtp,
    pub sms: Sms,
    pub scopes: Vec<ScopeDef>,
    pub clients: Vec<ClientDecl>,
    pub profiles: Vec<ProfileDecl>,
    pub headless: Headless,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub issuer: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// The master key as given in `KEYPORT_MASTER_KEY`; else a key file in the data directory.
    pub master_key: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
    /// Serve `/metrics` on this address (only), apart from the public listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve TLS natively with these files (`keyport serve`); `None` for
    /// plain HTTP, on loopback or behind a TLS-terminating proxy.
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub tokens: TokenSettings,
    pub retention: Retention,
    pub keys: KeySettings,
    pub cimd: Cimd,
    pub registration: Registration,
    pub smtp: Smtp,
    pub sms: Sms,
    pub scopes: Vec<ScopeDef>,
    pub clients: Vec<ClientDecl>,
    pub profiles: Vec<ProfileDecl>,
    pub headless: Headless,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid configuration file {0}: {1}")]
    Parse(String, String),
    #[error("invalid issuer {0:?}: {1}")]
    Issuer(String, &'static str),
    #[error("TLS needs both a certificate and a key: {0}")]
    TlsIncomplete(&'static str),
    #[error("[[profiles]] {0}: {1}")]
    Profile(String, String),
    #[error("[headless] {0}")]
    Headless(String),
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Config {
    pub fn load(store: &StoreArgs, serve: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &store.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = serve
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default listen address"));
        let tls = tls_files(
            serve.tls_cert.clone().or(file.tls.cert),
            serve.tls_key.clone().or(file.tls.key),
        )?;
        let issuer = serve
            .issuer
            .clone()
            .or(file.issuer)
            .unwrap_or_else(|| default_issuer(listen, tls.is_some()));
        let issuer = check_issuer(&issuer)?;
        // The listener then speaks TLS only: an http issuer would name
        // endpoints nobody can reach.
        if tls.is_some() && !issuer.starts_with("https://") {
            return Err(ConfigError::Issuer(
                issuer,
                "must be https when Keyport serves TLS itself (--tls-cert)",
            ));
        }
        let mut limits = file.limits;
        limits.enabled = !serve.no_rate_limits;
        let profiles = check_profiles(file.profiles)?;
        // Seed 003: "Non-HTTPS requests will be rejected."
        if profiles.iter().any(|p| p.kind == ProfileKind::Anchor) && !issuer.starts_with("https://")
        {
            return Err(ConfigError::Profile(
                "anchor".into(),
                "needs an https issuer (seed 003 is HTTPS only)".into(),
            ));
        }
        Ok(Self {
            issuer,
            listen,
            data_dir: store
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./keyport-data")),
            database_url: store.database_url.clone().or(file.database_url),
            master_key: master_key_from_env(),
            trusted_proxies: file.trusted_proxies,
            metrics_listen: file.metrics_listen,
            tls,
            limits,
            tokens: file.tokens,
            retention: file.retention,
            keys: file.keys,
            cimd: file.cimd,
            registration: file.registration,
            smtp: file.smtp,
            sms: file.sms,
            scopes: file.scopes,
            clients: file.clients,
            profiles,
            headless: check_headless(file.headless)?,
        })
    }

    /// The configuration `keyport serve` would use with no file and no
    /// flags, at `issuer` with its data in `data_dir`, for a program that
    /// embeds Keyport (its [`Router`](crate::http::router) or its
    /// [service API](crate::embed)). The issuer is checked as `serve`
    /// checks it; the fields stay public to change anything else.
    pub fn embedded(issuer: &str, data_dir: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let issuer = check_issuer(issuer)?;
        Ok(Self {
            issuer,
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            data_dir: data_dir.into(),
            database_url: None,
            master_key: master_key_from_env(),
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            tls: None,
            limits: Limits::default(),
            tokens: TokenSettings::default(),
            retention: Retention::default(),
            keys: KeySettings::default(),
            cimd: Cimd::default(),
            registration: Registration::default(),
            smtp: Smtp::default(),
            sms: Sms::default(),
            scopes: Vec::new(),
            clients: Vec::new(),
            profiles: Vec::new(),
            headless: Headless::default(),
        })
    }

    /// The issuers this server answers as: its own, then each `sqlos`
    /// profile's (its own followed by the mount path).
    pub fn issuers(&self) -> Vec<String> {
        let mounts = self
            .profiles
            .iter()
            .filter(|p| p.kind == ProfileKind::Sqlos);
        std::iter::once(self.issuer.clone())
            .chain(mounts.map(|p| self.issuer_at(Some(p.base())).into_owned()))
            .collect()
    }

    /// The issuer of a mount path: Keyport's own followed by it (`None`:
    /// Keyport's own).
    pub fn issuer_at(&self, mount: Option<&str>) -> std::borrow::Cow<'_, str> {
        match mount {
            None => self.issuer.as_str().into(),
            Some(mount) => format!("{}{mount}", self.issuer).into(),
        }
    }

    pub fn issuer_is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

/// `ui_url` an absolute http(s) URL; each origin `scheme://host[:port]`;
/// the origin of `ui_url` allowed with the others.
pub fn check_headless(mut headless: Headless) -> Result<Headless, ConfigError> {
    let origin_of = |text: &str| -> Option<String> {
        let url = url::Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return None;
        }
        Some(url.origin().ascii_serialization())
    };
    for origin in &headless.allowed_origins {
        if origin_of(origin).as_deref() != Some(origin.as_str()) {
            return Err(ConfigError::Headless(format!(
                "allowed_origins: {origin:?} is not an origin like \"https://app.example.com\""
            )));
        }
    }
    if let Some(ui) = &headless.ui_url {
        let origin = origin_of(ui).ok_or_else(|| {
            ConfigError::Headless(format!("ui_url: {ui:?} is not an http(s) URL"))
        })?;
        if !headless.allows(&origin) {
            headless.allowed_origins.push(origin);
        }
    }
    Ok(headless)
}

/// First path segments of Keyport's own routes, which no profile may take.
const RESERVED_SEGMENTS: &[&str] = &[
    "oauth",
    ".well-known",
    "device",
    "signin",
    "account",
    "dashboard",
    "setup",
    "assets",
    "invitations",
    "healthz",
    "readyz",
    "metrics",
];

/// The profiles this version serves, each at a path of its own.
pub fn check_profiles(profiles: Vec<ProfileDecl>) -> Result<Vec<ProfileDecl>, ConfigError> {
    let mut mounted: Vec<&str> = Vec::new();
    for p in &profiles {
        let bad = |why: &str| ConfigError::Profile(p.kind.as_str().to_string(), why.to_string());
        if p.client.is_empty() {
            return Err(bad("client must name a client"));
        }
        let shaped = p.prefix.is_empty()
            || (p.prefix.starts_with('/')
                && !p.prefix.ends_with('/')
                && p.prefix[1..]
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
        if !shaped {
            return Err(bad(
                "prefix is \"\" or a path like \"/legacy\" (no trailing slash)",
            ));
        }
        // Keyport's own paths stay its own. (anny and anchor without a
        // prefix are Keyport's own `/oauth/…`, answered in their shape.)
        let native =
            p.prefix.is_empty() && matches!(p.kind, ProfileKind::Anny | ProfileKind::Anchor);
        let first = p
            .base()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        let under = |base: &str, path: &str| base == path || base.starts_with(&format!("{path}/"));
        let own = RESERVED_SEGMENTS.contains(&first)
            || ["/api/v1", "/api/headless"]
                .iter()
                .any(|path| under(p.base(), path));
        if !native && own {
            return Err(bad("prefix would cover one of Keyport's own paths"));
        }
        // One profile's routes never land inside another's.
        let overlaps = mounted
            .iter()
            .any(|other: &&str| under(p.base(), other) || under(other, p.base()));
        if overlaps {
            return Err(bad(
                "another profile is mounted at the same path or around it",
            ));
        }
        if !native {
            mounted.push(p.base());
        }
    }
    Ok(profiles)
}

/// With TLS on, the listener speaks https, and so does the default issuer.
fn default_issuer(listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{listen}")
}

/// Both files or neither: a certificate without its key (or the reverse)
/// is a mistake, not a request for plain HTTP.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::TlsIncomplete(
            "the certificate is set but not the key (--tls-key, KEYPORT_TLS_KEY or [tls] key)",
        )),
        (None, Some(_)) => Err(ConfigError::TlsIncomplete(
            "the key is set but not the certificate (--tls-cert, KEYPORT_TLS_CERT or [tls] cert)",
        )),
    }
}

fn master_key_from_env() -> Option<String> {
    if let Ok(key) = std::env::var("KEYPORT_MASTER_KEY") {
        return Some(key);
    }
    let path = std::env::var("KEYPORT_MASTER_KEY_FILE").ok()?;
    std::fs::read_to_string(path).ok()
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.display().to_string(), e.to_string()))
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The issuer is one string without a trailing slash, https unless on loopback.
fn check_issuer(issuer: &str) -> Result<String, ConfigError> {
    let bad = |why| ConfigError::Issuer(issuer.to_string(), why);
    let url = url::Url::parse(issuer).map_err(|_| bad("not a URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an issuer has no query or fragment"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url.host_str().unwrap_or("")) => {}
        "http" => return Err(bad("must be https unless the host is loopback")),
        _ => return Err(bad("must be an http(s) URL")),
    }
    Ok(issuer.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scopes::Role;

    #[test]
    fn the_readme_example_configuration_parses() {
        let readme = include_str!("../../../../README.md");
        let start = readme.find("```toml\n").expect("README has a TOML example") + 8;
        let end = start + readme[start..].find("```").unwrap();
        let file: FileConfig = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(file.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(file.limits.failed_sign_ins_before_lockout, 5);
        assert_eq!(file.tokens.refresh_leeway, 30);
        assert_eq!(file.clients[0].id, "acme-cli");
        assert_eq!(file.scopes[0].min_role, Some(Role::Member));
    }

    #[test]
    fn tls_needs_both_files_and_makes_the_default_issuer_https() {
        let listen: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let both = tls_files(Some("c.pem".into()), Some("k.pem".into())).unwrap();
        assert_eq!(
            both,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert_eq!(tls_files(None, None).unwrap(), None);
        let no_key = tls_files(Some("c.pem".into()), None).unwrap_err();
        assert!(no_key.to_string().contains("--tls-key"), "{no_key}");
        let no_cert = tls_files(None, Some("k.pem".into())).unwrap_err();
        assert!(no_cert.to_string().contains("--tls-cert"), "{no_cert}");
        assert_eq!(default_issuer(listen, true), "https://0.0.0.0:8443");
        assert_eq!(default_issuer(listen, false), "http://0.0.0.0:8443");
    }

    #[test]
    fn flags_win_over_the_files_tls_section() {
        let dir = std::env::temp_dir().join(format!("keyport-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyport.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:8443\"\n[tls]\ncert = \"file-cert.pem\"\nkey = \"file-key.pem\"\n",
        )
        .unwrap();
        let store = StoreArgs {
            config: Some(path),
            ..StoreArgs::default()
        };
        let from_file = Config::load(&store, &ServeArgs::default()).unwrap();
        assert_eq!(
            from_file.tls,
            Some(TlsFiles {
                cert: "file-cert.pem".into(),
                key: "file-key.pem".into()
            })
        );
        assert_eq!(from_file.issuer, "https://127.0.0.1:8443");
        let serve = ServeArgs {
            tls_key: Some("flag-key.pem".into()),
            issuer: Some("https://auth.example.com".into()),
            ..ServeArgs::default()
        };
        let flagged = Config::load(&store, &serve).unwrap();
        let tls = flagged.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("file-cert.pem"));
        assert_eq!(tls.key, PathBuf::from("flag-key.pem"));
        assert_eq!(flagged.issuer, "https://auth.example.com");
        let plain_issuer = ServeArgs {
            issuer: Some("http://127.0.0.1:8443".into()),
            ..ServeArgs::default()
        };
        let refused = Config::load(&store, &plain_issuer).unwrap_err();
        assert!(refused.to_string().contains("must be https"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn issuer_must_be_https_outside_loopback() {
        assert!(check_issuer("http://auth.example.com").is_err());
        assert_eq!(
            check_issuer("https://auth.example.com/").unwrap(),
            "https://auth.example.com"
        );
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer("http://localhost:1").is_ok());
        assert!(check_issuer("http://[::1]:8080").is_ok());
    }

    #[test]
    fn profiles_are_read_from_the_file_and_checked() {
        let file: FileConfig = toml::from_str(
            "[[profiles]]\nkind = \"openskill\"\nclient = \"osk-cli\"\nprefix = \"\"\n\n\
             [[profiles]]\nkind = \"anysola\"\nclient = \"anysola-cli\"\n",
        )
        .unwrap();
        let profiles = check_profiles(file.profiles).unwrap();
        assert_eq!(profiles[0].kind, ProfileKind::Openskill);
        assert_eq!(profiles[0].base(), "/api/auth");
        assert_eq!(profiles[1].base(), "/api/oauth");
        let unknown = "[[profiles]]\nkind = \"keycloak\"\nclient = \"x\"\n";
        assert!(toml::from_str::<FileConfig>(unknown).is_err());
        let decl = |kind, prefix: &str| ProfileDecl {
            kind,
            client: "x".into(),
            prefix: prefix.into(),
        };
        let sqlos = check_profiles(vec![decl(ProfileKind::Sqlos, "")]).unwrap();
        assert_eq!(sqlos[0].base(), "/sqlos/auth");
        for (clash, why) in [
            (
                vec![
                    decl(ProfileKind::Openskill, ""),
                    decl(ProfileKind::Sqlos, "/api/auth/device"),
                ],
                "around it",
            ),
            (
                vec![
                    decl(ProfileKind::Sqlos, "/api"),
                    decl(ProfileKind::Anysola, ""),
                ],
                "around it",
            ),
            (
                vec![
                    decl(ProfileKind::Anysola, "/x"),
                    decl(ProfileKind::Sqlos, "/x"),
                ],
                "same path",
            ),
            (
                vec![decl(ProfileKind::Sqlos, "/api/headless")],
                "Keyport's own",
            ),
            (
                vec![decl(ProfileKind::Sqlos, "/oauth/sqlos")],
                "Keyport's own",
            ),
        ] {
            let refused = check_profiles(clash).unwrap_err().to_string();
            assert!(refused.contains(why), "{refused}");
        }
        // anny and anchor without a prefix are Keyport's own `/oauth/…`.
        let native = vec![decl(ProfileKind::Anny, ""), decl(ProfileKind::Sqlos, "")];
        assert!(check_profiles(native).is_ok());
    }

    #[test]
    fn a_sqlos_profile_is_an_issuer_of_its_own() {
        let mut config = Config::embedded("https://auth.example.com/", "/tmp/unused").unwrap();
        config.profiles = check_profiles(vec![ProfileDecl {
            kind: ProfileKind::Sqlos,
            client: "acme-cli".into(),
            prefix: String::new(),
        }])
        .unwrap();
        assert_eq!(
            config.issuers(),
            [
                "https://auth.example.com",
                "https://auth.example.com/sqlos/auth"
            ]
        );
    }
}
