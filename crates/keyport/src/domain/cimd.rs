//! Client ID metadata documents (the MCP authorization profile,
//! draft-ietf-oauth-client-id-metadata-document): a `client_id` that is an
//! `https` URL names a JSON document describing a public client. The
//! document is fetched (see [`crate::fetch`]), checked here, and cached.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::clients::{Client, ClientSpec};
use keyport_proto::GrantType;

/// The fields Keyport reads (RFC 7591 §2 names).
#[derive(Debug, Deserialize)]
pub struct MetadataDocument {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
}

/// Whether a client id names a metadata document: an `https` URL with a
/// path (or, when tests allow loopback, `http` on 127.0.0.1 or [::1]).
pub fn is_metadata_url(client_id: &str, allow_loopback: bool) -> bool {
    // Every token request asks this of its client id: the common answer
    // costs no URL parse.
    let scheme_fits =
        client_id.starts_with("https://") || (allow_loopback && client_id.starts_with("http://"));
    if !scheme_fits {
        return false;
    }
    let Ok(url) = url::Url::parse(client_id) else {
        return false;
    };
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    if allow_loopback && loopback {
        return url.scheme() == "http" && url.path() != "/" && plain_path(client_id);
    }
    // The draft's rules: https, a path, no fragment, no user information,
    // no dot segments (which would let one URL pose as another); and the
    // standard port, so a client id cannot aim Keyport at any service.
    url.scheme() == "https"
        && url.port().is_none()
        && url.path() != "/"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && plain_path(client_id)
}

/// No `.` or `..` segment in the URL as written, percent-encoded or not.
fn plain_path(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let path = after_scheme.split(['?', '#']).next().unwrap_or("");
    path.split('/').skip(1).all(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded != "." && decoded != ".."
    })
}

/// The client a fetched document describes, or why it is refused. Such a
/// client is public, may use the code and refresh grants only, and gets at
/// most the scopes its document lists that this server knows (`known`):
/// none when it lists none.
pub fn client_from_document(url: &str, body: &[u8], known: &[String]) -> Result<Client, String> {
    let doc: MetadataDocument =
        serde_json::from_slice(body).map_err(|e| format!("not a client metadata document: {e}"))?;
    if doc.client_id != url {
        return Err("the document's client_id is not its own URL".into());
    }
    if doc
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err("only public clients (token_endpoint_auth_method none) are supported".into());
    }
    let allowed = [GrantType::AuthorizationCode, GrantType::RefreshToken];
    let grants: BTreeSet<GrantType> = match &doc.grant_types {
        None => BTreeSet::from(allowed),
        Some(names) => names
            .iter()
            .filter_map(|g| GrantType::parse(g))
            .filter(|g| allowed.contains(g))
            .collect(),
    };
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    // Self-asserted text: cleaned like a device's (no bidi or other format
    // characters that could reorder the host shown beside it).
    let name = doc
        .client_name
        .as_deref()
        .and_then(super::metadata::clean_device_text)
        .unwrap_or_else(|| host.clone());
    let listed: Vec<String> = doc
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .filter(|s| known.iter().any(|k| k == s))
        .map(str::to_string)
        .collect();
    let spec = ClientSpec {
        id: url.to_string(),
        // The host is shown beside the name: the name is the client's claim.
        name: format!("{name} ({host})"),
        confidential: false,
        grants: grants.iter().map(|g| g.as_str().to_string()).collect(),
        redirect_uris: doc.redirect_uris,
        ..ClientSpec::default()
    };
    if spec.redirect_uris.is_empty() {
        return Err("the document lists no redirect_uris".into());
    }
    let mut client = spec.build("metadata")?;
    client.scopes = listed;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://agent.example.com/oauth/client.json";

    #[test]
    fn documents_become_public_code_flow_clients() {
        let ok = br#"{"client_id":"https://agent.example.com/oauth/client.json",
            "client_name":"Agent","redirect_uris":["http://127.0.0.1/cb"],
            "grant_types":["authorization_code","client_credentials"],"scope":"openid offline_access"}"#;
        let known: Vec<String> = ["openid", "offline_access"].map(String::from).to_vec();
        let client = client_from_document(URL, ok, &known).unwrap();
        assert!(!client.confidential);
        assert_eq!(client.name, "Agent (agent.example.com)");
        assert_eq!(
            client.grants,
            BTreeSet::from([GrantType::AuthorizationCode])
        );
        assert_eq!(client.scopes, ["openid", "offline_access"]);
        assert_eq!(client.source, "metadata");

        let refused: [&[u8]; 5] = [
            br#"{"client_id":"https://other.example.com/c.json","redirect_uris":["https://a.example/cb"]}"#,
            br#"{"client_id":"https://agent.example.com/oauth/client.json","redirect_uris":[]}"#,
            br#"{"client_id":"https://agent.example.com/oauth/client.json","redirect_uris":["javascript:x"]}"#,
            br#"{"client_id":"https://agent.example.com/oauth/client.json","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            b"not json",
        ];
        for body in refused {
            assert!(
                client_from_document(URL, body, &known).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn only_https_urls_with_a_path_name_documents() {
        let cases = [
            (URL, false, true),
            ("https://agent.example.com/", false, false),
            ("http://agent.example.com/c.json", false, false),
            ("http://127.0.0.1:9/c.json", false, false),
            ("http://127.0.0.1:9/c.json", true, true),
            ("kp", false, false),
            ("https://agent.example.com/a/../client.json", false, false),
            (
                "https://agent.example.com/a/%2E%2e/client.json",
                false,
                false,
            ),
            ("https://agent.example.com/./client.json", false, false),
            ("https://user@agent.example.com/client.json", false, false),
            ("https://agent.example.com:8443/client.json", false, false),
        ];
        for (id, loopback, expected) in cases {
            assert_eq!(is_metadata_url(id, loopback), expected, "{id}");
        }
    }
}
