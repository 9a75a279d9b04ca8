//! Client authentication at the token, revocation and introspection
//! endpoints (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`,
//! and `none` for public clients.

use super::{Error, Result};
use crate::crypto::{constant_time_eq, hash_secret};
use crate::service::Keyport;
use crate::store::clients::Client;

/// One answer for an unknown client, a wrong secret and a secret sent for a
/// public client, so the answer tells nothing about which clients exist.
const AUTHENTICATION_FAILED: &str = "client authentication failed";

/// The credentials a request presented.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub secret: Option<String>,
    /// True when they came in an `Authorization: Basic` header (a failure
    /// then answers 401 with `WWW-Authenticate`).
    pub via_basic: bool,
}

impl Keyport {
    /// Finds the client and checks its secret. A confidential client must
    /// present its secret; a public client must not claim one.
    pub async fn authenticate_client(&self, creds: &ClientCredentials) -> Result<Client> {
        let Some(id) = creds.client_id.as_deref() else {
            return Err(Error::invalid_client("client authentication is required"));
        };
        let client = self
            .client(id)
            .await?
            .ok_or_else(|| Error::invalid_client(AUTHENTICATION_FAILED))?;
        match (&client.secret_hash, &creds.secret) {
            (Some(expected), Some(given)) if client.confidential => {
                if constant_time_eq(expected.as_bytes(), hash_secret(given).as_bytes()) {
                    Ok(client)
                } else {
                    Err(Error::invalid_client(AUTHENTICATION_FAILED))
                }
            }
            _ if client.confidential => Err(Error::invalid_client(AUTHENTICATION_FAILED)),
            (_, Some(_)) => Err(Error::invalid_client(AUTHENTICATION_FAILED)),
            (_, None) => Ok(client),
        }
    }
}
