//! `keyport backup` under refresh load, then the restore procedure of
//! docs/deploy.md into a fresh data directory: every session acknowledged
//! before the backup still refreshes, and no session has two live tokens.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

const SESSIONS: usize = 4;

/// Refreshes one chain until told to stop; every acknowledged token is
/// pushed to `history`.
async fn refresh_chain(
    server_url: String,
    history: Arc<Mutex<Vec<String>>>,
    stop: Arc<Mutex<bool>>,
) {
    let http = reqwest::Client::new();
    while !*stop.lock().unwrap() {
        let token = history.lock().unwrap().last().unwrap().clone();
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", CLI),
            ("refresh_token", token.as_str()),
        ];
        let response = http
            .post(format!("{server_url}/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let next = body["refresh_token"].as_str().unwrap().to_string();
        history.lock().unwrap().push(next);
    }
}

#[tokio::test]
async fn a_backup_under_load_restores_every_acknowledged_session() {
    // The backup command is for SQLite; this test always runs on it.
    let server = TestServer::start_with(|c| c.database_url = None).await;
    let mut chains = Vec::new();
    for _ in 0..SESSIONS {
        let tokens = server.login().await;
        let first = tokens["refresh_token"].as_str().unwrap().to_string();
        chains.push(Arc::new(Mutex::new(vec![first])));
    }
    let stop = Arc::new(Mutex::new(false));
    let load: Vec<_> = chains
        .iter()
        .map(|h| {
            tokio::spawn(refresh_chain(
                server.issuer.clone(),
                h.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Acknowledged before the backup began: these must all come back.
    let before: Vec<usize> = chains.iter().map(|h| h.lock().unwrap().len()).collect();
    let backup = temp_dir().join("keyport-backup.db");
    let output = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["backup", "--json", "--to"])
        .arg(&backup)
        .env("KEYPORT_MASTER_KEY", "11".repeat(32))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    *stop.lock().unwrap() = true;
    for task in load {
        task.await.unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup is for its owner only");
    }

    // The restore procedure: a fresh data directory, the backup as its
    // keyport.db, the same master key.
    let restored_dir = temp_dir();
    std::fs::copy(&backup, restored_dir.join("keyport.db")).unwrap();
    let restored = TestServer::start_empty(|c| {
        c.database_url = None;
        c.data_dir = restored_dir.clone();
    })
    .await;
    for (i, chain) in chains.iter().enumerate() {
        let chain = chain.lock().unwrap().clone();
        assert!(
            chain.len() > before[i],
            "chain {i} never refreshed under load"
        );
        // Newest first: tokens minted after the snapshot are unknown there
        // (a plain refusal, no side effect); the first that works is the
        // one the snapshot holds, and it is never older than the backup.
        let mut live = None;
        for (at, token) in chain.iter().enumerate().rev() {
            let (status, body) = restored.refresh(token).await;
            if status == StatusCode::OK {
                live = Some(at);
                break;
            }
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
        let at = live.unwrap_or_else(|| panic!("session {i} was lost"));
        assert!(at + 1 >= before[i], "session {i} went back past the backup");
    }
    let rows = sqlx::query(
        "SELECT COUNT(r.hash) AS live FROM sessions s \
         LEFT JOIN refresh_tokens r ON r.session_id = s.id AND r.rotated_at IS NULL \
         WHERE s.revoked_at IS NULL GROUP BY s.id",
    )
    .fetch_all(restored.kp.store().pool())
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        SESSIONS,
        "every session is live after the restore"
    );
    for row in rows {
        assert_eq!(sqlx::Row::get::<i64, _>(&row, "live"), 1);
    }
    let _ = std::fs::remove_file(&backup);
}
