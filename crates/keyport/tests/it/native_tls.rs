//! Keyport serving TLS itself (`keyport serve --tls-cert --tls-key`,
//! rustls), with certificates from CAs made at test time: the `oauth2`
//! crate logs in, refreshes and revokes over https; a stalled handshake
//! gives its connection's place back; SIGHUP swaps the certificate for new
//! connections while an open one carries on; a certificate or key that
//! cannot be used stops the start with one line; and plain HTTP is refused
//! outside loopback while TLS is served from any address.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use keyport::config::TlsFiles;
use keyport::http::{Draining, OverTls, TlsCertificate};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    ClientId, DeviceAuthorizationUrl, HttpRequest, HttpResponse, RequestTokenError, RevocationUrl,
    Scope, StandardDeviceAuthorizationResponse, StandardRevocableToken, TokenResponse, TokenUrl,
};
use rcgen::{Issuer, KeyPair};
use reqwest::StatusCode;
use reqwest::header::STRICT_TRANSPORT_SECURITY;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::aws_lc_rs};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tower::ServiceExt;

use crate::binary::{Server, free_port, store_args};
use crate::support::*;
use crate::tls::{new_ca, server_cert};

/// The longest any single wait here lasts.
const PATIENCE: Duration = Duration::from_secs(10);

/// Names the test certificates are valid for.
const NAMES: &[&str] = &["127.0.0.1", "localhost"];

/// Writes a fresh server certificate from `ca` and its key to `files`,
/// each through a rename, as an operator's renewal should.
fn install(files: &TlsFiles, ca: &Issuer<'static, KeyPair>) {
    let (cert, key) = server_cert(ca, NAMES);
    replace(&files.cert, &cert);
    replace(&files.key, &key);
}

fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn tls_files(dir: &Path) -> TlsFiles {
    TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// A reqwest client that trusts `ca_pem` only.
fn https_client(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(PATIENCE)
}

/// A raw TLS connection to 127.0.0.1:`port` that trusts `ca_pem` only and
/// offers HTTP/1.1 by ALPN.
async fn connect(port: u16, ca_pem: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    tokio::time::timeout(PATIENCE, handshake)
        .await
        .expect("the handshake ends in time")
}

/// One `GET path` on a kept-alive connection: the whole response, read up
/// to its `Content-Length`, leaving the connection open.
async fn get_on<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            read > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..read]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some(head) = text.find("\r\n\r\n") {
            let length = text[..head]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if response.len() >= head + 4 + length {
                return text;
            }
        }
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<HttpResponse, std::io::Error>> + Send>>;

/// The `oauth2` crate's HTTP client over the workspace's reqwest 0.13 (the
/// crate's own `reqwest` feature is reqwest 0.12 without TLS), trusting the
/// test CA.
fn oauth2_http(http: reqwest::Client) -> impl Fn(HttpRequest) -> Reply {
    move |request: HttpRequest| {
        let http = http.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(std::io::Error::other)?;
            let response = http.execute(request).await.map_err(std::io::Error::other)?;
            let mut reply = oauth2::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                reply = reply.header(name, value);
            }
            let body = response.bytes().await.map_err(std::io::Error::other)?;
            reply.body(body.to_vec()).map_err(std::io::Error::other)
        })
    }
}

/// Signs in as alice and approves the device request, in a browser that
/// trusts `ca_pem` (the test kit's own browser trusts the system's roots).
async fn approve_over_https(server: &TestServer, ca_pem: &str, complete: &str) -> String {
    let mut browser = server.browser();
    browser.http = https_client(ca_pem).cookie_store(true).build().unwrap();
    let page = browser.sign_in_at(complete).await;
    assert!(page.contains("Approve"), "no approval form:\n{page}");
    browser
        .submit(&page, "/device/decision", &[("decision", "approve")])
        .await
}

/// A seeded in-process server speaking TLS with a certificate from a fresh
/// CA; returns it with the CA's PEM.
pub(crate) async fn tls_server(
    adjust: impl FnOnce(&mut keyport::config::Config),
) -> (TestServer, String) {
    let (ca_pem, ca) = new_ca("Keyport native TLS test CA");
    let files = tls_files(&temp_dir());
    install(&files, &ca);
    let certificate = Arc::new(TlsCertificate::load(&files).unwrap());
    let http = https_client(&ca_pem)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let server = TestServer::start_tls(certificate, http, adjust).await;
    let _ = std::fs::remove_dir_all(files.cert.parent().unwrap());
    (server, ca_pem)
}

#[tokio::test]
async fn the_oauth2_crate_logs_in_refreshes_and_revokes_over_native_tls() {
    let (server, ca_pem) = tls_server(|c| c.tokens.device_poll_interval = 1).await;
    assert!(server.issuer.starts_with("https://127.0.0.1:"));

    // Discovery over https: an https issuer and endpoints, and HSTS.
    let response = server
        .http
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let hsts = response.headers().get(STRICT_TRANSPORT_SECURITY).unwrap();
    assert_eq!(hsts, "max-age=31536000");
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], server.issuer.as_str());
    let endpoint = |key: &str| {
        let url = metadata[key].as_str().unwrap().to_string();
        assert!(url.starts_with(&server.issuer), "{key}: {url}");
        url
    };

    let client = BasicClient::new(ClientId::new(CLI.into()))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(endpoint("device_authorization_endpoint")).unwrap(),
        )
        .set_token_uri(TokenUrl::new(endpoint("token_endpoint")).unwrap())
        // The crate refuses a revocation endpoint that is not https.
        .set_revocation_url(RevocationUrl::new(endpoint("revocation_endpoint")).unwrap());
    let http = oauth2_http(server.http.clone());
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
    assert!(complete.starts_with(&server.issuer), "{complete}");
    // The client's sleeps move the server's clock, so its polling honours
    // `interval` without the test waiting it out.
    let clock = server.clock.clone();
    let sleep = move |wait: Duration| {
        clock.advance_ms(wait.as_millis() as i64);
        tokio::time::sleep(Duration::from_millis(20))
    };
    let poll =
        client
            .exchange_device_access_token(&details)
            .request_async(&http, sleep, Some(PATIENCE));
    let approve = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        approve_over_https(&server, &ca_pem, &complete).await
    };
    let (tokens, page) = tokio::join!(poll, approve);
    assert!(page.contains("Device approved"), "{page}");
    let tokens = tokens.unwrap();
    let first = tokens.refresh_token().unwrap().clone();

    // Refresh rotates the refresh token; the new access token works.
    let refreshed = client
        .exchange_refresh_token(&first)
        .request_async(&http)
        .await
        .unwrap();
    let second = refreshed.refresh_token().unwrap().clone();
    assert_ne!(first.secret(), second.secret());
    let (status, me) = server.userinfo(refreshed.access_token().secret()).await;
    assert_eq!(status, StatusCode::OK, "{me}");

    // Revoke (RFC 7009), then the refresh token is refused.
    client
        .revoke_token(StandardRevocableToken::RefreshToken(second.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    match client
        .exchange_refresh_token(&second)
        .request_async(&http)
        .await
    {
        Err(RequestTokenError::ServerResponse(refusal)) => {
            assert_eq!(*refusal.error(), BasicErrorResponseType::InvalidGrant);
        }
        other => panic!("a revoked refresh token was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_handshake_gives_its_place_back_and_refusals_come_over_tls() {
    let (server, _ca_pem) = tls_server(|c| {
        c.limits.header_read_timeout_secs = 1;
        c.limits.max_connections_per_ip = 1;
    })
    .await;
    let at = server.kp.config().listen;
    // Connects and never says hello: it holds the address's one place.
    let mut stalled = TcpStream::connect(at).await.unwrap();
    let response = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");

    // The handshake timeout closes it, and the place is free again.
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stalled.read(&mut buf))
        .await
        .expect("the stalled connection is closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let response = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `keyport serve` over TLS on `port`; waits until it answers over https
/// (trusting `ca_pem`).
async fn spawn_tls(store: &[String], port: u16, files: &TlsFiles, ca_pem: &str) -> Server {
    let log = std::env::temp_dir().join(format!("keyport-log-{}", keyport::crypto::random_id()));
    let child = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(store)
        .args(["serve", "--log-format", "json"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("KEYPORT_MASTER_KEY", "22".repeat(32))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("keyport binary runs");
    let mut server = Server {
        child,
        base: format!("https://127.0.0.1:{port}"),
        log,
    };
    let http = https_client(ca_pem).build().unwrap();
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        let ready = http.get(format!("{}/readyz", server.base)).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("keyport exited ({status}): {}", server.log_text());
        }
        assert!(Instant::now() < deadline, "never ready over https");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `message` of each JSON log line, with its `error` field if any.
fn log_messages(server: &Server) -> Vec<(String, String)> {
    server
        .log_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| {
            let field = |name: &str| line["fields"][name].as_str().unwrap_or("").to_string();
            (field("message"), field("error"))
        })
        .collect()
}

fn hang_up(server: &Server) {
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success());
}

/// Waits until the log holds `count` lines with `message`.
async fn wait_for_log(server: &Server, message: &str, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = log_messages(server)
            .iter()
            .filter(|(m, _)| m == message)
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} in the log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_connections_while_open_ones_carry_on() {
    let (first_ca, first) = new_ca("First test CA");
    let (second_ca, second) = new_ca("Second test CA");
    let files = tls_files(&temp_dir());
    install(&files, &first);
    let data_dir = temp_dir();
    let database = test_database().await;
    let store = store_args(&data_dir, database.as_ref().map(|(url, _)| url.as_str()));
    let port = free_port();
    let server = spawn_tls(&store, port, &files, &first_ca).await;

    // A kept-alive connection made under the first certificate, over
    // HTTP/1.1 by ALPN.
    let mut open = connect(port, &first_ca).await.unwrap();
    assert_eq!(open.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let before = get_on(&mut open, "/healthz").await;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(before.contains("strict-transport-security: max-age="));
    // The listener speaks TLS only: plain HTTP gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(PATIENCE)
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    install(&files, &second);
    hang_up(&server);
    wait_for_log(&server, "tls certificate reloaded", 1).await;

    // New connections get the second CA's certificate, and only it.
    let refused = connect(port, &first_ca).await.unwrap_err();
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    let http = https_client(&second_ca).build().unwrap();
    let metadata: Value = http
        .get(format!("{}/.well-known/openid-configuration", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], server.base.as_str());
    // The connection opened before the reload still completes requests.
    let after = get_on(&mut open, "/healthz").await;
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    assert!(after.ends_with("ok"), "{after}");

    // A key that cannot be used: one error line, the second pair stays.
    replace(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    hang_up(&server);
    wait_for_log(
        &server,
        "tls certificate not reloaded; serving the previous one",
        1,
    )
    .await;
    let errors: Vec<(String, String)> = log_messages(&server)
        .into_iter()
        .filter(|(m, _)| m.contains("not reloaded"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].1.contains(&files.key.display().to_string()),
        "{errors:?}"
    );
    let mut fresh = connect(port, &second_ca).await.unwrap();
    let still = get_on(&mut fresh, "/healthz").await;
    assert!(still.starts_with("HTTP/1.1 200"), "{still}");
    assert!(
        get_on(&mut open, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_dir_all(files.cert.parent().unwrap());
}

/// `keyport serve` with `tls` arguments, which must exit by itself.
async fn serve_exits(tls: &[&Path]) -> (Output, std::path::PathBuf) {
    let data_dir = temp_dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyport"));
    command
        .args(store_args(&data_dir, None))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("KEYPORT_MASTER_KEY", "22".repeat(32))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (flag, path) in ["--tls-cert", "--tls-key"].iter().zip(tls) {
        command.arg(flag).arg(path);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyport serve kept running with {tls:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (child.wait_with_output().unwrap(), data_dir)
}

#[tokio::test]
async fn a_certificate_or_key_that_cannot_be_used_stops_the_start_with_one_line() {
    let (_, ca) = new_ca("Keyport test CA");
    let dir = temp_dir();
    let files = tls_files(&dir);
    install(&files, &ca);
    let garbage = dir.join("garbage-key.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (_, other_key) = server_cert(&ca, NAMES);
    let other = dir.join("other-key.pem");
    std::fs::write(&other, other_key).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.join("missing.pem");

    let cases: [(&[&Path], String); 5] = [
        (
            &[&files.cert, &garbage],
            format!("TLS key {}: failed to parse private key", garbage.display()),
        ),
        (
            &[&files.cert, &other],
            format!(
                "TLS key {} does not belong to the certificate {}",
                other.display(),
                files.cert.display()
            ),
        ),
        (
            &[&files.cert, &empty],
            format!("TLS key {}: no private key in the file", empty.display()),
        ),
        (
            &[&missing, &files.key],
            format!("TLS certificate {}: No such file", missing.display()),
        ),
        (
            &[&files.cert],
            "TLS needs both a certificate and a key: the certificate is set but not the key"
                .to_string(),
        ),
    ];
    for (tls, expected) in cases {
        let (output, data_dir) = serve_exits(tls).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{tls:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, not: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(
            lines[0].contains(&expected),
            "{expected:?} not in: {stderr}"
        );
        // Refused before the database was opened.
        assert!(!data_dir.join("keyport.db").exists());
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET` discovery through the router as if from `peer`, over Keyport's own
/// TLS or not, with an `X-Forwarded-Proto` header or not. (Every socket a
/// test can open is on loopback, so other addresses are stated this way.)
async fn discovery_from(
    server: &TestServer,
    peer: &str,
    over_tls: bool,
    forwarded_proto: Option<&str>,
) -> (StatusCode, Value) {
    let app = keyport::http::router(server.kp.clone(), Draining::default());
    let mut request = axum::http::Request::get("/.well-known/oauth-authorization-server");
    if let Some(proto) = forwarded_proto {
        request = request.header("x-forwarded-proto", proto);
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer = SocketAddr::new(peer.parse().unwrap(), 40_000);
    request.extensions_mut().insert(ConnectInfo(peer));
    if over_tls {
        request.extensions_mut().insert(OverTls);
    }
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn plain_http_is_refused_outside_loopback_and_tls_is_served_from_anywhere() {
    let server = TestServer::start_with(|c| {
        c.issuer = format!("https://{}", c.listen);
        c.trusted_proxies = vec!["10.0.0.5".parse().unwrap()];
    })
    .await;
    let refused = (
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "error": "invalid_request",
            "error_description": "HTTPS required",
        }),
    );
    let internet = "203.0.113.7";
    let proxy = "10.0.0.5";

    // Plain HTTP from another machine, or with a forwarded header it may
    // not vouch for.
    assert_eq!(
        discovery_from(&server, internet, false, None).await,
        refused
    );
    let spoofed = discovery_from(&server, internet, false, Some("https")).await;
    assert_eq!(spoofed, refused);
    // A trusted proxy: only when it says the client used https.
    assert_eq!(discovery_from(&server, proxy, false, None).await, refused);
    let proxied_plain = discovery_from(&server, proxy, false, Some("http")).await;
    assert_eq!(proxied_plain, refused);
    let (status, _) = discovery_from(&server, proxy, false, Some("https")).await;
    assert_eq!(status, StatusCode::OK);
    // Loopback, plain.
    let (status, _) = discovery_from(&server, "127.0.0.1", false, None).await;
    assert_eq!(status, StatusCode::OK);
    // Over Keyport's own TLS, from any address.
    for peer in [internet, proxy, "127.0.0.1", "2001:db8::7"] {
        let (status, body) = discovery_from(&server, peer, true, None).await;
        assert_eq!(status, StatusCode::OK, "{peer}: {body}");
        assert_eq!(body["issuer"], server.issuer.as_str());
    }
}
