//! An EdDSA-only `jsonwebtoken` crypto provider backed by `ed25519-dalek`.
//!
//! `jsonwebtoken`'s own `rust_crypto` backend would bring RSA, P-256, P-384, a second HMAC and
//! an older `ed25519-dalek`/`rand` generation into the build, and its `aws_lc_rs` backend a large
//! C library; Plinth only ever needs Ed25519. This provider is glue only: it parses keys and calls
//! `ed25519-dalek` to sign and (strictly) verify. Every other algorithm is refused with an error,
//! which is a second line of defence behind the `alg` check in [`crate::KeyRing::verify`].

use std::sync::Once;

use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::Digest as _;

/// Install [`PROVIDER`] as `jsonwebtoken`'s process-wide provider, once. If another provider
/// was installed (or chosen from `jsonwebtoken` features) first, that one stays.
pub(crate) fn ensure_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already in place; it is then the one used.
        let _ = PROVIDER.install_default();
    });
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(key.as_bytes())
        .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    Ok(Box::new(EdSigner(key)))
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let bytes: &[u8; 32] = key
        .try_get_as_bytes()?
        .try_into()
        .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    Ok(Box::new(EdVerifier(key)))
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, Error> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
        .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    Ok(key.verifying_key().to_bytes().to_vec())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    Ok(match hash {
        ThumbprintHash::SHA256 => sha2::Sha256::digest(data).to_vec(),
        ThumbprintHash::SHA384 => sha2::Sha384::digest(data).to_vec(),
        ThumbprintHash::SHA512 => sha2::Sha512::digest(data).to_vec(),
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    })
}

struct EdSigner(ed25519_dalek::SigningKey);

impl signature::Signer<Vec<u8>> for EdSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let sig: ed25519_dalek::Signature = ed25519_dalek::Signer::sign(&self.0, msg);
        Ok(sig.to_bytes().to_vec())
    }
}

impl JwtSigner for EdSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdVerifier(ed25519_dalek::VerifyingKey);

impl signature::Verifier<Vec<u8>> for EdVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| signature::Error::new())?;
        // Strict: rejects small-order keys and non-canonical signatures (no malleability).
        self.0
            .verify_strict(msg, &sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for EdVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}
