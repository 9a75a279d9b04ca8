//! What every kp command shares: the global flags, the credential store and the `KP_TOKEN` override.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, bail};
use keyport_client::{AccessToken, Credentials, FileStore, TokenStore, config_dir};
use serde::Serialize;

pub const ENV_TOKEN: &str = "KP_TOKEN";
/// The name of kp's config directory and the prefix of its keyring entries
/// (`kp:<issuer>`, user `<client_id>`).
const APP_NAME: &str = "kp";

/// gh's code for "authentication required": not logged in, expired or revoked.
pub const EXIT_NOT_LOGGED_IN: u8 = 4;
/// 128 + SIGINT, what a shell reports for a Ctrl-C'd program.
pub const EXIT_INTERRUPTED: u8 = 130;

pub struct Context {
    /// From `--issuer` or `KP_ISSUER`.
    pub issuer: Option<String>,
    config_dir: Option<PathBuf>,
    insecure_storage: bool,
    pub json: bool,
    store: OnceLock<Arc<dyn TokenStore>>,
}

impl Context {
    pub fn new(
        issuer: Option<String>,
        config_dir: Option<PathBuf>,
        insecure_storage: bool,
        json: bool,
    ) -> Self {
        Self {
            issuer,
            config_dir,
            insecure_storage,
            json,
            store: OnceLock::new(),
        }
    }

    /// The directory of `credentials.json` and its lock.
    pub fn config_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.config_dir {
            Some(dir) => Ok(dir.clone()),
            // The flag already reads KP_CONFIG_DIR; this is the per-user default.
            None => Ok(config_dir(APP_NAME, None)?),
        }
    }

    /// The OS keyring when it works here, else the 0600 file, chosen once
    /// per process. A config dir given explicitly (tests, sandboxes) or
    /// `--insecure-storage` means the file alone.
    pub fn store(&self) -> anyhow::Result<Arc<dyn TokenStore>> {
        if let Some(store) = self.store.get() {
            return Ok(Arc::clone(store));
        }
        let dir = self.config_dir()?;
        let file_only =
            self.config_dir.is_some() || self.insecure_storage || !cfg!(feature = "keyring");
        let (store, warning) = choose_store(&dir, file_only, open_keyring);
        if let Some(warning) = warning {
            eprintln!("{warning}");
        }
        Ok(Arc::clone(self.store.get_or_init(|| store)))
    }

    /// The issuer the user named, else the one they last logged in to.
    pub fn issuer_or_current(&self, store: &dyn TokenStore) -> anyhow::Result<Option<String>> {
        match &self.issuer {
            Some(issuer) => Ok(Some(issuer.clone())),
            None => Ok(store.current_issuer()?),
        }
    }

    /// Like gh with GH_TOKEN: storing or forgetting credentials while an
    /// environment token silently wins over them would only confuse.
    pub fn refuse_with_env_token(&self, action: &str) -> anyhow::Result<()> {
        if env_token().is_some() {
            bail!(
                "cannot {action} while {ENV_TOKEN} is set: its access token is being used \
                 for authentication. To have kp store credentials instead, first clear \
                 {ENV_TOKEN} from the environment"
            );
        }
        Ok(())
    }
}

/// The keyring store if `open_keyring` gets one that works, else the file
/// store and the warning to print.
fn choose_store(
    dir: &Path,
    file_only: bool,
    open_keyring: impl FnOnce(&Path) -> Result<Arc<dyn TokenStore>, String>,
) -> (Arc<dyn TokenStore>, Option<String>) {
    let files = Arc::new(FileStore::new(dir));
    if file_only {
        return (files, None);
    }
    match open_keyring(dir) {
        Ok(store) => (store, None),
        Err(reason) => {
            let warning = format!(
                "warning: no usable OS keyring ({reason}); keeping credentials in {} \
                 (--insecure-storage or KP_INSECURE_STORAGE=1 chooses the file and silences this)",
                files.path().display()
            );
            (files, Some(warning))
        }
    }
}

/// How long the keyring may take to answer the probe: a Secret Service
/// that is wedged, or waits on an unlock prompt nobody sees, must not hang
/// every kp command.
#[cfg(feature = "keyring")]
const KEYRING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The platform keyring, if a throwaway entry can be written, read back and
/// deleted in time.
#[cfg(feature = "keyring")]
fn open_keyring(dir: &Path) -> Result<Arc<dyn TokenStore>, String> {
    use keyport_client::KeyringStore;

    let dir = dir.to_owned();
    let (sender, receiver) = std::sync::mpsc::channel();
    // A thread of its own so a hung D-Bus call can be abandoned; it dies
    // with the process.
    std::thread::spawn(move || {
        let opened =
            KeyringStore::platform(dir, APP_NAME).and_then(|store| store.probe().map(|()| store));
        let _ = sender.send(opened);
    });
    match receiver.recv_timeout(KEYRING_TIMEOUT) {
        Ok(Ok(store)) => Ok(Arc::new(store)),
        // "the OS keyring failed" would only repeat the warning.
        Ok(Err(keyport_client::Error::Keyring(source))) => Err(one_line(source.as_ref())),
        Ok(Err(error)) => Err(one_line(&error)),
        Err(_) => Err(format!(
            "it did not answer within {} s",
            KEYRING_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(not(feature = "keyring"))]
fn open_keyring(_dir: &Path) -> Result<Arc<dyn TokenStore>, String> {
    Err("kp was built without keyring support".into())
}

/// An error and its causes on one line, without the escape sequences or
/// newlines a D-Bus error could carry, and of bounded length.
#[cfg_attr(not(feature = "keyring"), allow(dead_code))]
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let message = cause.to_string();
        // keyring's errors print their source themselves.
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.chars().count() > 300 {
        line.push('…');
    }
    line
}

/// An access token given in `KP_TOKEN`, which overrides stored credentials.
pub fn env_token() -> Option<AccessToken> {
    std::env::var(ENV_TOKEN)
        .ok()
        .filter(|t| !t.is_empty())
        .map(AccessToken::new)
}

/// Ctrl-C while waiting for the user; exits 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// The JSON of `kp status` and `kp login --json`. Every key is always
/// present (null when unknown) so scripts can rely on the shape.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub logged_in: bool,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub email: Option<String>,
    pub scope: Option<String>,
    pub expires_at: Option<i64>,
    /// Where stored credentials are: `"keyring"` (the refresh token in the
    /// OS keyring, the rest in the 0600 file) or `"file"`; `"env"` when
    /// `KP_TOKEN` is in use.
    pub storage: &'static str,
}

impl StatusReport {
    pub fn logged_in(credentials: &Credentials, storage: &'static str) -> Self {
        Self {
            logged_in: true,
            issuer: Some(credentials.issuer.clone()),
            client_id: Some(credentials.client_id.clone()),
            subject: credentials.subject.clone(),
            email: credentials.email.clone(),
            scope: Some(credentials.scope.clone()),
            expires_at: Some(credentials.expires_at),
            storage,
        }
    }

    pub fn without_credentials(
        logged_in: bool,
        issuer: Option<String>,
        storage: &'static str,
    ) -> Self {
        Self {
            logged_in,
            issuer,
            client_id: None,
            subject: None,
            email: None,
            scope: None,
            expires_at: None,
            storage,
        }
    }
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value).context("cannot encode the JSON output")?;
    println!("{json}");
    Ok(())
}

/// How the user is named in messages: email when known, else the subject.
pub fn who(credentials: &Credentials) -> Option<&str> {
    credentials
        .email
        .as_deref()
        .or(credentials.subject.as_deref())
}

/// "in 14m", "expired 3m ago": precise enough for a status line.
pub fn describe_expiry(expires_at: i64, now: i64) -> String {
    let left = expires_at - now;
    let span = |secs: i64| match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    };
    if left >= 0 {
        format!("in {}", span(left))
    } else {
        format!("{} ago", span(-left))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Stands in for a keyring store; only `kind` is looked at.
    struct FakeKeyring;

    impl TokenStore for FakeKeyring {
        fn kind(&self) -> &'static str {
            "keyring"
        }
        fn load(&self, _: &str) -> keyport_client::Result<Option<Credentials>> {
            Ok(None)
        }
        fn save(&self, _: &Credentials) -> keyport_client::Result<()> {
            Ok(())
        }
        fn delete(&self, _: &str) -> keyport_client::Result<()> {
            Ok(())
        }
        fn current_issuer(&self) -> keyport_client::Result<Option<String>> {
            Ok(None)
        }
        fn set_current_issuer(&self, _: &str) -> keyport_client::Result<()> {
            Ok(())
        }
        fn lock(&self) -> keyport_client::Result<keyport_client::StoreLock> {
            Ok(keyport_client::StoreLock::new(()))
        }
    }

    #[test]
    fn a_working_keyring_is_used_silently() {
        let (store, warning) = choose_store(Path::new("/tmp/kp"), false, |_| {
            Ok(Arc::new(FakeKeyring) as Arc<dyn TokenStore>)
        });
        assert_eq!(store.kind(), "keyring");
        assert_eq!(warning, None);
    }

    #[test]
    fn without_a_keyring_the_file_is_used_with_one_warning_line() {
        let (store, warning) = choose_store(Path::new("/tmp/kp"), false, |_| {
            Err("org.freedesktop.secrets was not provided by any .service files".into())
        });
        assert_eq!(store.kind(), "file");
        let warning = warning.unwrap();
        assert!(warning.starts_with("warning: "), "{warning}");
        assert!(!warning.contains('\n'));
        assert!(warning.contains("credentials.json"), "{warning}");
        assert!(warning.contains("--insecure-storage"), "{warning}");
    }

    #[test]
    fn a_file_only_choice_never_touches_the_keyring() {
        let probed = Cell::new(false);
        let (store, warning) = choose_store(Path::new("/tmp/kp"), true, |_| {
            probed.set(true);
            Ok(Arc::new(FakeKeyring) as Arc<dyn TokenStore>)
        });
        assert_eq!(store.kind(), "file");
        assert_eq!(warning, None);
        assert!(!probed.get());
    }

    #[test]
    fn an_explicit_config_dir_or_insecure_storage_means_the_file() {
        for (dir, insecure) in [(Some(PathBuf::from("/tmp/kp-test")), false), (None, true)] {
            let context = Context::new(None, dir, insecure, false);
            assert_eq!(context.store().unwrap().kind(), "file");
        }
    }

    #[test]
    fn errors_become_one_bounded_line() {
        let error = keyport_client::Error::Keyring("bus said:\n\u{1b}[2Jboom".into());
        assert_eq!(
            one_line(&error),
            "the OS keyring failed: bus said:  [2Jboom"
        );
        // Io prints its source too: the chain must not say "denied" twice.
        let repeated = keyport_client::Error::Keyring(Box::new(keyport_client::Error::Io {
            path: "/run/user/1000/bus".into(),
            source: std::io::Error::other("denied"),
        }));
        assert_eq!(
            one_line(&repeated),
            "the OS keyring failed: /run/user/1000/bus: denied"
        );
        let long = one_line(&std::io::Error::other("x".repeat(1000)));
        assert_eq!(long.chars().count(), 301);
    }

    #[test]
    fn expiry_reads_naturally() {
        let now = 1_000_000;
        assert_eq!(describe_expiry(now + 30, now), "in 30s");
        assert_eq!(describe_expiry(now + 15 * 60 + 5, now), "in 15m");
        assert_eq!(describe_expiry(now + 7200 + 300 + 2, now), "in 2h 5m");
        assert_eq!(describe_expiry(now - 180, now), "3m ago");
    }
}
