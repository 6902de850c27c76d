//! Random bytes and identifiers from the operating system's RNG.

use crate::AuthError;

/// Lowercase ASCII letters and digits: URL-safe, case-insensitive-safe, double-click selectable.
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `N` bytes from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(AuthError::Rng)?;
    Ok(buf)
}

/// A random identifier of `len` characters from `[a-z0-9]`, drawn uniformly (rejection sampling)
/// from the OS random number generator. Each character carries log2(36) ≈ 5.17 bits: 16
/// characters ≈ 82 bits, 25 characters ≈ 129 bits.
///
/// Used for JWT key ids (`kid`), token ids (`jti`) and API key prefixes.
///
/// # Errors
///
/// [`AuthError::Rng`] if the OS random number generator fails.
pub fn random_id(len: usize) -> Result<String, AuthError> {
    // 252 = 7 * 36: bytes at or above it are rejected so that `b % 36` is uniform.
    const LIMIT: u8 = 252;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let buf: [u8; 32] = random_bytes()?;
        for b in buf {
            if out.len() == len {
                break;
            }
            if b < LIMIT {
                out.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    Ok(out)
}

/// Whether `s` consists only of characters [`random_id`] produces.
pub(crate) fn is_id_alphabet(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_id_has_requested_length_and_alphabet() {
        for len in [0, 1, 8, 16, 33, 100] {
            let id = random_id(len).expect("rng");
            assert_eq!(id.len(), len);
            assert!(is_id_alphabet(&id), "{id}");
        }
    }

    #[test]
    fn random_ids_differ() {
        let a = random_id(16).expect("rng");
        let b = random_id(16).expect("rng");
        assert_ne!(a, b);
    }

    #[test]
    fn random_id_uses_whole_alphabet() {
        let s = random_id(5000).expect("rng");
        for c in ALPHABET {
            assert!(s.as_bytes().contains(c), "missing {}", char::from(*c));
        }
    }
}
