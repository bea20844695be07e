//! The only JWT algorithm this service signs or accepts, HS256, as jsonwebtoken's crypto provider.
//!
//! jsonwebtoken's bundled providers (aws-lc-rs or RustCrypto) carry RSA, ECDSA and EdDSA code into every
//! function, because the algorithm is picked at run time. Tokens here are HS256 by policy (the header is
//! checked before any signature work), so the provider knows HMAC-SHA256 and nothing else: every other
//! algorithm is an `InvalidAlgorithm` error, never a panic.

use hmac::{Hmac, KeyInit as _, Mac as _};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Installs the provider for this process (idempotent: a second call finds it installed).
pub(crate) fn install() {
    static PROVIDER: CryptoProvider =
        CryptoProvider { signer_factory: signer, verifier_factory: verifier, key_utils: KeyUtils::new_unimplemented() };
    let _ = PROVIDER.install_default();
}

fn keyed(algorithm: Algorithm, family: AlgorithmFamily, secret: Result<&[u8]>) -> Result<HmacSha256> {
    if algorithm != Algorithm::HS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if family != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    HmacSha256::new_from_slice(secret?).map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

// The signature is jsonwebtoken's `signer_factory` type.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(Hs256(keyed(*algorithm, key.family(), Ok(key.as_bytes()))?)))
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(Hs256(keyed(*algorithm, key.family(), key.try_get_as_bytes())?)))
}

/// A keyed HMAC-SHA256, cloned for each message.
struct Hs256(HmacSha256);

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // verify_slice compares in constant time.
        mac.verify_slice(tag).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

    #[test]
    fn hs256_matches_rfc_4231_and_other_algorithms_are_refused() {
        super::install();
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let tag = jsonwebtoken::crypto::sign(
            b"what do ya want for nothing?",
            &EncodingKey::from_secret(b"Jefe"),
            Algorithm::HS256,
        )
        .unwrap();
        let expected = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM";
        assert_eq!(tag, expected);
        let key = DecodingKey::from_secret(b"Jefe");
        assert!(
            jsonwebtoken::crypto::verify(expected, b"what do ya want for nothing?", &key, Algorithm::HS256).unwrap()
        );
        assert!(
            !jsonwebtoken::crypto::verify(expected, b"what do ya want for nothing!", &key, Algorithm::HS256).unwrap()
        );
        let other = jsonwebtoken::crypto::sign(b"m", &EncodingKey::from_secret(b"Jefe"), Algorithm::HS512);
        assert_eq!(other.unwrap_err().kind(), &jsonwebtoken::errors::ErrorKind::InvalidAlgorithm);
    }
}
