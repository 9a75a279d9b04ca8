//! Retention under a simulated fleet: CLIS device logins, each refreshing
//! every INTERVAL simulated seconds until ROTATIONS refreshes are done,
//! with hourly housekeeping, all in process on the injected clock (the
//! HTTP layer adds nothing to what is measured here). Prints, per simulated
//! week, the row counts and the database size, and housekeeping's longest
//! batch; then checks that reuse is still detected inside a token's
//! lifetime. `bench/retention.sh` runs it; see bench/README.md.
//!
//! Usage: retention [ROTATIONS] [CLIS] [INTERVAL_SECS] [AUDIT_DAYS] [DATABASE_URL]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use keyport::admin;
use keyport::clock::{Clock, ManualClock};
use keyport::config::{Config, Limits};
use keyport::crypto::tokens::Secret;
use keyport::domain::clients::ClientSpec;
use keyport::domain::device::{Consent, StartRequest};
use keyport::domain::password::DeviceReport;
use keyport::domain::poll::PollRequest;
use keyport::{Caller, Keyport};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CONCURRENCY: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let rotations = arg(1, 1_000_000);
    let clis = arg(2, 2_000) as usize;
    let interval = arg(3, 2 * 3600) as i64;
    let audit_days = arg(4, 400) as i64;
    let database_url = args.get(5).cloned();

    let data_dir = std::env::temp_dir().join(format!("keyport-retention-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let listen = "127.0.0.1:1".parse()?;
    let config = Config {
        issuer: "http://127.0.0.1:1".into(),
        listen,
        data_dir: data_dir.clone(),
        database_url,
        master_key: Some("44".repeat(32)),
        trusted_proxies: vec![],
        metrics_listen: None,
        tls: None,
        limits: Limits {
            enabled: false,
            ..Limits::default()
        },
        tokens: Default::default(),
        retention: keyport::config::Retention {
            audit_days,
            ..Default::default()
        },
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
    let clock = ManualClock::starting_now();
    let kp = Keyport::open(config, Arc::new(clock.clone())).await?;
    admin::add_user(
        &kp,
        "fleet@example.com",
        None,
        "a long enough password".into(),
    )
    .await?;
    admin::add_workspace(&kp, "fleet", "Fleet").await?;
    admin::add_member(&kp, "fleet", "fleet@example.com", "member").await?;
    admin::add_client(
        &kp,
        ClientSpec {
            id: "fleet-cli".into(),
            name: "Fleet CLI".into(),
            confidential: false,
            grants: vec![DEVICE_GRANT.into(), "refresh_token".into()],
            scopes: vec!["openid".into(), "offline_access".into()],
            audiences: vec![],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await?;
    let client = kp.client("fleet-cli").await?.expect("the client exists");
    let user = keyport::store::directory::user_by_email(kp.store().pool(), "fleet@example.com")
        .await?
        .expect("the user exists");
    let caller = Caller::default();

    eprintln!("logging in {clis} CLIs …");
    let mut tokens = Vec::with_capacity(clis);
    for _ in 0..clis {
        let start = kp
            .start_device_authorization(&client, StartRequest::default(), &caller)
            .await?;
        let pending = kp
            .resolve_user_code(&start.user_code, &user, None, &caller)
            .await?;
        let consent = Consent::Approve {
            workspace: Some("fleet"),
        };
        kp.decide_device(&pending.id, &user, consent, clock.now(), &caller)
            .await?;
        let poll = PollRequest {
            device_code: Secret::new(start.device_code),
            resource: None,
            scope: None,
        };
        let issued = kp.poll_device(&client, poll, &caller).await?;
        tokens.push(issued.refresh_token.expect("offline_access was granted"));
    }

    println!(
        "| day | rotations | refresh_tokens | sessions | audit_events | database MiB | longest housekeeping batch |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let mut done = 0u64;
    let mut longest = Duration::ZERO;
    let mut batches = 0u64;
    let mut next_housekeeping = clock.now() + 3600;
    let mut next_report = clock.now() + 7 * 86_400;
    let origin = clock.now();
    while done < rotations {
        clock.advance_secs(interval);
        let round: Vec<String> = stream::iter(tokens.drain(..))
            .map(|token| {
                let (kp, client, caller) = (kp.clone(), client.clone(), caller.clone());
                async move {
                    let presented = Secret::new(token);
                    let response = kp
                        .refresh(&client, &presented, None, &DeviceReport::default(), &caller)
                        .await;
                    response.map(|r| r.refresh_token.expect("rotation gives a successor"))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        done += round.len() as u64;
        tokens = round;
        while clock.now() >= next_housekeeping {
            let report = kp.housekeeping().await?;
            longest = longest.max(report.longest_batch);
            batches += report.batches;
            next_housekeeping += 3600;
        }
        if clock.now() >= next_report || done >= rotations {
            let count = |table: &'static str| {
                let pool = kp.store().pool().clone();
                async move {
                    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_one(&pool)
                        .await?;
                    anyhow::Ok(sqlx::Row::get::<i64, _>(&row, "n"))
                }
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.1} | {:.2} ms |",
                (clock.now() - origin) / 86_400,
                done,
                count("refresh_tokens").await?,
                count("sessions").await?,
                count("audit_events").await?,
                database_bytes(&kp, &data_dir).await as f64 / 1_048_576.0,
                longest.as_secs_f64() * 1000.0,
            );
            next_report += 7 * 86_400;
        }
    }
    eprintln!(
        "{done} rotations in {:.0} s of wall time; {batches} housekeeping batches, the longest held the writer {:.2} ms",
        started.elapsed().as_secs_f64(),
        longest.as_secs_f64() * 1000.0
    );

    // Reuse inside a token's lifetime is still caught.
    let first = Secret::new(tokens[0].clone());
    let second = kp
        .refresh(&client, &first, None, &DeviceReport::default(), &caller)
        .await?;
    clock.advance_secs(86_400);
    kp.housekeeping().await?;
    let replay = kp
        .refresh(&client, &first, None, &DeviceReport::default(), &caller)
        .await;
    let successor = Secret::new(second.refresh_token.expect("a successor"));
    let after = kp
        .refresh(&client, &successor, None, &DeviceReport::default(), &caller)
        .await;
    anyhow::ensure!(
        replay.is_err() && after.is_err(),
        "a replay inside the token's lifetime was not caught"
    );
    eprintln!("reuse inside the lifetime: detected, session revoked");
    kp.store().close().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// The database's size: SQLite's pages in use plus free ones (the file),
/// or PostgreSQL's own count.
async fn database_bytes(kp: &Keyport, data_dir: &std::path::Path) -> u64 {
    match kp.store().engine() {
        keyport::store::Engine::Sqlite => std::fs::metadata(data_dir.join("keyport.db"))
            .map(|m| m.len())
            .unwrap_or(0),
        keyport::store::Engine::Postgres => {
            let row = sqlx::query("SELECT pg_database_size(current_database()) AS n")
                .fetch_one(kp.store().pool())
                .await;
            row.map(|r| sqlx::Row::get::<i64, _>(&r, "n") as u64)
                .unwrap_or(0)
        }
    }
}
