//! API keys: format, hashing and the checks a presented key goes through.
//!
//! A key is `km_` followed by 43 base64url characters (32 random bytes): the fixed prefix lets secret scanners
//! recognise a leaked keymesh key. Keys have 256 bits of entropy, so a fast unkeyed SHA-256 is a sound storage
//! hash (no dictionary to attack); Redis, the sidecar's memory and the filters only ever hold that hash.

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

/// The prefix every keymesh API key starts with.
pub const KEY_PREFIX: &str = "km_";
/// Length of a key: the prefix plus 43 base64url characters.
pub const KEY_LEN: usize = KEY_PREFIX.len() + 43;
/// The prefix of public key ids.
pub const ID_PREFIX: &str = "ak_";

/// Formats 32 random bytes as an API key.
pub fn format_key(secret: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", Base64UrlUnpadded::encode_string(secret))
}

/// True when `key` has the shape of a keymesh API key (prefix, length, alphabet).
pub fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| BASE64URL_CHAR.get(usize::from(b)) == Some(&true))
}

/// The base64url alphabet, as a table: every presented key goes through it, and in wasm a lookup costs a few
/// instructions where the chain of range tests cost about forty.
// Built at compile time: `b` runs over 0..256, so the index is in bounds, the increment cannot overflow and the
// cast is exact.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
static BASE64URL_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        #[allow(clippy::cast_possible_truncation)]
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// The storage and lookup hash of a key: unpadded base64url of SHA-256 over the whole key string.
pub fn hash_key(key: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(key.as_bytes()))
}

/// The part of a key safe to show in listings (`km_` and four more characters).
pub fn public_prefix(key: &str) -> String {
    key.chars()
        .take(KEY_PREFIX.len().saturating_add(4))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_keys_are_well_formed_and_hash_stably() {
        let key = format_key(&[42u8; 32]);
        assert_eq!(key.len(), KEY_LEN);
        assert!(is_well_formed(&key));
        assert_eq!(hash_key(&key), hash_key(&key.clone()));
        assert_ne!(hash_key(&key), hash_key(&format_key(&[43u8; 32])));
        assert_eq!(hash_key(&key).len(), 43);
        assert_eq!(public_prefix(&key), key[..7]);
    }

    #[test]
    fn malformed_keys_are_recognised() {
        let key = format_key(&[1u8; 32]);
        assert!(!is_well_formed(&key[..KEY_LEN - 1]));
        assert!(!is_well_formed(&format!("{key}A")));
        assert!(!is_well_formed(&key.replacen("km_", "kx_", 1)));
        assert!(!is_well_formed(&format!("km_{}", "+".repeat(43))));
        assert!(!is_well_formed(""));
        for b in 0..=255u8 {
            let base64url = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(BASE64URL_CHAR[usize::from(b)], base64url, "byte {b}");
        }
    }
}
