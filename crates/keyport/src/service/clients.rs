//! The clients a request names: read from the store at most once a second,
//! fetched from client ID metadata documents, or declared in the config.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CACHE_LIMIT, Keyport, OpenError};
use crate::crypto::hash_secret;
use crate::domain::clients::Client;
use crate::store;

/// A metadata document's client (or `None` for a refused one), when it was
/// fetched, and for how long that answer holds.
pub(super) type CachedDocument = (Instant, Duration, Option<Arc<Client>>);
/// A client as read at an instant (`None`: no such client).
pub(super) type CachedClient = (Instant, Option<Arc<Client>>);

const CLIENT_CACHE_TTL: Duration = Duration::from_secs(1);
/// How long a fetched client metadata document is trusted.
const METADATA_CACHE_TTL: Duration = Duration::from_secs(300);
/// Metadata documents fetched at once, over all requests.
pub(super) const METADATA_FETCHES_IN_FLIGHT: usize = 8;
/// How long a document that could not be fetched or was refused is not
/// fetched again (a flood of requests naming it costs one fetch).
const METADATA_FAILURE_TTL: Duration = Duration::from_secs(30);

impl Keyport {
    /// Saves the clients declared in the config (`[[clients]]`), at open.
    pub(super) async fn sync_config_clients(&self) -> Result<(), OpenError> {
        for decl in &self.config.clients {
            let secret_hash = match (&decl.secret_hash, &decl.secret_env) {
                (Some(hash), _) => Some(hash.clone()),
                (None, Some(var)) => {
                    let secret = std::env::var(var).map_err(|_| {
                        OpenError::ConfigClient(
                            decl.id.clone(),
                            format!("variable {var} is not set"),
                        )
                    })?;
                    Some(hash_secret(&secret))
                }
                (None, None) if decl.is_confidential() => {
                    return Err(OpenError::ConfigClient(
                        decl.id.clone(),
                        "a confidential client needs secret_hash or secret_env".into(),
                    ));
                }
                (None, None) => None,
            };
            let mut client = decl
                .spec()
                .build("config")
                .map_err(|why| OpenError::ConfigClient(decl.id.clone(), why))?;
            client.secret_hash = secret_hash;
            let now = self.clock.now();
            self.store
                .write(move |c| {
                    Box::pin(async move { store::clients::save(c, &client, now, true).await })
                })
                .await?;
        }
        Ok(())
    }

    /// The client with this id, read at most once a second per instance (a
    /// client changed elsewhere is seen within a second). Shared, not
    /// copied: every token request asks for one.
    pub async fn client(&self, id: &str) -> Result<Option<Arc<Client>>, store::Error> {
        // No client has such an id (ClientSpec::build refuses them), and
        // PostgreSQL cannot even compare text holding NUL.
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Ok(None);
        }
        if crate::domain::cimd::is_metadata_url(id, self.config.cimd.allow_loopback) {
            return Ok(self.metadata_client(id).await);
        }
        let cached = self.clients.lock().expect("cache lock").get(id).cloned();
        if let Some((_, client)) = cached.filter(|(at, _)| at.elapsed() < CLIENT_CACHE_TTL) {
            return Ok(client);
        }
        let client = store::clients::find(self.store.pool(), id)
            .await?
            .map(Arc::new);
        let mut cache = self.clients.lock().expect("cache lock");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(id.to_string(), (Instant::now(), client.clone()));
        Ok(client)
    }

    /// The client a metadata document describes: fetched with the SSRF
    /// guard, checked, and cached.
    async fn metadata_client(&self, url: &str) -> Option<Arc<Client>> {
        let cached = self
            .metadata_clients
            .lock()
            .expect("cache lock")
            .get(url)
            .cloned();
        if let Some((_, _, client)) = cached.filter(|(at, ttl, _)| at.elapsed() < *ttl) {
            return client;
        }
        let parsed = url::Url::parse(url).ok()?;
        // At capacity the client is unknown for now (not cached): the
        // request is refused and can be retried.
        let _permit = self.metadata_fetches.try_acquire().ok()?;
        let fetched = crate::fetch::fetch_document(&parsed, self.config.cimd.allow_loopback).await;
        let client = match fetched {
            Ok(body) => {
                crate::domain::cimd::client_from_document(url, &body, &self.catalogue.names())
                    .inspect_err(|why| tracing::info!(why, "client metadata document refused"))
                    .ok()
                    .map(Arc::new)
            }
            Err(e) => {
                tracing::info!(error = %e, "client metadata document not fetched");
                None
            }
        };
        let ttl = match client {
            Some(_) => METADATA_CACHE_TTL,
            None => METADATA_FAILURE_TTL,
        };
        let mut cache = self.metadata_clients.lock().expect("cache lock");
        if cache.len() >= CACHE_LIMIT {
            // Expired answers go first; a cache full of live ones loses the
            // one closest to expiry, never the whole set.
            cache.retain(|_, (at, ttl, _)| at.elapsed() < *ttl);
            if cache.len() >= CACHE_LIMIT
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (at, ttl, _))| ttl.saturating_sub(at.elapsed()))
                    .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(url.to_string(), (Instant::now(), ttl, client.clone()));
        client
    }

    /// Drops a cached client after this instance changed it.
    pub fn forget_client(&self, id: &str) {
        self.clients.lock().expect("cache lock").remove(id);
    }
}
