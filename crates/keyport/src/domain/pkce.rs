//! RFC 7636 PKCE, `S256` only (RFC 9700 §2.1.1: `plain` protects nothing
//! once the authorization request leaks).

use crate::crypto::{b64url, constant_time_eq, sha256};

/// Why a challenge in an authorization request is refused.
pub fn parse_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, &'static str> {
    match (challenge, method) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("code_challenge_method without code_challenge"),
        (Some(_), None) => Err("code_challenge_method must be S256"),
        (Some(_), Some(m)) if m != "S256" => Err("code_challenge_method must be S256"),
        (Some(c), Some(_)) if c.len() == 43 && c.bytes().all(is_base64url) => Ok(Some(c.into())),
        (Some(_), Some(_)) => Err("code_challenge must be 43 base64url characters (S256)"),
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
pub fn well_formed_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in
/// constant time.
pub fn verifier_matches(challenge: &str, verifier: &str) -> bool {
    well_formed_verifier(verifier)
        && constant_time_eq(
            b64url(&sha256(verifier.as_bytes())).as_bytes(),
            challenge.as_bytes(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_appendix_b_pair_matches() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verifier_matches(challenge, verifier));
        assert!(!verifier_matches(challenge, &verifier.replace('d', "e")));
        assert!(!verifier_matches(challenge, "short"));
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let cases: [(Option<&str>, Option<&str>, bool); 7] = [
            (None, None, true),
            (Some(c), Some("S256"), true),
            (Some(c), Some("plain"), false),
            (Some(c), None, false),
            (None, Some("S256"), false),
            (Some("too-short"), Some("S256"), false),
            (Some(&"a".repeat(43).replace('a', "+")), Some("S256"), false),
        ];
        for (challenge, method, ok) in cases {
            assert_eq!(
                parse_challenge(challenge, method).is_ok(),
                ok,
                "{challenge:?} {method:?}"
            );
        }
    }
}
