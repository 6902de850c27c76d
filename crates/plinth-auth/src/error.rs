//! The error type of the fallible operations other than token verification.

/// What can go wrong creating credentials or keys.
///
/// Token verification has its own error, [`crate::TokenError`], with client-safe descriptions.
/// The messages here are meant for logs, not for clients.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// Argon2 could not hash the password (in practice: invalid parameters).
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// A signing or verification key is invalid or inconsistent.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Two keys in a [`crate::KeyRing`] have the same `kid`.
    #[error("duplicate key id {0:?}")]
    DuplicateKid(String),
    /// Signing a token failed.
    #[error("token signing failed: {0}")]
    Sign(String),
    /// Reading a file (the breached-password list) failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
