//! Log a Rust CLI in through any RFC 8414 + RFC 8628 issuer and keep its tokens fresh.
//!
//! ```no_run
//! # async fn example() -> keyport_client::Result<()> {
//! use std::sync::Arc;
//! use keyport_client::{DeviceLoginRequest, DeviceMetadata, FileStore, Issuer, PollOptions, Session};
//!
//! let issuer = Issuer::discover("https://auth.example.com").await?;
//! let login = issuer
//!     .start_device_login(&DeviceLoginRequest {
//!         client_id: "mycli".into(),
//!         scopes: vec!["openid".into(), "offline_access".into()],
//!         resource: None,
//!         device: DeviceMetadata::detect(),
//!     })
//!     .await?;
//! eprintln!("Enter {} at {}", login.user_code(), login.verification_uri());
//! let credentials = login.poll(&PollOptions::default()).await?;
//!
//! let store = Arc::new(FileStore::in_config_dir("mycli", Some("MYCLI_CONFIG_DIR"))?);
//! let session = Session::login(store, credentials).await?;
//! let token = session.access_token().await?; // refreshed when it expires within 60 s
//! # let _ = token; Ok(())
//! # }
//! ```
//!
//! A CLI on a machine with a browser can use the authorization code flow
//! instead (RFC 6749 §4.1 with PKCE, redirected to 127.0.0.1 as RFC 8252
//! §7.3 describes); the credentials are the same:
//!
//! ```no_run
//! # async fn example(issuer: keyport_client::Issuer) -> keyport_client::Result<()> {
//! use keyport_client::{WebLogin, WebLoginRequest};
//!
//! let login = issuer
//!     .start_web_login(&WebLoginRequest {
//!         client_id: "mycli".into(),
//!         scopes: vec!["openid".into(), "offline_access".into()],
//!         resource: None,
//!     })
//!     .await?;
//! eprintln!("Sign in at {}", login.authorization_url()); // or open it in a browser
//! let credentials = login.finish(WebLogin::DEFAULT_TIMEOUT).await?;
//! # let _ = credentials; Ok(())
//! # }
//! ```
//!
//! No global state: every call takes the issuer, store and HTTP client it uses.
//!
//! With the `keyring` feature, [`KeyringStore`] keeps refresh tokens in the
//! OS keyring (Keychain, Credential Manager, Secret Service) and the rest in
//! the same 0600 file; [`KeyringStore::probe`] tells whether the keyring
//! works here, so a CLI can fall back to the [`FileStore`].

mod device;
mod discovery;
mod error;
mod grant;
mod http;
#[cfg(feature = "keyring")]
mod keyring_store;
mod loopback;
mod pkce;
mod secret;
mod session;
mod store;
mod web;

#[cfg(feature = "resource-server")]
pub mod resource;

pub use device::{DeviceLogin, DeviceLoginRequest, DeviceMetadata, PollOptions};
pub use discovery::Issuer;
pub use error::{Error, Result};
pub use http::http_client;
pub use keyport_proto::{ClientInfo, ServerMetadata, Userinfo};
pub use secret::{AccessToken, DeviceCode, RefreshToken};
pub use session::{REFRESH_MARGIN_SECS, Revocation, Session};
pub use store::{Credentials, FileStore, StoreLock, TokenStore, config_dir};
pub use web::{WebLogin, WebLoginRequest};

/// The credential store API [`KeyringStore::with_keyring`] takes, for
/// other keyrings and in-memory test doubles.
#[cfg(feature = "keyring")]
pub use keyring_core;
#[cfg(feature = "keyring")]
pub use keyring_store::KeyringStore;

/// Seconds since the Unix epoch on this machine's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
