//! RFC 7636 proof key for code exchange, S256 only, and the random values a web login sends.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::CodeVerifier;

/// RFC 7636 §4.2: the only method Keyport's clients use; `plain` would
/// send the verifier itself through the browser.
pub(crate) const CHALLENGE_METHOD: &str = "S256";

/// 256 random bits, base64url without padding: 43 characters, the
/// encoding RFC 7636 §4.1 recommends for a verifier. Also used for `state`.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // aws-lc's generator draws from the OS; if it failed, TLS could not
    // work either, so there is nothing sensible to go on with.
    aws_lc_rs::rand::fill(&mut bytes).expect("the OS random number generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

impl CodeVerifier {
    /// A fresh verifier from the OS's CSPRNG.
    pub(crate) fn random() -> Self {
        CodeVerifier::new(random_token())
    }

    /// RFC 7636 §4.2 S256: `BASE64URL(SHA256(ASCII(code_verifier)))`.
    pub(crate) fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, self.secret().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 7636 Appendix B, as the RFC prints it.
    #[test]
    fn challenge_matches_rfc_7636_appendix_b() {
        let verifier = CodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_43_unreserved_characters_and_never_repeat() {
        let first = CodeVerifier::random();
        let second = CodeVerifier::random();
        for verifier in [&first, &second] {
            let text = verifier.secret();
            assert_eq!(text.len(), 43, "{text}");
            // RFC 7636 §4.1: ALPHA / DIGIT / "-" / "." / "_" / "~".
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
                "{text}"
            );
            assert_eq!(verifier.challenge().len(), 43);
        }
        assert_ne!(first, second);
    }
}
