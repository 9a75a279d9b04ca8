//! Metrics, through the `metrics` facade and exported in the Prometheus text
//! format by `metrics-exporter-prometheus` (`GET /metrics`, or a listener of
//! its own with `metrics_listen`). Every name is described here, and no
//! label ever holds a user, a client or a secret: labels are route
//! templates, status classes, grant types, error codes and pool states.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Something an operator wants to alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    /// A user-code entry refused because too many wrong codes came first.
    UserCodeThrottled,
    /// A sign-in refused by the per-IP throttle.
    SignInThrottled,
    /// A username locked after repeated failed sign-ins.
    Lockout,
    /// A rotated refresh token presented again: its session was revoked.
    RefreshReuse,
    /// A redeemed authorization code presented again: what it issued was revoked.
    CodeReuse,
    /// A connection refused because the server or its address was at its cap.
    ConnectionRefused,
}

impl SecurityEvent {
    pub const ALL: [SecurityEvent; 6] = [
        SecurityEvent::UserCodeThrottled,
        SecurityEvent::SignInThrottled,
        SecurityEvent::Lockout,
        SecurityEvent::RefreshReuse,
        SecurityEvent::CodeReuse,
        SecurityEvent::ConnectionRefused,
    ];

    /// The counter's name.
    pub fn metric(self) -> &'static str {
        match self {
            SecurityEvent::UserCodeThrottled => "keyport_user_code_throttled_total",
            SecurityEvent::SignInThrottled => "keyport_sign_in_throttled_total",
            SecurityEvent::Lockout => "keyport_lockouts_total",
            SecurityEvent::RefreshReuse => "keyport_refresh_token_reuse_total",
            SecurityEvent::CodeReuse => "keyport_authorization_code_reuse_total",
            SecurityEvent::ConnectionRefused => "keyport_connections_refused_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            SecurityEvent::UserCodeThrottled => {
                "User-code entries refused after too many wrong codes."
            }
            SecurityEvent::SignInThrottled => "Sign-ins refused by the per-IP throttle.",
            SecurityEvent::Lockout => "Usernames locked after repeated failed sign-ins.",
            SecurityEvent::RefreshReuse => {
                "Rotated refresh tokens presented again (the session was revoked)."
            }
            SecurityEvent::CodeReuse => {
                "Redeemed authorization codes presented again (their session was revoked)."
            }
            SecurityEvent::ConnectionRefused => {
                "Connections refused at the total or per-address cap."
            }
        }
    }
}

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Jobs per SQLite write batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder, once.
/// An embedder that installed a recorder of its own keeps it; `/metrics` then
/// shows nothing and says so in the log.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("keyport_sqlite_write_batch_jobs".into()),
                    BATCH_BUCKETS,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "keyport_http_responses_total",
        "HTTP responses by route template and status class."
    );
    describe_histogram!(
        "keyport_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from request head to response, by route template."
    );
    describe_counter!(
        "keyport_tokens_issued_total",
        "Token responses by grant type."
    );
    describe_counter!(
        "keyport_oauth_errors_total",
        "RFC 6749 error responses by error code."
    );
    describe_histogram!(
        "keyport_sqlite_write_batch_jobs",
        "Write jobs committed together in one SQLite transaction."
    );
    describe_histogram!(
        "keyport_sqlite_commit_duration_seconds",
        metrics::Unit::Seconds,
        "Time a SQLite write batch took to commit (the fsync)."
    );
    describe_gauge!(
        "keyport_db_pool_connections",
        "Database pool connections by state (idle or in use)."
    );
    for event in SecurityEvent::ALL {
        describe_counter!(event.metric(), event.help());
        // Present from the start, so an alert on a rate has a series to read.
        counter!(event.metric()).absolute(0);
    }
}

/// The exposition text.
pub fn render() -> String {
    install().render()
}

/// Housekeeping for the exporter (drains histogram buffers); call now and then.
pub fn upkeep() {
    install().run_upkeep();
}

/// Counts one security event.
pub fn record(event: SecurityEvent) {
    counter!(event.metric()).increment(1);
}

pub fn response(route: &'static str, class: &'static str, took: Duration) {
    counter!("keyport_http_responses_total", "route" => route, "class" => class).increment(1);
    histogram!("keyport_http_request_duration_seconds", "route" => route)
        .record(took.as_secs_f64());
}

pub fn token_issued(grant_type: &'static str) {
    counter!("keyport_tokens_issued_total", "grant_type" => grant_type).increment(1);
}

pub fn oauth_error(code: &'static str) {
    counter!("keyport_oauth_errors_total", "error" => code).increment(1);
}

/// One SQLite write batch: how many jobs it carried and how long its
/// commit took.
pub fn write_batch(jobs: usize, commit: Duration) {
    histogram!("keyport_sqlite_write_batch_jobs").record(jobs as f64);
    histogram!("keyport_sqlite_commit_duration_seconds").record(commit.as_secs_f64());
}

/// The database pool's connections, read at scrape time.
pub fn pool(size: u32, idle: usize) {
    let idle = idle as f64;
    gauge!("keyport_db_pool_connections", "state" => "idle").set(idle);
    gauge!("keyport_db_pool_connections", "state" => "in_use")
        .set((f64::from(size) - idle).max(0.0));
}
