//! A per-worker cache of what a token's signature check concluded, so a token seen again costs one hash lookup
//! instead of a signature verification (≈ 0.1–1 ms in wasm, depending on the algorithm).
//!
//! Only the time-independent verdict is cached: signature, key/issuer binding, claim syntax, and the identity
//! header values rendered from the claims. `exp`/`nbf`, revocation, audience and scopes are checked on every
//! request. The cache empties itself whenever the key set version changes, so a retired key never keeps a token
//! alive. Failed signatures are cached too: a flood that repeats invalid tokens costs no signature work after the
//! first of each.
//!
//! A lookup is on the hot path of every request, so it reads as little of the token as it can: the key is a
//! seeded 64-bit hash of the token's length and its last 32 bytes (the end of the signature, which differs between
//! any two tokens an issuer signs), and the stored token is compared eight bytes at a time (in wasm, SipHash of the
//! whole token and a byte-wise `memcmp` cost about forty instructions per token byte). A lookup whose token differs
//! from the stored one is a miss, never a hit, so a collision, chosen or not, costs at most a verification and
//! evicts one entry, which filling the cache does anyway.

use crate::claims::AccessClaims;
use crate::error::CredentialError;
use crate::verdict::Principal;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::rc::Rc;

/// A token whose signature verified and whose claims are well formed, with what a request needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessClaims,
    /// Who it is from, with the identity header values rendered once.
    pub principal: Rc<Principal>,
}

impl VerifiedToken {
    /// Wraps verified `claims`.
    pub fn new(claims: AccessClaims) -> Self {
        let principal = Rc::new(Principal::of_token(&claims));
        Self { claims, principal }
    }
}

/// The cached outcome of verifying one token string against one key set version.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// The signature verified and the claims are well formed.
    Valid(Rc<VerifiedToken>),
    /// It can never verify against this key set.
    Invalid(CredentialError),
}

/// A bounded map from token string to verdict. Not shared between threads: each Envoy worker VM has its own.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    /// Seeds the token hash (from the standard library's per-process random keys).
    seed: u64,
    inner: RefCell<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    key_set_version: u64,
    entries: HashMap<u64, (Box<str>, Cached), BuildHasherDefault<PrehashedKey>>,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seed: RandomState::new().hash_one(capacity),
            inner: RefCell::new(Inner::default()),
        }
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, token: &str, key_set_version: u64) -> Option<Cached> {
        let mut inner = self.inner.borrow_mut();
        if inner.key_set_version != key_set_version {
            inner.entries.clear();
            inner.key_set_version = key_set_version;
            return None;
        }
        let (stored, verdict) = inner.entries.get(&token_key(self.seed, token))?;
        same_bytes(stored.as_bytes(), token.as_bytes()).then(|| verdict.clone())
    }

    pub(crate) fn insert(&self, token: &str, key_set_version: u64, verdict: Cached) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        if inner.key_set_version != key_set_version {
            inner.entries.clear();
            inner.key_set_version = key_set_version;
        }
        // Whole-map eviction keeps the hot path free of bookkeeping; a full cache refills within one burst.
        if inner.entries.len() >= self.capacity {
            inner.entries.clear();
        }
        let key = token_key(self.seed, token);
        inner.entries.insert(key, (token.into(), verdict));
    }
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// How much of a token's end the map key covers.
const KEY_TAIL: usize = 32;

/// The map key of `token`: [`token_hash`] of its last [`KEY_TAIL`] bytes, seeded with its length.
fn token_key(seed: u64, token: &str) -> u64 {
    let bytes = token.as_bytes();
    let tail = bytes
        .get(bytes.len().saturating_sub(KEY_TAIL)..)
        .unwrap_or(bytes);
    let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    token_hash(seed ^ length.rotate_left(32), tail)
}

/// A seeded 64-bit hash of `bytes`, eight bytes per step, with a final avalanche so that every bit of the result
/// depends on every input bit (the map uses both the high bits and the low ones).
fn token_hash(seed: u64, bytes: &[u8]) -> u64 {
    let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut hash = seed ^ length.wrapping_mul(MULTIPLIER);
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        hash = (hash ^ le_word(word))
            .wrapping_mul(MULTIPLIER)
            .rotate_left(31);
    }
    let mut tail = [0u8; 8];
    for (slot, byte) in tail.iter_mut().zip(words.remainder()) {
        *slot = *byte;
    }
    hash = (hash ^ u64::from_le_bytes(tail)).wrapping_mul(MULTIPLIER);
    // The finaliser of MurmurHash3's 64-bit variant.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    hash ^ (hash >> 33)
}

/// `a == b`, eight bytes per step.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    wa.by_ref()
        .zip(wb.by_ref())
        .all(|(x, y)| le_word(x) == le_word(y))
        && wa.remainder() == wb.remainder()
}

/// An eight-byte chunk as a word (`chunks_exact(8)` only yields eight-byte chunks).
fn le_word(chunk: &[u8]) -> u64 {
    <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes)
}

/// The map's hasher: its keys are already [`token_key`]s.
#[derive(Debug, Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in rather than ignore it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_compare_and_hash_see_every_byte() {
        let token = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
        for len in 0..token.len() {
            let a = &token[..len];
            assert!(same_bytes(a, a));
            for i in 0..len {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(a, &b), "len {len}, byte {i}");
                assert_ne!(token_hash(7, a), token_hash(7, &b), "len {len}, byte {i}");
            }
            assert!(!same_bytes(a, &token[..len + 1]));
        }
        assert_ne!(token_hash(1, token), token_hash(2, token));
        // A shorter token padded with zero bytes is another token.
        assert_ne!(token_hash(7, b"abc"), token_hash(7, b"abc\0"));
    }

    #[test]
    fn a_hit_needs_the_same_token_and_key_set_version() {
        let cache = TokenCache::new(8);
        cache.insert("a.b.c", 1, Cached::Invalid(CredentialError::BadSignature));
        assert!(matches!(cache.get("a.b.c", 1), Some(Cached::Invalid(_))));
        assert!(cache.get("a.b.d", 1).is_none());
        assert!(cache.get("a.b.c", 2).is_none(), "a new key set empties it");
        assert!(cache.is_empty());
        // Two tokens forced onto one hash: the stored token decides, the other one is a miss.
        let mut inner = cache.inner.borrow_mut();
        inner.key_set_version = 3;
        let forged = token_key(cache.seed, "x.y.z");
        inner.entries.insert(
            forged,
            ("other".into(), Cached::Invalid(CredentialError::Expired)),
        );
        drop(inner);
        assert!(cache.get("x.y.z", 3).is_none());
    }

    #[test]
    fn tokens_sharing_their_end_share_a_key_but_never_a_verdict() {
        let cache = TokenCache::new(8);
        let sig = "s".repeat(KEY_TAIL);
        let (mine, forged) = (format!("h.mine.{sig}"), format!("h.evil.{sig}"));
        assert_eq!(token_key(cache.seed, &mine), token_key(cache.seed, &forged));
        assert_ne!(
            token_key(cache.seed, &mine),
            token_key(cache.seed, &format!("h.mine.{sig}x"))
        );
        cache.insert(&mine, 1, Cached::Invalid(CredentialError::Expired));
        assert!(cache.get(&forged, 1).is_none(), "a shared key is not a hit");
        assert!(matches!(
            cache.get(&mine, 1),
            Some(Cached::Invalid(CredentialError::Expired))
        ));
    }

    #[test]
    fn a_full_cache_starts_over_and_zero_capacity_caches_nothing() {
        let cache = TokenCache::new(2);
        for token in ["t1", "t2", "t3"] {
            cache.insert(token, 1, Cached::Invalid(CredentialError::BadSignature));
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.get("t3", 1).is_some());
        let off = TokenCache::new(0);
        off.insert("t1", 1, Cached::Invalid(CredentialError::BadSignature));
        assert!(off.is_empty());
    }
}
