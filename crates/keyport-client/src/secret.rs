//! Newtypes for the secrets the client holds, so none can reach a log through `Debug`.
//!
//! They have no `Display`: the only way to the text is `.secret()`, which
//! makes every place a secret leaves the process easy to find.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret!(
    /// A bearer access token (RFC 6750).
    AccessToken
);
secret!(
    /// A refresh token (RFC 6749 §1.5); Keyport's start with `kp_rt_`.
    RefreshToken
);
secret!(
    /// The RFC 8628 `device_code`, which the client alone must know while polling.
    DeviceCode
);
secret!(
    /// An RFC 6749 §4.1.2 authorization code, good for one exchange.
    AuthorizationCode
);
secret!(
    /// The RFC 7636 `code_verifier` that only the client that started the
    /// login knows; the issuer saw only its hash.
    CodeVerifier
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let token = RefreshToken::new("kp_rt_supersecret");
        assert_eq!(format!("{token:?}"), "RefreshToken([redacted])");
        assert_eq!(token.secret(), "kp_rt_supersecret");
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let token = AccessToken::new("abc");
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"abc\"");
    }
}
