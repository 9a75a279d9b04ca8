//! `/metrics` read by a Prometheus text-format parser after a device login:
//! the series exist with plausible values, and no label holds a user, a
//! client secret, a token or an id.

use prometheus_parse::{Scrape, Value};
use reqwest::StatusCode;

use crate::binary::free_port;
use crate::support::*;

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The sum of a counter or gauge's samples whose labels include `labels`.
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_after_a_device_login_are_plausible_and_anonymous() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = server.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let (_, body) = server.poll("unknown-code").await;
    assert_eq!(body["error"], "invalid_grant");

    let text = server.metrics_text().await;
    let metrics = scrape(&text);
    // Counters are process-wide and tests run in parallel: at least ours.
    let device = [("grant_type", DEVICE_GRANT)];
    assert!(
        total(&metrics, "keyport_tokens_issued_total", &device) >= 1.0,
        "{text}"
    );
    let refresh_grant = [("grant_type", "refresh_token")];
    assert!(total(&metrics, "keyport_tokens_issued_total", &refresh_grant) >= 1.0);
    let invalid = [("error", "invalid_grant")];
    assert!(total(&metrics, "keyport_oauth_errors_total", &invalid) >= 1.0);
    let token_2xx = [("route", "/oauth/token"), ("class", "2xx")];
    assert!(total(&metrics, "keyport_http_responses_total", &token_2xx) >= 2.0);
    let token_route = [("route", "/oauth/token")];
    assert!(
        total(
            &metrics,
            "keyport_http_request_duration_seconds",
            &token_route
        ) >= 3.0
    );
    for event in keyport::telemetry::SecurityEvent::ALL {
        assert!(
            metrics.samples.iter().any(|s| s.metric == event.metric()),
            "{} missing",
            event.metric()
        );
    }
    assert!(
        metrics
            .samples
            .iter()
            .any(|s| s.metric == "keyport_db_pool_connections"),
        "{text}"
    );
    if server.kp.store().engine() == keyport::store::Engine::Sqlite {
        assert!(total(&metrics, "keyport_sqlite_write_batch_jobs", &[]) >= 1.0);
        assert!(total(&metrics, "keyport_sqlite_commit_duration_seconds", &[]) >= 1.0);
    }

    // Nothing that names a person, a secret or a session.
    let user =
        keyport::store::directory::user_by_email(server.kp.store().pool(), "alice@example.com")
            .await
            .unwrap()
            .unwrap();
    let secrets = [
        "alice@example.com",
        user.id.as_str(),
        server.rs_secret.as_str(),
        refresh,
        tokens["access_token"].as_str().unwrap(),
    ];
    for sample in &metrics.samples {
        for (_, value) in sample.labels.iter() {
            for secret in secrets {
                assert!(!value.contains(secret), "{} has {value}", sample.metric);
            }
            assert!(
                !value.contains('@') && !value.starts_with("kp_") && !value.starts_with("eyJ"),
                "{} has {value}",
                sample.metric
            );
        }
    }
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = free_port();
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    let public = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "not on the public listener"
    );
    let private = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    let text = private.text().await.unwrap();
    assert!(
        scrape(&text)
            .samples
            .iter()
            .any(|s| s.metric == "keyport_lockouts_total")
    );
}
