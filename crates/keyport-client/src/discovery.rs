//! Finding an issuer's endpoints: RFC 8414 metadata, with OIDC Discovery 1.0 as the fallback.

use keyport_proto::{ServerMetadata, Userinfo};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use url::Url;

use crate::error::{Error, Result};
use crate::http::{check_transport, get_with_bearer, http_client, read_json};
use crate::secret::AccessToken;

/// An issuer whose metadata has been fetched and checked.
#[derive(Debug, Clone)]
pub struct Issuer {
    http: reqwest::Client,
    metadata: ServerMetadata,
}

impl Issuer {
    /// Fetches `{issuer}/.well-known/oauth-authorization-server`, falling back
    /// to `/.well-known/openid-configuration`, and checks that the document
    /// names exactly `issuer` (RFC 8414 §3.3): a document for another issuer
    /// would let one server hand out endpoints on behalf of another.
    pub async fn discover(issuer: &str) -> Result<Self> {
        Self::discover_with(http_client()?, issuer).await
    }

    /// [`Issuer::discover`] with a caller-built HTTP client (proxies, extra CAs).
    /// The client should not follow redirects; see [`crate::http_client`].
    pub async fn discover_with(http: reqwest::Client, issuer: &str) -> Result<Self> {
        let fail = |reason: String| Error::Discovery {
            issuer: issuer.to_owned(),
            reason,
        };
        let issuer_url = check_transport(issuer).map_err(fail)?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(fail(
                "an issuer URL has no query or fragment (RFC 8414 §2)".into(),
            ));
        }

        let mut tried = Vec::new();
        for url in metadata_urls(&issuer_url) {
            let response = http
                .get(url.as_str())
                .header(ACCEPT, "application/json")
                .send()
                .await?;
            // Any answer but 404 means this is the issuer's document (or its
            // error), so a later candidate must not override it.
            if response.status() == StatusCode::NOT_FOUND {
                tried.push(url.to_string());
                continue;
            }
            let metadata: ServerMetadata = read_json(response).await?;
            return Self::from_metadata(http, issuer, metadata);
        }
        Err(fail(format!(
            "no metadata document at {}",
            tried.join(" or ")
        )))
    }

    /// Uses metadata obtained elsewhere (a cache, a config file), with the
    /// same checks as discovery.
    pub fn from_metadata(
        http: reqwest::Client,
        issuer: &str,
        metadata: ServerMetadata,
    ) -> Result<Self> {
        let fail = |reason: String| Error::Discovery {
            issuer: issuer.to_owned(),
            reason,
        };
        if metadata.issuer != issuer {
            let hint = if metadata.issuer.trim_end_matches('/') == issuer.trim_end_matches('/') {
                " (they differ in the trailing slash)"
            } else {
                ""
            };
            return Err(fail(format!(
                "the metadata names issuer {:?}, not {issuer:?}{hint}",
                metadata.issuer
            )));
        }
        let endpoints = [
            Some(&metadata.token_endpoint),
            metadata.device_authorization_endpoint.as_ref(),
            metadata.revocation_endpoint.as_ref(),
            metadata.userinfo_endpoint.as_ref(),
            metadata.introspection_endpoint.as_ref(),
            metadata.jwks_uri.as_ref(),
        ];
        for endpoint in endpoints.into_iter().flatten() {
            check_transport(endpoint).map_err(fail)?;
        }
        Ok(Self { http, metadata })
    }

    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
    }

    pub fn metadata(&self) -> &ServerMetadata {
        &self.metadata
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls the OIDC userinfo endpoint with a token from anywhere (for
    /// example one given in an environment variable rather than stored).
    pub async fn userinfo(&self, token: &AccessToken) -> Result<Userinfo> {
        let endpoint =
            self.metadata
                .userinfo_endpoint
                .as_deref()
                .ok_or_else(|| Error::Discovery {
                    issuer: self.issuer().to_owned(),
                    reason: "the issuer has no userinfo endpoint".into(),
                })?;
        get_with_bearer(&self.http, endpoint, token).await
    }
}

/// The metadata locations to try, in order. RFC 8414 §3.1 puts the
/// well-known segment before an issuer's path; OIDC Discovery §4 appends it;
/// many servers serve the OAuth document appended too, so that is tried last.
fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let issuer_path = issuer.path().trim_end_matches('/');
    let at = |path: String| {
        let mut url = issuer.clone();
        url.set_path(&path);
        url
    };
    let mut urls = vec![
        at(format!(
            "/.well-known/oauth-authorization-server{issuer_path}"
        )),
        at(format!("{issuer_path}/.well-known/openid-configuration")),
    ];
    if !issuer_path.is_empty() {
        urls.push(at(format!(
            "{issuer_path}/.well-known/oauth-authorization-server"
        )));
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str) -> ServerMetadata {
        ServerMetadata {
            issuer: issuer.into(),
            authorization_endpoint: None,
            token_endpoint: format!("{issuer}/oauth/token"),
            device_authorization_endpoint: Some(format!("{issuer}/oauth/device_authorization")),
            revocation_endpoint: Some(format!("{issuer}/oauth/revoke")),
            introspection_endpoint: None,
            userinfo_endpoint: Some(format!("{issuer}/oauth/userinfo")),
            jwks_uri: None,
            ..ServerMetadata::default()
        }
    }

    fn urls(issuer: &str) -> Vec<String> {
        metadata_urls(&Url::parse(issuer).unwrap())
            .iter()
            .map(Url::to_string)
            .collect()
    }

    #[test]
    fn metadata_is_looked_up_where_rfc_8414_then_oidc_put_it() {
        assert_eq!(
            urls("https://auth.example.com"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://example.com/tenant"),
            [
                "https://example.com/.well-known/oauth-authorization-server/tenant",
                "https://example.com/tenant/.well-known/openid-configuration",
                "https://example.com/tenant/.well-known/oauth-authorization-server",
            ]
        );
    }

    #[test]
    fn issuer_must_match_byte_for_byte() {
        let http = http_client().unwrap();
        let ok = Issuer::from_metadata(
            http.clone(),
            "http://127.0.0.1:8080",
            metadata("http://127.0.0.1:8080"),
        );
        assert!(ok.is_ok());

        let slash = Issuer::from_metadata(
            http.clone(),
            "http://127.0.0.1:8080/",
            metadata("http://127.0.0.1:8080"),
        )
        .unwrap_err();
        assert!(slash.to_string().contains("trailing slash"), "{slash}");

        let other = Issuer::from_metadata(http, "https://a.example", metadata("https://b.example"));
        assert!(matches!(other, Err(Error::Discovery { .. })));
    }

    #[test]
    fn endpoints_without_tls_are_refused() {
        let mut doc = metadata("https://auth.example.com");
        doc.token_endpoint = "http://auth.example.com/oauth/token".into();
        let result = Issuer::from_metadata(http_client().unwrap(), "https://auth.example.com", doc);
        assert!(matches!(result, Err(Error::Discovery { .. })));
    }
}
