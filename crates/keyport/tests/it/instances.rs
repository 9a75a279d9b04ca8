//! Several stateless `keyport serve` processes on one PostgreSQL database:
//! one refresh token yields one successor, one device code releases tokens
//! once, and key rotation and revocation reach every instance.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::pg::TempPostgres;
use crate::support::*;

/// The issuer every instance shares, as behind one load balancer.
pub const CLUSTER_ISSUER: &str = "http://localhost:8443";

/// One `keyport serve` process.
pub struct Instance {
    child: Child,
    /// Where this instance listens; the issuer is the cluster's, shared.
    pub base: String,
    data_dir: std::path::PathBuf,
}

impl Instance {
    pub async fn spawn(database_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let data_dir = temp_dir();
        let child = Command::new(env!("CARGO_BIN_EXE_keyport"))
            .args([
                "serve",
                "--no-rate-limits",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--issuer",
                CLUSTER_ISSUER,
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--database-url", database_url])
            // Every instance needs the same master key to open the shared signing keys.
            .env("KEYPORT_MASTER_KEY", "11".repeat(32))
            .env("KEYPORT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keyport binary runs");
        let instance = Instance {
            child,
            base,
            data_dir,
        };
        instance.wait_ready().await;
        instance
    }

    pub async fn wait_ready(&self) {
        wait_ready(&self.base).await;
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A database for a cluster: the test database's own schema when
/// `KEYPORT_TEST_DATABASE_URL` is set, else a private PostgreSQL server.
pub struct ClusterDb {
    pub seed: TestServer,
    _private: Option<TempPostgres>,
}

impl ClusterDb {
    pub async fn new() -> Self {
        let private = std::env::var("KEYPORT_TEST_DATABASE_URL")
            .is_err()
            .then(TempPostgres::start);
        let url = private.as_ref().map(|pg| pg.url());
        let seed = TestServer::start_with(move |c| {
            if let Some(url) = url {
                c.database_url = Some(url);
            }
        })
        .await;
        Self {
            seed,
            _private: private,
        }
    }

    pub fn url(&self) -> String {
        self.seed
            .kp
            .config()
            .database_url
            .clone()
            .expect("a PostgreSQL URL")
    }
}

async fn post(http: &reqwest::Client, url: String, form: &[(&str, &str)]) -> (StatusCode, Value) {
    json_of(http.post(url).form(form).send().await.unwrap()).await
}

async fn login_across(cluster: &[Instance]) -> Value {
    let http = reqwest::Client::new();
    let (status, start) = post(
        &http,
        format!("{}/oauth/device_authorization", cluster[0].base),
        &[("client_id", CLI), ("scope", "openid offline_access")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    // Approve on another instance's page than the one that started it.
    let uri = start["verification_uri_complete"]
        .as_str()
        .unwrap()
        .replace(CLUSTER_ISSUER, &cluster[1].base);
    let done = approve_at(&cluster[1].base, &uri, "approve").await;
    assert!(done.contains("Device approved"), "{done}");
    let code = start["device_code"].as_str().unwrap();
    let last = &cluster[cluster.len() - 1].base;
    let (status, tokens) = post(
        &http,
        format!("{last}/oauth/token"),
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", CLI),
            ("device_code", code),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

#[tokio::test]
async fn a_refresh_token_yields_one_successor_on_any_instance() {
    let db = ClusterDb::new().await;
    let cluster = [
        Instance::spawn(&db.url()).await,
        Instance::spawn(&db.url()).await,
        Instance::spawn(&db.url()).await,
    ];
    let http = reqwest::Client::new();
    let tokens = login_across(&cluster).await;
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    for round in 0..15 {
        // The same token at every instance at once, twice each.
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", CLI),
            ("refresh_token", refresh.as_str()),
        ];
        let requests = cluster
            .iter()
            .cycle()
            .take(6)
            .map(|instance| post(&http, format!("{}/oauth/token", instance.base), &form));
        let replies = join_all(requests).await;
        let successors: std::collections::BTreeSet<String> = replies
            .iter()
            .map(|(status, body)| {
                assert_eq!(
                    *status,
                    StatusCode::OK,
                    "round {round}: every racer is within the leeway: {body}"
                );
                body["refresh_token"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            successors.len(),
            1,
            "round {round}: one successor, the same pair for every racer"
        );
        let access: std::collections::BTreeSet<&str> = replies
            .iter()
            .map(|(_, b)| b["access_token"].as_str().unwrap())
            .collect();
        assert_eq!(access.len(), 1);
        refresh = successors.into_iter().next().unwrap();
    }
    // One chain: 16 tokens in the session, exactly one not yet rotated.
    let row = sqlx::query("SELECT COUNT(*) AS total, SUM(CASE WHEN rotated_at IS NULL THEN 1 ELSE 0 END) AS live FROM refresh_tokens")
        .fetch_one(db.seed.kp.store().pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "total"), 16);
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "live"), 1);
}

#[tokio::test]
async fn a_device_code_releases_tokens_once_across_instances() {
    let db = ClusterDb::new().await;
    let cluster = [
        Instance::spawn(&db.url()).await,
        Instance::spawn(&db.url()).await,
        Instance::spawn(&db.url()).await,
    ];
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let (_, start) = post(
            &http,
            format!("{}/oauth/device_authorization", cluster[2].base),
            &[("client_id", CLI)],
        )
        .await;
        let uri = start["verification_uri_complete"]
            .as_str()
            .unwrap()
            .replace(CLUSTER_ISSUER, &cluster[0].base);
        let done = approve_at(&cluster[0].base, &uri, "approve").await;
        assert!(done.contains("Device approved"));
        let code = start["device_code"].as_str().unwrap().to_string();
        let form = [
            ("grant_type", DEVICE_GRANT),
            ("client_id", CLI),
            ("device_code", code.as_str()),
        ];
        let polls = cluster
            .iter()
            .cycle()
            .take(9)
            .map(|instance| post(&http, format!("{}/oauth/token", instance.base), &form));
        let replies = join_all(polls).await;
        // A poll arriving after the release, within the leeway, gets the
        // same response again (a retry whose reply was lost): one token set.
        let mut granted = replies
            .iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, body)| body["refresh_token"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        assert!(!granted.is_empty(), "no token response: {replies:?}");
        granted.dedup();
        assert_eq!(granted.len(), 1, "exactly one token set: {replies:?}");
        for (status, body) in replies
            .iter()
            .filter(|(status, _)| *status != StatusCode::OK)
        {
            assert_eq!(
                (*status, body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_grant"))
            );
        }
    }
}

#[tokio::test]
async fn key_rotation_and_revocation_reach_every_instance() {
    let db = ClusterDb::new().await;
    let pair = [
        Instance::spawn(&db.url()).await,
        Instance::spawn(&db.url()).await,
    ];
    let (a, b) = (&pair[0], &pair[1]);
    let http = reqwest::Client::new();
    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let before = kids(
        http.get(format!("{}/oauth/jwks", b.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );

    // Rotate through instance A's side: the admin command on the shared database.
    let output = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(["keys", "rotate", "--json", "--database-url", &db.url()])
        .arg("--data-dir")
        .arg(temp_dir())
        .env("KEYPORT_MASTER_KEY", "11".repeat(32))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rotated: Value = serde_json::from_slice(&output.stdout).unwrap();
    let new_kids: Vec<String> = rotated["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();

    let deadline = Instant::now() + Duration::from_secs(10);
    for instance in [a, b] {
        loop {
            let now = kids(
                http.get(format!("{}/oauth/jwks", instance.base))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap(),
            );
            if new_kids.iter().all(|k| now.contains(k)) {
                assert!(
                    before.iter().all(|k| now.contains(k)),
                    "previous keys stay published"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never served the rotated keys",
                instance.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // B signs with the new key (the login polls the last instance); A verifies it.
    let tokens = login_across(&pair).await;
    let access = tokens["access_token"].as_str().unwrap();
    let header = access.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&base64_url(header)).unwrap();
    assert!(new_kids.contains(&header["kid"].as_str().unwrap().to_string()));
    let on_a = http
        .get(format!("{}/oauth/userinfo", a.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(on_a.status(), StatusCode::OK);

    // Revocation: effective everywhere at once.
    let sessions = keyport::admin::list_sessions(&db.seed.kp, None)
        .await
        .unwrap();
    let id = sessions[0]["id"].as_str().unwrap();
    keyport::admin::revoke_session(&db.seed.kp, id)
        .await
        .unwrap();
    for instance in [a, b] {
        let r = http
            .get(format!("{}/oauth/userinfo", instance.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "revocation is immediate on {}",
            instance.base
        );
    }
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn a_postgres_outage_answers_503_and_recovers() {
    let pg = TempPostgres::start();
    let url = pg.url();
    let seed = TestServer::start_with(move |c| c.database_url = Some(url)).await;
    let mut instance = Instance::spawn(&pg.url()).await;
    let tokens = login_across(&[
        Instance::spawn(&pg.url()).await,
        Instance::spawn(&pg.url()).await,
    ])
    .await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();

    // Load while the database goes away and comes back.
    let base = instance.base.clone();
    let load_http = http.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_load = stop.clone();
    let load = tokio::spawn(async move {
        let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
        while !stop_load.load(std::sync::atomic::Ordering::SeqCst) {
            let form = [("client_id", CLI)];
            if let Ok(r) = load_http
                .post(format!("{base}/oauth/device_authorization"))
                .form(&form)
                .send()
                .await
            {
                *statuses.entry(r.status().as_u16()).or_default() += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.halt();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("{}/readyz", instance.base))
            .send()
            .await
            .unwrap()
            .status();
        if ready == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz kept answering {ready} with the database down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = post(
        &http,
        format!("{}/oauth/token", instance.base),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLI),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        instance.alive(),
        "keyport must not crash while the database is down"
    );

    pg.resume();
    instance.wait_ready().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert!(instance.alive());
    assert!(
        statuses.keys().all(|s| [200, 503].contains(s)),
        "only 200 and 503 under the outage: {statuses:?}"
    );
    assert!(
        statuses.contains_key(&503) && statuses.contains_key(&200),
        "{statuses:?}"
    );
    // The session approved before the outage survived it.
    let (status, body) = post(
        &http,
        format!("{}/oauth/token", instance.base),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLI),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(seed);
}

#[tokio::test]
async fn polling_speed_is_judged_across_instances() {
    let db = ClusterDb::new().await;
    let cluster = [
        Instance::spawn(&db.url()).await,
        Instance::spawn(&db.url()).await,
    ];
    let http = reqwest::Client::new();
    let (_, start) = post(
        &http,
        format!("{}/oauth/device_authorization", cluster[0].base),
        &[("client_id", CLI)],
    )
    .await;
    let form = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", CLI),
        ("device_code", start["device_code"].as_str().unwrap()),
    ];
    let (_, first) = post(&http, format!("{}/oauth/token", cluster[0].base), &form).await;
    assert_eq!(first["error"], "authorization_pending");
    // Polling the other instance at once is still polling too fast.
    let (_, second) = post(&http, format!("{}/oauth/token", cluster[1].base), &form).await;
    assert_eq!(second["error"], "slow_down", "{second}");
    let interval: i64 = sqlx::query("SELECT poll_interval FROM device_authorizations")
        .fetch_one(db.seed.kp.store().pool())
        .await
        .map(|row| sqlx::Row::get(&row, "poll_interval"))
        .unwrap();
    assert_eq!(interval, 10, "the interval grew once, in the shared row");
}
