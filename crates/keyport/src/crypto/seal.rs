//! Encryption at rest (AES-256-GCM) under the master key, for signing keys,
//! TOTP secrets and the sealed leeway reply of a refresh rotation.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the master key must be 32 bytes, given as 64 hex digits or base64")]
    BadMasterKey,
    #[error("cannot read or create the master key file {0}: {1}")]
    KeyFile(String, std::io::Error),
    #[error("sealed data did not open: wrong master key or tampered data")]
    Open,
}

/// The key-encryption key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SealError::BadMasterKey)?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| SealError::BadMasterKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadMasterKey)?;
        Ok(Self(key))
    }

    /// Reads the key file, creating it (mode 0600) with a fresh key when it
    /// does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        let err = |e| SealError::KeyFile(path.display().to_string(), e);
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = super::random_bytes::<32>();
                let text = super::hex(&key);
                write_private_file(path, text.as_bytes()).map_err(err)?;
                Ok(Self(key))
            }
            Err(e) => Err(err(e)),
        }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        seal_with(&self.0, plaintext, aad)
    }

    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        open_with(&self.0, sealed, aad)
    }

    /// A sub-key for a named purpose (cookie MACs, CSRF), so the master key
    /// itself never signs anything that leaves the server.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        derive_key(&self.0, purpose.as_bytes())
    }
}

/// Derives a 256-bit key from secret input keying material with HKDF-SHA256.
pub fn derive_key(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyport").extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, Len32)
        .expect("HKDF output length is valid");
    let mut out = [0u8; 32];
    okm.fill(&mut out).expect("HKDF fill of 32 bytes");
    out
}

/// Seals with any 256-bit key: `base64(nonce || ciphertext || tag)`.
pub fn seal_with(key: &[u8; 32], plaintext: &[u8], aad: &str) -> String {
    let key = RandomizedNonceKey::new(&AES_256_GCM, key).expect("AES-256 key is 32 bytes");
    let mut in_out = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut in_out)
        .expect("AES-GCM sealing does not fail for in-memory buffers");
    let mut out = nonce.as_ref().to_vec();
    out.extend_from_slice(&in_out);
    STANDARD.encode(out)
}

pub fn open_with(key: &[u8; 32], sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
    let key = RandomizedNonceKey::new(&AES_256_GCM, key).map_err(|_| SealError::Open)?;
    let raw = STANDARD.decode(sealed).map_err(|_| SealError::Open)?;
    if raw.len() < NONCE_LEN {
        return Err(SealError::Open);
    }
    let (nonce, body) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut body)
        .map_err(|_| SealError::Open)?;
    Ok(plain.to_vec())
}

/// Writes a file readable only by its owner.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_aad() {
        let key = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let sealed = key.seal(b"private key", "kid-1");
        assert_eq!(key.open(&sealed, "kid-1").unwrap(), b"private key");
        assert!(key.open(&sealed, "kid-2").is_err());
        let other = MasterKey::parse(&"cd".repeat(32)).unwrap();
        assert!(other.open(&sealed, "kid-1").is_err());
    }

    #[test]
    fn master_key_rejects_short_input() {
        assert!(MasterKey::parse("abcd").is_err());
        assert!(format!("{:?}", MasterKey::parse(&"ab".repeat(32)).unwrap()).contains("redacted"));
    }
}
