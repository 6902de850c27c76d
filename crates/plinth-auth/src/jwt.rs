//! Access tokens: JWTs signed with Ed25519 (`alg: EdDSA`), a ring of keys for rotation, and the
//! JWK Set that publishes the verification keys.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AuthError;
use crate::jwt_provider::ensure_installed;
use crate::random::{random_bytes, random_id};

/// Clock-skew allowance, in seconds, when checking `exp` and `nbf`: a token is accepted until
/// `exp + 30` and from `nbf - 30`. Tokens are verified by any node of the deployment, whose
/// clocks may differ slightly from the node that issued them.
pub const LEEWAY_SECS: i64 = 30;

/// Longest token [`KeyRing::verify`] looks at, in bytes; longer input is
/// [`TokenError::Malformed`] without being decoded. Plinth's tokens are about 400 bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Length of a generated `kid`.
const KID_LEN: usize = 16;

/// Longest accepted `kid`, in bytes.
const MAX_KID_LEN: usize = 64;

/// Length of a generated `jti` (about 129 bits).
const JTI_LEN: usize = 25;

/// A `kid` is 1 to 64 characters of the base64url alphabet (`[A-Za-z0-9_-]`).
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Check that 32 bytes are a usable Ed25519 public key (a valid curve point, not of small order).
fn check_public(public: &[u8; 32]) -> Result<(), AuthError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public)
        .map_err(|_| AuthError::InvalidKey("not an Ed25519 public key".to_owned()))?;
    if key.is_weak() {
        return Err(AuthError::InvalidKey(
            "Ed25519 public key of small order".to_owned(),
        ));
    }
    Ok(())
}

/// An Ed25519 key pair that signs access tokens, in the form the store keeps it.
///
/// The `Debug` output hides the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Key id, sent in each token's header and in the JWK Set. [`SigningKey::generate`] makes
    /// 16 random characters of `[a-z0-9]`; [`SigningKey::from_parts`] accepts 1 to 64 characters
    /// of `[A-Za-z0-9_-]`.
    pub kid: String,
    /// The private key as PKCS#8 DER (RFC 8410, with the public key included). Secret: store
    /// it encrypted or at least access-controlled.
    pub private_pkcs8: Vec<u8>,
    /// The raw 32-byte Ed25519 public key.
    pub public: [u8; 32],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("private_pkcs8", &"[redacted]")
            .field("public", &URL_SAFE_NO_PAD.encode(self.public))
            .finish()
    }
}

impl SigningKey {
    /// A new key pair from the OS random number generator, with a random `kid`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Rng`] if the OS random number generator fails, [`AuthError::InvalidKey`] if
    /// PKCS#8 encoding fails (it does not in practice).
    pub fn generate() -> Result<Self, AuthError> {
        let seed: [u8; 32] = random_bytes()?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| AuthError::InvalidKey(format!("PKCS#8 encoding: {e}")))?;
        Ok(Self {
            kid: random_id(KID_LEN)?,
            private_pkcs8: der.as_bytes().to_vec(),
            public: key.verifying_key().to_bytes(),
        })
    }

    /// Rebuild a key from what the store kept, checking that the parts belong together.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidKey`] if the `kid` is not 1 to 64 characters of `[A-Za-z0-9_-]`,
    /// `private_pkcs8` is not an Ed25519 PKCS#8 document, or `public` is not its public key.
    pub fn from_parts(
        kid: impl Into<String>,
        private_pkcs8: Vec<u8>,
        public: [u8; 32],
    ) -> Result<Self, AuthError> {
        let kid = kid.into();
        if !valid_kid(&kid) {
            return Err(AuthError::InvalidKey(
                "kid must be 1 to 64 characters of [A-Za-z0-9_-]".to_owned(),
            ));
        }
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(&private_pkcs8)
            .map_err(|_| AuthError::InvalidKey("not an Ed25519 PKCS#8 private key".to_owned()))?;
        if key.verifying_key().to_bytes() != public {
            return Err(AuthError::InvalidKey(
                "public key does not match the private key".to_owned(),
            ));
        }
        Ok(Self {
            kid,
            private_pkcs8,
            public,
        })
    }

    /// The public half, for verifying tokens after this key stops being the current one.
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            kid: self.kid.clone(),
            public: self.public,
        }
    }
}

/// A public key that verifies tokens but no longer signs them (a retired signing key, kept
/// until the tokens it signed have expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    /// Key id, as in [`SigningKey::kid`].
    pub kid: String,
    /// The raw 32-byte Ed25519 public key.
    pub public: [u8; 32],
}

impl VerificationKey {
    /// Build a verification key, checking it.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidKey`] if the `kid` is not 1 to 64 characters of `[A-Za-z0-9_-]` or
    /// the public key is not a valid Ed25519 point of large order.
    pub fn new(kid: impl Into<String>, public: [u8; 32]) -> Result<Self, AuthError> {
        let kid = kid.into();
        if !valid_kid(&kid) {
            return Err(AuthError::InvalidKey(
                "kid must be 1 to 64 characters of [A-Za-z0-9_-]".to_owned(),
            ));
        }
        check_public(&public)?;
        Ok(Self { kid, public })
    }
}

/// The claims of a Plinth access token.
///
/// All are required when verifying except `tid`, which is left out when `None`. Times are Unix
/// seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user id.
    pub sub: String,
    /// Session id: the refresh-token family this access token was issued from, so a session can
    /// be revoked.
    pub sid: String,
    /// Tenant id, if the user acts within a tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Issuer: the deployment's public base URL or another fixed string.
    pub iss: String,
    /// Audience: who the token is for.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// Token id: random, unique per token.
    pub jti: String,
}

impl Claims {
    /// Claims for a token issued at `now` that lives `ttl_secs` seconds (`iat = nbf = now`,
    /// `exp = now + ttl_secs`), with a random `jti`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Rng`] if the OS random number generator fails.
    pub fn new(
        sub: impl Into<String>,
        sid: impl Into<String>,
        tid: Option<String>,
        iss: impl Into<String>,
        aud: impl Into<String>,
        now: i64,
        ttl_secs: i64,
    ) -> Result<Self, AuthError> {
        Ok(Self {
            sub: sub.into(),
            sid: sid.into(),
            tid,
            iss: iss.into(),
            aud: aud.into(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            jti: random_id(JTI_LEN)?,
        })
    }
}

/// Why [`KeyRing::verify`] rejected a token.
///
/// Every variant means "401 Unauthorized"; [`TokenError::description`] is safe to send to the
/// client (e.g. as `error_description` in `WWW-Authenticate: Bearer error="invalid_token"`).
/// [`TokenError::UnknownKid`] is the one worth acting on: reload the keys from the database and
/// verify once more (rate-limited: anyone can send a made-up `kid`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWT: wrong number of parts, bad base64 or JSON, missing or invalid
    /// `kid`, a `crit` header, missing or mistyped claims, or longer than [`MAX_TOKEN_LEN`].
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not `EdDSA` (for example `none`, `HS256`, `RS256`).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// The `kid` is well-formed but not in the ring.
    #[error("token signed by an unknown key")]
    UnknownKid {
        /// The `kid` from the token header (1 to 64 characters of `[A-Za-z0-9_-]`).
        kid: String,
    },
    /// The signature does not verify with the key named by `kid`.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` (plus [`LEEWAY_SECS`]) is not after `now`.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus [`LEEWAY_SECS`]) is after `now`.
    #[error("token not valid yet")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("token issued by another issuer")]
    WrongIssuer,
    /// `aud` is not the expected audience.
    #[error("token intended for another audience")]
    WrongAudience,
}

impl TokenError {
    /// A short description safe to show to the client: fixed ASCII text without quotes or
    /// backslashes, so it fits in a quoted `WWW-Authenticate` parameter, and without anything
    /// taken from the token.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed token",
            Self::UnsupportedAlgorithm => "unsupported token algorithm",
            Self::UnknownKid { .. } => "token signed by an unknown key",
            Self::BadSignature => "invalid token signature",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not valid yet",
            Self::WrongIssuer => "token issued by another issuer",
            Self::WrongAudience => "token intended for another audience",
        }
    }
}

/// A verification key with its `jsonwebtoken` form, ready to use.
#[derive(Clone)]
struct RingKey {
    kid: String,
    public: [u8; 32],
    decoding: DecodingKey,
}

impl RingKey {
    fn new(key: &VerificationKey) -> Self {
        Self {
            kid: key.kid.clone(),
            public: key.public,
            decoding: DecodingKey::from_ed_der(&key.public),
        }
    }
}

/// The current signing key and the older keys that still verify tokens.
///
/// Built from the database at startup ([`KeyRing::new`]) and rebuilt when keys change. Rotation:
/// [`KeyRing::rotate`] makes a new key current and keeps the previous one for verification;
/// once the longest-lived token it signed has expired, [`KeyRing::remove_verification_key`]
/// drops it, and tokens naming it are then [`TokenError::UnknownKid`].
#[derive(Clone)]
pub struct KeyRing {
    current: SigningKey,
    encoding: EncodingKey,
    /// All verification keys, the current one first.
    keys: Vec<RingKey>,
    validation: Validation,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.kid)
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    /// A ring that signs with `current` and also verifies with the `older` keys.
    ///
    /// Signs and verifies a test message with `current` to check the key pair and the crypto
    /// provider once, up front.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidKey`] if a key is invalid or `current`'s halves do not match,
    /// [`AuthError::DuplicateKid`] if two keys share a `kid`.
    pub fn new(
        current: SigningKey,
        older: impl IntoIterator<Item = VerificationKey>,
    ) -> Result<Self, AuthError> {
        ensure_installed();
        let current = SigningKey::from_parts(current.kid, current.private_pkcs8, current.public)?;
        let mut ring = Self {
            encoding: EncodingKey::from_ed_der(&current.private_pkcs8),
            keys: vec![RingKey::new(&current.verification_key())],
            current,
            validation: validation(),
        };
        ring.self_test()?;
        for key in older {
            ring.add_verification_key(key)?;
        }
        Ok(ring)
    }

    /// Make `next` the signing key. The previous current key stays in the ring as a
    /// verification key.
    ///
    /// # Errors
    ///
    /// As for [`KeyRing::new`]; on error the ring is unchanged.
    pub fn rotate(&mut self, next: SigningKey) -> Result<(), AuthError> {
        let next = SigningKey::from_parts(next.kid, next.private_pkcs8, next.public)?;
        if self.keys.iter().any(|k| k.kid == next.kid) {
            return Err(AuthError::DuplicateKid(next.kid));
        }
        let mut ring = self.clone();
        ring.encoding = EncodingKey::from_ed_der(&next.private_pkcs8);
        ring.keys.insert(0, RingKey::new(&next.verification_key()));
        ring.current = next;
        ring.self_test()?;
        *self = ring;
        Ok(())
    }

    /// Add an older key that verifies but does not sign.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidKey`] if the key is invalid, [`AuthError::DuplicateKid`] if its
    /// `kid` is already in the ring.
    pub fn add_verification_key(&mut self, key: VerificationKey) -> Result<(), AuthError> {
        let key = VerificationKey::new(key.kid, key.public)?;
        if self.keys.iter().any(|k| k.kid == key.kid) {
            return Err(AuthError::DuplicateKid(key.kid));
        }
        self.keys.push(RingKey::new(&key));
        Ok(())
    }

    /// Remove a verification key. Returns whether it was there; the current signing key cannot
    /// be removed (returns `false`).
    pub fn remove_verification_key(&mut self, kid: &str) -> bool {
        if kid == self.current.kid {
            return false;
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.kid != kid);
        self.keys.len() != before
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// The `kid`s of all verification keys, the current one first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// Sign `claims` with the current key: header `{"alg":"EdDSA","typ":"JWT","kid":…}`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Sign`] if serialisation or signing fails (not expected once the ring has
    /// been built).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        ensure_installed();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// Verify an access token and return its claims.
    ///
    /// In order: size and shape; `alg` must be `EdDSA`; no `crit` header (no extension is
    /// understood); `kid` must be present and in the ring;
    /// the Ed25519 signature (strict verification); the claims must all be present with the
    /// right types; then `exp` and `nbf` against `now` (Unix seconds) with [`LEEWAY_SECS`],
    /// `iss` and `aud` by exact comparison. Nothing from the token other than `kid` is used to
    /// pick the key.
    ///
    /// # Errors
    ///
    /// The first check that fails, as a [`TokenError`].
    pub fn verify(
        &self,
        token: &str,
        iss: &str,
        aud: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        ensure_installed();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| classify_bad_header(token))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        // RFC 7515 section 4.1.11: critical extensions we do not understand (we know none).
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let kid = match header.kid.as_deref() {
            Some(kid) if valid_kid(kid) => kid,
            _ => return Err(TokenError::Malformed),
        };
        let Some(key) = self.keys.iter().find(|k| k.kid == kid) else {
            return Err(TokenError::UnknownKid {
                kid: kid.to_owned(),
            });
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(|e| decode_error(e.kind()))?
            .claims;
        if now >= claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf.saturating_sub(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iss != iss {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != aud {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }

    /// The JWK Set (RFC 7517) of all verification keys, the current one first, for
    /// `/.well-known/jwks.json`:
    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"}]}`
    /// with `x` the public key in base64url without padding (RFC 8037).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(k.public),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Sign and verify a fixed message with the current key through `jsonwebtoken`'s provider.
    fn self_test(&self) -> Result<(), AuthError> {
        const MSG: &[u8] = b"plinth-auth key self-test";
        let decoding = DecodingKey::from_ed_der(&self.current.public);
        let ok = jsonwebtoken::crypto::sign(MSG, &self.encoding, Algorithm::EdDSA)
            .and_then(|sig| jsonwebtoken::crypto::verify(&sig, MSG, &decoding, Algorithm::EdDSA))
            .map_err(|e| AuthError::InvalidKey(format!("self-test: {e}")))?;
        if ok {
            Ok(())
        } else {
            Err(AuthError::InvalidKey(
                "self-test: signature did not verify".to_owned(),
            ))
        }
    }
}

/// `jsonwebtoken` validation for [`KeyRing::verify`]: EdDSA only; the time, issuer and audience
/// checks are done by `verify` itself (against the caller's `now`), and required claims are
/// enforced by deserialising into [`Claims`].
fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

/// Tell an `alg` that `jsonwebtoken` does not know (`none`, `ES512`, …) from a broken header.
fn classify_bad_header(token: &str) -> TokenError {
    let alg = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|header| header.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(alg) if alg != "EdDSA" => TokenError::UnsupportedAlgorithm,
        _ => TokenError::Malformed,
    }
}

fn decode_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidKeyFormat => {
            TokenError::BadSignature
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenError::UnsupportedAlgorithm,
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests;
