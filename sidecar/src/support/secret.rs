//! Client secrets: generation, the hashed form stored in Redis, and constant-time verification.
//!
//! Two stored forms, told apart by their prefix:
//! - `sha256$<base64url>` for secrets this sidecar generated: 256 random bits cannot be guessed, so a fast hash
//!   only has to stop a Redis reader from using the stored value directly.
//! - an Argon2id PHC string (`$argon2id$…`) for secrets an operator chose, which may be guessable and so get a
//!   memory-hard hash.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64ct::{Base64UrlUnpadded, Encoding};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SHA256_PREFIX: &str = "sha256$";
const ARGON2ID_PREFIX: &str = "$argon2id$";

/// Why a secret could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Argon2 implementation rejected the input or its parameters.
    #[error("argon2: {0}")]
    Argon2(argon2::password_hash::Error),
}

/// A new client secret: 32 bytes from the operating system's random source, base64url without padding.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Base64UrlUnpadded::encode_string(&bytes)
}

/// The stored form of a secret returned by [`generate`].
pub fn hash_generated(secret: &str) -> String {
    format!(
        "{SHA256_PREFIX}{}",
        Base64UrlUnpadded::encode_string(&Sha256::digest(secret.as_bytes()))
    )
}

/// The stored form of an operator-chosen secret: Argon2id with the crate's default (OWASP) parameters.
pub fn hash_chosen(secret: &str) -> Result<String, SecretError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(SecretError::Argon2)?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(SecretError::Argon2)
}

/// Whether the stored form is memory-hard (Argon2id), so that verifying it costs tens of MiB for tens of ms.
pub fn is_memory_hard(stored: &str) -> bool {
    stored.starts_with(ARGON2ID_PREFIX)
}

/// Whether `secret` matches the stored hash. Comparisons are constant-time; an unknown stored form never matches.
///
/// Argon2 hashes take tens of milliseconds: call this off the async executor, through
/// [`super::argon2_slots::Argon2Slots`].
pub fn verify(secret: &str, stored: &str) -> bool {
    if let Some(expected) = stored.strip_prefix(SHA256_PREFIX) {
        let actual = Base64UrlUnpadded::encode_string(&Sha256::digest(secret.as_bytes()));
        return bool::from(actual.as_bytes().ct_eq(expected.as_bytes()));
    }
    if stored.starts_with(ARGON2ID_PREFIX) {
        // `verify_password` re-hashes with the stored salt and parameters and compares the outputs with
        // `subtle::ConstantTimeEq` (password-hash's `Output` equality).
        return PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &hash)
                .is_ok()
        });
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let a = generate();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate());
    }

    #[test]
    fn sha256_form_verifies_only_the_right_secret() {
        let secret = generate();
        let stored = hash_generated(&secret);
        assert!(stored.starts_with("sha256$"));
        assert!(!stored.contains(&secret));
        assert!(verify(&secret, &stored));
        assert!(!verify("wrong", &stored));
        assert!(!verify("", &stored));
    }

    #[test]
    fn argon2id_form_verifies_only_the_right_secret() {
        let stored = hash_chosen("demo-secret").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("demo-secret"));
        assert!(verify("demo-secret", &stored));
        assert!(!verify("demo-secreT", &stored));
    }

    #[test]
    fn unknown_forms_never_match() {
        assert!(!verify("x", "x"));
        assert!(!verify("x", ""));
        assert!(!verify("x", "$argon2id$garbage"));
        assert!(!verify("x", "plain$x"));
    }
}
