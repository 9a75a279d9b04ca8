//! The RFC 8414 / OpenID Connect Discovery document, built from the wire
//! type so that it names only what this server serves.

use keyport_proto::{GrantType, ServerMetadata};

use crate::service::Keyport;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Keyport {
    pub fn discovery(&self) -> ServerMetadata {
        let iss = &self.config.issuer;
        let auth_methods = strings(&["client_secret_basic", "client_secret_post", "none"]);
        ServerMetadata {
            issuer: iss.clone(),
            authorization_endpoint: Some(format!("{iss}/oauth/authorize")),
            token_endpoint: format!("{iss}/oauth/token"),
            device_authorization_endpoint: Some(format!("{iss}/oauth/device_authorization")),
            revocation_endpoint: Some(format!("{iss}/oauth/revoke")),
            introspection_endpoint: Some(format!("{iss}/oauth/introspect")),
            userinfo_endpoint: Some(format!("{iss}/oauth/userinfo")),
            jwks_uri: Some(format!("{iss}/oauth/jwks")),
            registration_endpoint: self
                .config
                .registration
                .enabled
                .then(|| format!("{iss}/oauth/register")),
            grant_types_supported: GrantType::ALL
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            response_types_supported: strings(&["code"]),
            response_modes_supported: strings(&["query"]),
            scopes_supported: self.catalogue.names(),
            code_challenge_methods_supported: strings(&["S256"]),
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
            prompt_values_supported: strings(&["none", "login", "consent"]),
            authorization_response_iss_parameter_supported: true,
            client_id_metadata_document_supported: true,
            request_parameter_supported: Some(false),
            service_documentation: None,
        }
    }
}
