//! `Keyport`: the server as a value. It owns the configuration, the store,
//! the clock and the signing keys; the HTTP layer and the admin commands
//! call it, and a Rust backend can embed it and call the same device-flow
//! operations in process (`start`, `resolve`, `approve`, `deny`, `poll`).
//! Its client caches are in `clients.rs`, its upkeep in `maintenance.rs`.

mod clients;
mod maintenance;

pub use maintenance::Housekeeping;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Semaphore;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto;
use crate::crypto::keys::{self, KeySet, KeyUse};
use crate::crypto::seal::MasterKey;
use crate::domain::Error;
use crate::domain::keys::KeyStep;
use crate::domain::scopes::Catalogue;
use crate::domain::tokens::AccessClaims;
use crate::store::{self, Store};
use clients::{CachedClient, CachedDocument, METADATA_FETCHES_IN_FLIGHT};

/// Who is calling, for audit records and per-IP limits.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub ip: Option<IpAddr>,
    /// The mount the request came through: `None` for Keyport's own paths,
    /// or a `sqlos` profile's path (`/sqlos/auth`), which is an issuer of
    /// its own (`Keyport::issuer_for`).
    pub mount: Option<Arc<str>>,
}

impl Caller {
    /// An in-process caller: no peer, so no address is recorded or
    /// limited; Keyport's own issuer.
    pub const IN_PROCESS: Caller = Caller {
        ip: None,
        mount: None,
    };

    pub fn ip_string(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

#[derive(Clone)]
pub struct Keyport(Arc<Inner>);

/// Most entries a cache holds before it starts over (bounds memory).
const CACHE_LIMIT: usize = 4096;

/// Keyport's state. The fields are the crate's own: pages, the HTTP layer
/// and embedders go through the operations in [`crate::domain`], and read
/// settings through [`Keyport::config`].
pub struct Inner {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) clock: SharedClock,
    pub(crate) master: MasterKey,
    /// The key of user codes' keyed hashes, derived from the master key
    /// once: every device start and every code typed in uses it.
    user_code_key: aws_lc_rs::hmac::Key,
    pub(crate) catalogue: Catalogue,
    keys: RwLock<Arc<KeySet>>,
    /// Clients read in the last second: every token request names one.
    clients: Mutex<HashMap<String, CachedClient>>,
    /// Clients described by metadata documents, by URL, for
    /// [`METADATA_CACHE_TTL`] (a failed fetch for less).
    metadata_clients: Mutex<HashMap<String, CachedDocument>>,
    /// Bounds the metadata documents fetched at once: requests naming new
    /// URLs cannot turn Keyport into a fetcher of unlimited pages.
    metadata_fetches: Semaphore,
    /// Access tokens whose signature was already checked, by SHA-256 of the
    /// whole token. A CLI presents the same token for its whole life; expiry
    /// and revocation are still checked on every use.
    verified: Mutex<HashMap<Vec<u8>, Arc<AccessClaims>>>,
    /// Issuers whose access tokens this server accepts: its own, and each
    /// `sqlos` profile's.
    pub(crate) issuers: Vec<String>,
    /// Argon2id work: about one hash per core, off the async workers and
    /// below their scheduling priority.
    password_hashing: crate::hashing::HashingPool,
    /// Where two-step codes are sent: SMTP or the outbox, an SMS webhook.
    pub(crate) outbound: crate::mail::Outbound,
}

impl Keyport {
    /// The configuration this server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, for tools and tests that read it (row counts, backups).
    /// Every change goes through a domain operation.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the database answers (`/readyz`).
    pub async fn database_reachable(&self) -> bool {
        self.store.ping().await
    }

    /// Records the connection pool's size and idle connections as gauges.
    pub fn record_pool_use(&self) {
        let pool = self.store.pool();
        crate::telemetry::pool(pool.size(), pool.num_idle());
    }

    /// The clock every expiry is measured with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl std::ops::Deref for Keyport {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Seal(#[from] crypto::seal::SealError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("client {0} in the configuration: {1}")]
    ConfigClient(String, String),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

impl Keyport {
    /// Opens the store (applying migrations), loads the master key and the
    /// signing keys (creating them on first start) and syncs the clients
    /// declared in the configuration.
    pub async fn open(config: Config, clock: SharedClock) -> Result<Self, OpenError> {
        crate::telemetry::install();
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| OpenError::DataDir(config.data_dir.display().to_string(), e))?;
        let master = match &config.master_key {
            Some(text) => MasterKey::parse(text)?,
            None => MasterKey::load_or_create(&config.data_dir.join("master.key"))?,
        };
        let store = Store::open(config.database_url.as_deref(), &config.data_dir).await?;
        let mut stored = store::keys::published(store.pool()).await?;
        for key_use in KeyUse::ALL {
            if !stored.iter().any(|k| k.key_use == key_use && k.active) {
                let key = keys::generate(&master, key_use)?;
                let now = clock.now();
                let new = key.clone();
                store
                    .write(move |c| {
                        Box::pin(async move { store::keys::activate(c, &new, now).await })
                    })
                    .await?;
                stored = store::keys::published(store.pool()).await?;
            }
        }
        let key_set = KeySet::from_stored(&master, &stored)?;
        let catalogue = Catalogue::new(&config.scopes);
        let hashes = config.limits.password_hashes_in_flight.max(1);
        let outbound = crate::mail::Outbound::new(&config)?;
        let keyport = Self(Arc::new(Inner {
            catalogue,
            keys: RwLock::new(Arc::new(key_set)),
            clients: Mutex::new(HashMap::new()),
            metadata_clients: Mutex::new(HashMap::new()),
            metadata_fetches: Semaphore::new(METADATA_FETCHES_IN_FLIGHT),
            verified: Mutex::new(HashMap::new()),
            issuers: config.issuers(),
            password_hashing: crate::hashing::HashingPool::new(hashes),
            outbound,
            config,
            store,
            clock,
            user_code_key: crypto::hmac_key(&master.derive("user code")),
            master,
        }));
        keyport.sync_config_clients().await?;
        let warm = keyport.clone();
        tokio::spawn(async move {
            let _ = warm
                .password_work(crate::domain::signin::prepare_dummy_hash)
                .await;
        });
        Ok(keyport)
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().expect("key lock").clone()
    }

    /// Re-reads the published keys; picks up a rotation done by an admin
    /// command or another instance. Returns true when the set changed.
    pub async fn reload_keys(&self) -> Result<bool, OpenError> {
        let stored = store::keys::published(self.store.pool()).await?;
        let fingerprint: String = stored
            .iter()
            .map(|k| format!("{}:{};", k.kid, k.active))
            .collect();
        if fingerprint == self.keys().fingerprint {
            return Ok(false);
        }
        let set = KeySet::from_stored(&self.master, &stored)?;
        *self.keys.write().expect("key lock") = Arc::new(set);
        // A retired key must stop verifying at once.
        self.verified.lock().expect("cache lock").clear();
        Ok(true)
    }

    /// Replaces both active signing keys; the old ones stay published as
    /// previous keys until the next rotation.
    pub async fn rotate_keys(&self) -> Result<Vec<String>, OpenError> {
        let mut kids = Vec::new();
        for key_use in KeyUse::ALL {
            let key = keys::generate(&self.master, key_use)?;
            kids.push(key.kid.clone());
            let now = self.clock.now();
            self.store
                .write(move |c| Box::pin(async move { store::keys::activate(c, &key, now).await }))
                .await?;
        }
        self.reload_keys().await?;
        Ok(kids)
    }

    /// Carries out the signing-key rotation steps that are due
    /// ([`crate::domain::keys::plan`]): publish the next key ahead of use,
    /// promote it when the active one has signed for `rotate_after`, retire
    /// keys whose tokens have all expired. Every instance may call this; each
    /// step is a conditional write that only one wins, and only the winner
    /// audits it. Returns the steps this call carried out.
    pub async fn rotate_keys_if_due(&self) -> Result<Vec<KeyStep>, OpenError> {
        let now = self.clock.now();
        let times = store::keys::times(self.store.pool()).await?;
        let ttl = self.config.tokens.access_token_ttl;
        let mut done = Vec::new();
        for step in crate::domain::keys::plan(&times, now, &self.config.keys, ttl) {
            let won = match &step {
                KeyStep::PublishNext(key_use) => {
                    let key = keys::generate(&self.master, *key_use)?;
                    let detail = serde_json::json!({
                        "key_use": key_use.as_str(), "kid": key.kid, "automatic": true
                    });
                    self.store
                        .write(move |c| {
                            Box::pin(async move {
                                let won = store::keys::publish_next(&mut *c, &key, now).await?;
                                if won {
                                    audit_keys(c, "keys.publish_next", detail, now).await?;
                                }
                                Ok(won)
                            })
                        })
                        .await?
                }
                KeyStep::Promote {
                    key_use,
                    active,
                    next,
                } => {
                    let (active, next) = (active.clone(), next.clone());
                    let detail = serde_json::json!({
                        "key_use": key_use.as_str(), "from": active, "to": next, "automatic": true
                    });
                    self.store
                        .write(move |c| {
                            Box::pin(async move {
                                let won =
                                    store::keys::promote(&mut *c, &active, &next, now).await?;
                                if won {
                                    audit_keys(c, "keys.rotate", detail, now).await?;
                                }
                                Ok(won)
                            })
                        })
                        .await?
                }
                KeyStep::Retire(kid) => {
                    let kid = kid.clone();
                    let detail = serde_json::json!({ "kid": kid });
                    self.store
                        .write(move |c| {
                            Box::pin(async move {
                                let won = store::keys::retire(&mut *c, &kid).await?;
                                if won {
                                    audit_keys(c, "keys.retire", detail, now).await?;
                                }
                                Ok(won)
                            })
                        })
                        .await?
                }
            };
            if won {
                done.push(step);
            }
        }
        self.reload_keys().await?;
        Ok(done)
    }

    /// What the database keeps of a user code: a keyed hash under a key
    /// derived from the master key (8 letters of 20 are too few for a plain
    /// hash to protect them).
    pub fn user_code_hash(&self, code: &crate::crypto::tokens::UserCode) -> String {
        crypto::keyed_hash_with(&self.user_code_key, code.as_str())
    }

    /// The claims of an access token whose signature this instance already
    /// verified, if any.
    pub(crate) fn verified_claims(&self, token: &str) -> Option<Arc<AccessClaims>> {
        self.verified
            .lock()
            .expect("cache lock")
            .get(&crypto::sha256(token.as_bytes()))
            .cloned()
    }

    pub(crate) fn remember_verified(&self, token: &str, claims: Arc<AccessClaims>) {
        let mut cache = self.verified.lock().expect("cache lock");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(crypto::sha256(token.as_bytes()), claims);
    }

    /// Runs `f` on the blocking pool with at most one Argon2id hash per core,
    /// so a burst of sign-ins cannot stall token polling.
    pub async fn password_work<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.password_hashing.run(f).await.map_err(|e| match e {
            crate::hashing::HashingFailed::Busy => Error::oauth(
                keyport_proto::ErrorCode::TemporarilyUnavailable,
                "too many sign-ins at once; retry shortly",
            ),
            crate::hashing::HashingFailed::Failed => Error::internal("password hashing failed"),
        })
    }
}

/// Records a key rotation step, done by the server itself.
async fn audit_keys(
    c: &mut store::Conn,
    event: &'static str,
    detail: serde_json::Value,
    now: i64,
) -> store::Result<()> {
    crate::domain::audit::Audit::new(event, "success")
        .actor(Some("keyport"))
        .detail(detail)
        .record(c, now * 1000, &Caller::default())
        .await
}
