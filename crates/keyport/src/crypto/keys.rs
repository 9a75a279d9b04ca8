//! Signing keys: for access tokens (RFC 9068) one key per algorithm a
//! client may choose (EdDSA by default, ES256, RS256), RS256 for ID tokens
//! (what OIDC client libraries assume), the JWKS that publishes them, and
//! verification of the access tokens Keyport issued.
//!
//! Private halves are stored only sealed under the master key, with the
//! `kid` as associated data.

use std::collections::HashMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::seal::MasterKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored key {0} does not open with this master key")]
    Unseal(String),
    #[error("stored key {0} is malformed: {1}")]
    Malformed(String, String),
    #[error("no active {0} signing key")]
    NoActiveKey(&'static str),
}

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUse {
    /// Access tokens, EdDSA (the default).
    AccessToken,
    /// Access tokens of clients set to ES256.
    AccessTokenEs256,
    /// Access tokens of clients set to RS256.
    AccessTokenRs256,
    IdToken,
}

impl KeyUse {
    pub const ALL: [KeyUse; 4] = [
        KeyUse::AccessToken,
        KeyUse::AccessTokenEs256,
        KeyUse::AccessTokenRs256,
        KeyUse::IdToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::AccessToken => "access",
            KeyUse::AccessTokenEs256 => "access-es256",
            KeyUse::AccessTokenRs256 => "access-rs256",
            KeyUse::IdToken => "id",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.as_str() == text)
    }

    pub fn signs_access_tokens(self) -> bool {
        self != KeyUse::IdToken
    }

    /// The key use that signs access tokens with `alg`.
    pub fn for_access(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::EdDSA => Some(KeyUse::AccessToken),
            Algorithm::ES256 => Some(KeyUse::AccessTokenEs256),
            Algorithm::RS256 => Some(KeyUse::AccessTokenRs256),
            _ => None,
        }
    }
}

/// A key as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub key_use: KeyUse,
    pub public_jwk: String,
    pub sealed_private: String,
    pub active: bool,
}

/// Creates a fresh key for `key_use`, sealed and ready to store.
pub fn generate(master: &MasterKey, key_use: KeyUse) -> Result<StoredKey, KeyError> {
    let (alg, pkcs8) = match key_use {
        KeyUse::AccessToken => {
            let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| KeyError::Generate)?;
            (Algorithm::EdDSA, doc.as_ref().to_vec())
        }
        KeyUse::AccessTokenEs256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .map_err(|_| KeyError::Generate)?;
            (Algorithm::ES256, doc.as_ref().to_vec())
        }
        KeyUse::IdToken | KeyUse::AccessTokenRs256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
            let der = pair.as_der().map_err(|_| KeyError::Generate)?;
            (Algorithm::RS256, der.as_ref().to_vec())
        }
    };
    let mut jwk = public_jwk(alg, &pkcs8).map_err(|e| KeyError::Malformed("new".into(), e))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| KeyError::Malformed("new".into(), e.to_string()))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    Ok(StoredKey {
        public_jwk: serde_json::to_string(&jwk).expect("a JWK serializes"),
        sealed_private: master.seal(&pkcs8, &kid),
        alg: alg_name(alg).into(),
        kid,
        key_use,
        active: true,
    })
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        _ => "unsupported",
    }
}

fn public_jwk(alg: Algorithm, pkcs8: &[u8]) -> Result<Jwk, String> {
    Jwk::from_decoding_key(&decoding_key(alg, pkcs8)?, Some(alg)).map_err(|e| e.to_string())
}

// The public JWK is derived from the public key, never from the encoding key:
// jsonwebtoken cannot read aws-lc's PKCS#8 v2 Ed25519 documents there.
fn decoding_key(alg: Algorithm, pkcs8: &[u8]) -> Result<DecodingKey, String> {
    match alg {
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
            Ok(DecodingKey::from_ed_der(pair.public_key().as_ref()))
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(|e| e.to_string())?;
            // The uncompressed point: 0x04, then x and y (32 bytes each).
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err("unexpected P-256 public key".into());
            }
            DecodingKey::from_ec_components(
                &super::b64url(&point[1..33]),
                &super::b64url(&point[33..]),
            )
            .map_err(|e| e.to_string())
        }
        Algorithm::RS256 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
            let public = pair.public_key();
            Ok(DecodingKey::from_rsa_raw_components(
                public.modulus().big_endian_without_leading_zero(),
                public.exponent().big_endian_without_leading_zero(),
            ))
        }
        _ => Err("unsupported algorithm".into()),
    }
}

/// A private key parsed once, when the key set loads: signing then costs
/// only the signature (jsonwebtoken's `encode` parses the key on every call,
/// which for RSA is most of the work).
enum Signer {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn load(alg: Algorithm, pkcs8: &[u8]) -> Result<Self, String> {
        match alg {
            Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(pkcs8)
                .map(Signer::Ed25519)
                .map_err(|e| e.to_string()),
            Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map(Signer::EcdsaP256)
                .map_err(|e| e.to_string()),
            Algorithm::RS256 => RsaKeyPair::from_pkcs8(pkcs8)
                .map(Signer::Rsa)
                .map_err(|e| e.to_string()),
            _ => Err("unsupported algorithm".into()),
        }
    }

    /// The JWS signature of `message` (RFC 7518 §3: ECDSA in the fixed
    /// r‖s form, RSA PKCS#1 v1.5 with SHA-256).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            Signer::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Signer::EcdsaP256(pair) => pair
                .sign(&rng, message)
                .expect("ECDSA signing with a loaded key does not fail")
                .as_ref()
                .to_vec(),
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .expect("RSA signing with a loaded key does not fail");
                signature
            }
        }
    }
}

/// A compact JWS: base64url(header) "." base64url(claims) "." signature.
fn compact_jws<C: Serialize>(header: &Header, claims: &C, signer: &Signer) -> String {
    let header = serde_json::to_vec(header).expect("a JWS header serializes");
    let claims = serde_json::to_vec(claims).expect("claims serialize");
    let signing_input = format!("{}.{}", super::b64url(&header), super::b64url(&claims));
    let signature = signer.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", super::b64url(&signature))
}

struct ActiveKey {
    kid: String,
    alg: Algorithm,
    signer: Signer,
}

/// The keys in force: the active pair signs, every published key verifies.
pub struct KeySet {
    /// The active access-token key of each algorithm.
    access: HashMap<Algorithm, ActiveKey>,
    id: ActiveKey,
    verifying: HashMap<String, (Algorithm, KeyUse, DecodingKey)>,
    jwks_json: String,
    /// Identifies this set, so a reload can tell whether anything changed.
    pub fingerprint: String,
}

impl KeySet {
    /// Builds the set from stored keys (active and previous ones).
    pub fn from_stored(master: &MasterKey, keys: &[StoredKey]) -> Result<Self, KeyError> {
        let mut access = HashMap::new();
        let mut id = None;
        let mut verifying = HashMap::new();
        let mut jwks = JwkSet { keys: Vec::new() };
        for key in keys {
            let alg = match key.alg.as_str() {
                "EdDSA" => Algorithm::EdDSA,
                "ES256" => Algorithm::ES256,
                "RS256" => Algorithm::RS256,
                other => return Err(KeyError::Malformed(key.kid.clone(), other.into())),
            };
            let jwk: Jwk = serde_json::from_str(&key.public_jwk)
                .map_err(|e| KeyError::Malformed(key.kid.clone(), e.to_string()))?;
            let decoding = DecodingKey::from_jwk(&jwk)
                .map_err(|e| KeyError::Malformed(key.kid.clone(), e.to_string()))?;
            verifying.insert(key.kid.clone(), (alg, key.key_use, decoding));
            jwks.keys.push(jwk);
            if key.active {
                let pkcs8 = master
                    .open(&key.sealed_private, &key.kid)
                    .map_err(|_| KeyError::Unseal(key.kid.clone()))?;
                let signer = Signer::load(alg, &pkcs8)
                    .map_err(|e| KeyError::Malformed(key.kid.clone(), e))?;
                let active = ActiveKey {
                    kid: key.kid.clone(),
                    alg,
                    signer,
                };
                match key.key_use {
                    KeyUse::IdToken => id = Some(active),
                    _ => {
                        access.insert(alg, active);
                    }
                }
            }
        }
        let fingerprint = keys
            .iter()
            .map(|k| format!("{}:{};", k.kid, k.active))
            .collect();
        Ok(Self {
            access: match access.contains_key(&Algorithm::EdDSA) {
                true => access,
                false => return Err(KeyError::NoActiveKey("access-token")),
            },
            id: id.ok_or(KeyError::NoActiveKey("ID-token"))?,
            verifying,
            jwks_json: serde_json::to_string(&jwks).expect("a JWK set serializes"),
            fingerprint,
        })
    }

    /// The JWS algorithms access tokens can be signed with.
    pub fn access_algs(&self) -> Vec<String> {
        let mut algs: Vec<String> = self
            .access
            .keys()
            .map(|a| alg_name(*a).to_string())
            .collect();
        algs.sort();
        algs
    }

    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    /// Signs an RFC 9068 access token (`typ: at+jwt`) with `alg`, or with
    /// EdDSA when no key of that algorithm is active (a database an older
    /// release opened).
    pub fn sign_access_token_with<C: Serialize>(&self, claims: &C, alg: Algorithm) -> String {
        let key = self
            .access
            .get(&alg)
            .or_else(|| self.access.get(&Algorithm::EdDSA))
            .expect("an EdDSA access key is always active");
        let mut header = Header::new(key.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.clone());
        compact_jws(&header, claims, &key.signer)
    }

    /// Signs an OpenID Connect ID token (`typ: JWT`, as OIDC clients demand).
    pub fn sign_id_token<C: Serialize>(&self, claims: &C) -> String {
        let mut header = Header::new(self.id.alg);
        header.kid = Some(self.id.kid.clone());
        compact_jws(&header, claims, &self.id.signer)
    }

    /// The OIDC `at_hash`: left half of SHA-256 of the access token.
    pub fn at_hash(access_token: &str) -> String {
        let digest = super::sha256(access_token.as_bytes());
        super::b64url(&digest[..16])
    }

    /// Checks signature, `typ` and issuer (one of `issuers`) of an access
    /// token. Expiry and revocation are the caller's to check against its
    /// own clock and store.
    pub fn verify_access_token<C: DeserializeOwned>(
        &self,
        token: &str,
        issuers: &[impl ToString],
    ) -> Option<C> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some("at+jwt") {
            return None;
        }
        let (alg, key_use, key) = self.verifying.get(header.kid.as_deref()?)?;
        if !key_use.signs_access_tokens() || header.alg != *alg {
            return None;
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(issuers);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<C>(token, key, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Claims {
        iss: String,
        sub: String,
    }

    #[test]
    fn keys_sign_and_verify_and_refuse_id_tokens_as_access_tokens() {
        let master = MasterKey::parse(&"11".repeat(32)).unwrap();
        let keys = vec![
            generate(&master, KeyUse::AccessToken).unwrap(),
            generate(&master, KeyUse::IdToken).unwrap(),
        ];
        let set = KeySet::from_stored(&master, &keys).unwrap();
        let claims = Claims {
            iss: "https://id.example".into(),
            sub: "u1".into(),
        };
        let at = set.sign_access_token_with(&claims, Algorithm::EdDSA);
        assert_eq!(
            set.verify_access_token::<Claims>(&at, &["https://id.example"]),
            Some(claims)
        );
        assert!(
            set.verify_access_token::<Claims>(&at, &["https://other"])
                .is_none()
        );
        let id = set.sign_id_token(&Claims {
            iss: "https://id.example".into(),
            sub: "u1".into(),
        });
        assert!(
            set.verify_access_token::<Claims>(&id, &["https://id.example"])
                .is_none()
        );
        let jwks: serde_json::Value = serde_json::from_str(set.jwks_json()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        let wrong = MasterKey::parse(&"22".repeat(32)).unwrap();
        assert!(matches!(
            KeySet::from_stored(&wrong, &keys),
            Err(KeyError::Unseal(_))
        ));
    }
}
