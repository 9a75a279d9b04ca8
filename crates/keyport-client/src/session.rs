//! A stored login in use: fresh access tokens (RFC 6749 §6 refresh, serialized across processes), userinfo, logout (RFC 7009).

use std::future::Future;
use std::sync::Arc;

use keyport_proto::{ErrorCode, TokenResponse, Userinfo};

use crate::error::{Error, Result};
use crate::http::{get_with_bearer, http_client, post_form, read_json};
use crate::secret::AccessToken;
use crate::store::{Credentials, StoreLock, TokenStore};
use crate::unix_now;

/// Refresh this long before expiry, so a token handed out is still good
/// when the request that carries it arrives.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// One issuer's credentials in a [`TokenStore`].
#[derive(Clone)]
pub struct Session {
    store: Arc<dyn TokenStore>,
    issuer: String,
    http: reqwest::Client,
}

/// What became of the server-side revocation during [`Session::logout`].
/// The local credentials are gone in every case.
#[derive(Debug)]
pub enum Revocation {
    Revoked,
    /// The issuer publishes no revocation endpoint: the tokens stay valid
    /// until they expire.
    NotSupported,
    /// The issuer could not be reached or refused; the tokens may still be valid.
    Failed(Error),
}

impl Session {
    /// The session for `issuer`, or for the store's current issuer (the last
    /// login) when `None`. Fails with [`Error::NotLoggedIn`] when there is
    /// no current issuer; whether credentials exist is checked on use.
    pub fn open(store: Arc<dyn TokenStore>, issuer: Option<&str>) -> Result<Self> {
        let issuer = match issuer {
            Some(issuer) => issuer.to_owned(),
            None => store.current_issuer()?.ok_or(Error::NotLoggedIn)?,
        };
        Ok(Self {
            store,
            issuer,
            http: http_client()?,
        })
    }

    /// Stores the credentials of a new login and makes their issuer current.
    pub async fn login(store: Arc<dyn TokenStore>, credentials: Credentials) -> Result<Self> {
        let _lock = lock(&store).await?;
        store.save(&credentials)?;
        store.set_current_issuer(&credentials.issuer)?;
        Ok(Self {
            store,
            issuer: credentials.issuer,
            http: http_client()?,
        })
    }

    /// Replaces the HTTP client (proxies, extra CAs); it should not follow redirects.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// The stored credentials as they are, without refreshing.
    pub fn credentials(&self) -> Result<Credentials> {
        self.store.load(&self.issuer)?.ok_or(Error::NotLoggedIn)
    }

    /// An access token valid for at least [`REFRESH_MARGIN_SECS`], refreshed
    /// first when needed.
    pub async fn access_token(&self) -> Result<AccessToken> {
        Ok(self.fresh_credentials().await?.access_token)
    }

    /// The credentials with an access token valid for at least
    /// [`REFRESH_MARGIN_SECS`]. Fails with [`Error::SessionExpired`] (and
    /// forgets the credentials) when the issuer rejects the refresh token.
    pub async fn fresh_credentials(&self) -> Result<Credentials> {
        ensure_fresh(&self.store, &self.issuer, unix_now, |credentials| {
            refresh(&self.http, credentials)
        })
        .await
    }

    /// OIDC userinfo for the stored login.
    pub async fn userinfo(&self) -> Result<Userinfo> {
        let credentials = self.fresh_credentials().await?;
        let endpoint =
            credentials
                .userinfo_endpoint
                .as_deref()
                .ok_or_else(|| Error::Discovery {
                    issuer: self.issuer.clone(),
                    reason: "the issuer has no userinfo endpoint".into(),
                })?;
        get_with_bearer(&self.http, endpoint, &credentials.access_token).await
    }

    /// Revokes the session at the issuer (RFC 7009, the refresh token, which
    /// ends its access tokens too), then forgets the credentials even if
    /// revocation failed, reporting how it went.
    pub async fn logout(&self) -> Result<Revocation> {
        // Held across the revocation so a concurrent refresh cannot rotate
        // the token being revoked into one nobody revokes.
        let _lock = lock(&self.store).await?;
        let credentials = self.credentials()?;
        let revocation = match &credentials.revocation_endpoint {
            None => Revocation::NotSupported,
            Some(endpoint) => match revoke(&self.http, endpoint, &credentials).await {
                Ok(()) => Revocation::Revoked,
                Err(error) => Revocation::Failed(error),
            },
        };
        self.store.delete(&self.issuer)?;
        Ok(revocation)
    }
}

/// Takes the store's lock without blocking the async runtime: another
/// process may hold it for as long as its refresh request takes.
async fn lock(store: &Arc<dyn TokenStore>) -> Result<StoreLock> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.lock())
        .await
        .expect("store lock task panicked")
}

/// Check, lock, check again, refresh, write. The second check is what makes
/// concurrent processes safe: whoever waited for the lock finds the token
/// the first one refreshed and does not present the rotated refresh token.
async fn ensure_fresh<R, Fut>(
    store: &Arc<dyn TokenStore>,
    issuer: &str,
    now: impl Fn() -> i64,
    refresh: R,
) -> Result<Credentials>
where
    R: FnOnce(Credentials) -> Fut,
    Fut: Future<Output = Result<Credentials>>,
{
    let load = || store.load(issuer)?.ok_or(Error::NotLoggedIn);
    let credentials = load()?;
    if credentials.access_token_valid(now(), REFRESH_MARGIN_SECS) {
        return Ok(credentials);
    }
    let _lock = lock(store).await?;
    let credentials = load()?;
    if credentials.access_token_valid(now(), REFRESH_MARGIN_SECS) {
        return Ok(credentials);
    }
    match refresh(credentials).await {
        Ok(refreshed) => {
            store.save(&refreshed)?;
            Ok(refreshed)
        }
        Err(Error::SessionExpired) => {
            store.delete(issuer)?;
            Err(Error::SessionExpired)
        }
        Err(error) => Err(error),
    }
}

/// RFC 6749 §6 refresh. `invalid_grant` means the refresh token is expired,
/// revoked or was already rotated: the session is over.
async fn refresh(http: &reqwest::Client, mut credentials: Credentials) -> Result<Credentials> {
    let Some(refresh_token) = credentials.refresh_token.clone() else {
        return Err(Error::SessionExpired);
    };
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.secret()),
        ("client_id", &credentials.client_id),
    ];
    if let Some(resource) = &credentials.resource {
        form.push(("resource", resource));
    }
    let tokens: TokenResponse = match post_form(http, &credentials.token_endpoint, &form).await {
        Err(error) if error.oauth_code() == Some(ErrorCode::InvalidGrant) => {
            return Err(Error::SessionExpired);
        }
        other => other?,
    };
    credentials.apply(tokens, unix_now())?;
    Ok(credentials)
}

/// RFC 7009 §2.1. Revoking the refresh token ends the whole grant; without
/// one, the access token is all there is to revoke.
async fn revoke(http: &reqwest::Client, endpoint: &str, credentials: &Credentials) -> Result<()> {
    let (token, hint) = match &credentials.refresh_token {
        Some(refresh_token) => (refresh_token.secret(), "refresh_token"),
        None => (credentials.access_token.secret(), "access_token"),
    };
    let form = [
        ("token", token),
        ("token_type_hint", hint),
        ("client_id", &credentials.client_id),
    ];
    let response = http.post(endpoint).form(&form).send().await?;
    // RFC 7009 §2.2 answers 200 with an empty body; read_json would choke on it.
    if response.status().is_success() {
        return Ok(());
    }
    read_json::<serde_json::Value>(response).await.map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::secret::RefreshToken;
    use crate::store::{FileStore, sample_credentials};

    const ISSUER: &str = "https://auth.example.com";
    const NOW: i64 = 1_000_000;

    fn file_store(dir: &tempfile::TempDir) -> Arc<dyn TokenStore> {
        Arc::new(FileStore::new(dir.path()))
    }

    fn rotated(mut credentials: Credentials, n: usize) -> Credentials {
        credentials.access_token = AccessToken::new(format!("at-{n}"));
        credentials.refresh_token = Some(RefreshToken::new(format!("kp_rt_{n}")));
        credentials.expires_at = NOW + 900;
        credentials
    }

    #[tokio::test]
    async fn a_valid_token_is_returned_without_refreshing() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        store.save(&sample_credentials(ISSUER, NOW + 61)).unwrap();
        let credentials = ensure_fresh(
            &store,
            ISSUER,
            || NOW,
            |_| async { panic!("must not refresh") },
        )
        .await
        .unwrap();
        assert_eq!(credentials.access_token.secret(), "at-1");
    }

    #[tokio::test]
    async fn a_token_expiring_within_a_minute_is_refreshed_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        store.save(&sample_credentials(ISSUER, NOW + 59)).unwrap();
        let credentials =
            ensure_fresh(&store, ISSUER, || NOW, |c| async move { Ok(rotated(c, 2)) })
                .await
                .unwrap();
        assert_eq!(credentials.access_token.secret(), "at-2");
        assert_eq!(
            store
                .load(ISSUER)
                .unwrap()
                .unwrap()
                .refresh_token
                .unwrap()
                .secret(),
            "kp_rt_2"
        );
    }

    /// A store whose lock lets "another process" refresh while we wait for it.
    struct RacedStore {
        inner: FileStore,
    }

    impl TokenStore for RacedStore {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn load(&self, issuer: &str) -> Result<Option<Credentials>> {
            self.inner.load(issuer)
        }
        fn save(&self, credentials: &Credentials) -> Result<()> {
            self.inner.save(credentials)
        }
        fn delete(&self, issuer: &str) -> Result<()> {
            self.inner.delete(issuer)
        }
        fn current_issuer(&self) -> Result<Option<String>> {
            self.inner.current_issuer()
        }
        fn set_current_issuer(&self, issuer: &str) -> Result<()> {
            self.inner.set_current_issuer(issuer)
        }
        fn lock(&self) -> Result<StoreLock> {
            let current = self.inner.load(ISSUER)?.unwrap();
            self.inner.save(&rotated(current, 7))?;
            self.inner.lock()
        }
    }

    #[tokio::test]
    async fn credentials_are_read_again_after_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn TokenStore> = Arc::new(RacedStore {
            inner: FileStore::new(dir.path()),
        });
        store.save(&sample_credentials(ISSUER, NOW - 10)).unwrap();
        let credentials = ensure_fresh(
            &store,
            ISSUER,
            || NOW,
            |_| async { panic!("the other process already refreshed") },
        )
        .await
        .unwrap();
        assert_eq!(credentials.access_token.secret(), "at-7");
    }

    /// Refreshes an expired login from every store at once, as separate
    /// processes would, and checks the issuer saw one refresh.
    async fn refresh_concurrently(stores: Vec<Arc<dyn TokenStore>>) {
        stores[0]
            .save(&sample_credentials(ISSUER, NOW - 10))
            .unwrap();
        let refreshes = Arc::new(AtomicUsize::new(0));

        let tasks: Vec<_> = stores
            .into_iter()
            .map(|store| {
                let refreshes = Arc::clone(&refreshes);
                tokio::spawn(async move {
                    ensure_fresh(
                        &store,
                        ISSUER,
                        || NOW,
                        |c| async move {
                            assert_eq!(c.refresh_token.as_ref().unwrap().secret(), "kp_rt_1");
                            let n = refreshes.fetch_add(1, Ordering::SeqCst) + 2;
                            // Long enough that the others queue on the lock.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(rotated(c, n))
                        },
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        for task in tasks {
            let credentials = task.await.unwrap();
            assert_eq!(credentials.access_token.secret(), "at-2");
            assert_eq!(credentials.refresh_token.unwrap().secret(), "kp_rt_2");
        }
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_refreshes_present_the_refresh_token_once() {
        let dir = tempfile::tempdir().unwrap();
        // Separate stores open separate lock files, as separate processes would.
        refresh_concurrently((0..4).map(|_| file_store(&dir)).collect()).await;
    }

    #[cfg(feature = "keyring")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_refreshes_through_the_keyring_present_the_refresh_token_once() {
        use crate::keyring_store::{KeyringStore, memory::MemoryKeyring};

        let dir = tempfile::tempdir().unwrap();
        let keyring = MemoryKeyring::default();
        let stores: Vec<Arc<dyn TokenStore>> = (0..4)
            .map(|_| {
                let store = KeyringStore::with_keyring(dir.path(), "kp", Arc::new(keyring.clone()));
                Arc::new(store) as Arc<dyn TokenStore>
            })
            .collect();
        refresh_concurrently(stores).await;
        let secrets = keyring.secrets.lock().unwrap();
        let key = (format!("kp:{ISSUER}"), "kp".to_owned());
        assert_eq!(secrets.get(&key).map(Vec::as_slice), Some(&b"kp_rt_2"[..]));
        let file = std::fs::read_to_string(dir.path().join("credentials.json")).unwrap();
        assert!(file.contains("at-2") && !file.contains("kp_rt_"), "{file}");
    }

    #[tokio::test]
    async fn a_rejected_refresh_ends_the_session_and_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        store.save(&sample_credentials(ISSUER, NOW - 10)).unwrap();
        let result = ensure_fresh(
            &store,
            ISSUER,
            || NOW,
            |_| async { Err(Error::SessionExpired) },
        )
        .await;
        assert!(matches!(result, Err(Error::SessionExpired)));
        assert_eq!(store.load(ISSUER).unwrap(), None);
    }

    #[tokio::test]
    async fn a_failed_refresh_for_other_reasons_keeps_the_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        store.save(&sample_credentials(ISSUER, NOW - 10)).unwrap();
        let result = ensure_fresh(
            &store,
            ISSUER,
            || NOW,
            |_| async {
                Err(Error::UnexpectedResponse {
                    url: ISSUER.into(),
                    status: 503,
                })
            },
        )
        .await;
        assert!(matches!(
            result,
            Err(Error::UnexpectedResponse { status: 503, .. })
        ));
        assert!(store.load(ISSUER).unwrap().is_some());
    }

    #[tokio::test]
    async fn without_credentials_the_user_is_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        assert!(matches!(
            Session::open(Arc::clone(&store), None),
            Err(Error::NotLoggedIn)
        ));
        let session = Session::open(store, Some(ISSUER)).unwrap();
        assert!(matches!(
            session.access_token().await,
            Err(Error::NotLoggedIn)
        ));
    }

    #[tokio::test]
    async fn logout_forgets_locally_even_when_revocation_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        let mut credentials = sample_credentials(ISSUER, NOW);
        // Nothing listens on port 9 of loopback: the revocation cannot succeed.
        credentials.revocation_endpoint = Some("http://127.0.0.1:9/oauth/revoke".into());
        let session = Session::login(Arc::clone(&store), credentials)
            .await
            .unwrap();

        let revocation = session.logout().await.unwrap();
        assert!(
            matches!(revocation, Revocation::Failed(Error::Http(_))),
            "{revocation:?}"
        );
        assert_eq!(store.load(ISSUER).unwrap(), None);
        assert_eq!(store.current_issuer().unwrap(), None);
    }
}
