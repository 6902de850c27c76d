//! Plinth's credential logic, free of any database, HTTP or async runtime.
//!
//! The HTTP layer and the store call into this crate; it never does I/O itself, apart from
//! reading the OS random number generator and [`PasswordPolicy::load_breached`] reading a file.
//!
//! # What it provides
//!
//! - **Passwords** ([`hash_password`], [`verify_password`], [`dummy_verify`],
//!   [`PasswordPolicy`], [`normalize_email`]): Argon2id with the OWASP parameters
//!   (m = 19456 KiB, t = 2, p = 1), stored as PHC strings.
//! - **Access tokens** ([`KeyRing`], [`SigningKey`], [`Claims`], [`TokenError`]): short-lived JWTs
//!   signed with Ed25519 (`alg: EdDSA`), verified against a ring of keys, published as a JWK Set.
//! - **Opaque tokens** ([`new_refresh_token`], [`new_api_key`], [`parse_api_key`],
//!   [`token_hash`], [`hash_eq`]): high-entropy random strings for refresh tokens and API keys.
//!
//! # Invariants
//!
//! - **What is stored.** Passwords are stored only as Argon2id PHC strings (salt and parameters
//!   inside the string). Refresh tokens and API key secrets are stored only as their SHA-256
//!   [`token_hash`]; the plaintext is shown to the client once and never persisted. Comparing a
//!   presented token's hash with a stored hash uses the constant-time [`hash_eq`]. The only
//!   secret that must be stored as is, is the PKCS#8 private key of each JWT signing key
//!   ([`SigningKey::private_pkcs8`]); its public half is what [`KeyRing::jwks`] publishes.
//! - **Only EdDSA.** [`KeyRing::verify`] accepts a token only if its header says `alg: EdDSA`.
//!   `none`, the HMAC family (so no algorithm confusion with a public key used as an HMAC
//!   secret), RSA and ECDSA are rejected before any key is looked at, and the signature is checked
//!   with Ed25519 strict verification.
//! - **`kid` required.** Every token names its key in the header `kid`; a token without one is
//!   malformed. The key is looked up only in the ring; header fields such as `jku`, `jwk` or
//!   `x5u` are never followed. An unknown `kid` is reported as [`TokenError::UnknownKid`] so the
//!   caller can reload keys from the database and retry once (rate-limit those reloads: anyone
//!   can send a token with a made-up `kid`).
//! - **Time.** Verification takes `now` from the caller; `exp` and `nbf` are checked with a
//!   leeway of [`LEEWAY_SECS`] (30 s) for clock skew between nodes.
//! - **No panics** on any input: malformed PHC strings, tokens and API keys are rejected with
//!   `false`, an error or `None`.
//!
//! # The JWT crypto provider
//!
//! `jsonwebtoken` is used without a crypto backend feature. Instead this crate installs, as the
//! process-wide `jsonwebtoken` provider, a small EdDSA-only provider that delegates signing and
//! verification to `ed25519-dalek` (see `jwt_provider.rs`). It is installed on first use by
//! [`KeyRing::new`]. If something else in the process needs `jsonwebtoken` with other algorithms,
//! enable its `rust_crypto` feature and install that provider first at startup instead: it also
//! handles EdDSA, and this crate then uses it.

#![warn(missing_docs)]

mod email;
mod error;
mod jwt;
mod jwt_provider;
mod opaque;
mod password;
mod random;

pub use email::{MAX_EMAIL_BYTES, normalize_email};
pub use error::AuthError;
pub use jwt::{
    Claims, KeyRing, LEEWAY_SECS, MAX_TOKEN_LEN, SigningKey, TokenError, VerificationKey,
};
pub use opaque::{
    API_KEY_PREFIX, API_KEY_PREFIX_LEN, ApiKeyParts, REFRESH_TOKEN_PREFIX, hash_eq, new_api_key,
    new_refresh_token, parse_api_key, token_hash,
};
pub use password::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, PasswordPolicy, dummy_verify, hash_password,
    verify_password,
};
pub use random::random_id;
