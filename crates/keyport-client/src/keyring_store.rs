//! [`KeyringStore`]: the refresh token in the OS keyring, the rest in the 0600 credentials file.
//!
//! Only the refresh token, the one long-lived secret, goes to the keyring:
//! one entry per login, service `<app>:<issuer>`, user `<client_id>`, the
//! token as its password. Everything else (endpoints, scope, expiry, who
//! logged in, the current issuer and the short-lived access token) stays in
//! the [`FileStore`]'s `credentials.json`, which is why:
//!
//! - a JWT access token can outgrow what some keyrings accept (Windows
//!   Credential Manager caps a secret at 2,560 bytes), and it expires in
//!   minutes anyway, while the refresh token is what outlives a stolen file;
//! - one small entry per login keeps keyring prompts and D-Bus calls few;
//! - the current issuer and the cross-process refresh lock
//!   (`credentials.lock`) work the same with either store.
//!
//! The file record of a login whose token is in the keyring carries
//! `"refresh_token_in_keyring": true`, which a plain [`FileStore`] refuses
//! (see [`Error::RefreshTokenInKeyring`]). A record without the marker (a
//! login saved by a `FileStore`) is read with its token from the file, and
//! the next save moves the token into the keyring.

use std::path::PathBuf;
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};

use crate::error::{Error, Result};
use crate::secret::RefreshToken;
use crate::store::{Credentials, FileStore, Record, StoreLock, TokenStore};

/// Refresh tokens in an OS keyring, the rest of each login in
/// `<dir>/credentials.json` (mode 0600).
#[derive(Clone)]
pub struct KeyringStore {
    files: FileStore,
    keyring: Arc<CredentialStore>,
    app_name: String,
}

impl std::fmt::Debug for KeyringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringStore")
            .field("files", &self.files)
            .field("keyring", &self.keyring.vendor())
            .field("app_name", &self.app_name)
            .finish()
    }
}

impl KeyringStore {
    /// The platform's keyring: Keychain on macOS, Credential Manager on
    /// Windows, the Secret Service (over D-Bus) elsewhere. Fails when it
    /// cannot be reached; that it also accepts writes is for
    /// [`KeyringStore::probe`] to find out.
    pub fn platform(dir: impl Into<PathBuf>, app_name: &str) -> Result<Self> {
        if let Err(error) = keyring::Entry::store_status() {
            return Err(Error::Keyring(error.to_string().into()));
        }
        let keyring = keyring_core::get_default_store().ok_or_else(|| {
            Error::Keyring("the keyring crate set no default credential store".into())
        })?;
        Ok(Self::with_keyring(dir, app_name, keyring))
    }

    /// A store over any `keyring-core` credential store (tests pass an
    /// in-memory one). Entries are named `<app_name>:<issuer>`.
    pub fn with_keyring(
        dir: impl Into<PathBuf>,
        app_name: &str,
        keyring: Arc<CredentialStore>,
    ) -> Self {
        Self {
            files: FileStore::new(dir),
            keyring,
            app_name: app_name.to_owned(),
        }
    }

    /// The file that holds everything but the refresh tokens.
    pub fn path(&self) -> PathBuf {
        self.files.path()
    }

    /// Writes, reads back and deletes a throwaway entry: a keyring that
    /// answers but is locked, read-only or has no default collection (WSL)
    /// fails here instead of at the end of a login.
    pub fn probe(&self) -> Result<()> {
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        // A name of its own per process, so concurrent probes cannot
        // delete each other's entry.
        let entry = self
            .keyring
            .build(&format!("{}:probe", self.app_name), &nonce, None)
            .map_err(keyring_error)?;
        let written = entry.set_password(&nonce).map_err(keyring_error);
        let read = written.and_then(|()| entry.get_password().map_err(keyring_error));
        let deleted = entry.delete_credential().map_err(keyring_error);
        match read? {
            value if value == nonce => deleted,
            _ => Err(Error::Keyring(
                "the keyring returned another value than was stored".into(),
            )),
        }
    }

    fn entry(&self, issuer: &str, client_id: &str) -> Result<Entry> {
        self.keyring
            .build(&format!("{}:{issuer}", self.app_name), client_id, None)
            .map_err(keyring_error)
    }

    /// Deletes the entry if there is one.
    fn forget(&self, issuer: &str, client_id: &str) -> Result<()> {
        match self.entry(issuer, client_id)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(error) => Err(keyring_error(error)),
        }
    }
}

impl TokenStore for KeyringStore {
    fn kind(&self) -> &'static str {
        "keyring"
    }

    fn load(&self, issuer: &str) -> Result<Option<Credentials>> {
        let Some(record) = self.files.load_record(issuer)? else {
            return Ok(None);
        };
        let mut credentials = record.credentials;
        if record.refresh_token_in_keyring {
            let entry = self.entry(issuer, &credentials.client_id)?;
            credentials.refresh_token = match entry.get_password() {
                Ok(token) => Some(RefreshToken::new(token)),
                // Removed by hand from the keyring: the access token still
                // works until it expires, then the session ends.
                Err(keyring_core::Error::NoEntry) => None,
                Err(error) => return Err(keyring_error(error)),
            };
        }
        Ok(Some(credentials))
    }

    fn save(&self, credentials: &Credentials) -> Result<()> {
        let issuer = &credentials.issuer;
        if let Some(previous) = self.files.load_record(issuer)?
            && previous.credentials.client_id != credentials.client_id
        {
            // A login as another client would leave the old token behind.
            self.forget(issuer, &previous.credentials.client_id)?;
        }
        // Keyring first: if the file write then fails, the keyring holds
        // the newer token, which is the one to keep after a rotation.
        match &credentials.refresh_token {
            Some(token) => self
                .entry(issuer, &credentials.client_id)?
                .set_password(token.secret())
                .map_err(keyring_error)?,
            None => self.forget(issuer, &credentials.client_id)?,
        }
        self.files.save_record(Record {
            credentials: Credentials {
                refresh_token: None,
                ..credentials.clone()
            },
            refresh_token_in_keyring: credentials.refresh_token.is_some(),
        })
    }

    fn delete(&self, issuer: &str) -> Result<()> {
        let Some(record) = self.files.load_record(issuer)? else {
            return self.files.delete(issuer);
        };
        // Also tried for unmarked records: a keyring login later replaced
        // by a file-only one leaves its entry behind.
        let forgotten = self.forget(issuer, &record.credentials.client_id);
        // Logging out must forget the login even if the keyring is stuck.
        self.files.delete(issuer)?;
        match forgotten {
            Err(error) if record.refresh_token_in_keyring => Err(error),
            _ => Ok(()),
        }
    }

    fn current_issuer(&self) -> Result<Option<String>> {
        self.files.current_issuer()
    }

    fn set_current_issuer(&self, issuer: &str) -> Result<()> {
        self.files.set_current_issuer(issuer)
    }

    fn lock(&self) -> Result<StoreLock> {
        self.files.lock()
    }
}

fn keyring_error(error: keyring_core::Error) -> Error {
    Error::Keyring(Box::new(error))
}

/// An in-memory keyring for tests here and in `session`.
#[cfg(test)]
pub(crate) mod memory {
    use std::any::Any;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use keyring_core::api::{CredentialApi, CredentialStoreApi};
    use keyring_core::{Credential, Entry};

    pub(crate) type Secrets = Arc<Mutex<BTreeMap<(String, String), Vec<u8>>>>;

    /// An in-memory keyring shared by every entry it builds, so a save and
    /// a later load see the same secret; `fail` makes every call fail.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct MemoryKeyring {
        pub(crate) secrets: Secrets,
        pub(crate) fail: Arc<Mutex<bool>>,
    }

    #[derive(Debug)]
    struct MemoryEntry {
        key: (String, String),
        secrets: Secrets,
        fail: Arc<Mutex<bool>>,
    }

    impl MemoryEntry {
        fn check(&self) -> keyring_core::Result<()> {
            if *self.fail.lock().unwrap() {
                return Err(keyring_core::Error::NoStorageAccess(
                    "the collection is locked".into(),
                ));
            }
            Ok(())
        }
    }

    impl CredentialApi for MemoryEntry {
        fn set_secret(&self, secret: &[u8]) -> keyring_core::Result<()> {
            self.check()?;
            let mut secrets = self.secrets.lock().unwrap();
            secrets.insert(self.key.clone(), secret.to_vec());
            Ok(())
        }

        fn get_secret(&self) -> keyring_core::Result<Vec<u8>> {
            self.check()?;
            let secrets = self.secrets.lock().unwrap();
            secrets
                .get(&self.key)
                .cloned()
                .ok_or(keyring_core::Error::NoEntry)
        }

        fn delete_credential(&self) -> keyring_core::Result<()> {
            self.check()?;
            let mut secrets = self.secrets.lock().unwrap();
            secrets
                .remove(&self.key)
                .map(drop)
                .ok_or(keyring_core::Error::NoEntry)
        }

        fn get_credential(&self) -> keyring_core::Result<Option<Arc<Credential>>> {
            self.get_secret().map(|_| None)
        }

        fn get_specifiers(&self) -> Option<(String, String)> {
            Some(self.key.clone())
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    impl CredentialStoreApi for MemoryKeyring {
        fn vendor(&self) -> String {
            "keyport-client tests".into()
        }

        fn id(&self) -> String {
            "memory".into()
        }

        fn build(
            &self,
            service: &str,
            user: &str,
            _modifiers: Option<&HashMap<&str, &str>>,
        ) -> keyring_core::Result<Entry> {
            Ok(Entry::new_with_credential(Arc::new(MemoryEntry {
                key: (service.into(), user.into()),
                secrets: Arc::clone(&self.secrets),
                fail: Arc::clone(&self.fail),
            })))
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::memory::{MemoryKeyring, Secrets};
    use super::*;
    use crate::store::sample_credentials;

    const ISSUER: &str = "https://auth.example.com";

    struct Fixture {
        _dir: tempfile::TempDir,
        dir: PathBuf,
        secrets: Secrets,
        fail: Arc<Mutex<bool>>,
        store: KeyringStore,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("kp");
            let keyring = MemoryKeyring::default();
            let secrets = Arc::clone(&keyring.secrets);
            let fail = Arc::clone(&keyring.fail);
            let store = KeyringStore::with_keyring(&path, "kp", Arc::new(keyring));
            Self {
                _dir: dir,
                dir: path,
                secrets,
                fail,
                store,
            }
        }

        fn secret(&self, issuer: &str, client_id: &str) -> Option<String> {
            let secrets = self.secrets.lock().unwrap();
            secrets
                .get(&(format!("kp:{issuer}"), client_id.to_owned()))
                .map(|s| String::from_utf8(s.clone()).unwrap())
        }

        fn file(&self) -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(self.store.path()).unwrap()).unwrap()
        }

        fn fail(&self, fail: bool) {
            *self.fail.lock().unwrap() = fail;
        }
    }

    #[test]
    fn the_refresh_token_goes_to_the_keyring_and_the_rest_to_the_file() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        assert_eq!(store.kind(), "keyring");
        assert_eq!(store.load(ISSUER).unwrap(), None);

        let credentials = sample_credentials(ISSUER, 100);
        store.save(&credentials).unwrap();
        store.set_current_issuer(ISSUER).unwrap();

        assert_eq!(fixture.secret(ISSUER, "kp").as_deref(), Some("kp_rt_1"));
        let file = fixture.file();
        let record = &file["credentials"][ISSUER];
        assert_eq!(record.get("refresh_token"), None, "{record}");
        assert_eq!(record["refresh_token_in_keyring"], true);
        assert_eq!(record["access_token"], "at-1");
        assert_eq!(record["expires_at"], 100);
        assert_eq!(file["current"], ISSUER);
        assert!(
            !std::fs::read_to_string(store.path())
                .unwrap()
                .contains("kp_rt_1")
        );

        assert_eq!(store.load(ISSUER).unwrap(), Some(credentials));
        assert_eq!(store.current_issuer().unwrap().as_deref(), Some(ISSUER));
    }

    #[test]
    fn a_rotated_token_replaces_the_entry_and_delete_removes_both_halves() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        let mut credentials = sample_credentials(ISSUER, 100);
        store.save(&credentials).unwrap();
        store
            .save(&sample_credentials("https://other.example.com", 1))
            .unwrap();
        store.set_current_issuer(ISSUER).unwrap();

        credentials.refresh_token = Some(RefreshToken::new("kp_rt_2"));
        store.save(&credentials).unwrap();
        assert_eq!(fixture.secret(ISSUER, "kp").as_deref(), Some("kp_rt_2"));
        assert_eq!(store.load(ISSUER).unwrap(), Some(credentials));

        store.delete(ISSUER).unwrap();
        assert_eq!(store.load(ISSUER).unwrap(), None);
        assert_eq!(fixture.secret(ISSUER, "kp"), None);
        assert_eq!(store.current_issuer().unwrap(), None);
        // Other issuers keep their entry.
        assert_eq!(
            fixture.secret("https://other.example.com", "kp").as_deref(),
            Some("kp_rt_1")
        );
        store.delete(ISSUER).unwrap();
    }

    #[test]
    fn a_login_without_refresh_token_leaves_no_entry_behind() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.save(&sample_credentials(ISSUER, 100)).unwrap();

        let mut short = sample_credentials(ISSUER, 200);
        short.refresh_token = None;
        store.save(&short).unwrap();
        assert_eq!(fixture.secret(ISSUER, "kp"), None);
        assert_eq!(
            fixture.file()["credentials"][ISSUER].get("refresh_token_in_keyring"),
            None
        );
        assert_eq!(store.load(ISSUER).unwrap(), Some(short.clone()));
        // Nothing is in the keyring, so the file store can read it too.
        assert_eq!(
            FileStore::new(&fixture.dir).load(ISSUER).unwrap(),
            Some(short)
        );
    }

    #[test]
    fn a_login_as_another_client_removes_the_old_clients_entry() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.save(&sample_credentials(ISSUER, 100)).unwrap();
        let other_client = Credentials {
            client_id: "other-cli".into(),
            refresh_token: Some(RefreshToken::new("kp_rt_other")),
            ..sample_credentials(ISSUER, 100)
        };
        store.save(&other_client).unwrap();
        assert_eq!(fixture.secret(ISSUER, "kp"), None);
        assert_eq!(
            fixture.secret(ISSUER, "other-cli").as_deref(),
            Some("kp_rt_other")
        );
        assert_eq!(store.load(ISSUER).unwrap(), Some(other_client));
    }

    #[test]
    fn a_file_store_login_is_read_as_is_and_moves_to_the_keyring_on_save() {
        let fixture = Fixture::new();
        let files = FileStore::new(&fixture.dir);
        let credentials = sample_credentials(ISSUER, 100);
        files.save(&credentials).unwrap();
        files.set_current_issuer(ISSUER).unwrap();

        let store = &fixture.store;
        assert_eq!(store.load(ISSUER).unwrap(), Some(credentials.clone()));
        assert_eq!(store.current_issuer().unwrap().as_deref(), Some(ISSUER));
        assert_eq!(fixture.secret(ISSUER, "kp"), None);

        store.save(&credentials).unwrap();
        assert_eq!(fixture.secret(ISSUER, "kp").as_deref(), Some("kp_rt_1"));
        assert!(
            !std::fs::read_to_string(store.path())
                .unwrap()
                .contains("kp_rt_1")
        );
        assert_eq!(store.load(ISSUER).unwrap(), Some(credentials));
    }

    #[test]
    fn the_file_store_refuses_a_login_whose_token_is_in_the_keyring() {
        let fixture = Fixture::new();
        fixture
            .store
            .save(&sample_credentials(ISSUER, 100))
            .unwrap();
        fixture.store.set_current_issuer(ISSUER).unwrap();
        let files = FileStore::new(&fixture.dir);
        assert!(matches!(
            files.load(ISSUER),
            Err(Error::RefreshTokenInKeyring { issuer }) if issuer == ISSUER
        ));
        assert_eq!(files.current_issuer().unwrap().as_deref(), Some(ISSUER));
        // A new file-only login replaces it, and the keyring store then
        // takes the file's token, not the stale entry.
        let mut relogin = sample_credentials(ISSUER, 300);
        relogin.refresh_token = Some(RefreshToken::new("kp_rt_file"));
        files.save(&relogin).unwrap();
        assert_eq!(files.load(ISSUER).unwrap(), Some(relogin.clone()));
        assert_eq!(fixture.store.load(ISSUER).unwrap(), Some(relogin));
        // Logging out through the keyring store clears the stale entry too.
        fixture.store.delete(ISSUER).unwrap();
        assert_eq!(fixture.secret(ISSUER, "kp"), None);
    }

    #[test]
    fn an_entry_removed_from_the_keyring_leaves_only_the_access_token() {
        let fixture = Fixture::new();
        fixture
            .store
            .save(&sample_credentials(ISSUER, 100))
            .unwrap();
        fixture.secrets.lock().unwrap().clear();
        let loaded = fixture.store.load(ISSUER).unwrap().unwrap();
        assert_eq!(loaded.refresh_token, None);
        assert_eq!(loaded.access_token.secret(), "at-1");
    }

    #[test]
    fn keyring_failures_are_errors_and_logout_still_forgets_the_file_record() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.save(&sample_credentials(ISSUER, 100)).unwrap();
        store.set_current_issuer(ISSUER).unwrap();

        fixture.fail(true);
        assert!(matches!(store.probe(), Err(Error::Keyring(_))));
        assert!(matches!(store.load(ISSUER), Err(Error::Keyring(_))));
        let mut rotated = sample_credentials(ISSUER, 200);
        rotated.refresh_token = Some(RefreshToken::new("kp_rt_2"));
        assert!(matches!(store.save(&rotated), Err(Error::Keyring(_))));
        // The file was not touched by the failed save.
        assert_eq!(fixture.file()["credentials"][ISSUER]["expires_at"], 100);

        assert!(matches!(store.delete(ISSUER), Err(Error::Keyring(_))));
        fixture.fail(false);
        assert_eq!(store.load(ISSUER).unwrap(), None);
        assert_eq!(store.current_issuer().unwrap(), None);
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let fixture = Fixture::new();
        fixture.store.probe().unwrap();
        assert!(fixture.secrets.lock().unwrap().is_empty());
        assert!(!fixture.store.path().exists());
    }

    #[test]
    fn the_lock_is_the_file_lock_in_the_config_dir() {
        let fixture = Fixture::new();
        let _lock = fixture.store.lock().unwrap();
        assert!(fixture.dir.join("credentials.lock").exists());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let fixture = Fixture::new();
        fixture
            .store
            .save(&sample_credentials(ISSUER, 100))
            .unwrap();
        let debug = format!("{:?}", fixture.store);
        assert!(debug.contains("keyport-client tests"), "{debug}");
        assert!(!debug.contains("kp_rt_1"));
    }
}
