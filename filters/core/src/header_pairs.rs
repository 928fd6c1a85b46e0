//! A header map in the proxy-wasm serialized form (what `proxy_get_header_map_pairs` hands over), read in place.
//!
//! The serialized form (proxy-wasm ABI 0.2.1): a little-endian `u32` count, then a `u32` name length and a `u32`
//! value length per header, then each name and each value in that order, every one followed by a NUL. The SDK's
//! `get_map` turns that into two `String`s per header, and panics (taking down the worker's VM) on a value that
//! is not UTF-8, which HTTP allows (`obs-text`). Here the buffer is kept and headers are borrowed byte slices;
//! the adapter reads it once per request.

/// A serialized header map, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPairs {
    bytes: Vec<u8>,
}

impl HeaderPairs {
    /// Takes the serialized bytes (empty: no headers).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    /// Serializes `pairs` (name, value), in order. A map too large for the form's `u32` lengths (4 GiB) is
    /// serialized empty: no caller comes near it.
    pub fn serialize<'p>(pairs: impl Iterator<Item = (&'p [u8], &'p [u8])> + Clone) -> Self {
        let fits = |n: usize| u32::try_from(n).ok();
        let mut count = 0usize;
        let mut size = 4usize;
        for (name, value) in pairs.clone() {
            count = count.saturating_add(1);
            size = size
                .saturating_add(name.len())
                .saturating_add(value.len())
                .saturating_add(10);
        }
        let Some(count) = fits(count).filter(|_| fits(size).is_some()) else {
            return Self::default();
        };
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(&count.to_le_bytes());
        for (name, value) in pairs.clone() {
            for length in [name.len(), value.len()] {
                bytes.extend_from_slice(&fits(length).unwrap_or(0).to_le_bytes());
            }
        }
        for (name, value) in pairs {
            bytes.extend_from_slice(name);
            bytes.push(0);
            bytes.extend_from_slice(value);
            bytes.push(0);
        }
        Self { bytes }
    }

    /// The serialized bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each `(name, value)` in order. A map that does not follow the layout (no host sends one) ends early.
    pub fn iter(&self) -> Pairs<'_> {
        let count = read_u32(&self.bytes, 0).unwrap_or(0);
        let data = count
            .checked_mul(8)
            .and_then(|lengths| lengths.checked_add(4))
            .unwrap_or(usize::MAX);
        Pairs {
            bytes: &self.bytes,
            count,
            next: 0,
            data,
        }
    }
}

/// Iterator over a [`HeaderPairs`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    count: usize,
    /// Index of the next header.
    next: usize,
    /// Offset of the next name.
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let lengths = self.next.checked_mul(8)?.checked_add(4)?;
        let name_len = read_u32(self.bytes, lengths)?;
        let value_len = read_u32(self.bytes, lengths.checked_add(4)?)?;
        let name_end = self.data.checked_add(name_len)?;
        let name = self.bytes.get(self.data..name_end)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let value = self.bytes.get(value_start..value_end)?;
        self.data = value_end.checked_add(1)?;
        self.next = self.next.checked_add(1)?;
        Some((name, value))
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend(*name);
            out.push(0);
            out.extend(*value);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_every_pair_in_order_including_empty_and_non_utf8_values() {
        let pairs: [(&[u8], &[u8]); 4] = [
            (b":path", b"/orders"),
            (b"authorization", b"Bearer a"),
            (b"x-empty", b""),
            (b"x-latin1", b"caf\xe9"),
        ];
        let map = HeaderPairs::new(serialize(&pairs));
        assert_eq!(map.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(HeaderPairs::new(Vec::new()).iter().count(), 0);
        assert_eq!(HeaderPairs::new(serialize(&[])).iter().count(), 0);
    }

    #[test]
    fn serializes_what_it_reads() {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b"Bearer realm=\"a\""),
            (b"x-empty", b""),
        ];
        let map = HeaderPairs::serialize(pairs.iter().copied());
        assert_eq!(map.as_bytes(), serialize(&pairs));
        assert_eq!(map.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(
            HeaderPairs::serialize(std::iter::empty()).as_bytes(),
            serialize(&[])
        );
    }

    #[test]
    fn a_map_cut_short_or_lying_about_lengths_ends_early() {
        let whole = serialize(&[(b"a", b"1"), (b"b", b"2")]);
        // Only the last value's terminating NUL is not needed to read it.
        for cut in 0..whole.len() - 1 {
            let map = HeaderPairs::new(whole[..cut].to_vec());
            assert!(map.iter().count() < 2, "cut at {cut}");
        }
        let mut lying = serialize(&[(b"a", b"1")]);
        lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderPairs::new(lying).iter().count(), 0);
        let mut huge_count = serialize(&[(b"a", b"1")]);
        huge_count[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderPairs::new(huge_count).iter().count(), 0);
    }
}
