//! Rate tiers: an operator-set name on an API key or a client (such as `free` or `pro`), forwarded upstream as
//! [`TIER_HEADER`] so that Envoy's own rate limiting (`local_ratelimit`, or a global rate limit service) can pick
//! a limit per tier. keymesh only carries the name; it never limits anything itself.

/// The request header the tier is forwarded in.
pub const TIER_HEADER: &str = "x-keymesh-tier";
/// The access-token claim a client's tier travels in (a private, collision-resistant claim name, RFC 7519 §4.3).
pub const TIER_CLAIM: &str = "keymesh_tier";
/// The longest tier name.
pub const MAX_TIER_LEN: usize = 32;

/// Whether `name` is a tier name: 1 to [`MAX_TIER_LEN`] ASCII letters, digits, `-`, `_` or `.`, so it is safe in
/// a header, a rate-limit descriptor value, a log line and a URL.
pub fn is_tier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TIER_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_names() {
        for good in [
            "free",
            "pro",
            "Gold-2",
            "tier_1.a",
            &"x".repeat(MAX_TIER_LEN),
        ] {
            assert!(is_tier(good), "{good:?}");
        }
        for bad in [
            "",
            "two words",
            "pro\r\nx-keymesh-subject: admin",
            "caf\u{e9}",
            "a/b",
            "a:b",
            &"x".repeat(MAX_TIER_LEN + 1),
        ] {
            assert!(!is_tier(bad), "{bad:?}");
        }
    }
}
