//! What every kp command shares: the global flags, the credential store and the `KP_TOKEN` override.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use keyport_client::{AccessToken, Credentials, FileStore, TokenStore};
use serde::Serialize;

pub const ENV_TOKEN: &str = "KP_TOKEN";

/// gh's code for "authentication required": not logged in, expired or revoked.
pub const EXIT_NOT_LOGGED_IN: u8 = 4;
/// 128 + SIGINT, what a shell reports for a Ctrl-C'd program.
pub const EXIT_INTERRUPTED: u8 = 130;

pub struct Context {
    /// From `--issuer` or `KP_ISSUER`.
    pub issuer: Option<String>,
    config_dir: Option<PathBuf>,
    pub json: bool,
}

impl Context {
    pub fn new(issuer: Option<String>, config_dir: Option<PathBuf>, json: bool) -> Self {
        Self {
            issuer,
            config_dir,
            json,
        }
    }

    pub fn store(&self) -> anyhow::Result<Arc<FileStore>> {
        let store = match &self.config_dir {
            Some(dir) => FileStore::new(dir),
            // The flag already reads KP_CONFIG_DIR; this is the per-user default.
            None => FileStore::in_config_dir("kp", None)?,
        };
        Ok(Arc::new(store))
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
    /// `"file"` for stored credentials, `"env"` when `KP_TOKEN` is in use.
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
    use super::*;

    #[test]
    fn expiry_reads_naturally() {
        let now = 1_000_000;
        assert_eq!(describe_expiry(now + 30, now), "in 30s");
        assert_eq!(describe_expiry(now + 15 * 60 + 5, now), "in 15m");
        assert_eq!(describe_expiry(now + 7200 + 300 + 2, now), "in 2h 5m");
        assert_eq!(describe_expiry(now - 180, now), "3m ago");
    }
}
