//! The device authorization grant from the client's side: RFC 8628 §3.1 start, §3.4–3.5 polling.

use std::future::Future;
use std::time::Duration;

use keyport_proto::{
    ClientInfo, DEVICE_CODE_GRANT, DeviceAuthorizationResponse, ErrorCode, TokenResponse,
};
use tokio::time::Instant;

use crate::discovery::Issuer;
use crate::error::{Error, Result, printable};
use crate::grant::Grant;
use crate::http::{check_transport, post_form};
use crate::secret::DeviceCode;
use crate::store::Credentials;

/// RFC 8628 §3.5: each `slow_down` adds five seconds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// What the approval page and session list show about the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceMetadata {
    /// A name the user gives the device, e.g. "work laptop".
    pub cli_label: Option<String>,
    pub client_info: Option<ClientInfo>,
    pub dns_name: Option<String>,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
}

impl DeviceMetadata {
    /// The hostname, OS and OS release of this machine, as far as the OS tells.
    pub fn detect() -> Self {
        Self {
            cli_label: None,
            client_info: None,
            dns_name: whoami::hostname().ok().filter(|h| !h.is_empty()),
            os_type: Some(std::env::consts::OS.to_owned()),
            os_version: whoami::distro().ok().filter(|v| !v.is_empty()),
        }
    }
}

/// What to ask for when starting a device login.
#[derive(Debug, Clone, Default)]
pub struct DeviceLoginRequest {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator: the API the tokens are meant for.
    pub resource: Option<String>,
    pub device: DeviceMetadata,
}

/// How to poll. The default honours the issuer's `interval` exactly.
#[derive(Debug, Clone, Default)]
pub struct PollOptions {
    /// Replaces the issuer's `interval` (tests against a local issuer).
    /// Polling faster than the issuer allows earns `slow_down`, which still
    /// adds five seconds each time.
    pub interval_override: Option<Duration>,
}

/// A started device login: show [`DeviceLogin::user_code`] and
/// [`DeviceLogin::verification_uri`] to the user, then [`DeviceLogin::poll`].
pub struct DeviceLogin {
    grant: Grant,
    device_code: DeviceCode,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    interval: Duration,
    expires_in: Duration,
    deadline: Instant,
}

impl std::fmt::Debug for DeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("issuer", &self.grant.metadata.issuer)
            .field("client_id", &self.grant.client_id)
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("interval", &self.interval)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// RFC 8628 §3.1: asks the issuer for a device code and a user code.
    pub async fn start_device_login(&self, request: &DeviceLoginRequest) -> Result<DeviceLogin> {
        let endpoint = self
            .metadata()
            .device_authorization_endpoint
            .as_deref()
            .ok_or_else(|| Error::Discovery {
                issuer: self.issuer().to_owned(),
                reason: "the issuer does not offer the device flow (RFC 8628)".into(),
            })?;
        let scope = request.scopes.join(" ");
        let client_info = request
            .device
            .client_info
            .as_ref()
            .map(|info| serde_json::to_string(info).expect("client info serializes"));
        let device = &request.device;
        let optional = [
            ("resource", request.resource.as_deref()),
            ("cli_label", device.cli_label.as_deref()),
            ("client_info", client_info.as_deref()),
            ("dns_name", device.dns_name.as_deref()),
            ("os_type", device.os_type.as_deref()),
            ("os_version", device.os_version.as_deref()),
        ];
        let mut form = vec![("client_id", request.client_id.as_str())];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        form.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));

        let started = Instant::now();
        let response: DeviceAuthorizationResponse = post_form(self.http(), endpoint, &form).await?;
        DeviceLogin::new(self, request, scope, response, started)
    }
}

impl DeviceLogin {
    fn new(
        issuer: &Issuer,
        request: &DeviceLoginRequest,
        scope: String,
        response: DeviceAuthorizationResponse,
        started: Instant,
    ) -> Result<Self> {
        // These strings are printed to the terminal and opened in a
        // browser, so an issuer must not be able to smuggle escapes or
        // non-web URLs through them.
        if response.user_code.is_empty() || response.user_code.chars().any(char::is_control) {
            return Err(Error::InvalidResponse("user_code".into()));
        }
        let web_url = |url: &str, what: &str| match check_transport(url) {
            Ok(parsed) => Ok(parsed.to_string()),
            Err(_) => Err(Error::InvalidResponse(format!(
                "{what} {:?}",
                printable(url, 200)
            ))),
        };
        let verification_uri = web_url(&response.verification_uri, "verification_uri")?;
        let verification_uri_complete = response
            .verification_uri_complete
            .as_deref()
            .map(|url| web_url(url, "verification_uri_complete"))
            .transpose()?;
        let expires_in = Duration::from_secs(response.expires_in);
        Ok(Self {
            grant: Grant {
                http: issuer.http().clone(),
                metadata: issuer.metadata().clone(),
                client_id: request.client_id.clone(),
                scope,
                resource: request.resource.clone(),
            },
            device_code: DeviceCode::new(response.device_code),
            user_code: response.user_code,
            verification_uri,
            verification_uri_complete,
            // An interval of 0 would poll in a busy loop.
            interval: Duration::from_secs(response.interval.max(1)),
            expires_in,
            deadline: started + expires_in,
        })
    }

    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// The verification URI with the user code filled in, when the issuer
    /// offers one (RFC 8628 §3.3.1): the thing to open or show as a QR code.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.verification_uri_complete.as_deref()
    }

    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Polls the token endpoint until the user approves or denies, or the
    /// code expires, then returns the credentials to store. Sends only the
    /// RFC 8628 §3.4 parameters plus the resource the login started with.
    pub async fn poll(&self, options: &PollOptions) -> Result<Credentials> {
        let interval = options.interval_override.unwrap_or(self.interval);
        let tokens = wait_for_approval(interval, self.deadline, || self.poll_once()).await?;
        self.grant.credentials_from(tokens).await
    }

    async fn poll_once(&self) -> Result<TokenResponse> {
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", self.device_code.secret()),
        ];
        self.grant.token_request(&form).await
    }
}

/// The RFC 8628 §3.5 polling loop, apart from HTTP so it can be tested with
/// paused time: wait `interval` before every request, keep going on
/// `authorization_pending`, slow down by five seconds on `slow_down`, back
/// off on timeouts, and give up once the next request would come after the
/// code expired.
pub(crate) async fn wait_for_approval<F, Fut>(
    mut interval: Duration,
    deadline: Instant,
    mut poll_once: F,
) -> Result<TokenResponse>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<TokenResponse>>,
{
    loop {
        if Instant::now() + interval > deadline {
            return Err(Error::ExpiredToken);
        }
        tokio::time::sleep(interval).await;
        let error = match poll_once().await {
            Ok(tokens) => return Ok(tokens),
            Err(error) => error,
        };
        match error.oauth_code() {
            Some(ErrorCode::AuthorizationPending) => {}
            Some(ErrorCode::SlowDown) => interval += SLOW_DOWN_STEP,
            Some(ErrorCode::AccessDenied) => return Err(Error::AccessDenied),
            Some(ErrorCode::ExpiredToken) => return Err(Error::ExpiredToken),
            // RFC 8628 §3.5: after a connection timeout the client must
            // lower its polling rate before retrying.
            _ if matches!(&error, Error::Http(e) if e.is_timeout()) => interval *= 2,
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use keyport_proto::ErrorResponse;

    use super::*;

    fn tokens() -> TokenResponse {
        TokenResponse {
            access_token: "at".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token: Some("kp_rt_x".into()),
            scope: "openid".into(),
            id_token: None,
            expires_at: None,
            guid: None,
        }
    }

    fn oauth(code: &str) -> Error {
        Error::from_response(ErrorResponse {
            error: code.into(),
            error_description: None,
        })
    }

    /// Runs the loop against scripted answers and records when each poll came.
    async fn run(
        interval: u64,
        expires_in: u64,
        answers: Vec<Result<TokenResponse>>,
    ) -> (Result<TokenResponse>, Vec<u64>) {
        let start = Instant::now();
        let answers = Mutex::new(VecDeque::from(answers));
        let times = Mutex::new(Vec::new());
        let result = wait_for_approval(
            Duration::from_secs(interval),
            start + Duration::from_secs(expires_in),
            || {
                times
                    .lock()
                    .unwrap()
                    .push((Instant::now() - start).as_secs());
                let answer = answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| Err(oauth("authorization_pending")));
                async move { answer }
            },
        )
        .await;
        (result, times.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn waits_the_interval_before_every_poll() {
        let (result, times) = run(
            5,
            900,
            vec![
                Err(oauth("authorization_pending")),
                Err(oauth("authorization_pending")),
                Ok(tokens()),
            ],
        )
        .await;
        assert_eq!(result.unwrap().access_token, "at");
        assert_eq!(times, [5, 10, 15]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_down_adds_five_seconds_each_time() {
        let (result, times) = run(
            5,
            900,
            vec![
                Err(oauth("slow_down")),
                Err(oauth("authorization_pending")),
                Err(oauth("slow_down")),
                Ok(tokens()),
            ],
        )
        .await;
        assert!(result.is_ok());
        assert_eq!(times, [5, 15, 25, 40]);
    }

    #[tokio::test(start_paused = true)]
    async fn denial_and_expiry_stop_polling() {
        let (denied, times) = run(5, 900, vec![Err(oauth("access_denied"))]).await;
        assert!(matches!(denied, Err(Error::AccessDenied)));
        assert_eq!(times, [5]);

        let (expired, _) = run(5, 900, vec![Err(oauth("expired_token"))]).await;
        assert!(matches!(expired, Err(Error::ExpiredToken)));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_expires_in_runs_out() {
        let (result, times) = run(5, 22, vec![]).await;
        assert!(matches!(result, Err(Error::ExpiredToken)));
        assert_eq!(times, [5, 10, 15, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_end_the_login() {
        let (result, times) = run(5, 900, vec![Err(oauth("invalid_grant"))]).await;
        assert_eq!(
            result.unwrap_err().oauth_code(),
            Some(ErrorCode::InvalidGrant)
        );
        assert_eq!(times, [5]);
    }
}
