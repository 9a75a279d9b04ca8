//! The OAuth rules: device authorizations, token grants, rotation, consent,
//! sign-in and the audit trail. Speaks the RFCs' language and knows nothing
//! of HTTP; gets a store and a clock through [`crate::Keyport`].

pub mod access;
pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod authorize;
pub mod cimd;
pub mod client_admin;
pub mod clients;
pub mod code;
pub mod device;
pub mod discovery;
pub mod headless;
pub mod invitations;
pub mod keys;
pub mod lockout;
pub mod metadata;
pub mod password;
pub mod pkce;
pub mod poll;
pub mod redirect;
pub mod refresh;
pub mod registration;
pub mod scopes;
pub mod setup;
pub mod signin;
pub mod tokens;
pub mod totp;
pub mod two_step;
pub mod workspaces;

use std::borrow::Cow;

/// The people and workspaces the domain works with.
pub use crate::store::directory::{User, Workspace};
pub use keyport_proto::ErrorCode;

use crate::store;

/// What a domain operation refuses with. OAuth refusals carry their RFC
/// code; the HTTP layer alone decides status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {description}", code.as_str())]
    OAuth {
        code: ErrorCode,
        description: Cow<'static, str>,
    },
    /// Throttled (other than `slow_down`): HTTP 429 with `Retry-After`.
    #[error("too many requests; retry after {retry_after} s")]
    Throttled { retry_after: i64 },
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Seed 003's two-step answers: `missing_totp` or `invalid_totp`
    /// with the account's `two_step_mode` (HTTP 401).
    #[error("{}: two-step verification ({})", code.as_str(), mode.as_str())]
    TwoStep {
        code: ErrorCode,
        mode: two_step::TwoStepMode,
    },
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    pub fn oauth(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Error::OAuth {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::oauth(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::oauth(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::oauth(ErrorCode::InvalidClient, description)
    }

    pub fn internal(what: &'static str) -> Self {
        Error::Internal(what)
    }

    /// The RFC error code a client would see, when the refusal has one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::OAuth { code, .. } | Error::TwoStep { code, .. } => Some(*code),
            Error::Throttled { .. } | Error::Store(_) | Error::Internal(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
