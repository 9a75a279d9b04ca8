//! The issuers this server answers as, and the RFC 8414 / OpenID Connect
//! Discovery document of each, built from the wire type so that it names
//! only what this server serves.

use std::borrow::Cow;

use keyport_proto::{GrantType, ServerMetadata};

use crate::service::{Caller, Keyport};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Keyport {
    /// The issuer a caller addressed: Keyport's own, or through a `sqlos`
    /// profile, Keyport's followed by the profile's mount path. Tokens
    /// carry the issuer whose endpoint issued them.
    pub fn issuer_for(&self, caller: &Caller) -> Cow<'_, str> {
        self.config.issuer_at(caller.mount.as_deref())
    }

    /// Every issuer whose access tokens this server accepts.
    pub(crate) fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// Keyport's own document.
    pub fn discovery(&self) -> ServerMetadata {
        self.discovery_for(&Caller::IN_PROCESS)
    }

    /// The document of the issuer `caller` addressed. A `sqlos` profile's
    /// issuer serves its endpoints under its mount path, and the device,
    /// token and side endpoints only: the browser flows (authorization
    /// code, registration) are Keyport's own issuer's.
    pub fn discovery_for(&self, caller: &Caller) -> ServerMetadata {
        let iss = self.issuer_for(caller);
        let mounted = caller.mount.is_some();
        // Keyport's own endpoints are under `/oauth`; a mount's directly under it.
        let at = |name: &str| match mounted {
            false => format!("{iss}/oauth/{name}"),
            true => format!("{iss}/{name}"),
        };
        let browser = |items: &[&str]| if mounted { Vec::new() } else { strings(items) };
        let auth_methods = strings(&["client_secret_basic", "client_secret_post", "none"]);
        ServerMetadata {
            issuer: iss.to_string(),
            authorization_endpoint: (!mounted).then(|| at("authorize")),
            token_endpoint: at("token"),
            device_authorization_endpoint: Some(at("device_authorization")),
            revocation_endpoint: Some(at("revoke")),
            introspection_endpoint: Some(at("introspect")),
            userinfo_endpoint: Some(at("userinfo")),
            jwks_uri: Some(at("jwks")),
            registration_endpoint: (self.config.registration.enabled && !mounted)
                .then(|| at("register")),
            grant_types_supported: GrantType::ALL
                .iter()
                .filter(|g| !mounted || **g != GrantType::AuthorizationCode)
                .map(|g| g.as_str().to_string())
                .collect(),
            response_types_supported: browser(&["code"]),
            response_modes_supported: browser(&["query"]),
            scopes_supported: self.catalogue.names(),
            code_challenge_methods_supported: browser(&["S256"]),
            token_endpoint_auth_methods_supported: auth_methods.clone(),
            revocation_endpoint_auth_methods_supported: auth_methods,
            introspection_endpoint_auth_methods_supported: strings(&[
                "client_secret_basic",
                "client_secret_post",
            ]),
            id_token_signing_alg_values_supported: strings(&["RS256"]),
            access_token_signing_alg_values_supported: self.keys().access_algs(),
            subject_types_supported: strings(&["public"]),
            claims_supported: strings(&[
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "email",
                "email_verified",
                "name",
                "sid",
                "workspace",
                "role",
            ]),
            prompt_values_supported: browser(&["none", "login", "consent"]),
            authorization_response_iss_parameter_supported: !mounted,
            client_id_metadata_document_supported: true,
            request_parameter_supported: Some(false),
            service_documentation: None,
        }
    }
}
