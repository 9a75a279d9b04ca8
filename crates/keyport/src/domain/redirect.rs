//! Redirect URIs (RFC 6749 §3.1.2, RFC 9700 §4.1): what may be registered,
//! and exact matching, except that a loopback URI matches on any port
//! (RFC 8252 §7.3).

use url::{Host, Url};

/// Whether a URI may be registered: absolute, no fragment, and `https`, or
/// `http` on a loopback address, or a native app's private-use scheme in
/// reverse-domain form (RFC 8252 §7.1, so `com.example.app:/cb`).
pub fn check_registrable(uri: &str) -> Result<(), &'static str> {
    if uri.len() > 2048 {
        return Err("a redirect URI is at most 2048 characters");
    }
    let url = Url::parse(uri).map_err(|_| "not an absolute URI")?;
    // A host is a DNS name or an IP address: nothing that could change the
    // meaning of the CSP source the consent page makes of it.
    let host_ok = match url.host() {
        Some(Host::Domain(name)) => name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        Some(_) => true,
        None => !matches!(url.scheme(), "http" | "https"),
    };
    if !host_ok {
        return Err("the host is not a DNS name or an IP address");
    }
    if url.fragment().is_some() {
        return Err("a redirect URI has no fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a redirect URI has no user information");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err("plain http is allowed only on 127.0.0.1 or [::1]"),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err("use https, http on loopback, or a reverse-domain app scheme"),
    }
}

/// RFC 8252 §7.3 names the loopback IP literals; `localhost` can resolve
/// elsewhere (§8.3), so it gets no port freedom.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Whether `given` is one of `registered`: the same string, or a loopback
/// URI that differs from a registered one only in its port.
pub fn matches(registered: &[String], given: &str) -> bool {
    if registered.iter().any(|r| r == given) {
        return true;
    }
    let Ok(asked) = Url::parse(given) else {
        return false;
    };
    if asked.scheme() != "http" || !is_loopback(&asked) || asked.fragment().is_some() {
        return false;
    }
    registered
        .iter()
        .filter_map(|r| Url::parse(r).ok())
        .any(|r| {
            r.scheme() == "http"
            && is_loopback(&r)
            && r.host() == asked.host()
            && r.path() == asked.path()
            && r.query() == asked.query()
            && r.username() == asked.username()
            && r.password() == asked.password()
            // The parsed path hides a trailing-slash difference at the root
            // ("http://127.0.0.1:9" and "http://127.0.0.1:9/"): compare the
            // text after the authority too.
            && after_authority(r.as_str()) == after_authority(given)
        })
}

fn after_authority(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    rest.find(['/', '?']).map_or("", |at| &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_accepts_https_loopback_and_app_schemes_only() {
        let cases = [
            ("https://app.example.com/cb", true),
            ("http://127.0.0.1/callback", true),
            ("http://[::1]:8080/callback", true),
            ("com.example.app:/oauth", true),
            ("http://app.example.com/cb", false),
            ("http://localhost/cb", false),
            ("https://app.example.com/cb#frag", false),
            ("https://user:pw@app.example.com/cb", false),
            ("javascript:alert(1)", false),
            ("data:text/html,hi", false),
            ("/relative", false),
            ("https://evil.com;script-src/cb", false),
            ("https://*/cb", false),
        ];
        for (uri, ok) in cases {
            assert_eq!(check_registrable(uri).is_ok(), ok, "{uri}");
        }
    }

    #[test]
    fn matching_is_exact_except_the_loopback_port() {
        let registered = vec![
            "https://app.example.com/cb".to_string(),
            "http://127.0.0.1/callback".to_string(),
            "http://[::1]/callback".to_string(),
        ];
        let cases = [
            ("https://app.example.com/cb", true),
            ("https://app.example.com/cb?x=1", false),
            ("https://app.example.com/cb/", false),
            ("https://app.example.com/CB", false),
            ("https://app.example.com:443/cb", false),
            ("http://app.example.com/cb", false),
            ("https://evil.example.com/cb", false),
            ("https://app.example.com/other", false),
            ("https://app.example.com/cb#x", false),
            ("http://127.0.0.1:51234/callback", true),
            ("http://127.0.0.1/callback", true),
            ("http://127.0.0.1:51234/callback/", false),
            ("http://127.0.0.1:51234/callback?x=1", false),
            ("http://127.0.0.1:51234/other", false),
            ("http://[::1]:4000/callback", true),
            ("http://127.0.0.2:4000/callback", false),
            ("https://127.0.0.1:4000/callback", false),
            ("http://localhost:4000/callback", false),
            ("http://user@127.0.0.1:4000/callback", false),
        ];
        for (given, ok) in cases {
            assert_eq!(matches(&registered, given), ok, "{given}");
        }
    }
}
