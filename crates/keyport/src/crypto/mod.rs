//! Secrets: random values, hashing of tokens at rest, constant-time
//! comparison, sealing with the master key, and the JWT signing keys.

pub mod keys;
pub mod seal;
pub mod tokens;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // getrandom(2) only fails when the OS has no entropy source at all;
    // nothing sensible can continue then.
    getrandom::fill(&mut buf).expect("the operating system RNG failed");
    buf
}

/// Characters of a [`random_token`]: 256 bits in base64url.
pub const RANDOM_TOKEN_LEN: usize = 43;

/// 256 random bits, base64url without padding.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A random identifier for rows (128 bits, hex).
pub fn random_id() -> String {
    hex(&random_bytes::<16>())
}

/// A random id (128 bits) that begins with `at_ms` in 13 hex digits, so
/// rows keyed by it are added at the end of their index, on a page the
/// last commit already wrote, instead of on a random page of it.
pub fn ordered_id(at_ms: i64) -> String {
    format!("{}{}", time_prefix(at_ms), random_id())
}

/// Characters of [`time_prefix`].
pub const TIME_PREFIX_LEN: usize = 13;

/// `at_ms` in 13 lowercase hex digits (good until the year 10889), so
/// values that begin with it sort by time.
pub fn time_prefix(at_ms: i64) -> String {
    format!("{:013x}", at_ms.max(0))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    text
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// What the database keeps of a high-entropy secret (token, code, key):
/// its SHA-256, so a database leak reveals no usable secret.
pub fn hash_secret(secret: &str) -> String {
    b64url(&sha256(secret.as_bytes()))
}

/// A keyed hash (HMAC-SHA256, base64url) for low-entropy secrets such as
/// user codes: without the key, a leaked hash cannot be brute-forced.
pub fn keyed_hash(key: &[u8; 32], secret: &str) -> String {
    keyed_hash_with(&hmac_key(key), secret)
}

/// An HMAC-SHA256 key ready for [`keyed_hash_with`]: a key used on every
/// request is made once (the key schedule costs about as much as the hash).
pub fn hmac_key(key: &[u8; 32]) -> aws_lc_rs::hmac::Key {
    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key)
}

/// [`keyed_hash`] under a key made by [`hmac_key`].
pub fn keyed_hash_with(key: &aws_lc_rs::hmac::Key, secret: &str) -> String {
    b64url(aws_lc_rs::hmac::sign(key, secret.as_bytes()).as_ref())
}

/// Compares two secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn ordered_ids_sort_by_time_and_stay_random() {
        let (earlier, later) = (ordered_id(1_780_000_000_000), ordered_id(1_780_000_000_001));
        assert!(earlier < later);
        assert_eq!(earlier.len(), 13 + 32);
        assert_ne!(ordered_id(5)[13..], ordered_id(5)[13..]);
        assert!(ordered_id(-1).starts_with("0000000000000"));
    }
}
