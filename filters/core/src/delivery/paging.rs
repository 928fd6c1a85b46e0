//! How a full bundle is cut into pages: the order of the keys and where each page ends. The sidecar serves pages
//! cut this way; anything else that serves a paged bundle (the benchmark's static upstream) cuts it the same.
//!
//! Keys go in the order of their hashes' bytes — the order of the filter's buckets
//! ([`crate::delivery::bucket`]), so a bucket is rewritten at most once per page boundary — and a page holds at
//! most [`PAGE_BYTES`] of serialised keys (a single larger key makes a page of its own).

use serde::Serialize;
use std::cmp::Ordering;
use std::io;

/// Most bytes of API keys one page carries (the first page adds the issuers and the revoked tokens).
pub const PAGE_BYTES: usize = 256 * 1024;

/// Orders base64url hashes as the bytes they encode (their characters' ASCII order is not that order): strings
/// of equal length compare as their decoded bytes; any byte that is not base64url sorts after every one that is.
pub fn by_hash_bytes(a: &str, b: &str) -> Ordering {
    a.bytes().map(sextet).cmp(b.bytes().map(sextet))
}

/// The 6-bit value of a base64url character, 64 for any other byte.
fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c.wrapping_sub(b'A'),
        b'a'..=b'z' => c.wrapping_sub(b'a').wrapping_add(26),
        b'0'..=b'9' => c.wrapping_sub(b'0').wrapping_add(52),
        b'-' => 62,
        b'_' => 63,
        _ => 64,
    }
}

/// Where the page of `keys` starting at `from` ends (exclusive): as many keys as fit in [`PAGE_BYTES`] as
/// `entry` serialises them, at least one if any is left.
pub fn page_end<T, E: Serialize + ?Sized>(
    keys: &[T],
    from: usize,
    entry: impl Fn(&T) -> &E,
) -> Result<usize, serde_json::Error> {
    let mut end = from;
    let mut bytes = 0usize;
    for key in keys.get(from..).unwrap_or_default() {
        // One more byte for the comma between entries.
        let len = json_len(entry(key))?.saturating_add(1);
        if end > from && bytes.saturating_add(len) > PAGE_BYTES {
            break;
        }
        bytes = bytes.saturating_add(len);
        end = end.saturating_add(1);
    }
    Ok(end)
}

/// How many bytes `value` serialises to, without keeping them.
fn json_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, serde_json::Error> {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    Ok(count.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::bucket::KeyHash;

    #[test]
    fn hashes_order_as_their_bytes() {
        // 'A' < 'a' < '0' < '-' < '_' as base64url values, unlike ASCII.
        assert_eq!(by_hash_bytes("A", "a"), Ordering::Less);
        assert_eq!(by_hash_bytes("z", "0"), Ordering::Less);
        assert_eq!(by_hash_bytes("9", "-"), Ordering::Less);
        assert_eq!(by_hash_bytes("-", "_"), Ordering::Less);
        assert_eq!(by_hash_bytes("_", "A"), Ordering::Greater);
        let mut hashes: Vec<String> = (0..500)
            .map(|i| crate::apikey::hash_key(&format!("km_{i}")))
            .collect();
        hashes.sort_by(|a, b| by_hash_bytes(a, b));
        let bytes: Vec<[u8; 32]> = hashes
            .iter()
            .map(|hash| KeyHash::parse(hash).map(|hash| hash.0).unwrap_or_default())
            .collect();
        assert!(bytes.windows(2).all(|pair| pair.first() < pair.get(1)));
    }

    #[test]
    fn pages_fill_up_to_the_budget_and_a_huge_key_stands_alone() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("{i:0>98}")).collect();
        // Each key is 100 bytes serialised, 101 with its comma.
        let end = page_end(&keys, 0, String::as_str).unwrap();
        assert_eq!(end, PAGE_BYTES / 101);
        assert_eq!(page_end(&keys, 9_990, String::as_str).unwrap(), 10_000);
        assert_eq!(page_end(&keys, 10_000, String::as_str).unwrap(), 10_000);
        let huge = vec!["x".repeat(PAGE_BYTES * 2), "y".into()];
        assert_eq!(page_end(&huge, 0, String::as_str).unwrap(), 1);
    }
}
