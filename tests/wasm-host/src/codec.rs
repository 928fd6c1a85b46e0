//! Wire formats of the proxy-wasm ABI: serialized header maps and property paths.
//!
//! A map is `u32 count`, then `count` pairs of `u32 key_len, u32 value_len`, then each key and value
//! followed by a NUL byte; all integers little-endian (`proxy_wasm::hostcalls::utils`). A property path
//! is its segments joined by NUL.

use crate::headers::HeaderMap;

/// Serializes `map` in the proxy-wasm map format.
pub(crate) fn encode_map(map: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(map.len()).to_le_bytes());
    for (name, value) in map.iter_bytes() {
        out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (name, value) in map.iter_bytes() {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Parses a proxy-wasm serialized map; `None` if it is truncated or a key is not UTF-8.
/// An empty input is an empty map, as in the SDK.
pub(crate) fn decode_map(bytes: &[u8]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    if bytes.is_empty() {
        return Some(map);
    }
    let count = read_u32(bytes, 0)? as usize;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    for n in 0..count {
        let key_len = read_u32(bytes, 4 + n * 8)? as usize;
        let value_len = read_u32(bytes, 8 + n * 8)? as usize;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data += key_len + 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data += value_len + 1;
        map.append(std::str::from_utf8(key).ok()?, value.to_vec());
    }
    Some(map)
}

/// Splits a serialized property path into its segments.
pub(crate) fn decode_path(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Guest sizes are `u32`; a larger host value cannot be handed to a wasm32 guest anyway.
pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const SERIALIZED: &[u8] = &[
        2, 0, 0, 0,
        5, 0, 0, 0, 1, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0,
        b':', b'p', b'a', b't', b'h', 0, b'/', 0,
        b'x', 0, 0,
    ];

    #[test]
    fn map_round_trips_in_sdk_format() {
        let map = decode_map(SERIALIZED);
        assert_eq!(
            map.as_ref().map(HeaderMap::to_pairs),
            Some(vec![
                (":path".to_owned(), "/".to_owned()),
                ("x".to_owned(), String::new())
            ])
        );
        assert_eq!(map.map(|m| encode_map(&m)), Some(SERIALIZED.to_vec()));
    }

    #[test]
    fn truncated_map_is_rejected() {
        assert!(decode_map(&SERIALIZED[..SERIALIZED.len() - 2]).is_none());
        assert!(decode_map(&[9, 0, 0, 0]).is_none());
    }

    #[test]
    fn empty_input_is_empty_map() {
        assert_eq!(decode_map(&[]).map(|m| m.len()), Some(0));
        assert_eq!(encode_map(&HeaderMap::new()), vec![0, 0, 0, 0]);
    }

    #[test]
    fn path_splits_on_nul() {
        assert_eq!(decode_path(b"request\0path"), vec!["request", "path"]);
        assert_eq!(decode_path(b"plugin_root_id"), vec!["plugin_root_id"]);
        assert!(decode_path(b"").is_empty());
    }
}
