//! The one error type of `keyport-client`, shaped so a CLI can choose its exit code from it.
//!
//! RFC 6749 §5.2 error responses become [`Error::OAuth`], except the few a
//! caller must tell apart without string matching: the end of a session
//! (`invalid_grant` on refresh, RFC 6749 §5.2 / RFC 9700 §4.14), the two
//! final answers of RFC 8628 §3.5 polling, and the refusals of a browser's
//! redirect (a wrong `state`, a wrong RFC 9207 `iss`, no answer in time).

use std::path::PathBuf;
use std::time::Duration;

use keyport_proto::{ErrorCode, ErrorResponse};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An RFC 6749 §5.2 error the issuer answered with. `error` stays a string
    /// because other issuers may send codes Keyport does not define.
    #[error("the issuer answered {error}{}", describe(description.as_deref()))]
    OAuth {
        error: String,
        description: Option<String>,
    },
    /// `access_denied`: the user refused the login, at RFC 8628 §3.5 polling
    /// or in an RFC 6749 §4.1.2.1 error redirect.
    #[error("the login was denied")]
    AccessDenied,
    /// RFC 8628 §3.5 `expired_token`, or `expires_in` ran out while polling.
    #[error("the one-time code expired before the login was approved")]
    ExpiredToken,
    /// The browser came back with a `state` other than the one this login
    /// sent (RFC 6749 §10.12): a redirect meant for another login, or forged.
    #[error("the browser came back from a login other than this one (state mismatch)")]
    StateMismatch,
    /// The authorization response names another issuer than the one the
    /// login went to, or none though the issuer promised one (RFC 9207
    /// §2.4): the code may belong to another server (a mix-up attack), so
    /// it is not exchanged.
    #[error(
        "the authorization response came from {}, not {expected} (RFC 9207 issuer mismatch)",
        actual.as_deref().map_or_else(|| "an unnamed issuer".to_owned(), |a| format!("{a:?}"))
    )]
    IssuerMismatch {
        expected: String,
        actual: Option<String>,
    },
    /// No browser came back to the loopback redirect in time.
    #[error("the browser did not come back within {} s", after.as_secs())]
    LoginTimedOut { after: Duration },
    /// The loopback listener for the browser's redirect (RFC 8252 §7.3)
    /// could not be opened or failed.
    #[error("cannot listen on 127.0.0.1 for the browser's redirect")]
    Loopback(#[source] std::io::Error),
    /// No credentials are stored for the issuer.
    #[error("not logged in")]
    NotLoggedIn,
    /// The issuer no longer honours the stored tokens: the refresh token was
    /// rejected with `invalid_grant`, or a bearer token with `invalid_token`.
    #[error("the session has expired or was revoked")]
    SessionExpired,
    #[error("discovery of {issuer} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    /// A response that is neither the expected body nor an RFC 6749 error.
    #[error("{url} answered HTTP {status}")]
    UnexpectedResponse { url: String, status: u16 },
    /// A well-formed response whose content cannot be used safely.
    #[error("the issuer sent an invalid {0}")]
    InvalidResponse(String),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid credentials file: {source}", path.display())]
    CorruptStore {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot locate the config directory: {0}")]
    NoConfigDir(String),
    /// The OS keyring could not be reached or refused an operation.
    #[error("the OS keyring failed")]
    Keyring(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A file-only store found a login whose refresh token an OS keyring
    /// store put in the keyring.
    #[error(
        "the refresh token of the login to {issuer} is kept in the OS keyring, which is not in use"
    )]
    RefreshTokenInKeyring { issuer: String },
}

impl Error {
    /// The RFC code of an [`Error::OAuth`], when it is one Keyport knows.
    pub fn oauth_code(&self) -> Option<ErrorCode> {
        match self {
            Error::OAuth { error, .. } => parse_error_code(error),
            _ => None,
        }
    }

    /// True when the user has to log in (again) before anything else works.
    pub fn needs_login(&self) -> bool {
        matches!(self, Error::NotLoggedIn | Error::SessionExpired)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds [`Error::OAuth`] from an issuer's body. The text reaches the
    /// user's terminal, so control characters (escape sequences) are dropped
    /// and length is bounded.
    pub(crate) fn from_response(response: ErrorResponse) -> Self {
        Error::OAuth {
            error: printable(&response.error, 64),
            description: response.error_description.map(|d| printable(&d, 300)),
        }
    }
}

fn describe(description: Option<&str>) -> String {
    description.map(|d| format!(": {d}")).unwrap_or_default()
}

fn parse_error_code(code: &str) -> Option<ErrorCode> {
    serde_json::from_value(serde_json::Value::String(code.to_owned())).ok()
}

pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_keep_known_and_unknown_codes() {
        let known = Error::from_response(ErrorResponse {
            error: "slow_down".into(),
            error_description: None,
        });
        assert_eq!(known.oauth_code(), Some(ErrorCode::SlowDown));

        // Another vendor's code, which Keyport does not define.
        let unknown = Error::from_response(ErrorResponse {
            error: "mfa_required".into(),
            error_description: Some("ask the admin".into()),
        });
        assert_eq!(unknown.oauth_code(), None);
        assert_eq!(
            unknown.to_string(),
            "the issuer answered mfa_required: ask the admin"
        );
    }

    #[test]
    fn issuer_text_cannot_inject_terminal_escapes() {
        let error = Error::from_response(ErrorResponse {
            error: "invalid_request".into(),
            error_description: Some("bad\u{1b}[2J input\n".into()),
        });
        assert_eq!(
            error.to_string(),
            "the issuer answered invalid_request: bad[2J input"
        );
    }

    #[test]
    fn error_body_parses_as_rfc_6749_json() {
        let body =
            r#"{"error":"invalid_grant","error_description":"refresh token revoked","extra":1}"#;
        let response: ErrorResponse = serde_json::from_str(body).unwrap();
        let error = Error::from_response(response);
        assert_eq!(error.oauth_code(), Some(ErrorCode::InvalidGrant));
    }
}
