//! The serve loop. Every connection is admitted under a total and a
//! per-address cap and served by hyper's HTTP/1 with a bounded request head
//! and a header-read timeout (which also closes idle keep-alive
//! connections); the router adds the request-body and whole-request
//! deadlines. With native TLS ([`serve_tls`]) an admitted connection's
//! handshake must finish within the header-read timeout too, so a client
//! that stalls in it gives its place back. Shutdown is graceful: `/readyz`
//! answers 503 for the drain period while requests are still served, then
//! the listener closes and in-flight requests get the grace period to
//! finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use keyport_proto::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::error::json_error;
use super::tls::{OverTls, TlsCertificate};
use super::{Draining, router};
use crate::config::Limits;
use crate::service::Keyport;
use crate::telemetry::{self, SecurityEvent};

/// Descriptors kept free for the database, the data directory and logs
/// when the connection cap is derived from the open-file limit.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Refused connections being answered at once; past this they are dropped
/// without an answer, so a flood cannot use up descriptors on refusals.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// How long a refused connection gets to send its request head.
const REFUSAL_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `kp` over plain HTTP on `listener` until `shutdown` resolves,
/// then drains and lets in-flight requests finish.
pub async fn serve(
    kp: Keyport,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(kp, listener, None, shutdown).await
}

/// [`serve`] over TLS with `certificate`. Keep a clone of the `Arc` to call
/// [`TlsCertificate::reload`]: new handshakes then get the new certificate
/// while open connections carry on.
pub async fn serve_tls(
    kp: Keyport,
    listener: TcpListener,
    certificate: Arc<TlsCertificate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = certificate.acceptor().map_err(std::io::Error::other)?;
    serve_with(kp, listener, Some(acceptor), shutdown).await
}

async fn serve_with(
    kp: Keyport,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = kp.config.limits.clone();
    let draining = Draining::default();
    let app = router(kp.clone(), draining.clone());
    let connections = Arc::new(Connections::new(
        effective_max_connections(&limits),
        limits.max_connections_per_ip,
        kp.config.trusted_proxies.clone(),
    ));
    let mut refusal_http = http1::Builder::new();
    refusal_http
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_HEAD_TIMEOUT)
        .keep_alive(false);
    let server = Server {
        app,
        http: http_builder(&limits),
        refusal_http,
        connections,
        graceful: GracefulShutdown::new(),
        refusals: Arc::new(AtomicUsize::new(0)),
        tls,
        handshake_timeout: Duration::from_secs(limits.header_read_timeout_secs.max(1)),
    };

    if let Some(address) = kp.config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address).await?;
        let app = super::metrics_router(kp.clone());
        tokio::spawn(async move {
            let _ = axum::serve(metrics, app).await;
        });
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => server.accepted(accepted).await,
            () = &mut shutdown => break,
        }
    }

    // Load balancers see /readyz fail and stop sending new traffic; what
    // still arrives meanwhile is served.
    draining.start();
    tracing::info!(
        seconds = limits.shutdown_drain_secs,
        "draining: /readyz answers 503"
    );
    let drained = tokio::time::sleep(Duration::from_secs(limits.shutdown_drain_secs));
    let mut drained = std::pin::pin!(drained);
    loop {
        tokio::select! {
            accepted = listener.accept() => server.accepted(accepted).await,
            () = &mut drained => break,
        }
    }
    drop(listener);

    let grace = Duration::from_secs(limits.shutdown_grace_secs);
    if tokio::time::timeout(grace, server.graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the grace period were cut off");
    }
    Ok(())
}

struct Server {
    app: Router,
    http: http1::Builder,
    /// For refused connections: one short-lived request, then close.
    refusal_http: http1::Builder,
    connections: Arc<Connections>,
    graceful: GracefulShutdown,
    refusals: Arc<AtomicUsize>,
    /// Native TLS, when on: every connection, refused ones included, is
    /// answered over it.
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
}

impl Server {
    async fn accepted(&self, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or a connection that died
                // in the queue: wait a moment instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        match self.connections.admit(peer.ip()) {
            Ok(admitted) => self.serve_connection(stream, peer, admitted),
            Err(refusal) => self.refuse(stream, refusal),
        }
    }

    fn serve_connection(&self, stream: TcpStream, peer: SocketAddr, admitted: Admitted) {
        let app = self.app.clone();
        let http = self.http.clone();
        // Taken now, before shutdown can begin, so a connection still in its
        // handshake when it does is told to close as soon as it is served.
        let watcher = self.graceful.watcher();
        let Some(tls) = self.tls.clone() else {
            tokio::spawn(async move {
                serve_http(&http, stream, app, peer, None, watcher).await;
                drop(admitted);
            });
            return;
        };
        let handshake_timeout = self.handshake_timeout;
        tokio::spawn(async move {
            // The connection keeps its admitted place during the handshake,
            // which the timeout bounds. A failed handshake is the client's
            // (a plain-HTTP request, an untrusted certificate, a reset).
            if let Ok(Ok(stream)) =
                tokio::time::timeout(handshake_timeout, tls.accept(stream)).await
            {
                serve_http(&http, stream, app, peer, Some(OverTls), watcher).await;
            }
            drop(admitted);
        });
    }

    /// Answers a refused connection's first request with 503 (the server is
    /// full) or 429 (this address is), then closes it.
    fn refuse(&self, stream: TcpStream, refusal: Refusal) {
        telemetry::record(SecurityEvent::ConnectionRefused);
        if self.refusals.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSALS_IN_FLIGHT {
            self.refusals.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let refusals = self.refusals.clone();
        let http = self.refusal_http.clone();
        let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
            Ok::<_, Infallible>(refusal.response())
        });
        let tls = self.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                // An https client reads a 503 or 429 only over TLS. The
                // handshakes are bounded like the answers: a few at a time,
                // each within the refusal's head timeout.
                Some(tls) => {
                    let accepted = tokio::time::timeout(REFUSAL_HEAD_TIMEOUT, tls.accept(stream));
                    if let Ok(Ok(stream)) = accepted.await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
            refusals.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serves one admitted connection's requests, each marked with the peer's
/// address (and `OverTls` when it came over TLS), until it closes or
/// shutdown asks it to.
async fn serve_http<S>(
    http: &http1::Builder,
    stream: S,
    app: Router,
    peer: SocketAddr,
    tls: Option<OverTls>,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(tls) = tls {
            req.extensions_mut().insert(tls);
        }
        app.clone().oneshot(req.map(Body::new))
    });
    // Errors here are the client's: a reset, a timeout, a bad head.
    let _ = watcher
        .watch(http.serve_connection(TokioIo::new(stream), service))
        .await;
}

fn http_builder(limits: &Limits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs.max(1)))
        .max_header_size(limits.max_header_bytes.max(1024));
    http
}

/// The connection cap: the configured one, but never more than the
/// process's open-file limit allows.
fn effective_max_connections(limits: &Limits) -> usize {
    let by_descriptors = open_file_limit()
        .map(|n| n.saturating_sub(RESERVED_DESCRIPTORS).max(1))
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    limits.max_connections.min(by_descriptors).max(1)
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Raises the open-file soft limit to the hard limit (at start, before
/// listening), so the connection cap rather than the default of 1,024
/// descriptors decides how many clients fit. Returns the new soft limit.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::increase_nofile_limit(u64::MAX).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its cap of open connections.
    ServerFull,
    /// This address holds its cap of open connections.
    AddressFull,
}

impl Refusal {
    fn response(self) -> Response {
        let (status, code, text) = match self {
            Refusal::ServerFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TemporarilyUnavailable,
                "the server has too many open connections; retry shortly",
            ),
            Refusal::AddressFull => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                "too many open connections from your address; close some and retry",
            ),
        };
        let mut response = json_error(status, code.as_str(), text);
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Open connections, in total and by address.
struct Connections {
    max_total: usize,
    max_per_ip: usize,
    exempt: Vec<IpAddr>,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection; dropping it gives its place back.
struct Admitted {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    fn new(max_total: usize, max_per_ip: usize, exempt: Vec<IpAddr>) -> Self {
        Self {
            max_total,
            max_per_ip: max_per_ip.max(1),
            exempt,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let mut counts = self.counts.lock().expect("connection counts");
        if counts.0 >= self.max_total {
            return Err(Refusal::ServerFull);
        }
        let exempt = self.exempt.contains(&ip);
        let mine = counts.1.entry(ip).or_insert(0);
        if !exempt && *mine >= self.max_per_ip {
            return Err(Refusal::AddressFull);
        }
        *mine += 1;
        counts.0 += 1;
        Ok(Admitted {
            connections: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.connections.counts.lock().expect("connection counts");
        counts.0 = counts.0.saturating_sub(1);
        if let Some(mine) = counts.1.get_mut(&self.ip) {
            *mine -= 1;
            if *mine == 0 {
                counts.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_total() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let connections = Arc::new(Connections::new(4, 2, vec![proxy]));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = connections.admit(a).unwrap();
        let _second = connections.admit(a).unwrap();
        assert_eq!(connections.admit(a).err(), Some(Refusal::AddressFull));
        let _third = connections.admit(b).unwrap();
        // A trusted proxy carries many clients: only the total binds it.
        let _fourth = connections.admit(proxy).unwrap();
        assert_eq!(connections.admit(proxy).err(), Some(Refusal::ServerFull));
        drop(first);
        assert!(connections.admit(a).is_ok());
        let counts = connections.counts.lock().unwrap();
        assert_eq!(counts.0, 3);
    }
}
