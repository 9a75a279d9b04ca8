//! The HTTP client every call goes through, and the reading of RFC 6749 §5.2 error bodies.

use std::time::Duration;

use keyport_proto::ErrorResponse;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::de::DeserializeOwned;
use url::{Host, Url};

use crate::error::{Error, Result};
use crate::secret::AccessToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A reqwest client fit for token calls: redirects are never followed (a
/// redirected POST could carry a refresh token to another host, and
/// following them is an SSRF vector per RFC 9700 §4.11) and every request
/// has a deadline so a CLI never hangs on a dead issuer.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("keyport-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(Error::Http)
}

pub(crate) async fn post_form<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<T> {
    let response = http
        .post(url)
        .header(ACCEPT, "application/json")
        .form(form)
        .send()
        .await?;
    read_json(response).await
}

pub(crate) async fn get_with_bearer<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    token: &AccessToken,
) -> Result<T> {
    let response = http
        .get(url)
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {}", token.secret()))
        .send()
        .await?;
    // RFC 6750 §3.1: a rejected bearer token is a 401 whose details live in
    // WWW-Authenticate, not always in a body.
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::SessionExpired);
    }
    read_json(response).await
}

/// Reads a success body as `T`, and anything else as an RFC 6749 §5.2 error
/// when it parses as one.
pub(crate) async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status();
    if status.is_success() {
        return Ok(response.json().await?);
    }
    let url = response.url().to_string();
    let body = response.bytes().await?;
    match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(error) => Err(Error::from_response(error)),
        Err(_) => Err(Error::UnexpectedResponse {
            url,
            status: status.as_u16(),
        }),
    }
}

/// Tokens must only travel over TLS; plain HTTP is allowed on loopback for
/// development, as RFC 8252 §8.3 does for redirect URIs.
pub(crate) fn check_transport(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        _ => Err(format!(
            "{url} must use https (plain http is allowed only on loopback)"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_or_loopback_is_accepted() {
        assert!(check_transport("https://auth.example.com").is_ok());
        assert!(check_transport("http://127.0.0.1:8080").is_ok());
        assert!(check_transport("http://localhost:8080").is_ok());
        assert!(check_transport("http://[::1]:8080").is_ok());
        assert!(check_transport("http://auth.example.com").is_err());
        assert!(check_transport("ftp://127.0.0.1").is_err());
        assert!(check_transport("not a url").is_err());
    }
}
