//! RFC 6238 time-based one-time codes for two-step verification, as
//! authenticator apps compute them: HMAC-SHA-1 (RFC 4226), 6 digits, 30 s
//! steps, one step of drift either way, and each code accepted once (the
//! caller keeps the last step used and passes it back).

use aws_lc_rs::hmac;

use crate::crypto::{constant_time_eq, random_bytes};

/// Seconds per step.
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted on either side.
const DRIFT: i64 = 1;

/// A TOTP secret: 20 random bytes (RFC 4226 §4 recommends 160 bits).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        Self(random_bytes::<20>().to_vec())
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw key, for sealing under the master key.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> String {
        base32(&self.0)
    }

    /// A secret typed as base32 (as an authenticator app shows it);
    /// spaces, `=` padding and letter case are ignored.
    pub fn from_base32(text: &str) -> Option<Self> {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
        for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
            let value = ALPHABET
                .iter()
                .position(|a| *a as char == c.to_ascii_uppercase())?;
            buffer = (buffer << 5) | value as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        (!out.is_empty()).then_some(Self(out))
    }

    /// The code for `step` (RFC 4226 §5.3 dynamic truncation).
    pub fn code_at(&self, step: i64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let mac = hmac::sign(&key, &step.to_be_bytes());
        let mac = mac.as_ref();
        let offset = (mac[mac.len() - 1] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            mac[offset] & 0x7f,
            mac[offset + 1],
            mac[offset + 2],
            mac[offset + 3],
        ]);
        format!(
            "{:0width$}",
            binary % 10u32.pow(DIGITS),
            width = DIGITS as usize
        )
    }

    /// The step a typed `code` matches at `now` (unix seconds), within one
    /// step of drift, if that step is later than `last_used` (a code works
    /// once). Compared in constant time; spaces are ignored.
    pub fn verify(&self, code: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now.div_euclid(STEP);
        let mut matched = None;
        // Every candidate is computed, so timing does not tell which matched.
        for step in current - DRIFT..=current + DRIFT {
            let fresh = last_used.is_none_or(|used| step > used);
            if constant_time_eq(self.code_at(step).as_bytes(), code.as_bytes()) && fresh {
                matched = Some(step);
            }
        }
        matched
    }

    /// The `otpauth://` URI an authenticator app reads from a QR code.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let enc = |text: &str| {
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            enc(issuer),
            enc(account),
            self.base32(),
            enc(issuer)
        )
    }
}

/// RFC 4648 §6 base32, without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 key.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn the_rfc_6238_vectors_hold_in_six_digits() {
        // Appendix B gives 8 digits; authenticators show the last 6.
        let cases = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, eight) in cases {
            assert_eq!(rfc_secret().code_at(time / STEP), eight[2..], "at {time}");
        }
    }

    #[test]
    fn a_code_works_once_within_one_step_of_drift() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        let step = now / STEP;
        let code = secret.code_at(step);
        let cases = [
            (code.clone(), now, None, Some(step)),
            (code.clone(), now + STEP, None, Some(step)),
            (code.clone(), now - STEP, None, Some(step)),
            (code.clone(), now + 2 * STEP, None, None),
            (code.clone(), now, Some(step), None),
            (code.clone(), now, Some(step - 1), Some(step)),
            (
                format!("{} {}", &code[..3], &code[3..]),
                now,
                None,
                Some(step),
            ),
            ("12345".to_string(), now, None, None),
            ("abcdef".to_string(), now, None, None),
        ];
        for (typed, at, last, expected) in cases {
            assert_eq!(
                secret.verify(&typed, at, last),
                expected,
                "{typed} at {at} after {last:?}"
            );
        }
    }

    #[test]
    fn base32_and_the_otpauth_uri_are_what_apps_read() {
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let uri = rfc_secret().otpauth_uri("Acme Keyport", "alice@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Keyport:alice%40example%2Ecom?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Keyport&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{:?}", TotpSecret::generate()), "[redacted]");
        assert_eq!(TotpSecret::generate().base32().len(), 32);
    }

    #[test]
    fn base32_round_trips() {
        let secret = TotpSecret::generate();
        assert_eq!(
            TotpSecret::from_base32(&secret.base32()),
            Some(secret.clone())
        );
        let spaced = secret.base32().to_lowercase();
        assert_eq!(TotpSecret::from_base32(&spaced), Some(secret));
        assert_eq!(TotpSecret::from_base32("not base32!"), None);
    }
}
