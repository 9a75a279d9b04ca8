//! `kill -9` under refresh and device-start load, a few dozen times (set
//! `KEYPORT_CRASH_KILL_POINTS` for more; `bench/crash.sh` runs a long one):
//! nothing acknowledged is lost (every CLI's last refresh token still works
//! after the restart, by rotation or by the leeway's replay when the reply
//! was lost, and every device code answered with 200 is still pending), no
//! session ever has two live refresh tokens, and the database reopens
//! sound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::binary::{Server, free_port, keyport, store_args};
use crate::support::*;

/// How many times the server is killed, unless `KEYPORT_CRASH_KILL_POINTS` says.
const KILL_POINTS: usize = 30;
/// CLIs refreshing at once.
const CLIS: usize = 4;
/// Device logins started at once beside them.
const STARTERS: usize = 2;

/// A small deterministic generator for kill times (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

async fn refresh(http: &reqwest::Client, base: &str, token: &str) -> Option<(StatusCode, Value)> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "crash-cli"),
        ("refresh_token", token),
    ];
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&form)
        .send()
        .await
        .ok()?;
    let status = response.status();
    let body = response.json::<Value>().await.ok()?;
    Some((status, body))
}

/// Refreshes in a loop until the server dies; returns the last token the
/// server acknowledged (a 200 whose body arrived) and how many it did.
async fn refresh_until_killed(
    base: String,
    mut token: String,
    refreshed: Arc<AtomicUsize>,
) -> (String, usize) {
    let http = reqwest::Client::new();
    let mut acknowledged = 0;
    loop {
        match refresh(&http, &base, &token).await {
            Some((StatusCode::OK, body)) => {
                token = body["refresh_token"].as_str().unwrap().to_string();
                acknowledged += 1;
                refreshed.fetch_add(1, Ordering::Relaxed);
            }
            Some((status, body)) => panic!("refresh refused under load: {status} {body}"),
            None => return (token, acknowledged),
        }
    }
}

/// Starts device authorizations in a loop until the server dies; returns
/// every device code the server acknowledged (a 200 whose body arrived).
async fn start_until_killed(base: String) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut codes = Vec::new();
    loop {
        let form = [
            ("client_id", "crash-cli"),
            ("scope", "openid offline_access"),
        ];
        let sent = http
            .post(format!("{base}/oauth/device_authorization"))
            .form(&form)
            .send()
            .await;
        let Ok(response) = sent else { return codes };
        let status = response.status();
        let Ok(body) = response.json::<Value>().await else {
            return codes;
        };
        assert_eq!(
            status,
            StatusCode::OK,
            "device start refused under load: {body}"
        );
        codes.push(body["device_code"].as_str().unwrap().to_string());
    }
}

/// SQLite's own check of the file after the kill (PostgreSQL recovers by
/// its write-ahead log; reopening is its check).
async fn database_is_sound(url: &str) -> bool {
    if !url.starts_with("sqlite:") {
        return true;
    }
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = sqlx::Connection::close(conn).await;
    verdict == "ok"
}

/// Live (never rotated) refresh tokens per live session.
async fn live_tokens_per_session(url: &str) -> Vec<i64> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT COUNT(r.hash) AS live FROM sessions s \
         LEFT JOIN refresh_tokens r ON r.session_id = s.id AND r.rotated_at IS NULL \
         WHERE s.revoked_at IS NULL GROUP BY s.id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let _ = sqlx::Connection::close(conn).await;
    rows.iter().map(|r| sqlx::Row::get(r, "live")).collect()
}

#[tokio::test]
async fn kill_9_under_refresh_and_device_start_load_loses_nothing_acknowledged() {
    let data_dir = temp_dir();
    let database = test_database().await;
    let url = database.as_ref().map(|(url, _)| url.clone());
    let store = store_args(&data_dir, url.as_deref());
    let db_url = url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("keyport.db").display()));
    keyport(
        &store,
        &[
            "user",
            "add",
            "--email",
            "alice@example.com",
            "--password-stdin",
        ],
        PASSWORD,
    );
    keyport(
        &store,
        &["workspace", "add", "--slug", "acme", "--name", "Acme"],
        "",
    );
    keyport(
        &store,
        &[
            "workspace",
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "alice@example.com",
            "--role",
            "member",
        ],
        "",
    );
    keyport(
        &store,
        &[
            "client",
            "add",
            "--id",
            "crash-cli",
            "--name",
            "Crash CLI",
            "--public",
            "--grant",
            DEVICE_GRANT,
            "--grant",
            "refresh_token",
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ],
        "",
    );
    let port = free_port();
    let serve = ["--no-rate-limits"];
    let mut server = Server::spawn(&store, port, &serve).await;
    let base = server.base.clone();

    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for _ in 0..CLIS {
        let (_, start) = json_of(
            http.post(format!("{base}/oauth/device_authorization"))
                .form(&[
                    ("client_id", "crash-cli"),
                    ("scope", "openid offline_access"),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        let done = approve_at(
            &base,
            start["verification_uri_complete"].as_str().unwrap(),
            "approve",
        )
        .await;
        assert!(done.contains("Device approved"), "{done}");
        let (status, body) = json_of(
            http.post(format!("{base}/oauth/token"))
                .form(&[
                    ("grant_type", DEVICE_GRANT),
                    ("client_id", "crash-cli"),
                    ("device_code", start["device_code"].as_str().unwrap()),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body["refresh_token"].as_str().unwrap().to_string());
    }

    let seed = Instant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut rng = Lcg(seed);
    let kill_points = std::env::var("KEYPORT_CRASH_KILL_POINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(KILL_POINTS);
    let (mut acknowledged_refreshes, mut acknowledged_starts) = (0usize, 0usize);
    for point in 0..kill_points {
        let refreshed = Arc::new(AtomicUsize::new(0));
        let load = tokens
            .iter()
            .map(|t| {
                let refreshed = refreshed.clone();
                tokio::spawn(refresh_until_killed(base.clone(), t.clone(), refreshed))
            })
            .collect::<Vec<_>>();
        let starts = (0..STARTERS)
            .map(|_| tokio::spawn(start_until_killed(base.clone())))
            .collect::<Vec<_>>();
        // The kill lands at a random moment once the load is under way (on
        // a busy machine the first refresh of a round can take a while).
        let under_way = Instant::now();
        while refreshed.load(Ordering::Relaxed) == 0 && under_way.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(180))).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let (survivors, counts): (Vec<String>, Vec<usize>) = join_all(load)
            .await
            .into_iter()
            .map(|r| r.expect("load task"))
            .unzip();
        acknowledged_refreshes += counts.iter().sum::<usize>();
        let started: Vec<String> = join_all(starts)
            .await
            .into_iter()
            .flat_map(|r| r.expect("start task"))
            .collect();
        acknowledged_starts += started.len();
        assert!(
            database_is_sound(&db_url).await,
            "kill point {point}: the database fails its integrity check"
        );

        for live in live_tokens_per_session(&db_url).await {
            assert!(
                live <= 1,
                "kill point {point}: a session has {live} live refresh tokens"
            );
        }
        drop(server);
        server = Server::spawn(&store, port, &serve).await;
        // Every CLI's last acknowledged token still refreshes: nothing it
        // was told is lost, and no session was revoked as reuse.
        for (i, token) in survivors.into_iter().enumerate() {
            let (status, body) = refresh(&http, &base, &token)
                .await
                .expect("the restarted server answers");
            assert_eq!(
                status,
                StatusCode::OK,
                "kill point {point}, CLI {i}: {body}"
            );
            tokens[i] = body["refresh_token"].as_str().unwrap().to_string();
        }
        // Every device code answered with 200 is still there, pending.
        for code in started {
            let form = [
                ("grant_type", DEVICE_GRANT),
                ("client_id", "crash-cli"),
                ("device_code", code.as_str()),
            ];
            let response = http
                .post(format!("{base}/oauth/token"))
                .form(&form)
                .send()
                .await
                .unwrap();
            let (status, body) = json_of(response).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("authorization_pending")),
                "kill point {point}: an acknowledged device code: {body}"
            );
        }
    }
    assert!(acknowledged_refreshes > 0, "the load never refreshed");
    assert!(
        acknowledged_starts > 0,
        "the load never started a device login"
    );
    eprintln!(
        "crash: {kill_points} kill points; {acknowledged_refreshes} acknowledged refreshes and \
         {acknowledged_starts} acknowledged device starts checked after restarts; 0 violations"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}
