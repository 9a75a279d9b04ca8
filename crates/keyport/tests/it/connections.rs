//! Slow, idle and greedy connections cannot take the server down: caps on
//! connections in total and per address, header-read, body and request
//! deadlines, a bounded request head, and a graceful drain on shutdown.
//! Every connection here is on loopback (127.0.0.x stands in for other
//! addresses), few in number, and every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// The longest any read here waits.
const PATIENCE: Duration = Duration::from_secs(6);

async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the connection (or `PATIENCE` runs out).
async fn read_until_closed(stream: &mut TcpStream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

async fn get_from(source: &str, server: SocketAddr, path: &str) -> String {
    let mut stream = connect_from(source, server).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_until_closed(&mut stream).await.0
}

fn addr(server: &TestServer) -> SocketAddr {
    server.kp.config().listen
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 4).await;
    let at = addr(&server);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from("127.0.0.1", at).await);
    }
    let refused = get_from("127.0.0.1", at, "/healthz").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(refused.contains("too_many_requests"), "{refused}");
    let other = get_from("127.0.0.2", at, "/healthz").await;
    assert!(
        other.starts_with("HTTP/1.1 200"),
        "another address is served: {other}"
    );
    // A closed connection gives its place back.
    drop(idle.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let again = get_from("127.0.0.1", at, "/healthz").await;
        if again.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place never came back: {again}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_server_refuses_connections_past_its_cap() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 3).await;
    let at = addr(&server);
    let _held = [
        connect_from("127.0.0.11", at).await,
        connect_from("127.0.0.12", at).await,
        connect_from("127.0.0.13", at).await,
    ];
    let refused = get_from("127.0.0.14", at, "/healthz").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("temporarily_unavailable"), "{refused}");
    // The server is full, so read the counter in process.
    let metrics = keyport::telemetry::render();
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyport_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{metrics}");
}

#[tokio::test]
async fn slow_heads_and_idle_keep_alive_connections_are_closed() {
    let server = TestServer::start_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let at = addr(&server);
    // Slowloris: a head that never ends.
    let mut slow = connect_from("127.0.0.1", at).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow).await;
    assert!(closed, "a slow head holds its connection");
    assert!(started.elapsed() < Duration::from_secs(4));

    // Keep-alive: one request answered, then silence.
    let mut idle = connect_from("127.0.0.1", at).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (answered, closed) = read_until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(closed, "an idle keep-alive connection stays open");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off() {
    let server = TestServer::start_with(|c| c.limits.request_body_timeout_secs = 1).await;
    let at = addr(&server);
    let before = server.table_counts().await;
    // A chunk that promises a quarter of a gigabyte and sends three bytes.
    let mut stream = connect_from("127.0.0.1", at).await;
    stream
        .write_all(
            b"POST /oauth/device_authorization HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Transfer-Encoding: chunked\r\n\r\nfffffff\r\ncli",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    assert!(closed, "the connection is closed after a 408");
    assert!(started.elapsed() < Duration::from_secs(4));

    // A declared length that is never sent in full.
    let mut stream = connect_from("127.0.0.1", at).await;
    stream
        .write_all(
            b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 1000\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408") && closed, "{answer}");
    assert_eq!(server.table_counts().await, before);
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = TestServer::start_with(|c| c.limits.max_header_bytes = 4096).await;
    let at = addr(&server);
    let mut stream = connect_from("127.0.0.1", at).await;
    let big = "a".repeat(8192);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn shutdown_drains_then_lets_requests_in_flight_finish() {
    let mut server = TestServer::start_with(|c| {
        c.limits.shutdown_drain_secs = 1;
        c.limits.shutdown_grace_secs = 5;
    })
    .await;
    let at = addr(&server);
    // A request in flight: its head is in, its body not yet.
    let body = format!("client_id={CLI}&scope=openid");
    let mut in_flight = connect_from("127.0.0.1", at).await;
    let head = format!(
        "POST /oauth/device_authorization HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = get_from("127.0.0.1", at, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "draining: {ready}");
    let health = get_from("127.0.0.1", at, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "still serving while draining: {health}"
    );

    // After the drain the listener is closed…
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(at).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …and the request in flight still finishes.
    in_flight.write_all(&body.as_bytes()[5..]).await.unwrap();
    let (answer, _) = read_until_closed(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("device_code"), "{answer}");
}
