//! Password hashing (Argon2id, PHC strings) and the password policy.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AuthError;
use crate::email::normalize_email;

/// Argon2id memory cost in KiB (OWASP Password Storage Cheat Sheet: 19 MiB).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// Argon2id time cost (iterations) (OWASP: 2).
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id parallelism (OWASP: 1).
pub const ARGON2_P_COST: u32 = 1;

/// A valid Argon2id PHC string with exactly the parameters [`hash_password`] uses, of a random
/// password nobody knows. [`dummy_verify`] verifies against it. A test checks that its
/// parameters match the constants above: change it whenever they change.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$R4a0OXJaG/q81VMVan7PGA$2qHLvzzBL25Urz0rMelwOcrmuM9JtGN1cDZPUzrPOHg";

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| AuthError::PasswordHash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hash a password with Argon2id (m = 19456 KiB, t = 2, p = 1, 16-byte salt from the OS RNG)
/// and return the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) to store.
///
/// Takes tens of milliseconds of CPU and 19 MiB of memory: call it from a blocking task, and
/// check [`PasswordPolicy::check`] first (it bounds the length).
///
/// # Errors
///
/// [`AuthError::PasswordHash`] if the OS RNG fails or Argon2 rejects its input.
pub fn hash_password(pw: &str) -> Result<String, AuthError> {
    let hash = hasher()?
        .hash_password(pw.as_bytes())
        .map_err(|e| AuthError::PasswordHash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Check a password against a stored PHC string.
///
/// The parameters (algorithm, costs, salt) are read from the PHC string, so hashes made with
/// older parameters keep verifying. Returns `false` for a wrong password and for a malformed or
/// unsupported PHC string; never panics. The comparison of the derived hash is constant-time.
pub fn verify_password(pw: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(pw.as_bytes(), &parsed)
        .is_ok()
}

/// Do the work of [`verify_password`] against a fixed hash with the current parameters, and
/// discard the result.
///
/// Call it when signing in with an email that has no account (or no password), so that the
/// response takes as long as for an existing account with a wrong password and its timing does
/// not reveal whether the account exists.
pub fn dummy_verify(pw: &str) {
    std::hint::black_box(verify_password(pw, DUMMY_PHC));
}

/// The rules a new password must satisfy.
///
/// `Default` gives `min_len` 12, `max_len` 256 and no breached list. Lengths count Unicode
/// scalar values (`char`s), not bytes; `max_len` exists to bound the work and memory per
/// sign-in, not for security.
#[derive(Clone)]
pub struct PasswordPolicy {
    /// Fewest characters allowed (default 12).
    pub min_len: usize,
    /// Most characters allowed (default 256).
    pub max_len: usize,
    /// Known-breached passwords, **lowercased** (as [`PasswordPolicy::load_breached`] returns
    /// them). A password is rejected if its lowercase form is in the set.
    pub breached: Option<HashSet<String>>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_len: 12,
            max_len: 256,
            breached: None,
        }
    }
}

impl fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordPolicy")
            .field("min_len", &self.min_len)
            .field("max_len", &self.max_len)
            .field("breached", &self.breached.as_ref().map(HashSet::len))
            .finish()
    }
}

impl PasswordPolicy {
    /// Check a new password for the account with email `email`.
    ///
    /// # Errors
    ///
    /// Every rule the password breaks, as short human-readable sentences suitable for showing
    /// to the user: too short, too long, the same as the email address or its local part
    /// (compared case-insensitively), or in the breached list (case-insensitively).
    pub fn check(&self, pw: &str, email: &str) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        let len = pw.chars().count();
        if len < self.min_len {
            reasons.push(format!(
                "password must be at least {} characters long",
                self.min_len
            ));
        }
        if len > self.max_len {
            reasons.push(format!(
                "password must be at most {} characters long",
                self.max_len
            ));
        }
        let lower = pw.to_lowercase();
        let email = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
        let local = email.rsplit_once('@').map_or(email.as_str(), |(l, _)| l);
        if !email.is_empty() && (lower == email || lower == local) {
            reasons.push("password must not be the same as the email address".to_owned());
        }
        let breached = self
            .breached
            .as_ref()
            .is_some_and(|set| set.contains(&lower) || set.contains(pw));
        if breached {
            reasons.push(
                "password appears in a list of breached passwords; choose another".to_owned(),
            );
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Read a breached-password list: one password per line, surrounding whitespace trimmed,
    /// blank lines and lines starting with `#` ignored, lines that are not valid UTF-8 skipped.
    /// Entries are lowercased.
    ///
    /// # Errors
    ///
    /// [`AuthError::Io`] if the file cannot be read.
    pub fn load_breached(path: impl AsRef<Path>) -> Result<HashSet<String>, AuthError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| AuthError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(parse_breached(&bytes))
    }
}

fn parse_breached(bytes: &[u8]) -> HashSet<String> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn hash_and_verify_round_trip() {
        let phc = hash_password("correct horse battery staple").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapl", &phc));
        assert!(!verify_password("", &phc));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password("same password here").expect("hash");
        let b = hash_password("same password here").expect("hash");
        assert_ne!(a, b);
    }

    #[test]
    fn unicode_and_empty_passwords_hash() {
        let phc = hash_password("pässwörd 🔑 日本語").expect("hash");
        assert!(verify_password("pässwörd 🔑 日本語", &phc));
        let empty = hash_password("").expect("hash");
        assert!(verify_password("", &empty));
        assert!(!verify_password(" ", &empty));
    }

    #[test]
    fn malformed_phc_is_false() {
        for bad in [
            "",
            "$",
            "$$$$",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
            "$argon2id$v=19$m=1,t=2,p=1$Dkcn0kWXkq2z4/VTxjsKRA$xSGyB1ekSGT9sPaCWtbQB+Ss/AKHaSfQsDn6MdhUYxE",
            "$argon2id$v=19$m=19456,t=0,p=1$Dkcn0kWXkq2z4/VTxjsKRA$xSGyB1ekSGT9sPaCWtbQB+Ss/AKHaSfQsDn6MdhUYxE",
            "$argon2id$v=99$m=19456,t=2,p=1$Dkcn0kWXkq2z4/VTxjsKRA$xSGyB1ekSGT9sPaCWtbQB+Ss/AKHaSfQsDn6MdhUYxE",
            "$argon2id$v=19$m=19456,t=2,p=1$!!!!$xSGyB1ekSGT9sPaCWtbQB+Ss/AKHaSfQsDn6MdhUYxE",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            assert!(!verify_password("password", bad), "{bad}");
        }
    }

    #[test]
    fn dummy_hash_uses_current_parameters() {
        let parsed = PasswordHash::new(DUMMY_PHC).expect("valid PHC");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(parsed.version, Some(0x13));
        let params = Params::try_from(&parsed).expect("argon2 params");
        assert_eq!(params.m_cost(), ARGON2_M_COST_KIB);
        assert_eq!(params.t_cost(), ARGON2_T_COST);
        assert_eq!(params.p_cost(), ARGON2_P_COST);
        // And it has the shape hash_password produces (salt and output lengths).
        let real = hash_password("x").expect("hash");
        assert_eq!(real.len(), DUMMY_PHC.len());
    }

    /// `dummy_verify` must cost about what a real failed verification costs. Loose bound (3x
    /// either way) on the fastest of several interleaved runs, so that a busy machine does not
    /// make it flaky.
    #[test]
    fn dummy_verify_takes_comparable_time() {
        let phc = hash_password("the real password").expect("hash");
        let mut real = Duration::MAX;
        let mut dummy = Duration::MAX;
        for _ in 0..4 {
            let t = Instant::now();
            assert!(!verify_password("a wrong password", &phc));
            real = real.min(t.elapsed());
            let t = Instant::now();
            dummy_verify("a wrong password");
            dummy = dummy.min(t.elapsed());
        }
        let ratio = dummy.as_secs_f64() / real.as_secs_f64();
        assert!(
            (1.0 / 3.0..=3.0).contains(&ratio),
            "real {real:?}, dummy {dummy:?}, ratio {ratio:.2}"
        );
    }

    #[test]
    fn policy_default() {
        let p = PasswordPolicy::default();
        assert_eq!((p.min_len, p.max_len), (12, 256));
        assert!(p.breached.is_none());
        assert_eq!(p.check("a fine long passphrase", "ann@example.com"), Ok(()));
    }

    #[test]
    fn policy_length_counts_chars() {
        let p = PasswordPolicy::default();
        let short = p.check("short", "ann@example.com").expect_err("short");
        assert_eq!(short.len(), 1);
        assert!(short[0].contains("at least 12"), "{short:?}");
        // 11 two-byte characters: 22 bytes but still too short.
        assert!(p.check(&"é".repeat(11), "ann@example.com").is_err());
        assert!(p.check(&"é".repeat(12), "ann@example.com").is_ok());
        assert!(p.check(&"x".repeat(256), "ann@example.com").is_ok());
        let long = p
            .check(&"x".repeat(257), "ann@example.com")
            .expect_err("long");
        assert!(long[0].contains("at most 256"), "{long:?}");
        assert!(p.check(&"🔑".repeat(256), "ann@example.com").is_ok());
    }

    #[test]
    fn policy_rejects_email_and_local_part() {
        let p = PasswordPolicy {
            min_len: 1,
            ..PasswordPolicy::default()
        };
        for pw in [
            "annabelle.lee@example.com",
            "Annabelle.Lee@Example.com",
            "annabelle.lee",
            "ANNABELLE.LEE",
        ] {
            let reasons = p.check(pw, " Annabelle.Lee@example.com").expect_err(pw);
            assert!(reasons[0].contains("email"), "{reasons:?}");
        }
        assert!(
            p.check("annabelle.lee!", "annabelle.lee@example.com")
                .is_ok()
        );
        // An email that does not normalise is still compared.
        assert!(p.check("weird", "weird@nodot").is_err());
    }

    #[test]
    fn policy_collects_all_reasons() {
        let p = PasswordPolicy {
            breached: Some(parse_breached(b"ann\n")),
            ..PasswordPolicy::default()
        };
        let reasons = p.check("Ann", "ann@example.com").expect_err("bad");
        assert_eq!(reasons.len(), 3, "{reasons:?}");
    }

    #[test]
    fn breached_list_parsing_and_case_insensitive_match() {
        let set = parse_breached(
            b"# comment\n\nPassword123456\r\n  qwertyuiopasdf  \n#notapassword\n\xff\xfe\nmonkeymonkey",
        );
        assert_eq!(set.len(), 3, "{set:?}");
        assert!(set.contains("password123456"));
        assert!(set.contains("qwertyuiopasdf"));
        assert!(set.contains("monkeymonkey"));
        let p = PasswordPolicy {
            breached: Some(set),
            ..PasswordPolicy::default()
        };
        for pw in ["password123456", "PASSWORD123456", "QwertyUiopAsdf"] {
            let reasons = p.check(pw, "ann@example.com").expect_err(pw);
            assert!(reasons[0].contains("breached"), "{reasons:?}");
        }
        assert!(p.check("notapassword", "ann@example.com").is_ok());
        assert!(p.check("password1234567", "ann@example.com").is_ok());
    }

    #[test]
    fn load_breached_reads_file_and_reports_missing() {
        let dir = std::env::temp_dir().join(format!(
            "plinth-auth-test-{}-{}",
            std::process::id(),
            crate::random_id(8).expect("rng")
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("breached.txt");
        std::fs::write(&file, "# top passwords\n123456789012\nIloveyou1234\n").expect("write");
        let set = PasswordPolicy::load_breached(&file).expect("load");
        assert_eq!(set.len(), 2);
        assert!(set.contains("iloveyou1234"));
        let missing = PasswordPolicy::load_breached(dir.join("nope.txt"));
        assert!(matches!(missing, Err(AuthError::Io { .. })));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
