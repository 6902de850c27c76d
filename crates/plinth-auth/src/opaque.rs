//! Opaque tokens: refresh tokens and API keys, and how they are hashed for storage.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AuthError;
use crate::random::{is_id_alphabet, random_bytes, random_id};

/// The prefix of every refresh token, so that one is recognisable in logs, bug reports and
/// secret scanners.
pub const REFRESH_TOKEN_PREFIX: &str = "plr_";

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "plk_";

/// Length of the public, listable part of an API key (`[a-z0-9]`).
pub const API_KEY_PREFIX_LEN: usize = 8;

/// Random bytes in a refresh token or API key secret (256 bits).
const SECRET_BYTES: usize = 32;

/// Base64url (no padding) length of [`SECRET_BYTES`] bytes.
const SECRET_B64_LEN: usize = 43;

/// Total length of an API key: `plk_` + prefix + `_` + secret.
const API_KEY_LEN: usize = API_KEY_PREFIX.len() + API_KEY_PREFIX_LEN + 1 + SECRET_B64_LEN;

/// A new refresh token: [`REFRESH_TOKEN_PREFIX`] followed by 256 bits from the OS RNG in
/// base64url without padding (47 characters in all).
///
/// Give it to the client once; store only [`token_hash`] of the whole string.
///
/// # Errors
///
/// [`AuthError::Rng`] if the OS random number generator fails.
pub fn new_refresh_token() -> Result<String, AuthError> {
    let bytes: [u8; SECRET_BYTES] = random_bytes()?;
    Ok(format!(
        "{REFRESH_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A newly generated API key and what to store about it.
///
/// The `Debug` output hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyParts {
    /// The whole key, `plk_<prefix>_<secret>`: show it to the user once, never store it.
    pub key: String,
    /// The public part: [`API_KEY_PREFIX_LEN`] characters of `[a-z0-9]`. Store it in the clear
    /// to find the key's row and to show in listings ("plk_ab12cd34_…"). Not guaranteed unique:
    /// give the column a unique index and generate again on a conflict.
    pub prefix: String,
    /// [`token_hash`] of the secret part (the 43 characters after the second `_`): store it and
    /// compare with [`hash_eq`].
    pub secret_hash: [u8; 32],
}

impl fmt::Debug for ApiKeyParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyParts")
            .field("key", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("secret_hash", &"[..]")
            .finish()
    }
}

/// A new API key: `plk_<prefix>_<secret>`, where the prefix is [`API_KEY_PREFIX_LEN`]
/// characters of `[a-z0-9]` and the secret is 256 bits from the OS RNG in base64url without
/// padding (43 characters; it may itself contain `_` and `-`, which is unambiguous because the
/// prefix has a fixed length). 56 characters in all.
///
/// # Errors
///
/// [`AuthError::Rng`] if the OS random number generator fails.
pub fn new_api_key() -> Result<ApiKeyParts, AuthError> {
    let prefix = random_id(API_KEY_PREFIX_LEN)?;
    let bytes: [u8; SECRET_BYTES] = random_bytes()?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let secret_hash = token_hash(&secret);
    Ok(ApiKeyParts {
        key: format!("{API_KEY_PREFIX}{prefix}_{secret}"),
        prefix,
        secret_hash,
    })
}

/// Split a presented API key into `(prefix, secret)`, or `None` unless it has exactly the
/// shape [`new_api_key`] produces: `plk_`, 8 characters of `[a-z0-9]`, `_`, and a secret that is
/// the canonical unpadded base64url encoding of 32 bytes. Leading or trailing whitespace is not
/// accepted. Each key therefore has exactly one accepted spelling.
///
/// Look the key up by prefix, then compare `hash_eq(&token_hash(secret), &stored)`.
pub fn parse_api_key(s: &str) -> Option<(&str, &str)> {
    if s.len() != API_KEY_LEN {
        return None;
    }
    let rest = s.strip_prefix(API_KEY_PREFIX)?;
    // `rest` is ASCII up to here only if these byte checks pass, so slicing cannot split a char.
    let prefix = rest.get(..API_KEY_PREFIX_LEN)?;
    if !is_id_alphabet(prefix) {
        return None;
    }
    let secret = rest.get(API_KEY_PREFIX_LEN..)?.strip_prefix('_')?;
    // Strict decode: rejects characters outside base64url, padding and non-zero trailing bits.
    match URL_SAFE_NO_PAD.decode(secret) {
        Ok(bytes) if bytes.len() == SECRET_BYTES => Some((prefix, secret)),
        _ => None,
    }
}

/// SHA-256 of a refresh token or API key secret, the only form in which they are stored.
///
/// A fast hash is right here, unlike for passwords: these tokens carry 256 bits from the OS RNG,
/// so nobody can guess them by brute force whatever the hash costs, and a slow hash would only
/// slow every authenticated request. No salt is needed for the same reason, and leaving it out
/// keeps the hash usable as a lookup key.
pub fn token_hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time equality of two 32-byte hashes (via `subtle`, already a dependency of
/// `ed25519-dalek`), so that comparing a presented token's hash with a stored one does not leak
/// how many leading bytes match.
pub fn hash_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refresh_tokens() {
        let a = new_refresh_token().expect("rng");
        let b = new_refresh_token().expect("rng");
        assert_ne!(a, b);
        assert_eq!(a.len(), 47);
        let body = a.strip_prefix(REFRESH_TOKEN_PREFIX).expect("prefix");
        let bytes = URL_SAFE_NO_PAD.decode(body).expect("base64url");
        assert_eq!(bytes.len(), 32);
    }

    #[test]
    fn api_key_round_trip() {
        for _ in 0..200 {
            let k = new_api_key().expect("rng");
            assert_eq!(k.key.len(), 56);
            assert!(k.key.starts_with("plk_"));
            let (prefix, secret) = parse_api_key(&k.key).expect("parses");
            assert_eq!(prefix, k.prefix);
            assert_eq!(prefix.len(), API_KEY_PREFIX_LEN);
            assert!(hash_eq(&token_hash(secret), &k.secret_hash));
        }
    }

    #[test]
    fn api_key_with_underscores_in_secret_parses() {
        // A secret may contain `_` and `-`; the fixed-length prefix keeps parsing unambiguous.
        let secret = URL_SAFE_NO_PAD.encode([0xffu8; 32]);
        assert!(secret.contains('_'), "{secret}");
        let key = format!("plk_abcd1234_{secret}");
        assert_eq!(parse_api_key(&key), Some(("abcd1234", secret.as_str())));
        let secret = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert!(secret.contains('-'), "{secret}");
        let key = format!("plk_abcd1234_{secret}");
        assert_eq!(parse_api_key(&key), Some(("abcd1234", secret.as_str())));
    }

    #[test]
    fn api_key_parsing_is_strict() {
        let good = new_api_key().expect("rng").key;
        assert!(parse_api_key(&good).is_some());
        let secret = &good[13..];
        let mut bad: Vec<String> = vec![
            String::new(),
            "plk_".into(),
            format!(" {good}"),
            format!("{good} "),
            format!("{good}A"),
            good[..55].to_string(),
            good.replacen("plk_", "plr_", 1),
            good.replacen("plk_", "PLK_", 1),
            format!("plk_ABCD1234_{secret}"),
            format!("plk_abcd123_x{secret}"),
            format!("plk_abcd-234_{secret}"),
            format!("plk_abcd1234-{secret}"),
            format!("plk_abcd1234_{}", &secret[..42]),
            // One character too many (a leading `_` is legal base64url, so
            // `_` + 42 characters could be a valid key: not a bad case).
            format!("plk_abcd1234__{secret}"),
            format!("plk_abcd1234_{}=", &secret[..42]),
            format!("plk_abcd1234_{}+", &secret[..42]),
            format!("plk_abcd1234_{}/", &secret[..42]),
            format!("plk_abcd1234_{}é", &secret[..41]),
            format!("plk_abcdé234_{secret}")[..56].to_string(),
        ];
        // Non-canonical: 43 base64 characters carry 258 bits; the last 2 must be zero.
        let canonical = URL_SAFE_NO_PAD.encode([0u8; 32]);
        assert!(canonical.ends_with('A'));
        let non_canonical = format!("{}B", &canonical[..42]);
        bad.push(format!("plk_abcd1234_{non_canonical}"));
        assert!(parse_api_key(&format!("plk_abcd1234_{canonical}")).is_some());
        for s in &bad {
            assert_eq!(parse_api_key(s), None, "{s:?}");
        }
    }

    #[test]
    fn token_hash_is_sha256() {
        // SHA-256("abc") from FIPS 180-2.
        let expected = [
            0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
            0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
            0xf2, 0x00, 0x15, 0xad,
        ];
        assert_eq!(token_hash("abc"), expected);
    }

    #[test]
    fn hash_eq_compares() {
        let a = token_hash("a");
        let mut b = a;
        assert!(hash_eq(&a, &b));
        b[31] ^= 1;
        assert!(!hash_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!hash_eq(&a, &b));
    }

    #[test]
    fn debug_hides_the_key() {
        let k = new_api_key().expect("rng");
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&k.key[13..]), "{dbg}");
        assert!(dbg.contains(&k.prefix));
    }

    proptest! {
        #[test]
        fn parse_api_key_never_panics(s in "\\PC{0,70}") {
            let _ = parse_api_key(&s);
        }

        #[test]
        fn parse_api_key_never_panics_near_valid(
            tail in "[a-zA-Z0-9_\\-=+/é]{40,46}",
            prefix in "[a-z0-9é]{6,9}",
        ) {
            let s = format!("plk_{prefix}_{tail}");
            if let Some((p, secret)) = parse_api_key(&s) {
                prop_assert_eq!(p.len(), API_KEY_PREFIX_LEN);
                prop_assert_eq!(secret.len(), SECRET_B64_LEN);
            }
        }
    }
}
