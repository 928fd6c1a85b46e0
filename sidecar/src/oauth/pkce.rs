//! Proof Key for Code Exchange (RFC 7636), `S256` only: `plain` gives no protection when the authorization
//! request leaks, so RFC 9700 §2.1.1 asks servers not to accept it.

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only supported `code_challenge_method`.
pub const S256: &str = "S256";
/// Shortest and longest `code_verifier` (RFC 7636 §4.1).
pub const VERIFIER_LEN: std::ops::RangeInclusive<usize> = 43..=128;
/// Length of an `S256` challenge: base64url of 32 bytes, unpadded.
const CHALLENGE_LEN: usize = 43;

/// Why the PKCE parameters of an authorization request are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// `code_challenge_method` is `plain`, or absent (which RFC 7636 §4.3 defines as `plain`).
    #[error("code_challenge_method must be S256")]
    PlainNotSupported,
    /// `code_challenge_method` names an unknown method.
    #[error("unsupported code_challenge_method")]
    UnknownMethod,
    /// `code_challenge_method` without `code_challenge`.
    #[error("code_challenge_method without code_challenge")]
    MethodWithoutChallenge,
    /// The challenge is not 43 base64url characters.
    #[error("code_challenge must be 43 base64url characters")]
    MalformedChallenge,
}

/// The challenge to bind a code to, from the authorization request's `code_challenge` and
/// `code_challenge_method`; `None` when the request uses no PKCE.
pub fn challenge(
    code_challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, PkceError> {
    match (code_challenge, method) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(PkceError::MethodWithoutChallenge),
        (Some(_), None | Some("plain")) => Err(PkceError::PlainNotSupported),
        (Some(_), Some(method)) if method != S256 => Err(PkceError::UnknownMethod),
        (Some(challenge), Some(_)) => {
            let well_formed = challenge.len() == CHALLENGE_LEN
                && challenge
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && Base64UrlUnpadded::decode_vec(challenge).is_ok();
            if well_formed {
                Ok(Some(challenge.to_owned()))
            } else {
                Err(PkceError::MalformedChallenge)
            }
        }
    }
}

/// Whether `verifier` has the form RFC 7636 §4.1 requires: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn is_verifier(verifier: &str) -> bool {
    VERIFIER_LEN.contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The `S256` challenge of a verifier: `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is well formed and matches `challenge` (compared in constant time).
pub fn verify(verifier: &str, challenge: &str) -> bool {
    is_verifier(verifier) && bool::from(s256(verifier).as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_example() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
        assert!(verify(VERIFIER, CHALLENGE));
        assert!(!verify(
            VERIFIER,
            &s256("another-verifier-another-verifier-another-v")
        ));
    }

    #[test]
    fn challenge_parameters() {
        assert_eq!(challenge(None, None), Ok(None));
        assert_eq!(
            challenge(Some(CHALLENGE), Some("S256")),
            Ok(Some(CHALLENGE.to_owned()))
        );
        assert_eq!(
            challenge(Some(CHALLENGE), Some("plain")),
            Err(PkceError::PlainNotSupported)
        );
        assert_eq!(
            challenge(Some(CHALLENGE), None),
            Err(PkceError::PlainNotSupported)
        );
        assert_eq!(
            challenge(Some(CHALLENGE), Some("s256")),
            Err(PkceError::UnknownMethod)
        );
        assert_eq!(
            challenge(None, Some("S256")),
            Err(PkceError::MethodWithoutChallenge)
        );
        for bad in [
            "",
            "short",
            &CHALLENGE[1..],
            &format!("{CHALLENGE}A"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw=cM",
        ] {
            assert_eq!(
                challenge(Some(bad), Some("S256")),
                Err(PkceError::MalformedChallenge),
                "{bad}"
            );
        }
    }

    #[test]
    fn verifier_form() {
        assert!(is_verifier(VERIFIER));
        assert!(is_verifier(&"a".repeat(43)));
        assert!(is_verifier(&"~._-".repeat(32)));
        assert!(!is_verifier(&"a".repeat(42)));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier(&format!("{}+", "a".repeat(43))));
        assert!(!is_verifier(&format!("{} ", "a".repeat(43))));
        assert!(!is_verifier(&format!("{}\u{e9}", "a".repeat(43))));
        // A verifier of the wrong form never matches, even its own hash.
        let short = "a".repeat(42);
        assert!(!verify(&short, &s256(&short)));
    }
}
