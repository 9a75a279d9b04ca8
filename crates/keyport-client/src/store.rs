//! Where a logged-in CLI keeps its tokens: the [`TokenStore`] trait and its 0600 file implementation.
//!
//! The file is `<config dir>/credentials.json`, one record per issuer:
//!
//! ```json
//! { "version": 1,
//!   "current": "https://auth.example.com",
//!   "credentials": { "https://auth.example.com": { "issuer": "…", "client_id": "kp", … } } }
//! ```
//!
//! Writes go to a fresh 0600 temporary file that is renamed over the old
//! one, so a reader in another process sees the old file or the new one,
//! never half of either. The refresh lock is `credentials.lock` beside it.
//!
//! A `KeyringStore` (feature `keyring`) shares this file: it keeps the
//! refresh token in the OS keyring instead, leaves it out of the record and
//! marks the record `"refresh_token_in_keyring": true`. The [`FileStore`]
//! refuses such a record rather than use it without its refresh token.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use etcetera::AppStrategy;
use keyport_proto::TokenResponse;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::{AccessToken, RefreshToken};

const FORMAT_VERSION: u32 = 1;

/// One issuer's stored login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub issuer: String,
    pub client_id: String,
    pub access_token: AccessToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// When the access token expires, in unix seconds of this machine's clock.
    pub expires_at: i64,
    /// The granted scopes, space-separated as on the wire.
    pub scope: String,
    /// The RFC 8707 resource the tokens were requested for, repeated on refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Endpoints are kept so refresh, userinfo and logout need no rediscovery.
    pub token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Credentials {
    /// True when the access token is still good `margin_secs` from `now`.
    pub fn access_token_valid(&self, now: i64, margin_secs: i64) -> bool {
        self.expires_at > now.saturating_add(margin_secs)
    }

    /// True when these credentials can still produce an access token without
    /// a new login (the issuer may yet have revoked them).
    pub fn is_usable(&self, now: i64) -> bool {
        self.refresh_token.is_some() || self.access_token_valid(now, 0)
    }

    /// Applies a token response (RFC 6749 §5.1). A refresh response may omit
    /// the refresh token (no rotation) or the scope (unchanged, §5.1), so
    /// those are kept from before.
    pub(crate) fn apply(&mut self, response: TokenResponse, now: i64) -> Result<()> {
        if !response.token_type.eq_ignore_ascii_case("bearer") {
            return Err(Error::InvalidResponse(format!(
                "token_type {:?} (only Bearer is supported)",
                response.token_type
            )));
        }
        self.access_token = AccessToken::new(response.access_token);
        if let Some(refresh_token) = response.refresh_token {
            self.refresh_token = Some(RefreshToken::new(refresh_token));
        }
        // The issuer's absolute `expires_at` is on its clock; `expires_in`
        // on ours is what keeps refresh timing right under clock skew.
        self.expires_at =
            now.saturating_add(i64::try_from(response.expires_in).unwrap_or(i64::MAX));
        if !response.scope.is_empty() {
            self.scope = response.scope;
        }
        Ok(())
    }
}

/// Exclusive right to read, refresh and write one store's credentials,
/// released when dropped.
#[must_use = "the lock is released when this value is dropped"]
pub struct StoreLock {
    _guard: Box<dyn Send>,
}

impl StoreLock {
    /// Wraps whatever keeps the lock held (a locked file, a mutex guard).
    pub fn new(guard: impl Send + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

/// A place to keep credentials. Methods do not lock: callers that
/// read-modify-write take [`TokenStore::lock`] around the whole sequence.
pub trait TokenStore: Send + Sync {
    /// How the store is reported to users: `"file"`, `"keyring"`, …
    fn kind(&self) -> &'static str;
    fn load(&self, issuer: &str) -> Result<Option<Credentials>>;
    fn save(&self, credentials: &Credentials) -> Result<()>;
    /// Forgets the issuer; if it was current, no issuer is current afterwards.
    fn delete(&self, issuer: &str) -> Result<()>;
    /// The issuer of the last login, used when the caller names none.
    fn current_issuer(&self) -> Result<Option<String>>;
    fn set_current_issuer(&self, issuer: &str) -> Result<()>;
    /// Blocks until this process holds the store's exclusive lock, across
    /// processes: two CLI invocations refreshing at once would otherwise
    /// both present the same rotating refresh token.
    fn lock(&self) -> Result<StoreLock>;
}

/// The config directory: `$<env_var>` when set and not empty, else the
/// platform's per-user config directory for `app_name` (`~/.config/<app>` on
/// Linux and macOS, as CLIs there do). Never the working directory.
pub fn config_dir(app_name: &str, env_var: Option<&str>) -> Result<PathBuf> {
    if let Some(dir) = env_var.and_then(std::env::var_os).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let strategy = etcetera::choose_app_strategy(etcetera::AppStrategyArgs {
        top_level_domain: "dev".into(),
        author: "Keyport".into(),
        app_name: app_name.into(),
    })
    .map_err(|e| Error::NoConfigDir(e.to_string()))?;
    Ok(strategy.config_dir())
}

/// Credentials in `<dir>/credentials.json`, mode 0600.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<String>,
    #[serde(default)]
    credentials: BTreeMap<String, Record>,
}

/// One issuer's entry in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(flatten)]
    pub(crate) credentials: Credentials,
    /// The refresh token is in the OS keyring, not in `credentials`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) refresh_token_in_keyring: bool,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// A store in [`config_dir`]`(app_name, env_var)`.
    pub fn in_config_dir(app_name: &str, env_var: Option<&str>) -> Result<Self> {
        Ok(Self::new(config_dir(app_name, env_var)?))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("credentials.lock")
    }

    fn read(&self) -> Result<Document> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Document::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::CorruptStore { path, source })
    }

    fn write(&self, mut document: Document) -> Result<()> {
        document.version = FORMAT_VERSION;
        self.create_dir()?;
        let json = serde_json::to_vec_pretty(&document).expect("credentials serialize to JSON");
        let path = self.path();
        // A unique name with create_new: a stale or planted file of the same
        // name could otherwise keep its own, wider, permissions.
        let temp = self.dir.join(format!(
            ".credentials.json.{}.{}.tmp",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let written = (|| {
            let mut file = private_file().create_new(true).open(&temp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::io(path, e));
        }
        Ok(())
    }

    fn create_dir(&self) -> Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))
    }

    fn update(&self, change: impl FnOnce(&mut Document)) -> Result<()> {
        let mut document = self.read()?;
        change(&mut document);
        self.write(document)
    }

    /// The issuer's record as it is in the file, marker and all.
    pub(crate) fn load_record(&self, issuer: &str) -> Result<Option<Record>> {
        Ok(self.read()?.credentials.remove(issuer))
    }

    pub(crate) fn save_record(&self, record: Record) -> Result<()> {
        self.update(|document| {
            document
                .credentials
                .insert(record.credentials.issuer.clone(), record);
        })
    }
}

impl TokenStore for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn load(&self, issuer: &str) -> Result<Option<Credentials>> {
        match self.load_record(issuer)? {
            // Without its refresh token the login would look expired at the
            // first refresh and be deleted, logging the keyring out too.
            Some(record) if record.refresh_token_in_keyring => Err(Error::RefreshTokenInKeyring {
                issuer: issuer.to_owned(),
            }),
            record => Ok(record.map(|record| record.credentials)),
        }
    }

    fn save(&self, credentials: &Credentials) -> Result<()> {
        self.save_record(Record {
            credentials: credentials.clone(),
            refresh_token_in_keyring: false,
        })
    }

    fn delete(&self, issuer: &str) -> Result<()> {
        if !self.path().exists() {
            return Ok(());
        }
        self.update(|document| {
            document.credentials.remove(issuer);
            if document.current.as_deref() == Some(issuer) {
                document.current = None;
            }
        })
    }

    fn current_issuer(&self) -> Result<Option<String>> {
        Ok(self.read()?.current)
    }

    fn set_current_issuer(&self, issuer: &str) -> Result<()> {
        self.update(|document| document.current = Some(issuer.to_owned()))
    }

    fn lock(&self) -> Result<StoreLock> {
        self.create_dir()?;
        let path = self.lock_path();
        let file = private_file()
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // The OS releases the lock when the file is closed, also when the
        // process dies mid-refresh, so no stale lock can outlive it.
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(StoreLock::new(file))
    }
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(test)]
pub(crate) fn sample_credentials(issuer: &str, expires_at: i64) -> Credentials {
    Credentials {
        issuer: issuer.into(),
        client_id: "kp".into(),
        access_token: AccessToken::new("at-1"),
        refresh_token: Some(RefreshToken::new("kp_rt_1")),
        expires_at,
        scope: "openid offline_access".into(),
        resource: None,
        token_endpoint: format!("{issuer}/oauth/token"),
        revocation_endpoint: Some(format!("{issuer}/oauth/revoke")),
        userinfo_endpoint: Some(format!("{issuer}/oauth/userinfo")),
        subject: Some("user-1".into()),
        email: Some("alice@example.com".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const ISSUER: &str = "https://auth.example.com";

    #[test]
    fn saves_loads_and_deletes_per_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("kp"));
        assert_eq!(store.load(ISSUER).unwrap(), None);

        let first = sample_credentials(ISSUER, 100);
        let second = sample_credentials("https://other.example.com", 200);
        store.save(&first).unwrap();
        store.save(&second).unwrap();
        store.set_current_issuer(ISSUER).unwrap();

        assert_eq!(store.load(ISSUER).unwrap(), Some(first));
        assert_eq!(store.current_issuer().unwrap().as_deref(), Some(ISSUER));

        store.delete(ISSUER).unwrap();
        assert_eq!(store.load(ISSUER).unwrap(), None);
        assert_eq!(store.current_issuer().unwrap(), None);
        assert_eq!(
            store.load("https://other.example.com").unwrap(),
            Some(second)
        );
    }

    #[cfg(unix)]
    #[test]
    fn credentials_and_lock_are_private_to_the_user() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("kp"));
        // A pre-existing world-readable file must not keep its mode.
        fs::create_dir_all(dir.path().join("kp")).unwrap();
        fs::write(store.path(), "{\"version\":1}").unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();

        store.save(&sample_credentials(ISSUER, 100)).unwrap();
        let _lock = store.lock().unwrap();

        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&store.lock_path()), 0o600);
        assert_eq!(store.lock_path().parent(), store.path().parent());
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("kp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        fs::write(store.path(), "not json").unwrap();
        assert!(matches!(
            store.load(ISSUER),
            Err(Error::CorruptStore { .. })
        ));
        assert!(store.save(&sample_credentials(ISSUER, 1)).is_err());
        assert_eq!(fs::read_to_string(store.path()).unwrap(), "not json");
    }

    #[test]
    fn the_file_holds_the_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.save(&sample_credentials(ISSUER, 100)).unwrap();
        store.set_current_issuer(ISSUER).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(store.path()).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["current"], ISSUER);
        let record = &json["credentials"][ISSUER];
        assert_eq!(record["refresh_token"], "kp_rt_1");
        assert_eq!(record["expires_at"], 100);
        assert_eq!(record["token_endpoint"], format!("{ISSUER}/oauth/token"));
    }

    #[test]
    fn config_dir_falls_back_to_the_per_user_directory() {
        // Setting a variable is `unsafe` in edition 2024 (and unsafe code is
        // forbidden here), so this reads one that is never set; the kp CLI
        // tests cover the variable itself.
        let fallback = config_dir("kp", Some("KEYPORT_CLIENT_TEST_UNSET_DIR")).unwrap();
        assert!(fallback.ends_with("kp"), "{}", fallback.display());
        assert!(fallback.is_absolute());
    }

    #[test]
    fn token_responses_keep_what_a_refresh_omits() {
        let mut credentials = sample_credentials(ISSUER, 100);
        let response = TokenResponse {
            access_token: "at-2".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token: None,
            scope: String::new(),
            id_token: None,
            expires_at: None,
            guid: None,
        };
        credentials.apply(response.clone(), 1_000).unwrap();
        assert_eq!(credentials.access_token.secret(), "at-2");
        assert_eq!(
            credentials.refresh_token.as_ref().unwrap().secret(),
            "kp_rt_1"
        );
        assert_eq!(credentials.scope, "openid offline_access");
        assert_eq!(credentials.expires_at, 1_900);

        let mac = TokenResponse {
            token_type: "mac".into(),
            ..response
        };
        assert!(credentials.apply(mac, 0).is_err());
    }
}
