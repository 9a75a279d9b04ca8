//! Audit rows written off a response's path: a client credentials grant
//! with a JWT answers before its `token.issue` row commits, and the row
//! still arrives.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

async fn client_credentials(server: &TestServer) -> StatusCode {
    let secret = server.rs_secret.clone();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", RS),
        ("client_secret", secret.as_str()),
    ];
    server.post_form("/oauth/token", &form).await.0
}

#[tokio::test]
async fn client_credentials_audit_rows_commit_after_the_response() {
    let server = TestServer::start().await;
    const GRANTS: usize = 25;
    for _ in 0..GRANTS {
        assert_eq!(client_credentials(&server).await, StatusCode::OK);
    }
    let mut issued = 0;
    for _ in 0..100 {
        let events = server.audit_events().await;
        issued = events
            .iter()
            .filter(|e| *e == "token.issue:success")
            .count();
        if issued == GRANTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(issued, GRANTS, "every grant's row arrives");
}
