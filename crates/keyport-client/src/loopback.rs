//! The one-shot HTTP listener on 127.0.0.1 that the browser is redirected to (RFC 8252 §7.3).
//!
//! Deliberately small: it reads request heads, answers anything but
//! `GET /callback` with an error status (favicon requests, probes, a page
//! of another origin reaching it through DNS rebinding), and hands the
//! first callback to the caller, who answers it once the code is exchanged
//! so the page tells the truth. Each connection is read on its own task,
//! so a browser's idle preconnection cannot hold up the real request.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub(crate) const CALLBACK_PATH: &str = "/callback";

/// A browser's request head is well under 2 KiB; anything past this is
/// not a browser coming back.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a connection may sit before its request head is complete.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections read at once; more are closed unread, so a local process
/// cannot exhaust the CLI's file descriptors.
const MAX_CONNECTIONS: usize = 32;
/// How long answering the browser may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const NOT_THE_CALLBACK: &str = "This address only receives the browser's return from signing in.";

/// A listener on a port the OS chose, waiting for the redirect.
#[derive(Debug)]
pub(crate) struct Loopback {
    listener: TcpListener,
    port: u16,
}

/// The browser's request to the callback path, held open until answered.
#[derive(Debug)]
pub(crate) struct Callback {
    stream: TcpStream,
    /// The raw query string, without the `?`.
    pub(crate) query: String,
}

/// What the listener makes of one request head.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /callback…` on our host: the query string.
    Callback(String),
    /// Anything else, answered with this status line and forgotten.
    Refuse(&'static str),
}

impl Loopback {
    /// Binds 127.0.0.1 on a random port. The IP literal rather than
    /// `localhost` (RFC 8252 §8.3): a name may resolve to ::1, where
    /// nothing listens, or be redefined.
    pub(crate) async fn bind() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        Ok(Self { listener, port })
    }

    /// `http://127.0.0.1:{port}/callback`, to send in the authorization
    /// request and again, byte for byte, in the code exchange.
    pub(crate) fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Serves requests until one for the callback path arrives, then stops
    /// listening: only one callback is ever accepted, and connections still
    /// being read are dropped.
    pub(crate) async fn next_callback(self) -> io::Result<Callback> {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                        connections.spawn(serve(stream, self.port));
                    }
                    Ok(_) => {}
                    // A peer that gave up between SYN and accept.
                    Err(error) if is_transient(&error) => {}
                    Err(error) => return Err(error),
                },
                Some(served) = connections.join_next() => {
                    if let Ok(Some(callback)) = served {
                        return Ok(callback);
                    }
                }
            }
        }
    }
}

impl Callback {
    /// Answers the browser with a small page and closes the connection.
    /// A browser that went away is no reason to fail the login.
    pub(crate) async fn respond(mut self, ok: bool, title: &str, message: &str) {
        let status = if ok { "200 OK" } else { "400 Bad Request" };
        let _ = tokio::time::timeout(
            WRITE_TIMEOUT,
            write_page(&mut self.stream, status, title, message),
        )
        .await;
    }
}

/// Reads one request and either hands it back as the callback or answers it.
async fn serve(mut stream: TcpStream, port: u16) -> Option<Callback> {
    let route = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Head::Complete(head))) => route(&head, port),
        Ok(Ok(Head::Malformed)) => Route::Refuse("400 Bad Request"),
        // Closed, timed out or broken before a whole head: nobody to answer.
        _ => return None,
    };
    match route {
        Route::Callback(query) => Some(Callback { stream, query }),
        Route::Refuse(status) => {
            let title = &status[4..];
            let _ = tokio::time::timeout(
                WRITE_TIMEOUT,
                write_page(&mut stream, status, title, NOT_THE_CALLBACK),
            )
            .await;
            None
        }
    }
}

enum Head {
    /// The request line and headers, without the blank line.
    Complete(String),
    /// Too long, or not text.
    Malformed,
    /// The peer closed before finishing its head.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(Head::Closed);
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(match String::from_utf8(head) {
                Ok(head) => Head::Complete(head),
                Err(_) => Head::Malformed,
            });
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(Head::Malformed);
        }
    }
}

/// Decides what a request head is. The `Host` must be exactly the redirect
/// URI's authority: a page on another origin that resolves its own name to
/// 127.0.0.1 (DNS rebinding) sends its own name there, and must not be able
/// to end the login.
fn route(head: &str, port: u16) -> Route {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Refuse("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::Refuse("400 Bad Request");
    }
    let authority = format!("127.0.0.1:{port}");
    let mut hosts = lines.filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim())
    });
    match (hosts.next(), hosts.next()) {
        (Some(host), None) if host == authority => {}
        _ => return Route::Refuse("400 Bad Request"),
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != CALLBACK_PATH {
        return Route::Refuse("404 Not Found");
    }
    if method != "GET" {
        return Route::Refuse("405 Method Not Allowed");
    }
    Route::Callback(query.to_owned())
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

async fn write_page(
    stream: &mut TcpStream,
    status: &str,
    title: &str,
    message: &str,
) -> io::Result<()> {
    let body = page(title, message);
    // The page loads nothing and is kept out of caches and referrers: the
    // URL it answers carries the authorization code.
    let response = format!(
        "HTTP/1.1 {status}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         Referrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;\
         padding:0 1rem;line-height:1.5}}</style></head>\n\
         <body><h1>{title}</h1><p>{message}</p></body></html>\n",
        title = escape(title),
        message = escape(message),
    )
}

/// The error text shown can come from the redirect's query, which anyone
/// can write.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(request_line: &str, host: &str) -> String {
        format!("{request_line}\r\nHost: {host}\r\nUser-Agent: test\r\nAccept: */*")
    }

    #[test]
    fn only_get_callback_on_our_host_is_the_callback() {
        let ours = "127.0.0.1:4567";
        assert_eq!(
            route(&head("GET /callback?code=c&state=s HTTP/1.1", ours), 4567),
            Route::Callback("code=c&state=s".into())
        );
        assert_eq!(
            route(&head("GET /callback HTTP/1.1", ours), 4567),
            Route::Callback(String::new())
        );
        let refused = [
            ("GET /favicon.ico HTTP/1.1", ours, "404 Not Found"),
            ("GET /callbackx?code=c HTTP/1.1", ours, "404 Not Found"),
            ("GET / HTTP/1.1", ours, "404 Not Found"),
            ("POST /callback HTTP/1.1", ours, "405 Method Not Allowed"),
            // DNS rebinding: another origin's name, or another port.
            (
                "GET /callback?code=c HTTP/1.1",
                "evil.example:4567",
                "400 Bad Request",
            ),
            (
                "GET /callback?code=c HTTP/1.1",
                "127.0.0.1:80",
                "400 Bad Request",
            ),
            (
                "GET /callback?code=c HTTP/1.1",
                "localhost:4567",
                "400 Bad Request",
            ),
            (
                "GET http://127.0.0.1:4567/callback HTTP/1.1",
                ours,
                "400 Bad Request",
            ),
            ("GET /callback", ours, "400 Bad Request"),
            ("GET /callback HTTP/1.1 extra", ours, "400 Bad Request"),
            ("GET /callback SPDY/3", ours, "400 Bad Request"),
        ];
        for (line, host, status) in refused {
            assert_eq!(
                route(&head(line, host), 4567),
                Route::Refuse(status),
                "{line} to {host}"
            );
        }
        assert_eq!(
            route("GET /callback HTTP/1.1\r\nAccept: */*", 4567),
            Route::Refuse("400 Bad Request"),
            "no Host"
        );
        let two_hosts = format!(
            "{}\r\nHost: evil.example",
            head("GET /callback HTTP/1.1", ours)
        );
        assert_eq!(route(&two_hosts, 4567), Route::Refuse("400 Bad Request"));
    }

    #[test]
    fn pages_escape_what_the_redirect_said() {
        let html = page("Sign-in failed", "<script>alert('x')</script> & more");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        assert!(!html.contains("<script>"));
    }

    async fn send(port: u16, request: &str) -> String {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn stray_requests_get_404_and_the_first_callback_ends_listening() {
        let loopback = Loopback::bind().await.unwrap();
        let port = loopback.port;
        assert_eq!(
            loopback.redirect_uri(),
            format!("http://127.0.0.1:{port}/callback")
        );
        let waiting = tokio::spawn(loopback.next_callback());

        // A browser's idle preconnection must not hold up what follows.
        let _idle = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let host = format!("127.0.0.1:{port}");
        let favicon = send(
            port,
            &format!("{}\r\n\r\n", head("GET /favicon.ico HTTP/1.1", &host)),
        )
        .await;
        assert!(
            favicon.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{favicon}"
        );
        let oversized = format!(
            "GET /callback HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(10_000)
        );
        assert!(send(port, &oversized).await.starts_with("HTTP/1.1 400 "));
        assert!(!waiting.is_finished());

        let request = format!(
            "{}\r\n\r\n",
            head("GET /callback?code=c&state=s HTTP/1.1", &host)
        );
        let browser = tokio::spawn(async move { send(port, &request).await });
        let callback = waiting.await.unwrap().unwrap();
        assert_eq!(callback.query, "code=c&state=s");
        callback
            .respond(
                true,
                "Signed in",
                "You can close this tab and return to the terminal.",
            )
            .await;
        let page = browser.await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Cache-Control: no-store\r\n"), "{page}");
        assert!(page.contains("<h1>Signed in</h1>"), "{page}");

        // Nothing listens any more: a second callback cannot be delivered.
        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_err()
        );
    }
}
