//! The formats of the secrets Keyport hands out: RFC 8628 device and user
//! codes, checksummed refresh tokens and client secrets.

use std::fmt;

/// RFC 8628 §6.1: a user code alphabet without vowels (so no words) and
/// without look-alike characters.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// Declares a secret type: `Debug` is redacted, there is no `Display`, and
/// the value is read with `expose`, so a secret cannot reach a log by
/// accident.
macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: String) -> Self {
                Self(value)
            }

            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
    // A high-entropy secret the database keeps as SHA-256. Passwords and
    // PKCE verifiers get no such method: a plain hash of either is no safe
    // thing to store.
    ($(#[$doc:meta])* $name:ident, stored_hashed) => {
        secret_type!($(#[$doc])* $name);

        impl $name {
            /// What the database may keep: SHA-256, base64url.
            pub fn hash(&self) -> String {
                super::hash_secret(&self.0)
            }
        }
    };
}

secret_type!(
    /// A secret Keyport hands out once (refresh token, device code, client
    /// secret) or reads back from a request.
    Secret,
    stored_hashed
);
secret_type!(
    /// A password as typed at sign-in; only its Argon2id hash is kept.
    Password
);
secret_type!(
    /// The browser session cookie's value; only its hash is kept.
    SessionCookie,
    stored_hashed
);
secret_type!(
    /// A client secret as presented at the token endpoint.
    ClientSecret,
    stored_hashed
);
secret_type!(
    /// An RFC 6749 §4.1 authorization code as presented for exchange.
    AuthorizationCode,
    stored_hashed
);
secret_type!(
    /// An RFC 7636 PKCE code verifier.
    CodeVerifier
);

/// A user code in its canonical form: 8 letters, no dash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCode(String);

impl UserCode {
    pub fn generate() -> Self {
        let mut code = String::with_capacity(USER_CODE_LEN);
        while code.len() < USER_CODE_LEN {
            for byte in super::random_bytes::<16>() {
                // Rejection sampling keeps every letter equally likely.
                if byte < 240 && code.len() < USER_CODE_LEN {
                    code.push(USER_CODE_ALPHABET[(byte % 20) as usize] as char);
                }
            }
        }
        Self(code)
    }

    /// Accepts what a person types: any case, with or without the dash (or
    /// an en dash, minus sign or other dash a keyboard or a copy from a
    /// document puts there) and spaces.
    pub fn parse(input: &str) -> Option<Self> {
        let code: String = input
            .chars()
            .filter(|c| !is_dash(*c) && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
            .then_some(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `XXXX-XXXX`, as shown to people.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }
}

/// Dashes a typed user code may hold: the hyphen-minus, Unicode's dash
/// punctuation (hyphen, non-breaking hyphen, figure dash, en and em dash,
/// horizontal bar, small and fullwidth hyphen-minus) and the minus sign.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
    )
}

/// A device code: 256 random bits, after the time it was issued
/// ([`super::time_prefix`]) when `issued_ms` is given. The time is no
/// secret; it leads the code's [`device_code_key`].
pub fn new_device_code(issued_ms: Option<i64>) -> Secret {
    match issued_ms {
        Some(at_ms) => Secret(format!(
            "{}{}",
            super::time_prefix(at_ms),
            super::random_token()
        )),
        None => Secret(super::random_token()),
    }
}

/// What a device code is stored and found by: its SHA-256 hash (base64url),
/// after the code's time when the code begins with one. The keys of codes
/// issued in turn then sort in turn, so each new row goes to the end of the
/// unique index on them, on a page the last commit already wrote, where a
/// bare hash takes a random page of the index per code.
pub fn device_code_key(code: &Secret) -> String {
    let text = code.expose();
    let hash = super::hash_secret(text);
    match issued_prefix(text) {
        Some(prefix) => format!("{prefix}{hash}"),
        None => hash,
    }
}

/// The time a device code begins with: only in a code of exactly that
/// prefix and 256 bits, so a code of the bare form keeps its bare key.
fn issued_prefix(code: &str) -> Option<&str> {
    let prefix = code.get(..super::TIME_PREFIX_LEN)?;
    let lower_hex = prefix
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (code.len() == super::TIME_PREFIX_LEN + super::RANDOM_TOKEN_LEN && lower_hex).then_some(prefix)
}

/// `kp_rt_` + 256 random bits + a CRC32 checksum, so secret scanners can
/// recognise a leaked token and tell it from random noise.
pub fn new_refresh_token(prefix: &str) -> Secret {
    Secret(with_checksum(prefix))
}

/// An opaque access token (a client set to `opaque`), checksummed like a
/// refresh token.
pub fn new_opaque_access_token(prefix: &str) -> Secret {
    Secret(with_checksum(prefix))
}

/// An API key (`kp_pat_…`), shown once, checksummed like a refresh token.
pub fn new_api_key() -> Secret {
    Secret(with_checksum(API_KEY_PREFIX))
}

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "kp_pat_";

/// True when the token has an API key's shape and checksum.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(API_KEY_PREFIX) && checksum_ok(token)
}

/// The token of an invitation link: 256 random bits, kept as a hash.
pub fn new_invitation_token() -> Secret {
    Secret(super::random_token())
}

/// A confidential client's secret, shown once.
pub fn new_client_secret() -> Secret {
    Secret(with_checksum("kp_cs_"))
}

fn with_checksum(prefix: &str) -> String {
    let body = format!("{prefix}{}", super::random_token());
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}{crc:08x}")
}

/// True when the token has Keyport's refresh-token shape and checksum; lets
/// the token endpoint turn away garbage without a database read.
pub fn is_well_formed_refresh_token(token: &str, prefix: &str) -> bool {
    token.starts_with(prefix) && checksum_ok(token)
}

/// True for a checksummed opaque token of any prefix (JWTs have dots).
pub fn is_opaque_token(token: &str) -> bool {
    !token.contains('.') && checksum_ok(token)
}

fn checksum_ok(token: &str) -> bool {
    if token.len() < 9 || !token.is_char_boundary(token.len() - 8) {
        return false;
    }
    let (body, crc) = token.split_at(token.len() - 8);
    u32::from_str_radix(crc, 16).is_ok_and(|crc| crc == crc32fast::hash(body.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyport_proto::REFRESH_TOKEN_PREFIX;

    #[test]
    fn device_code_keys_sort_by_issue_time_and_bare_codes_keep_bare_keys() {
        let early = new_device_code(Some(1_700_000_000_000));
        let late = new_device_code(Some(1_700_000_000_001));
        assert_eq!(early.expose().len(), 13 + 43);
        assert!(early.expose().starts_with("0018bcfe56800"));
        let (early_key, late_key) = (device_code_key(&early), device_code_key(&late));
        assert!(early_key < late_key, "{early_key} then {late_key}");
        assert_eq!(early_key, format!("0018bcfe56800{}", early.hash()));

        let bare = new_device_code(None);
        assert_eq!(bare.expose().len(), 43);
        assert_eq!(device_code_key(&bare), bare.hash());
        // Anything else a client sends keeps the bare form too.
        for text in [
            "18BCFE5680000".to_string() + &"A".repeat(43),
            "18bcfe5680000".into(),
        ] {
            let code = Secret::new(text);
            assert_eq!(device_code_key(&code), code.hash());
        }
    }

    #[test]
    fn user_codes_use_the_alphabet_and_parse_loosely() {
        let code = UserCode::generate();
        assert_eq!(code.as_str().len(), 8);
        let shown = code.display();
        assert_eq!(shown.len(), 9);
        assert_eq!(UserCode::parse(&shown.to_lowercase()), Some(code.clone()));
        assert_eq!(UserCode::parse(code.as_str()), Some(code));
        assert_eq!(
            UserCode::parse("ABCD-EFGH"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(UserCode::parse("BCDF-GHJ"), None);
        let expected = UserCode::parse("BCDFGHJK");
        for typed in [
            "BCDF\u{2013}GHJK", // en dash
            "BCDF\u{2014}GHJK", // em dash
            "BCDF\u{2212}GHJK", // minus sign
            "BCDF\u{2011}GHJK", // non-breaking hyphen
            "BCDF\u{FF0D}GHJK", // fullwidth hyphen-minus
            " bcdf ghjk\u{00A0}",
        ] {
            assert_eq!(UserCode::parse(typed), expected, "{typed:?}");
        }
    }

    #[test]
    fn refresh_tokens_carry_a_checksum() {
        let token = new_refresh_token(REFRESH_TOKEN_PREFIX);
        assert!(token.expose().starts_with("kp_rt_"));
        assert!(is_well_formed_refresh_token(
            token.expose(),
            REFRESH_TOKEN_PREFIX
        ));
        let mut tampered = token.expose().to_string();
        tampered.replace_range(8..9, if &tampered[8..9] == "A" { "B" } else { "A" });
        assert!(!is_well_formed_refresh_token(
            &tampered,
            REFRESH_TOKEN_PREFIX
        ));
        assert!(!is_well_formed_refresh_token(
            "kp_rt_é",
            REFRESH_TOKEN_PREFIX
        ));
        assert_eq!(format!("{token:?}"), "[redacted]");
    }
}
