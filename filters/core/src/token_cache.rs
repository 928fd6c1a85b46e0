//! A per-worker cache of what a token's signature check concluded, so a token seen again costs one hash lookup
//! instead of a signature verification (≈ 0.1–1 ms in wasm, depending on the algorithm).
//!
//! Only the time-independent verdict is cached: signature, key/issuer binding, claim syntax, and the identity
//! header values rendered from the claims. `exp`/`nbf`, revocation, audience and scopes are checked on every
//! request. The cache empties itself whenever the key set version changes, so a retired key never keeps a token
//! alive. Failed signatures are cached too: a flood that repeats invalid tokens costs no signature work after the
//! first of each.
//!
//! A token is remembered by a 128-bit SipHash-1-3 of it under a 128-bit key drawn from the system's random source
//! when the cache is made, not by the token itself: a worker full of cached tokens holds 16 bytes per token instead
//! of the token (400–1000 bytes). A token that is not cached can only be taken for one that is by matching that
//! keyed hash, which needs the secret key; the hash is never shown, so an attacker's only oracle is whether a forged
//! token is let through, at one request per guess against a 2^128 space. With no random source the cache is off.
//! SipHash-1-3 (the standard library's keyed hash) rather than 2-4: every request hashes its whole token, and in
//! wasm the 1-3 rounds cost about half (≈ 4 instructions per token byte against ≈ 9).

use crate::claims::AccessClaims;
use crate::error::CredentialError;
use crate::verdict::Principal;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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

/// A bounded map from token to verdict. Not shared between threads: each Envoy worker VM has its own.
pub struct TokenCache {
    capacity: usize,
    hasher: SipHasher13,
    inner: RefCell<Inner>,
}

impl std::fmt::Debug for TokenCache {
    // Leaves out the hash key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A token's keyed hash: already uniformly distributed, so the map uses it as its own hash.
type TokenId = u128;

#[derive(Debug, Default)]
struct Inner {
    key_set_version: u64,
    entries: HashMap<TokenId, Cached, BuildHasherDefault<TokenIdHasher>>,
}

/// Hashes a [`TokenId`] by taking its low 64 bits: it is the output of a keyed hash.
#[derive(Debug, Default)]
struct TokenIdHasher(u64);

impl Hasher for TokenIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a map hashes something other than a `TokenId`: fold the bytes in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, id: u128) {
        // Truncation on purpose: the low half of a keyed hash.
        #[allow(clippy::cast_possible_truncation)]
        let low = id as u64;
        self.0 = low;
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens; 0 disables caching, and so does a system with no random source
    /// for the hash key.
    pub fn new(capacity: usize) -> Self {
        let mut key = [0u8; 16];
        let capacity = match getrandom::getrandom(&mut key) {
            Ok(()) => capacity,
            Err(_) => 0,
        };
        Self {
            capacity,
            hasher: SipHasher13::new_with_key(&key),
            inner: RefCell::new(Inner::default()),
        }
    }

    /// The most tokens it holds (0: caching is off).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn id(&self, token: &str) -> TokenId {
        let mut hasher = self.hasher;
        hasher.write(token.as_bytes());
        hasher.finish128().as_u128()
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
        inner.entries.get(&self.id(token)).cloned()
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
        let id = self.id(token);
        inner.entries.insert(id, verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid() -> Cached {
        Cached::Invalid(CredentialError::BadSignature)
    }

    fn is_cached(cache: &TokenCache, token: &str) -> bool {
        cache.get(token, 1).is_some()
    }

    #[test]
    fn a_token_altered_anywhere_is_not_taken_for_the_cached_one() {
        let cache = TokenCache::new(16);
        let token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
        cache.insert(token, 1, invalid());
        assert!(is_cached(&cache, token));
        for i in 0..token.len() {
            let mut altered = token.as_bytes().to_vec();
            altered[i] ^= 1;
            let altered = String::from_utf8(altered).unwrap();
            assert!(!is_cached(&cache, &altered), "byte {i}");
        }
        assert!(!is_cached(&cache, &token[..token.len() - 1]));
        assert!(!is_cached(&cache, &format!("{token}=")));
    }

    #[test]
    fn each_cache_draws_its_own_hash_key() {
        let (a, b) = (TokenCache::new(1), TokenCache::new(1));
        assert_ne!(a.id("same token"), b.id("same token"));
        assert_eq!(a.id("same token"), a.id("same token"));
        assert!(!format!("{a:?}").contains("hasher"));
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_forgets_on_a_new_key_set() {
        let cache = TokenCache::new(4);
        for i in 0..4 {
            cache.insert(&format!("token-{i}"), 1, invalid());
        }
        assert_eq!(cache.len(), 4);
        cache.insert("token-4", 1, invalid());
        assert_eq!(cache.len(), 1);
        assert!(is_cached(&cache, "token-4"));
        assert!(cache.get("token-4", 2).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_hit_needs_the_same_key_set_version() {
        let cache = TokenCache::new(8);
        cache.insert("a.b.c", 1, invalid());
        assert!(matches!(cache.get("a.b.c", 1), Some(Cached::Invalid(_))));
        assert!(cache.get("a.b.c", 2).is_none(), "a new key set empties it");
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = TokenCache::new(0);
        cache.insert("token", 1, invalid());
        assert!(cache.is_empty());
        assert_eq!(cache.capacity(), 0);
    }
}
