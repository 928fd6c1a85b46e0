//! API keys in shared data: a few thousand buckets, each one value holding the keys whose hash starts with its
//! prefix as a packed binary array.
//!
//! Envoy's shared data costs about 200 bytes per entry on top of the key and the value, so one entry per API key
//! would cost more than the keys themselves. A bucket holds about `keys / 4096` keys: a lookup reads one value of
//! a few hundred bytes to a few KiB, and a revocation rewrites one bucket.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! format: u8 = 1 | generation: u64 | count: u32 | count × entry (52 B, sorted by hash) | strings
//! entry:  hash [32] | rights: u32 | expires_at: i64 (i64::MAX = never) | strings_at: u32 | id_len: u16 | owner_len: u16
//! ```
//!
//! `strings_at` is the offset of the key's id, followed by its owner, in the strings area. `rights` indexes the
//! append-only rights table ([`crate::delivery::rights`]). `generation` is the bundle version that last wrote the
//! bucket: a bucket written below the delivery record's floor is dead (a full resync raised the floor over it).
//!
//! Bytes that do not decode (damaged, or written by something else) are an empty bucket: every key in it is
//! unknown, and nothing panics.

use base64ct::{Base64UrlUnpadded, Encoding};
use std::cmp::Ordering;

/// How many buckets the key space is split into: the first [`BUCKET_BITS`] bits of a key's hash name its bucket.
pub const BUCKETS: u16 = 1 << BUCKET_BITS;
/// Bits of the hash that select a bucket.
pub const BUCKET_BITS: u32 = 12;

const FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 4;
const ENTRY_LEN: usize = 32 + 4 + 8 + 4 + 2 + 2;
/// `expires_at` of a key that never expires.
const NEVER: i64 = i64::MAX;

/// The SHA-256 of an API key (see [`crate::apikey::hash_key`]), as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Decodes the unpadded base64url form used on the wire; `None` for anything else (such a hash can never be
    /// the hash of a presented key, so it names no key).
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        let decoded = Base64UrlUnpadded::decode(text, &mut bytes).ok()?;
        (decoded.len() == 32).then_some(Self(bytes))
    }

    /// The bucket this hash lives in.
    pub fn bucket(&self) -> u16 {
        let [first, second, ..] = self.0;
        u16::from_be_bytes([first, second]) >> (16 - BUCKET_BITS)
    }
}

/// One key as a bucket stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    /// The key's hash.
    pub hash: KeyHash,
    /// Index into the rights table.
    pub rights: u32,
    /// Expiry, seconds since the epoch; `None` never.
    pub expires_at: Option<i64>,
    /// Public key id (`ak_…`).
    pub id: String,
    /// The subject the key acts for.
    pub owner: String,
}

/// Why an entry cannot go into a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryTooLarge {
    /// The id or owner is longer than 65 535 bytes, or the bucket's strings would pass 4 GiB.
    Strings,
}

/// A decoded bucket: its generation and its keys, sorted by hash, one per hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// The bundle version that last wrote it.
    pub generation: u64,
    /// The keys, sorted by hash.
    pub entries: Vec<BucketEntry>,
}

impl Bucket {
    /// Decodes stored bytes; `None` if they are not a bucket of this format (treated as empty by callers).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let view = BucketView::new(bytes)?;
        let mut entries = Vec::with_capacity(view.count);
        for index in 0..view.count {
            entries.push(view.entry(index)?);
        }
        Some(Self {
            generation: view.generation,
            entries,
        })
    }

    /// Puts `entry` in, replacing the entry with the same hash.
    pub fn put(&mut self, entry: BucketEntry) {
        match self
            .entries
            .binary_search_by(|held| held.hash.cmp(&entry.hash))
        {
            Ok(at) => {
                if let Some(slot) = self.entries.get_mut(at) {
                    *slot = entry;
                }
            }
            Err(at) => self.entries.insert(at, entry),
        }
    }

    /// Removes the entry with this hash; whether there was one.
    pub fn remove(&mut self, hash: &KeyHash) -> bool {
        match self.entries.binary_search_by(|held| held.hash.cmp(hash)) {
            Ok(at) => {
                self.entries.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, EntryTooLarge> {
        let strings_len: usize = self
            .entries
            .iter()
            .map(|entry| entry.id.len().saturating_add(entry.owner.len()))
            .fold(0, usize::saturating_add);
        let count = u32::try_from(self.entries.len()).map_err(|_| EntryTooLarge::Strings)?;
        let mut out = Vec::with_capacity(
            HEADER_LEN
                .saturating_add(self.entries.len().saturating_mul(ENTRY_LEN))
                .saturating_add(strings_len),
        );
        out.push(FORMAT);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        let mut strings_at: u32 = 0;
        for entry in &self.entries {
            let id_len = u16::try_from(entry.id.len()).map_err(|_| EntryTooLarge::Strings)?;
            let owner_len = u16::try_from(entry.owner.len()).map_err(|_| EntryTooLarge::Strings)?;
            out.extend_from_slice(&entry.hash.0);
            out.extend_from_slice(&entry.rights.to_le_bytes());
            out.extend_from_slice(&entry.expires_at.unwrap_or(NEVER).to_le_bytes());
            out.extend_from_slice(&strings_at.to_le_bytes());
            out.extend_from_slice(&id_len.to_le_bytes());
            out.extend_from_slice(&owner_len.to_le_bytes());
            strings_at = strings_at
                .checked_add(u32::from(id_len))
                .and_then(|at| at.checked_add(u32::from(owner_len)))
                .ok_or(EntryTooLarge::Strings)?;
        }
        for entry in &self.entries {
            out.extend_from_slice(entry.id.as_bytes());
            out.extend_from_slice(entry.owner.as_bytes());
        }
        Ok(out)
    }
}

/// A stored bucket read in place: the request path finds one key without decoding the others.
#[derive(Debug, Clone, Copy)]
pub struct BucketView<'a> {
    /// The bundle version that last wrote the bucket.
    pub generation: u64,
    count: usize,
    entries: &'a [u8],
    strings: &'a [u8],
}

impl<'a> BucketView<'a> {
    /// Checks the header and the sizes; `None` if `bytes` is not a bucket of this format.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != FORMAT {
            return None;
        }
        let (generation, rest) = take_array::<8>(rest)?;
        let (count, rest) = take_array::<4>(rest)?;
        let count = usize::try_from(u32::from_le_bytes(count)).ok()?;
        let entries_len = count.checked_mul(ENTRY_LEN)?;
        let entries = rest.get(..entries_len)?;
        let strings = rest.get(entries_len..)?;
        Some(Self {
            generation: u64::from_le_bytes(generation),
            count,
            entries,
            strings,
        })
    }

    /// How many keys the bucket holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the bucket holds no key.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entry for `hash`, if the bucket holds it (binary search; a damaged entry reads as absent).
    pub fn find(&self, hash: &KeyHash) -> Option<BucketEntry> {
        let (mut low, mut high) = (0usize, self.count);
        while low < high {
            // low < high, so neither the sum's half nor the subtraction can overflow.
            let mid = low.checked_add(high.checked_sub(low)? / 2)?;
            let raw = self.raw(mid)?;
            match raw.get(..32)?.cmp(hash.0.as_slice()) {
                Ordering::Less => low = mid.checked_add(1)?,
                Ordering::Greater => high = mid,
                Ordering::Equal => return self.entry(mid),
            }
        }
        None
    }

    fn raw(&self, index: usize) -> Option<&'a [u8]> {
        let start = index.checked_mul(ENTRY_LEN)?;
        self.entries.get(start..start.checked_add(ENTRY_LEN)?)
    }

    fn entry(&self, index: usize) -> Option<BucketEntry> {
        let raw = self.raw(index)?;
        let (hash, rest) = take_array::<32>(raw)?;
        let (rights, rest) = take_array::<4>(rest)?;
        let (expires_at, rest) = take_array::<8>(rest)?;
        let (strings_at, rest) = take_array::<4>(rest)?;
        let (id_len, rest) = take_array::<2>(rest)?;
        let (owner_len, _) = take_array::<2>(rest)?;
        let start = usize::try_from(u32::from_le_bytes(strings_at)).ok()?;
        let id_end = start.checked_add(usize::from(u16::from_le_bytes(id_len)))?;
        let owner_end = id_end.checked_add(usize::from(u16::from_le_bytes(owner_len)))?;
        let id = std::str::from_utf8(self.strings.get(start..id_end)?).ok()?;
        let owner = std::str::from_utf8(self.strings.get(id_end..owner_end)?).ok()?;
        let expires_at = i64::from_le_bytes(expires_at);
        Some(BucketEntry {
            hash: KeyHash(hash),
            rights: u32::from_le_bytes(rights),
            expires_at: (expires_at != NEVER).then_some(expires_at),
            id: id.to_owned(),
            owner: owner.to_owned(),
        })
    }
}

/// The first `N` bytes of `bytes` as an array, and the rest.
fn take_array<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
    let head = bytes.get(..N)?;
    let rest = bytes.get(N..)?;
    Some((head.try_into().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(first: u8, second: u8, last: u8) -> KeyHash {
        let mut bytes = [0u8; 32];
        bytes[0] = first;
        bytes[1] = second;
        bytes[31] = last;
        KeyHash(bytes)
    }

    fn entry(hash: KeyHash, id: &str) -> BucketEntry {
        BucketEntry {
            hash,
            rights: 3,
            expires_at: Some(1_900_000_000),
            id: id.into(),
            owner: format!("owner of {id}"),
        }
    }

    #[test]
    fn the_first_twelve_bits_of_the_hash_name_the_bucket() {
        assert_eq!(hash(0, 0, 9).bucket(), 0);
        assert_eq!(hash(0x12, 0x3f, 0).bucket(), 0x123);
        assert_eq!(hash(0xff, 0xff, 0).bucket(), BUCKETS - 1);
        let wire = crate::apikey::hash_key("km_example");
        let parsed = KeyHash::parse(&wire).unwrap();
        assert_eq!(Base64UrlUnpadded::encode_string(&parsed.0), wire);
        for bad in ["", "k1", &wire[1..], &format!("{wire}A"), "!!!"] {
            assert_eq!(KeyHash::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn colliding_keys_share_a_bucket_and_are_found_apart() {
        // Same first 12 bits, different hashes.
        let (a, b, c) = (
            hash(0xab, 0xc0, 1),
            hash(0xab, 0xcf, 2),
            hash(0xab, 0xc5, 3),
        );
        assert_eq!(a.bucket(), b.bucket());
        assert_eq!(b.bucket(), c.bucket());
        let mut bucket = Bucket {
            generation: 7,
            entries: vec![],
        };
        for (h, id) in [(b, "ak_b"), (a, "ak_a"), (c, "ak_c")] {
            bucket.put(entry(h, id));
        }
        bucket.put(BucketEntry {
            expires_at: None,
            ..entry(a, "ak_a2")
        });
        let bytes = bucket.encode().unwrap();
        assert_eq!(Bucket::decode(&bytes).unwrap(), bucket);
        let view = BucketView::new(&bytes).unwrap();
        assert_eq!((view.generation, view.len()), (7, 3));
        assert_eq!(view.find(&a).unwrap().id, "ak_a2");
        assert_eq!(view.find(&a).unwrap().expires_at, None);
        assert_eq!(view.find(&b).unwrap().owner, "owner of ak_b");
        assert_eq!(view.find(&c).unwrap().expires_at, Some(1_900_000_000));
        assert_eq!(view.find(&hash(0xab, 0xc1, 1)), None);
        assert!(bucket.remove(&b));
        assert!(!bucket.remove(&b));
        let view_bytes = bucket.encode().unwrap();
        assert_eq!(BucketView::new(&view_bytes).unwrap().find(&b), None);
    }

    #[test]
    fn a_revoked_key_in_a_full_bucket_is_gone_and_its_neighbours_stay() {
        let mut bucket = Bucket::default();
        let hashes: Vec<KeyHash> = (0..=255u8).map(|i| hash(0x42, 0x00, i)).collect();
        for (i, h) in hashes.iter().enumerate() {
            bucket.put(entry(*h, &format!("ak_{i}")));
        }
        let revoked = hashes[128];
        assert!(bucket.remove(&revoked));
        let bytes = bucket.encode().unwrap();
        let view = BucketView::new(&bytes).unwrap();
        assert_eq!(view.len(), 255);
        assert_eq!(view.find(&revoked), None);
        for (i, h) in hashes.iter().enumerate().filter(|(i, _)| *i != 128) {
            assert_eq!(view.find(h).unwrap().id, format!("ak_{i}"));
        }
    }

    #[test]
    fn damaged_bytes_are_no_bucket_or_an_unknown_key_never_a_panic() {
        let mut bucket = Bucket {
            generation: 1,
            entries: vec![],
        };
        let (a, b) = (hash(1, 0, 1), hash(1, 0, 2));
        bucket.put(entry(a, "ak_a"));
        bucket.put(entry(b, "ak_b"));
        let good = bucket.encode().unwrap();
        for bad in [
            &b""[..],
            &[2u8][..],
            &good[..HEADER_LEN - 1],
            &good[..HEADER_LEN + 10],
        ] {
            assert!(BucketView::new(bad).is_none(), "{bad:?}");
            assert!(Bucket::decode(bad).is_none());
        }
        // A count far past the bytes there.
        let mut huge = good.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(BucketView::new(&huge).is_none());
        // Strings cut short or not UTF-8: the entry reads as absent, the bucket does not decode.
        let cut = &good[..good.len() - 3];
        let view = BucketView::new(cut).unwrap();
        assert!(view.find(&a).is_some());
        assert_eq!(view.find(&b), None);
        assert!(Bucket::decode(cut).is_none());
        let mut not_utf8 = good.clone();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert_eq!(BucketView::new(&not_utf8).unwrap().find(&b), None);
        // Offsets pointing anywhere.
        let mut wild = good.clone();
        wild[HEADER_LEN + 44..HEADER_LEN + 48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(BucketView::new(&wild).unwrap().find(&a), None);
        // Every truncation and every single-byte change of a good bucket: no panic.
        for len in 0..good.len() {
            let _ = Bucket::decode(&good[..len]);
            let _ = BucketView::new(&good[..len]).map(|view| view.find(&a));
        }
        for at in 0..good.len() {
            let mut flipped = good.clone();
            flipped[at] ^= 0x5a;
            let _ = Bucket::decode(&flipped);
            let _ = BucketView::new(&flipped).map(|view| (view.find(&a), view.find(&b)));
        }
    }

    #[test]
    fn an_id_or_owner_too_long_for_the_entry_is_refused() {
        let mut bucket = Bucket::default();
        bucket.put(BucketEntry {
            owner: "o".repeat(70_000),
            ..entry(hash(0, 0, 0), "ak_x")
        });
        assert_eq!(bucket.encode(), Err(EntryTooLarge::Strings));
    }
}
