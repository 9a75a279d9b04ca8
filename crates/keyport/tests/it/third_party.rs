//! A client nobody on the team wrote: the `oauth2` crate completes the
//! device flow with endpoints taken from Keyport's discovery document.

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};

use crate::support::*;

#[tokio::test]
async fn oauth2_crate_device_flow_with_discovery() {
    let server = TestServer::start_with(|c| c.tokens.device_poll_interval = 1).await;
    let metadata: serde_json::Value = server
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let endpoint = |key: &str| metadata[key].as_str().unwrap().to_string();
    let client = BasicClient::new(ClientId::new(CLI.into()))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(endpoint("device_authorization_endpoint")).unwrap(),
        )
        .set_token_uri(TokenUrl::new(endpoint("token_endpoint")).unwrap());
    let http = oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .unwrap();
    let complete = details
        .verification_uri_complete()
        .unwrap()
        .secret()
        .to_string();
    // The client's sleeps move the server's clock, so its polling honours
    // `interval` without the test waiting it out.
    let clock = server.clock.clone();
    let sleep = move |wait: Duration| {
        clock.advance_ms(wait.as_millis() as i64);
        tokio::time::sleep(Duration::from_millis(20))
    };
    let poll = client.exchange_device_access_token(&details).request_async(
        &http,
        sleep,
        Some(Duration::from_secs(60)),
    );
    let approve = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.approve(&complete, "approve").await
    };
    let (tokens, page) = tokio::join!(poll, approve);
    assert!(page.contains("Device approved"), "{page}");
    let tokens = tokens.unwrap();
    assert!(
        tokens
            .refresh_token()
            .unwrap()
            .secret()
            .starts_with("kp_rt_")
    );
    let (status, me) = server.userinfo(tokens.access_token().secret()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{me}");
}
