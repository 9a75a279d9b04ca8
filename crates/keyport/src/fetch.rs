//! Outbound HTTP for documents a client names by URL (client ID metadata
//! documents), guarded against server-side request forgery: `https` only,
//! every resolved address checked (no private, loopback, link-local or
//! other special-use ranges), the connection pinned to the checked address
//! so a second DNS answer cannot swap it, no redirects, and limits on time
//! and size.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Largest document read (the metadata document draft suggests 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("the URL must be https, with a host and no user information or fragment")]
    BadUrl,
    #[error("the host resolves to an address that is not public")]
    NotPublic,
    #[error("the host does not resolve")]
    Unresolved,
    #[error("the document could not be fetched: {0}")]
    Failed(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
}

/// Whether an address is on the public internet: not loopback, private
/// (RFC 1918, RFC 4193), link-local, shared (RFC 6598), documentation,
/// benchmarking, multicast, unspecified or reserved, nor an IPv4 address
/// hidden in one of IPv6's mapping prefixes.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let special = v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64
                || s[0] == 0x2002 // 6to4 carries an IPv4 address
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0); // IPv4-compatible
            !special
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// Fetches `url` as a small JSON document. With `allow_loopback` (tests
/// only), `http` on 127.0.0.1 or [::1] is allowed too.
pub async fn fetch_document(url: &url::Url, allow_loopback: bool) -> Result<Vec<u8>, FetchError> {
    let loopback_host = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (allow_loopback && loopback_host);
    if !scheme_ok
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(FetchError::BadUrl);
    }
    let host = url.host_str().ok_or(FetchError::BadUrl)?;
    let port = url.port_or_known_default().ok_or(FetchError::BadUrl)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| FetchError::Unresolved)?
            .map_err(|_| FetchError::Unresolved)?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(FetchError::Unresolved);
    }
    let allowed = |ip: IpAddr| is_public(ip) || (allow_loopback && ip.is_loopback());
    // Every answer must pass: an attacker's name may return one public and
    // one private address and hope the connection picks the second.
    if !addresses.iter().all(|a| allowed(a.ip())) {
        return Err(FetchError::NotPublic);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .resolve_to_addrs(host, &addresses)
        .no_proxy()
        .build()
        .map_err(|e| FetchError::Failed(e.to_string()))?;
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Failed(without_url(&e)))?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Failed(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "the response could not be read".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        let cases = [
            ("8.8.8.8", true),
            ("2606:4700::1111", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("198.18.0.1", false),
            ("::1", false),
            ("::", false),
            ("fc00::1", false),
            ("fe80::1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::a00:1", false),
            ("2002:a00:1::", false),
            ("2001:db8::1", false),
        ];
        for (ip, public) in cases {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[tokio::test]
    async fn private_and_plain_http_urls_are_refused_before_any_connection() {
        let refused = [
            ("http://example.com/client.json", FetchError::BadUrl),
            ("https://user@example.com/c", FetchError::BadUrl),
            ("https://10.0.0.1/client.json", FetchError::NotPublic),
            ("https://169.254.169.254/latest", FetchError::NotPublic),
            ("https://[::1]/client.json", FetchError::NotPublic),
            ("https://127.0.0.1:9/client.json", FetchError::NotPublic),
            ("http://127.0.0.1:9/client.json", FetchError::BadUrl),
        ];
        for (url, expected) in refused {
            let url = url::Url::parse(url).unwrap();
            assert_eq!(fetch_document(&url, false).await, Err(expected), "{url}");
        }
    }
}
