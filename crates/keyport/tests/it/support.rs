//! `TestServer`: the real Keyport on 127.0.0.1:0 with a fresh SQLite file
//! and a clock the test moves, driven over real HTTP. The hosted pages are
//! driven by `keyport-testkit`'s `Browser`, signed in as alice.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use keyport::Keyport;
use keyport::admin;
use keyport::clock::ManualClock;
use keyport::config::{Config, Limits, TokenSettings};
use keyport::domain::clients::ClientSpec;
use keyport::http::TlsCertificate;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

pub use keyport_testkit::{Browser, form_fields, json_of, jwt_claims};

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The seeded user's sign-in.
pub const EMAIL: &str = "alice@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
pub const CLI: &str = "test-cli";
pub const RS: &str = "test-rs";
pub const AUDIENCE: &str = "https://api.example.com";

pub struct TestServer {
    pub kp: Keyport,
    pub issuer: String,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    pub rs_secret: String,
    shutdown: Option<oneshot::Sender<()>>,
    _schema: Option<SchemaGuard>,
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyport-test-{}", keyport::crypto::random_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// With `KEYPORT_TEST_DATABASE_URL` set (postgres://…), each server gets
/// its own schema in that database; otherwise a fresh SQLite file.
/// The URL for a fresh schema, and a guard that drops the schema.
pub async fn test_database() -> Option<(String, SchemaGuard)> {
    let base = std::env::var("KEYPORT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = format!("kp_test_{}", &keyport::crypto::random_id()[..16]);
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
        .await
        .expect("test database reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let joiner = if base.contains('?') { '&' } else { '?' };
    Some((
        format!("{base}{joiner}options[search_path]={schema}"),
        SchemaGuard { base, schema },
    ))
}

/// Drops a test's PostgreSQL schema when the test ends.
pub struct SchemaGuard {
    base: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Drop runs inside the test's runtime; a thread with its own runtime
        // can block on the cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await
                else {
                    return;
                };
                // The test's runtime is blocked on this drop, so a write its
                // server still had in flight (an audit row queued after the
                // response, say) can never commit, and its locks would make
                // the DROP wait forever: end such sessions, then drop.
                let _ = sqlx::query("SET lock_timeout = '2s'")
                    .execute(&mut conn)
                    .await;
                for _ in 0..5 {
                    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let dropped = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                    if dropped.is_ok() {
                        return;
                    }
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                         JOIN pg_class c ON c.oid = l.relation \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
                    )
                    .bind(&schema)
                    .fetch_all(&mut conn)
                    .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

impl TestServer {
    /// A server with a seeded user (alice@example.com, admin of `acme`), a
    /// public CLI client and a confidential resource-server client.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut server = Self::start_empty(adjust).await;
        server.seed().await;
        server
    }

    /// A server on an empty database: no users, no clients.
    pub async fn start_empty(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_serving(adjust, None).await
    }

    /// A seeded server that speaks TLS itself (`keyport::http::serve_tls`)
    /// with `certificate`, its issuer `https://127.0.0.1:<port>`. `http` is
    /// the tests' client and must trust the certificate's CA.
    pub async fn start_tls(
        certificate: Arc<TlsCertificate>,
        http: reqwest::Client,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut server = Self::start_serving(adjust, Some((certificate, http))).await;
        server.seed().await;
        server
    }

    async fn start_serving(
        adjust: impl FnOnce(&mut Config),
        tls: Option<(Arc<TlsCertificate>, reqwest::Client)>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data_dir = temp_dir();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut config = Config {
            issuer: format!("{scheme}://{addr}"),
            listen: addr,
            data_dir: data_dir.clone(),
            database_url: None,
            master_key: Some("11".repeat(32)),
            trusted_proxies: vec![],
            metrics_listen: None,
            tls: tls
                .as_ref()
                .map(|(certificate, _)| certificate.files().clone()),
            limits: Limits::default(),
            tokens: TokenSettings::default(),
            retention: Default::default(),
            keys: Default::default(),
            cimd: Default::default(),
            registration: Default::default(),
            smtp: Default::default(),
            sms: Default::default(),
            scopes: vec![],
            clients: vec![],
            profiles: vec![],
            headless: Default::default(),
        };
        let database = test_database().await;
        config.database_url = database.as_ref().map(|(url, _)| url.clone());
        adjust(&mut config);
        let clock = ManualClock::starting_now();
        let kp = Keyport::open(config, Arc::new(clock.clone()))
            .await
            .expect("keyport opens");
        let (tx, rx) = oneshot::channel::<()>();
        let server = kp.clone();
        let (certificate, http) = match tls {
            Some((certificate, http)) => (Some(certificate), http),
            None => (
                None,
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
            ),
        };
        tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            match certificate {
                Some(certificate) => {
                    keyport::http::serve_tls(server, listener, certificate, shutdown).await
                }
                None => keyport::http::serve(server, listener, shutdown).await,
            }
            .unwrap();
        });
        TestServer {
            issuer: kp.config().issuer.clone(),
            kp,
            clock,
            http,
            data_dir,
            rs_secret: String::new(),
            shutdown: Some(tx),
            _schema: database.map(|(_, guard)| guard),
        }
    }

    async fn seed(&mut self) {
        let kp = &self.kp;
        admin::add_user(kp, EMAIL, Some("Alice"), PASSWORD.into())
            .await
            .unwrap();
        admin::add_workspace(kp, "acme", "Acme").await.unwrap();
        admin::add_member(kp, "acme", EMAIL, "admin").await.unwrap();
        admin::add_client(
            kp,
            ClientSpec {
                id: CLI.into(),
                name: "Test CLI".into(),
                confidential: false,
                grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
                scopes: vec![
                    "openid profile email offline_access agents:read agents:write audit:read"
                        .into(),
                ],
                audiences: vec![AUDIENCE.into()],
                redirect_uris: vec![],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let rs = admin::add_client(
            kp,
            ClientSpec {
                id: RS.into(),
                name: "Test Resource Server".into(),
                confidential: true,
                grants: vec!["client_credentials".into()],
                scopes: vec!["agents:read".into()],
                audiences: vec![AUDIENCE.into()],
                redirect_uris: vec![],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        self.rs_secret = rs["client_secret"].as_str().unwrap().to_string();
    }

    /// The server's clock, in unix seconds.
    pub fn clock_now(&self) -> i64 {
        keyport::clock::Clock::now(&self.clock)
    }

    /// Sends the shutdown signal, as SIGTERM does for `keyport serve`.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// POSTs a form and returns status and JSON body.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    pub async fn start_device(&self, extra: &[(&str, &str)]) -> Value {
        let mut form = vec![("client_id", CLI)];
        if !extra.iter().any(|(k, _)| *k == "scope") {
            form.push(("scope", "openid profile email offline_access agents:read"));
        }
        form.extend_from_slice(extra);
        let (status, body) = self.post_form("/oauth/device_authorization", &form).await;
        assert_eq!(status, StatusCode::OK, "device start failed: {body}");
        body
    }

    pub async fn poll(&self, device_code: &str) -> (StatusCode, Value) {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", CLI),
                ("device_code", device_code),
            ],
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLI),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Introspects `token` as the resource-server client.
    pub async fn introspect(&self, token: &str) -> Value {
        self.introspect_as(RS, &self.rs_secret, token).await
    }

    pub async fn introspect_as(&self, client: &str, secret: &str, token: &str) -> Value {
        let response = self
            .http
            .post(self.url("/oauth/introspect"))
            .basic_auth(client, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// GETs `path` and reads its JSON body (which must be there).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    pub async fn userinfo(&self, access_token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url("/oauth/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// A browser (cookie jar, following redirects) for the hosted pages,
    /// signing in as alice.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.issuer, EMAIL, PASSWORD)
    }

    /// Signs in as alice through the page's forms and approves (or denies).
    pub async fn approve(&self, verification_uri_complete: &str, decision: &str) -> String {
        approve_at(&self.issuer, verification_uri_complete, decision).await
    }

    /// Row counts of every table: equal before and after means nothing stored changed.
    pub async fn table_counts(&self) -> Vec<(String, i64)> {
        let mut counts = Vec::new();
        for table in [
            "users",
            "clients",
            "device_authorizations",
            "sessions",
            "refresh_tokens",
            "revoked_access_tokens",
            "authorization_codes",
            "access_tokens",
            "signing_keys",
            "browser_sessions",
            "audit_events",
            "rate_counters",
        ] {
            let sql = format!("SELECT COUNT(*) AS n FROM {table}");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(self.kp.store().pool())
                .await
                .unwrap();
            counts.push((table.to_string(), sqlx::Row::get::<i64, _>(&row, "n")));
        }
        counts
    }

    pub async fn audit_events(&self) -> Vec<String> {
        let events = admin::export_audit(&self.kp, 0).await.unwrap();
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["event"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// A full device login for the test API's audience (so the resource
    /// server client may introspect its tokens); returns the token response.
    pub async fn login(&self) -> Value {
        self.login_keeping_code().await.1
    }

    /// A full device login whose device calls itself `label`.
    pub async fn login_with_label(&self, label: &str) -> Value {
        let start = self
            .start_device(&[("resource", AUDIENCE), ("cli_label", label)])
            .await;
        let done = self
            .approve(
                start["verification_uri_complete"].as_str().unwrap(),
                "approve",
            )
            .await;
        assert!(done.contains("Device approved"), "{done}");
        let (status, tokens) = self.poll(start["device_code"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        tokens
    }

    /// A full device login that also hands back its device code.
    pub async fn login_keeping_code(&self) -> (String, Value) {
        let start = self.start_device(&[("resource", AUDIENCE)]).await;
        let done = self
            .approve(
                start["verification_uri_complete"].as_str().unwrap(),
                "approve",
            )
            .await;
        assert!(done.contains("Device approved"), "{done}");
        let code = start["device_code"].as_str().unwrap().to_string();
        let (status, tokens) = self.poll(&code).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        (code, tokens)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Waits until `{base}/readyz` answers 200 (at most 20 s).
pub async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{base} never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Signs in as alice on the server at `base` and approves (or denies) the
/// device request behind `verification_uri_complete`.
pub async fn approve_at(base: &str, verification_uri_complete: &str, decision: &str) -> String {
    keyport_testkit::decide_device(base, verification_uri_complete, EMAIL, PASSWORD, decision).await
}
