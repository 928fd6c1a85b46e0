//! The Envoy-wide token cache and exchange lease, in shared data.
//!
//! Every worker of an Envoy sees one cache: a token obtained by one worker serves the requests of all. Entries are
//! keyed by the SHA-256 of (mode, subject token, audience, scopes), so the cache never holds a subject token, and
//! a token is reused only for the same user, destination and scopes. Getting a token is guarded by a lease per key
//! (compare-and-swap on a shared-data entry): concurrent requests needing the same token cause one token request
//! per Envoy; the others wait for the entry to appear. A lease expires, so a worker that dies while holding one
//! only delays the next attempt.
//!
//! Shared data cannot delete: an entry that is no longer useful is overwritten with an empty value.

use crate::delivery::shared_data::SharedData;
use crate::egress::config::{Destination, EgressConfig, Mode};
use crate::egress::exchange::{Answer, Refusal, INVALID_SUBJECT_MEMORY_MS, UNAVAILABLE_MEMORY_MS};
use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

const PREFIX: &str = "keymesh_egress";
/// Attempts at taking an owner id before settling for the shared id 0.
const OWNER_ID_ATTEMPTS: usize = 64;

/// The cache key of one (mode, subject, audience, scopes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key for `destination`'s token on behalf of `subject` (`None` for the workload's own token).
    pub fn new(destination: &Destination, subject: Option<&str>) -> Self {
        let mut hasher = Sha256::new();
        let mode: &[u8] = match destination.mode {
            Mode::Exchange => b"exchange",
            Mode::ClientCredentials => b"client_credentials",
        };
        hasher.update(mode);
        hasher.update([0]);
        hasher.update(Sha256::digest(subject.unwrap_or_default().as_bytes()));
        hasher.update(destination.audience.as_bytes());
        for scope in &destination.scopes {
            hasher.update([0]);
            hasher.update(scope.as_bytes());
        }
        Self(Base64UrlUnpadded::encode_string(&hasher.finalize()))
    }

    /// The hash naming the key's entries in shared data (`keymesh_egress.token.{id}`, `keymesh_egress.lease.{id}`).
    pub fn id(&self) -> &str {
        &self.0
    }

    fn token_key(&self) -> String {
        format!("{PREFIX}.token.{}", self.0)
    }

    fn lease_key(&self) -> String {
        format!("{PREFIX}.lease.{}", self.0)
    }
}

/// What the cache holds for a key at some instant. No `Debug`: it holds a token.
#[derive(Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A token to use.
    Fresh(String),
    /// A token to use, whose renewal is due: start it if no one has.
    Renew(String),
    /// A remembered refusal.
    Refused(Refusal),
    /// Nothing usable: get a token.
    Miss,
}

/// What is stored for a key. No `Debug`: it holds a token.
#[derive(Clone, PartialEq, Eq)]
pub enum CachedAnswer {
    /// A token and its expiry (ms).
    Token {
        /// The token.
        token: String,
        /// Its `exp` (ms since the epoch).
        exp_ms: u64,
    },
    /// A refusal, remembered until `until_ms`.
    Refused {
        /// The refusal.
        refusal: Refusal,
        /// Until when.
        until_ms: u64,
    },
}

impl CachedAnswer {
    fn encode(&self) -> String {
        match self {
            Self::Token { token, exp_ms } => format!("t {exp_ms} {token}"),
            Self::Refused { refusal, until_ms } => format!("r {until_ms} {}", refusal.code()),
        }
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ' ');
        let kind = parts.next()?;
        let when: u64 = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        match kind {
            "t" if !rest.is_empty() => Some(Self::Token {
                token: rest.to_owned(),
                exp_ms: when,
            }),
            "r" => Some(Self::Refused {
                refusal: Refusal::from_code(rest.chars().next()?)?,
                until_ms: when,
            }),
            _ => None,
        }
    }

    /// What to store for `answer` at `now_ms`.
    pub fn of(answer: Answer, now_ms: u64) -> Self {
        match answer {
            Answer::Token { token, exp_ms } => Self::Token { token, exp_ms },
            Answer::Refused(refusal) => Self::Refused {
                refusal,
                until_ms: now_ms.saturating_add(match refusal {
                    Refusal::InvalidSubject => INVALID_SUBJECT_MEMORY_MS,
                    Refusal::Unavailable => UNAVAILABLE_MEMORY_MS,
                }),
            },
        }
    }
}

/// The token cache of one plugin configuration, over `S` (Envoy shared data in the filter).
#[derive(Debug, Clone)]
pub struct TokenCache<S> {
    shared: S,
    expiry_margin_ms: u64,
    renew_before_ms: u64,
    lease_ms: u64,
}

impl<S: SharedData> TokenCache<S> {
    /// A cache with `config`'s margins over `shared`.
    pub fn new(shared: S, config: &EgressConfig) -> Self {
        Self {
            shared,
            expiry_margin_ms: config.expiry_margin_ms,
            renew_before_ms: config.renew_before_ms,
            lease_ms: config.lease_ms,
        }
    }

    /// A number unique to this worker's root among the workers of this Envoy, to hold leases under.
    pub fn register_owner(&self) -> u64 {
        let key = format!("{PREFIX}.owners");
        for _ in 0..OWNER_ID_ATTEMPTS {
            let current = self.shared.get(&key);
            let cas = current.as_ref().map(|v| v.cas);
            let last = current
                .and_then(|v| std::str::from_utf8(&v.bytes).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            let next = last.saturating_add(1);
            if self
                .shared
                .set(&key, next.to_string().as_bytes(), cas)
                .is_ok()
            {
                return next;
            }
        }
        0
    }

    /// What the cache offers for `key` at `now_ms`.
    pub fn lookup(&self, key: &CacheKey, now_ms: u64) -> Lookup {
        let stored = self
            .shared
            .get(&key.token_key())
            .and_then(|value| CachedAnswer::parse(&value.bytes));
        match stored {
            Some(CachedAnswer::Token { token, exp_ms }) => {
                if now_ms >= exp_ms.saturating_sub(self.expiry_margin_ms) {
                    Lookup::Miss
                } else if now_ms >= exp_ms.saturating_sub(self.renew_before_ms) {
                    Lookup::Renew(token)
                } else {
                    Lookup::Fresh(token)
                }
            }
            Some(CachedAnswer::Refused { refusal, until_ms }) if now_ms < until_ms => {
                Lookup::Refused(refusal)
            }
            _ => Lookup::Miss,
        }
    }

    /// Takes the lease to get `key`'s token, unless another owner holds it at `now_ms`.
    pub fn try_lease(&self, key: &CacheKey, owner: u64, now_ms: u64) -> bool {
        let lease_key = key.lease_key();
        let current = self.shared.get(&lease_key);
        let cas = current.as_ref().map(|v| v.cas);
        let held = current.and_then(|v| {
            let text = String::from_utf8(v.bytes).ok()?;
            let (until, holder) = text.split_once(' ')?;
            Some((until.parse::<u64>().ok()?, holder.parse::<u64>().ok()?))
        });
        if held.is_some_and(|(until, holder)| until > now_ms && holder != owner) {
            return false;
        }
        let until = now_ms.saturating_add(self.lease_ms);
        self.shared
            .set(&lease_key, format!("{until} {owner}").as_bytes(), cas)
            .is_ok()
    }

    /// Stores what the token request for `key` came to and gives up the lease.
    pub fn store(&self, key: &CacheKey, answer: &CachedAnswer, owner: u64) {
        // A failed write only means the next request asks again.
        let _ = self
            .shared
            .set(&key.token_key(), answer.encode().as_bytes(), None);
        self.release(key, owner);
    }

    /// Gives up the lease on `key`, if `owner` holds it.
    pub fn release(&self, key: &CacheKey, owner: u64) {
        let lease_key = key.lease_key();
        if let Some(current) = self.shared.get(&lease_key) {
            let holder = std::str::from_utf8(&current.bytes)
                .ok()
                .and_then(|t| t.split_once(' '))
                .and_then(|(_, h)| h.parse::<u64>().ok());
            if holder == Some(owner) {
                let _ = self.shared.set(
                    &lease_key,
                    format!("0 {owner}").as_bytes(),
                    Some(current.cas),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::InMemorySharedData;

    fn config() -> EgressConfig {
        EgressConfig::parse(
            br#"{"sidecar":{"cluster":"k"},"client_id":"o","client_secret":"s","expiry_margin_secs":10,
            "renew_before_secs":60,"lease_ms":1000,
            "destinations":[{"authority":"p","audience":"urn:p","scopes":["r"],"mode":"exchange"},
            {"authority":"q","audience":"urn:q","scopes":["r"],"mode":"exchange"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn keys_separate_subjects_audiences_scopes_and_modes() {
        let config = config();
        let p = &config.destinations[0];
        let a = CacheKey::new(p, Some("alice-token"));
        assert_eq!(a, CacheKey::new(p, Some("alice-token")));
        assert_ne!(a, CacheKey::new(p, Some("bob-token")));
        assert_ne!(
            a,
            CacheKey::new(&config.destinations[1], Some("alice-token"))
        );
        let mut wider = p.clone();
        wider.scopes.push("w".into());
        assert_ne!(a, CacheKey::new(&wider, Some("alice-token")));
        let mut own = p.clone();
        own.mode = Mode::ClientCredentials;
        assert_ne!(CacheKey::new(p, None), CacheKey::new(&own, None));
        assert!(!a.token_key().contains("alice"));
    }

    #[test]
    fn tokens_are_fresh_then_due_for_renewal_then_gone() {
        let cache = TokenCache::new(InMemorySharedData::new(), &config());
        let key = CacheKey::new(&config().destinations[0], Some("t"));
        assert!(cache.lookup(&key, 0) == Lookup::Miss);
        let answer = CachedAnswer::Token {
            token: "x.y.z".into(),
            exp_ms: 100_000,
        };
        cache.store(&key, &answer, 1);
        assert!(cache.lookup(&key, 39_999) == Lookup::Fresh("x.y.z".into()));
        assert!(cache.lookup(&key, 40_000) == Lookup::Renew("x.y.z".into()));
        assert!(cache.lookup(&key, 89_999) == Lookup::Renew("x.y.z".into()));
        assert!(cache.lookup(&key, 90_000) == Lookup::Miss);
    }

    #[test]
    fn refusals_are_remembered_briefly() {
        let cache = TokenCache::new(InMemorySharedData::new(), &config());
        let key = CacheKey::new(&config().destinations[0], Some("t"));
        let refused = CachedAnswer::of(Answer::Refused(Refusal::InvalidSubject), 1_000);
        cache.store(&key, &refused, 1);
        assert!(cache.lookup(&key, 5_999) == Lookup::Refused(Refusal::InvalidSubject));
        assert!(cache.lookup(&key, 6_000) == Lookup::Miss);
    }

    #[test]
    fn one_owner_holds_a_lease_until_it_stores_or_the_lease_expires() {
        let shared = InMemorySharedData::new();
        let config = config();
        let one = TokenCache::new(shared.clone(), &config);
        let two = TokenCache::new(shared, &config);
        let (a, b) = (one.register_owner(), two.register_owner());
        assert_ne!(a, b);
        let key = CacheKey::new(&config.destinations[0], Some("t"));
        assert!(one.try_lease(&key, a, 0));
        assert!(!two.try_lease(&key, b, 500));
        assert!(two.try_lease(&key, b, 1_000), "the lease expired");
        assert!(!one.try_lease(&key, a, 1_001));
        two.store(
            &key,
            &CachedAnswer::Token {
                token: "x".into(),
                exp_ms: 999_999,
            },
            b,
        );
        assert!(one.try_lease(&key, a, 1_002), "released on store");
        two.release(&key, b);
        assert!(!two.try_lease(&key, b, 1_003), "only the holder releases");
    }

    #[test]
    fn damaged_entries_are_misses() {
        let shared = InMemorySharedData::new();
        let cache = TokenCache::new(shared.clone(), &config());
        let key = CacheKey::new(&config().destinations[0], Some("t"));
        for junk in [&b""[..], b"t", b"t x y", b"t 10 ", b"r 10 z", b"\xff"] {
            shared.set(&key.token_key(), junk, None).unwrap();
            assert!(cache.lookup(&key, 0) == Lookup::Miss);
        }
    }
}
