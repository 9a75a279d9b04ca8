//! Storage that stops growing: months of refreshes under the injected
//! clock, with housekeeping pruning in small batches. Row counts level off,
//! reuse detection still works inside a token's lifetime, and a token past
//! its lifetime is plain `invalid_grant`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
const CLIS: usize = 5;

async fn count(server: &TestServer, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(server.kp.store().pool())
        .await
        .unwrap();
    sqlx::Row::get(&row, "n")
}

fn refresh_token(tokens: &Value) -> String {
    tokens["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_month_of_refreshes_levels_off_and_reuse_detection_holds() {
    let server = TestServer::start_with(|c| {
        c.tokens.refresh_token_ttl = 2 * DAY;
        c.tokens.session_max_lifetime = 10 * DAY;
        c.retention.ended_sessions_days = 1;
        c.retention.audit_days = 5;
        c.retention.batch_size = 50;
    })
    .await;
    let mut chains = Vec::new();
    for _ in 0..CLIS {
        chains.push(refresh_token(&server.login().await));
    }
    let mut rotations = 0;
    let mut sizes = Vec::new();
    for step in 1..=(30 * 12) {
        server.clock.advance_secs(2 * HOUR);
        for token in chains.iter_mut() {
            let (status, body) = server.refresh(token).await;
            if status == StatusCode::OK {
                *token = refresh_token(&body);
                rotations += 1;
            } else {
                // The session reached its absolute lifetime: log in again.
                assert_eq!(body["error"], "invalid_grant", "{body}");
                *token = refresh_token(&server.login().await);
            }
        }
        if step == 5 * 12 {
            // One statement never removes more than a batch.
            let at = keyport::store::retention::Cutoffs {
                now: server.clock_now(),
                revoked_before: 0,
                idle_before: 0,
                created_before: 0,
                failures_before: 0,
                audit_before_ms: 0,
            };
            let removed = server
                .kp
                .store()
                .write_one(move |c| {
                    Box::pin(async move {
                        keyport::store::retention::prune(
                            c,
                            keyport::store::retention::Prune::ExpiredRotatedTokens,
                            at,
                            50,
                        )
                        .await
                    })
                })
                .await
                .unwrap();
            assert_eq!(removed, 50, "a batch is 50 rows, however many are due");
        }
        // Housekeeping starts on day 5, with plenty due.
        if step >= 5 * 12 && step % 3 == 0 {
            server.kp.housekeeping().await.unwrap();
        }
        if step % 12 == 0 {
            sizes.push((
                count(&server, "refresh_tokens").await,
                count(&server, "sessions").await,
                count(&server, "audit_events").await,
                count(&server, "rate_counters").await,
            ));
        }
    }
    assert!(rotations > 1500, "{rotations} rotations");
    // Without pruning: one row per rotation and an audit event each.
    let (tokens, sessions, audit, buckets) = *sizes.last().unwrap();
    let bound = |days: i64| (CLIS as i64) * days * 12;
    assert!(
        tokens <= bound(3) + 2 * CLIS as i64,
        "refresh tokens: {sizes:?}"
    );
    assert!(sessions <= 3 * CLIS as i64, "sessions: {sizes:?}");
    assert!(audit <= bound(6), "audit events: {sizes:?}");
    assert!(buckets <= 4, "rate buckets: {sizes:?}");
    // Level: the last ten days hold no more than the ten before them.
    let peak = |days: &[(i64, i64, i64, i64)]| days.iter().map(|d| d.0 + d.2).max().unwrap();
    assert!(
        peak(&sizes[20..]) <= peak(&sizes[10..20]) + bound(1),
        "still growing: {sizes:?}"
    );

    // Inside a token's lifetime a replay is still caught, after housekeeping.
    let first = chains[0].clone();
    let (status, body) = server.refresh(&first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = refresh_token(&body);
    server.clock.advance_secs(DAY);
    server.kp.housekeeping().await.unwrap();
    let (status, body) = server.refresh(&first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = server.refresh(&second).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the replay ended the session"
    );

    // Past its lifetime, a rotated token is gone: plain invalid_grant, and
    // the session it came from lives on.
    let old = refresh_token(&server.login().await);
    let (_, body) = server.refresh(&old).await;
    let mut live = refresh_token(&body);
    for _ in 0..2 {
        server.clock.advance_secs(DAY + HOUR);
        let (status, body) = server.refresh(&live).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        live = refresh_token(&body);
    }
    server.kp.housekeeping().await.unwrap();
    let (status, body) = server.refresh(&old).await;
    assert_eq!(body["error"], "invalid_grant", "{status} {body}");
    let (status, body) = server.refresh(&live).await;
    assert_eq!(status, StatusCode::OK, "the session lives on: {body}");
}
