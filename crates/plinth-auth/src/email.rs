//! Email address normalisation for sign-up and sign-in.

/// The longest accepted email address, in bytes (the SMTP path limit of RFC 5321 less the
/// angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Normalise an email address used as a sign-in identifier.
///
/// Trims surrounding whitespace and lowercases (the whole address, local part included, so that
/// `Ann@Example.com` and `ann@example.com` are one account). Then requires:
///
/// - exactly one `@`, with a non-empty local part and a non-empty domain;
/// - a domain that is `localhost` or has at least one dot, with no empty label (no leading,
///   trailing or doubled dot);
/// - no whitespace or control characters anywhere;
/// - at most [`MAX_EMAIL_BYTES`] bytes after lowercasing.
///
/// This is a sanity check, not full RFC 5322 validation: quoted local parts and IP-literal
/// domains are not specially handled (IP literals without a dot are rejected). Whether the
/// address exists is for a confirmation email to find out.
///
/// Idempotent: normalising an already normalised address returns it unchanged.
///
/// # Errors
///
/// A short human-readable reason, suitable for a validation error shown to the user.
pub fn normalize_email(s: &str) -> Result<String, String> {
    let email = s.trim().to_lowercase();
    if email.is_empty() {
        return Err("email address is empty".to_owned());
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(format!(
            "email address is longer than {MAX_EMAIL_BYTES} bytes"
        ));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("email address contains whitespace or control characters".to_owned());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("email address has no @".to_owned());
    };
    if domain.contains('@') {
        return Err("email address has more than one @".to_owned());
    }
    if local.is_empty() {
        return Err("email address has nothing before the @".to_owned());
    }
    if domain.is_empty() {
        return Err("email address has no domain after the @".to_owned());
    }
    if domain != "localhost" {
        if !domain.contains('.') {
            return Err("email domain must contain a dot".to_owned());
        }
        if domain.split('.').any(str::is_empty) {
            return Err("email domain has an empty label".to_owned());
        }
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(
            normalize_email("  Ann.Lee+x@Example.COM \n").as_deref(),
            Ok("ann.lee+x@example.com")
        );
        assert_eq!(
            normalize_email("root@localhost").as_deref(),
            Ok("root@localhost")
        );
        assert_eq!(normalize_email("a@b.c").as_deref(), Ok("a@b.c"));
        assert_eq!(
            normalize_email("ÉLODIE@exemple.fr").as_deref(),
            Ok("élodie@exemple.fr")
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "ann@",
            "ann@@example.com",
            "ann@x@example.com",
            "ann@example",
            "ann@.example.com",
            "ann@example.com.",
            "ann@example..com",
            "ann lee@example.com",
            "ann@exa mple.com",
            "ann\u{0}@example.com",
            "ann\t@example.com",
            "ann\u{7f}@example.com",
            "ann\u{a0}x@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn length_limit_is_in_bytes_after_lowercasing() {
        let domain = "@example.com"; // 12 bytes
        let ok = format!("{}{domain}", "a".repeat(MAX_EMAIL_BYTES - domain.len()));
        assert_eq!(ok.len(), MAX_EMAIL_BYTES);
        assert!(normalize_email(&ok).is_ok());
        let too_long = format!("a{ok}");
        assert!(normalize_email(&too_long).is_err());
        // 'İ' (2 bytes) lowercases to "i̇" (3 bytes): the limit applies to the result.
        let grows = format!("{}{domain}", "İ".repeat(100));
        assert_eq!(grows.len(), 212);
        assert!(normalize_email(&grows).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(s in "\\PC{0,80}") {
            if let Ok(n) = normalize_email(&s) {
                prop_assert_eq!(normalize_email(&n), Ok(n.clone()));
                prop_assert!(n.len() <= MAX_EMAIL_BYTES);
                prop_assert_eq!(n.matches('@').count(), 1);
            }
        }

        #[test]
        fn emailish_inputs_are_idempotent(
            local in "[ \\PC]{0,20}",
            at in prop::sample::select(vec!["@", "@@", "", " @ "]),
            domain in "[A-Za-zÀ-ÿİ.\\- ]{0,20}",
        ) {
            let s = format!("{local}{at}{domain}");
            if let Ok(n) = normalize_email(&s) {
                prop_assert_eq!(normalize_email(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(s in any::<String>()) {
            let _ = normalize_email(&s);
        }
    }
}
