//! Automatic signing-key rotation with the injected clock, across two
//! instances on one PostgreSQL: the next key is in both JWKS before it signs
//! anything, tokens signed by the old key verify until they expire, and
//! each step happens exactly once however many instances attempt it.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyport::Keyport;
use keyport::domain::keys::KeyStep;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::instances::ClusterDb;
use crate::support::*;

const DAY: i64 = 86_400;

/// A second instance on the same database and clock as `first`.
async fn second_instance(first: &TestServer) -> (Keyport, String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = first.kp.config().clone();
    config.listen = listener.local_addr().unwrap();
    let base = format!("http://{}", config.listen);
    let kp = Keyport::open(config, Arc::new(first.clock.clone()))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = kp.clone();
    tokio::spawn(async move {
        keyport::http::serve(server, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (kp, base, stop)
}

async fn published_kids(base: &str) -> BTreeSet<String> {
    let jwks: Value = reqwest::get(format!("{base}/oauth/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

async fn userinfo_at(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}/oauth/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Both instances attempt the due steps at once; returns all that were won.
async fn rotate_on_both(a: &Keyport, b: &Keyport) -> Vec<KeyStep> {
    let (x, y) = tokio::join!(a.rotate_keys_if_due(), b.rotate_keys_if_due());
    let mut steps = x.unwrap();
    steps.extend(y.unwrap());
    // The loser may have reloaded before the winner committed.
    a.reload_keys().await.unwrap();
    b.reload_keys().await.unwrap();
    steps
}

#[tokio::test]
async fn keys_rotate_once_across_instances_publishing_ahead_and_retiring_late() {
    let db = ClusterDb::new().await;
    let a = &db.seed;
    let (b, b_base, _stop) = second_instance(a).await;
    let original = published_kids(&a.issuer).await;
    assert_eq!(
        original.len(),
        4,
        "access-token keys (EdDSA, ES256, RS256) and an ID-token key"
    );
    assert!(
        rotate_on_both(&a.kp, &b).await.is_empty(),
        "nothing due yet"
    );

    // A day before the keys are due, their successors are published.
    a.clock.advance_secs(89 * DAY);
    let steps = rotate_on_both(&a.kp, &b).await;
    assert_eq!(
        steps.len(),
        4,
        "one next key per use, not per instance: {steps:?}"
    );
    assert!(steps.iter().all(|s| matches!(s, KeyStep::PublishNext(_))));
    let ahead = published_kids(&a.issuer).await;
    assert_eq!(ahead, published_kids(&b_base).await, "both JWKS agree");
    assert_eq!(ahead.len(), 8);
    assert!(ahead.is_superset(&original));
    let upcoming: BTreeSet<String> = ahead.difference(&original).cloned().collect();

    // Published, but not yet signing: a minute before the rotation, tokens
    // still come from the old key.
    a.clock.advance_secs(DAY - 60);
    assert!(rotate_on_both(&a.kp, &b).await.is_empty());
    let before = a.login().await;
    let old_token = before["access_token"].as_str().unwrap().to_string();
    assert!(original.contains(&kid_of(&old_token)));

    // Due: exactly one promotion per use.
    a.clock.advance_secs(60);
    let steps = rotate_on_both(&a.kp, &b).await;
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(steps.iter().all(|s| matches!(s, KeyStep::Promote { .. })));
    let after = a.login().await;
    let new_token = after["access_token"].as_str().unwrap();
    assert!(
        upcoming.contains(&kid_of(new_token)),
        "the new key signs now"
    );
    assert!(upcoming.contains(&kid_of(after["id_token"].as_str().unwrap())));
    let (status, refreshed) = a.refresh(before["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert!(upcoming.contains(&kid_of(refreshed["access_token"].as_str().unwrap())));
    // The old key's tokens still verify, on either instance.
    for base in [&a.issuer, &b_base] {
        assert_eq!(userinfo_at(base, &old_token).await, StatusCode::OK);
        assert_eq!(userinfo_at(base, new_token).await, StatusCode::OK);
    }
    assert_eq!(published_kids(&b_base).await.len(), 8);

    // Once every token the old keys signed has expired, they go.
    a.clock.advance_secs(15 * 60 + 61);
    assert_eq!(
        userinfo_at(&b_base, &old_token).await,
        StatusCode::UNAUTHORIZED
    );
    let steps = rotate_on_both(&a.kp, &b).await;
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(steps.iter().all(|s| matches!(s, KeyStep::Retire(_))));
    assert_eq!(published_kids(&a.issuer).await, upcoming);
    assert_eq!(published_kids(&b_base).await, upcoming);
    assert!(rotate_on_both(&a.kp, &b).await.is_empty());

    let events = a.audit_events().await;
    for (event, times) in [
        ("keys.publish_next:success", 4),
        ("keys.rotate:success", 4),
        ("keys.retire:success", 4),
    ] {
        let seen = events.iter().filter(|e| *e == event).count();
        assert_eq!(seen, times, "{event} in {events:?}");
    }
}
