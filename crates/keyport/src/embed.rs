//! The in-process service API: a Rust backend that embeds Keyport starts,
//! resolves, approves, denies and polls device authorizations (RFC 8628)
//! by calling it, with no HTTP in between, the way seed 004's
//! `SqlOSAuthService` is used for server-side orchestration, tests and
//! custom admin flows.
//!
//! [`Keyport::devices`] hands out a [`Devices`]. Every call runs the same
//! domain operation as the HTTP endpoints and the hosted page, with the
//! same checks, rate limits and audit records; only the caller is trusted
//! (no client secret is asked for, and there is no peer address). Refusals
//! are [`Error::OAuth`] with the RFC 6749 / RFC 8628 code the endpoint
//! would answer: `authorization_pending`, `slow_down`, `access_denied`,
//! `expired_token`, `invalid_grant`, `invalid_scope`, `invalid_target`, …
//!
//! A whole device login, in process:
//!
//! ```
//! use std::sync::Arc;
//!
//! use keyport::Keyport;
//! use keyport::admin;
//! use keyport::clock::SystemClock;
//! use keyport::config::Config;
//! use keyport::domain::ErrorCode;
//! use keyport::domain::clients::ClientSpec;
//! use keyport::embed::{DeviceRef, DeviceStart};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data_dir = std::env::temp_dir().join(format!("keyport-doc-{}-login", std::process::id()));
//! let kp = Keyport::open(
//!     Config::embedded("https://auth.acme.com", &data_dir)?,
//!     Arc::new(SystemClock),
//! )
//! .await?;
//! // What `SeedCliClient` makes: a public device-flow client with refresh tokens.
//! admin::add_client(&kp, ClientSpec {
//!     id: "acme-cli".into(),
//!     name: "Acme CLI".into(),
//!     confidential: false,
//!     grants: vec![
//!         "urn:ietf:params:oauth:grant-type:device_code".into(),
//!         "refresh_token".into(),
//!     ],
//!     scopes: vec!["openid".into(), "offline_access".into(), "agents:read".into()],
//!     audiences: vec!["https://api.acme.com".into()],
//!     ..ClientSpec::default()
//! })
//! .await?;
//! admin::add_user(&kp, "ada@acme.com", Some("Ada"), "a long passphrase".into()).await?;
//! admin::add_workspace(&kp, "acme", "Acme").await?;
//! admin::add_member(&kp, "acme", "ada@acme.com", "member").await?;
//!
//! let devices = kp.devices();
//! let start = devices
//!     .start(DeviceStart {
//!         client_id: "acme-cli",
//!         scope: Some("openid offline_access agents:read"),
//!         resource: Some("https://api.acme.com"),
//!         label: Some("build-server-01"),
//!     })
//!     .await?;
//!
//! // The signed-in user of your own UI looks at the request, then approves it.
//! let ada = devices.user("ada@acme.com").await?.expect("ada exists");
//! let pending = devices.resolve(&start.user_code, &ada).await?;
//! assert_eq!(pending.client.name, "Acme CLI");
//! devices.approve(DeviceRef::RequestId(&pending.id), &ada, Some("acme")).await?;
//!
//! // The CLI's poll gets the tokens: the scopes ada's role allows.
//! let tokens = devices.poll("acme-cli", &start.device_code, Some("https://api.acme.com")).await?;
//! assert_eq!(tokens.scope, "agents:read offline_access openid");
//! assert!(tokens.refresh_token.is_some());
//!
//! // Another client cannot redeem the code.
//! let stolen = devices.poll("other-cli", &start.device_code, None).await;
//! assert!(matches!(stolen, Err(e) if e.code() == Some(ErrorCode::InvalidClient)));
//! # drop(kp);
//! # std::fs::remove_dir_all(&data_dir).ok();
//! # Ok(())
//! # }
//! ```

use crate::crypto::tokens::Secret;
use crate::domain::device::{Consent, Decided, PendingRequest, StartRequest};
use crate::domain::metadata::DeviceMetadata;
use crate::domain::poll::PollRequest;
use crate::domain::{Error, ErrorCode, Result, User};
use crate::service::{Caller, Keyport};
use keyport_proto::{DeviceAuthorizationResponse, TokenResponse};

/// What a device authorization starts with (RFC 8628 §3.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceStart<'a> {
    pub client_id: &'a str,
    /// Space-separated; `None` asks for the client's default scopes.
    pub scope: Option<&'a str>,
    /// RFC 8707: one of the client's audiences.
    pub resource: Option<&'a str>,
    /// The device's name, as `cli_label` (shown on the approval page and
    /// in the session lists).
    pub label: Option<&'a str>,
}

/// Which pending request to decide: by its id (from [`Devices::resolve`]
/// or a headless request), or by the user code a person typed in.
#[derive(Debug, Clone, Copy)]
pub enum DeviceRef<'a> {
    RequestId(&'a str),
    UserCode(&'a str),
}

/// The device flow, called in process. Made by [`Keyport::devices`].
#[derive(Clone, Copy)]
pub struct Devices<'a> {
    kp: &'a Keyport,
}

impl Keyport {
    /// The in-process service API for device authorizations.
    pub fn devices(&self) -> Devices<'_> {
        Devices { kp: self }
    }
}

impl Devices<'_> {
    /// RFC 8628 §3.1–3.2: creates a pending authorization for a client with
    /// the device grant. The answer carries the `device_code` for the
    /// poller and the `user_code` and URIs for the person.
    pub async fn start(&self, start: DeviceStart<'_>) -> Result<DeviceAuthorizationResponse> {
        let client = self.client(start.client_id).await?;
        let request = StartRequest {
            scope: start.scope.map(str::to_string),
            resource: start.resource.map(str::to_string),
            metadata: DeviceMetadata {
                cli_label: start.label.map(str::to_string),
                ..DeviceMetadata::default()
            },
        };
        self.kp
            .start_device_authorization(&client, request, &Caller::IN_PROCESS)
            .await
    }

    /// The Keyport account behind an email address, to act for.
    pub async fn user(&self, email: &str) -> Result<Option<User>> {
        self.kp.user_by_email(email).await
    }

    /// The pending request behind a user code, as the approval page shows
    /// it (client, scopes, resource, device, expiry). Wrong codes count
    /// against `user` as they do on the page.
    pub async fn resolve(&self, user_code: &str, user: &User) -> Result<PendingRequest> {
        self.kp
            .resolve_user_code(user_code, user, None, &Caller::IN_PROCESS)
            .await
    }

    /// Approves for `user`: the requested scopes their role in `workspace`
    /// allows are granted (the workspace may be left out when they belong
    /// to one or none). The poller's next poll gets the tokens.
    pub async fn approve(
        &self,
        which: DeviceRef<'_>,
        user: &User,
        workspace: Option<&str>,
    ) -> Result<Decided> {
        let id = self.request_id(which, user).await?;
        let now = self.kp.clock.now();
        self.kp
            .decide_device(
                &id,
                user,
                Consent::Approve { workspace },
                now,
                &Caller::IN_PROCESS,
            )
            .await
    }

    /// Denies: the poller's next poll gets `access_denied`.
    pub async fn deny(&self, which: DeviceRef<'_>, user: &User) -> Result<()> {
        let id = self.request_id(which, user).await?;
        let now = self.kp.clock.now();
        self.kp
            .decide_device(&id, user, Consent::Deny, now, &Caller::IN_PROCESS)
            .await?;
        Ok(())
    }

    /// RFC 8628 §3.4: one poll, as the token endpoint answers it. `resource`
    /// must be the one the start named.
    ///
    /// Before a decision the answer is `authorization_pending`; a poll
    /// before `interval` seconds have passed since the last one is
    /// `slow_down` (and the interval grows by five seconds); after a denial
    /// `access_denied`; once the code has expired `expired_token`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use keyport::{Keyport, admin};
    /// # use keyport::clock::ManualClock;
    /// # use keyport::config::Config;
    /// # use keyport::domain::ErrorCode;
    /// # use keyport::domain::clients::ClientSpec;
    /// # use keyport::embed::{DeviceRef, DeviceStart};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let data_dir = std::env::temp_dir().join(format!("keyport-doc-{}-poll", std::process::id()));
    /// // A clock the example moves by hand, so it need not wait.
    /// let clock = ManualClock::starting_now();
    /// let config = Config::embedded("https://auth.acme.com", &data_dir)?;
    /// let kp = Keyport::open(config, Arc::new(clock.clone())).await?;
    /// # admin::add_client(&kp, ClientSpec {
    /// #     id: "acme-cli".into(),
    /// #     name: "Acme CLI".into(),
    /// #     grants: vec!["urn:ietf:params:oauth:grant-type:device_code".into()],
    /// #     scopes: vec!["openid".into()],
    /// #     ..ClientSpec::default()
    /// # }).await?;
    /// # admin::add_user(&kp, "ada@acme.com", None, "a long passphrase".into()).await?;
    /// let devices = kp.devices();
    /// let start = devices.start(DeviceStart { client_id: "acme-cli", ..Default::default() }).await?;
    /// let poll = || devices.poll("acme-cli", &start.device_code, None);
    /// let code = |answer: Result<_, keyport::domain::Error>| answer.err().and_then(|e| e.code());
    ///
    /// assert_eq!(code(poll().await), Some(ErrorCode::AuthorizationPending));
    /// assert_eq!(code(poll().await), Some(ErrorCode::SlowDown), "polled again at once");
    ///
    /// let ada = devices.user("ada@acme.com").await?.expect("ada exists");
    /// devices.deny(DeviceRef::UserCode(&start.user_code), &ada).await?;
    /// clock.advance_secs(10);
    /// assert_eq!(code(poll().await), Some(ErrorCode::AccessDenied));
    /// # drop(kp);
    /// # std::fs::remove_dir_all(&data_dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn poll(
        &self,
        client_id: &str,
        device_code: &str,
        resource: Option<&str>,
    ) -> Result<TokenResponse> {
        let client = self.client(client_id).await?;
        let poll = PollRequest {
            device_code: Secret::new(device_code.to_string()),
            resource: resource.map(str::to_string),
            scope: None,
        };
        self.kp
            .poll_device(&client, poll, &Caller::IN_PROCESS)
            .await
    }

    async fn client(&self, id: &str) -> Result<std::sync::Arc<crate::domain::clients::Client>> {
        self.kp
            .client(id)
            .await?
            .ok_or_else(|| Error::oauth(ErrorCode::InvalidClient, "unknown client"))
    }

    async fn request_id(&self, which: DeviceRef<'_>, user: &User) -> Result<String> {
        match which {
            DeviceRef::RequestId(id) => Ok(id.to_string()),
            DeviceRef::UserCode(code) => Ok(self.resolve(code, user).await?.id),
        }
    }
}
