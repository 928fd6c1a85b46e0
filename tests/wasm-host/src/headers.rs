//! [`HeaderMap`]: an ordered multimap of header names to byte values, as Envoy keeps them.

use std::fmt;

/// Ordered header (or trailer, or metadata) map. Names are stored lower-case and compared
/// case-insensitively, like Envoy's `LowerCaseString`; values are bytes and may repeat.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(String, Vec<u8>)>,
}

impl HeaderMap {
    /// An empty map.
    pub const fn new() -> HeaderMap {
        HeaderMap {
            entries: Vec::new(),
        }
    }

    /// Number of entries (repeated names count once per value).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// First value of `name` as UTF-8 (`None` if absent or not UTF-8).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// First value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order, lossily decoded as UTF-8.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Entries as `(name, value)` strings, values lossily decoded; handy for `assert_eq!`.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    /// Entries as `(name, value bytes)`.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Appends an entry (Envoy `addCopy`).
    pub fn append(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.entries.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Sets `name` to `value` as Envoy 1.40's `proxy_replace_header_map_value` does: every entry
    /// of `name` is removed and the new one appended at the end.
    pub fn replace(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every entry named `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in iter {
            map.append(name.as_ref(), value.as_ref().to_vec());
        }
        map
    }
}

impl From<&[(&str, &str)]> for HeaderMap {
    fn from(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_stored_lower_case() {
        let map: HeaderMap = [("X-Key", "a")].into_iter().collect();
        assert_eq!(map.get("x-key"), Some("a"));
        assert_eq!(map.to_pairs(), vec![("x-key".to_owned(), "a".to_owned())]);
    }

    #[test]
    fn replace_removes_every_entry_and_appends_at_the_end_as_envoy_does() {
        let mut map: HeaderMap = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        map.replace("A", "9");
        assert_eq!(
            map.to_pairs(),
            vec![("b".into(), "2".into()), ("a".into(), "9".into())]
        );
        map.replace("c", "4");
        assert_eq!(map.get_all("c"), vec!["4"]);
    }

    #[test]
    fn remove_drops_every_value() {
        let mut map: HeaderMap = [("a", "1"), ("a", "2")].into_iter().collect();
        map.remove("a");
        assert!(map.is_empty());
    }
}
