//! Shared pieces of the fuzz targets: the fixed key material requests are decided against, and how a fuzz input
//! becomes a request.

use keymesh_core::{FilterConfig, KeySet, RequestParts};
use std::sync::OnceLock;

/// The fixture bundle (public keys of the scenario table's issuers), written by the `fuzz_seeds` example.
pub const BUNDLE: &str = include_str!("../fixed/bundle.json");
/// An honest EdDSA token for the orders API at [`now`].
pub const TOKEN: &str = include_str!("../fixed/token.txt");

/// The scenario table's fixed time.
pub fn now() -> i64 {
    include_str!("../fixed/now.txt").trim().parse().unwrap_or(0)
}

/// The scenario configuration and the fixture bundle's key set, built once per process.
pub fn fixed() -> &'static (FilterConfig, KeySet) {
    static FIXED: OnceLock<(FilterConfig, KeySet)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let config = FilterConfig::parse(include_bytes!("../fixed/config.json"))
            .unwrap_or_else(|e| panic!("scenario config: {e}"));
        let (keys, _) = KeySet::parse_bundle(BUNDLE.as_bytes())
            .unwrap_or_else(|e| panic!("fixture bundle: {e}"));
        (config, keys)
    })
}

/// A request from a fuzz input: lines of `path`, then header values. A line starting `k:` is an `x-api-key`
/// value; every other line an `Authorization` value.
pub fn request(input: &str) -> RequestParts<'_> {
    let mut lines = input.split('\n');
    let path = lines.next().unwrap_or("/");
    let mut authorization = Vec::new();
    let mut api_key = Vec::new();
    for line in lines {
        match line.strip_prefix("k:") {
            Some(key) => api_key.push(key),
            None => authorization.push(line),
        }
    }
    RequestParts {
        path,
        authorization,
        api_key,
    }
}
