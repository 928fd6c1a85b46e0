//! The bearer token of the admin API: only its SHA-256 is kept in memory, and presented tokens are compared in
//! constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Tokens shorter than this are accepted but reported as weak (for example `openssl rand -hex 32` gives 64).
pub const STRONG_ADMIN_TOKEN_LEN: usize = 32;
/// Longest admin token accepted.
const MAX_ADMIN_TOKEN_LEN: usize = 512;

/// The configured admin token, as its SHA-256 digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
    weak: bool,
}

impl AdminToken {
    /// Accepts `token` if it is 1 to 512 visible ASCII characters (it travels in an HTTP header). The error never
    /// contains the token.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.is_empty() || token.len() > MAX_ADMIN_TOKEN_LEN {
            return Err(format!(
                "must be 1 to {MAX_ADMIN_TOKEN_LEN} characters long"
            ));
        }
        if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err("must be visible ASCII characters (no spaces)".to_owned());
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
            weak: token.len() < STRONG_ADMIN_TOKEN_LEN,
        })
    }

    /// Whether the token is shorter than [`STRONG_ADMIN_TOKEN_LEN`] characters (the server warns about it).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// Whether `presented` is the token. Takes the same time whatever the presented value, because both sides
    /// are fixed-size digests compared in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(presented.ct_eq(&self.digest))
    }
}

impl PartialEq for AdminToken {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.digest.ct_eq(&other.digest))
    }
}

impl Eq for AdminToken {}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn verifies_only_the_configured_token() {
        let token = AdminToken::new(TOKEN).unwrap();
        assert!(token.verify(TOKEN));
        assert!(!token.verify(&TOKEN[1..]));
        assert!(!token.verify(&format!("{TOKEN}x")));
        assert!(!token.verify(""));
        assert_eq!(token, AdminToken::new(TOKEN).unwrap());
    }

    #[test]
    fn weak_or_unusable_tokens_are_refused_without_echoing_them() {
        for bad in ["", &format!("{TOKEN} with space"), &"x".repeat(513)] {
            let error = AdminToken::new(bad).unwrap_err();
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
        assert!(AdminToken::new(&format!("{TOKEN}\u{e9}")).is_err());
        assert!(AdminToken::new("short").unwrap().is_weak());
        assert!(AdminToken::new(&TOKEN[1..]).unwrap().is_weak());
        assert!(!AdminToken::new(TOKEN).unwrap().is_weak());
    }

    #[test]
    fn debug_output_hides_the_digest() {
        let token = AdminToken::new(TOKEN).unwrap();
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    }
}
