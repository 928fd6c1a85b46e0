//! Which identity headers a route forwards upstream.
//!
//! Under proxy-wasm ABI 0.2.1 every request-header write makes Envoy clear the route cache, and each is a host call,
//! so a route writes only the identity headers its upstream reads. Client-sent copies of every identity header are
//! removed whatever the route forwards: an upstream may trust any of them.

use crate::error::FilterConfigError;

/// One identity header keymesh can set upstream. Adding one (a new bit) keeps every set that names headers
/// explicitly as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityHeader {
    /// `x-keymesh-subject`: the token's `sub`, or the API key's owner.
    Subject,
    /// `x-keymesh-client-id`: the token's `client_id`, or the API key's id.
    ClientId,
    /// `x-keymesh-scope`: granted scopes, space-separated.
    Scope,
    /// `x-keymesh-issuer`: the token's `iss` (never set for an API key).
    Issuer,
    /// `x-keymesh-credential`: `jwt` or `api_key`.
    Credential,
    /// `x-keymesh-actor`: the current actor of an exchanged token (RFC 8693 `act.sub`).
    Actor,
    /// `x-keymesh-tier`: the rate tier of the API key, or of the client a token was issued to.
    Tier,
}

impl IdentityHeader {
    /// Every identity header, in the order they are written.
    pub const ALL: [IdentityHeader; 7] = [
        IdentityHeader::Subject,
        IdentityHeader::ClientId,
        IdentityHeader::Scope,
        IdentityHeader::Issuer,
        IdentityHeader::Credential,
        IdentityHeader::Actor,
        IdentityHeader::Tier,
    ];

    /// The name used in the filter configuration (`identity_headers`).
    pub fn config_name(self) -> &'static str {
        match self {
            IdentityHeader::Subject => "subject",
            IdentityHeader::ClientId => "client_id",
            IdentityHeader::Scope => "scope",
            IdentityHeader::Issuer => "issuer",
            IdentityHeader::Credential => "credential",
            IdentityHeader::Actor => "actor",
            IdentityHeader::Tier => "tier",
        }
    }

    /// The HTTP header it is sent as.
    pub fn header_name(self) -> &'static str {
        match self {
            IdentityHeader::Subject => "x-keymesh-subject",
            IdentityHeader::ClientId => "x-keymesh-client-id",
            IdentityHeader::Scope => "x-keymesh-scope",
            IdentityHeader::Issuer => "x-keymesh-issuer",
            IdentityHeader::Credential => "x-keymesh-credential",
            IdentityHeader::Actor => "x-keymesh-actor",
            IdentityHeader::Tier => crate::tier::TIER_HEADER,
        }
    }

    fn bit(self) -> u8 {
        match self {
            IdentityHeader::Subject => 1,
            IdentityHeader::ClientId => 1 << 1,
            IdentityHeader::Scope => 1 << 2,
            IdentityHeader::Issuer => 1 << 3,
            IdentityHeader::Credential => 1 << 4,
            IdentityHeader::Actor => 1 << 5,
            IdentityHeader::Tier => 1 << 6,
        }
    }
}

/// A set of [`IdentityHeader`]s, resolved once per route at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityHeaders(u8);

impl Default for IdentityHeaders {
    /// Every header: what keymesh forwarded before the set was configurable.
    fn default() -> Self {
        Self::ALL
    }
}

impl IdentityHeaders {
    /// Every identity header.
    pub const ALL: IdentityHeaders = IdentityHeaders(0b111_1111);
    /// No identity header (the upstream learns only that the request was allowed).
    pub const NONE: IdentityHeaders = IdentityHeaders(0);

    /// Whether `header` is in the set.
    pub fn contains(self, header: IdentityHeader) -> bool {
        self.0 & header.bit() != 0
    }

    /// Parses the configuration form: a list of [`IdentityHeader::config_name`]s, each at most once. `field` names
    /// the list in errors (`identity_headers`, `routes[0].identity_headers`).
    pub fn parse(names: &[String], field: &str) -> Result<Self, FilterConfigError> {
        let mut set = 0u8;
        for (i, name) in names.iter().enumerate() {
            let header = IdentityHeader::ALL
                .into_iter()
                .find(|h| h.config_name() == name)
                .ok_or_else(|| {
                    FilterConfigError::field(
                        format!("{field}[{i}]"),
                        "must be one of `subject`, `client_id`, `scope`, `issuer`, `credential`, `actor`, `tier`",
                    )
                })?;
            if set & header.bit() != 0 {
                return Err(FilterConfigError::field(
                    format!("{field}[{i}]"),
                    "is listed twice",
                ));
            }
            set |= header.bit();
        }
        Ok(Self(set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_each_name_once_and_names_the_bad_entry() {
        let set =
            IdentityHeaders::parse(&names(&["subject", "scope"]), "identity_headers").unwrap();
        assert!(set.contains(IdentityHeader::Subject));
        assert!(set.contains(IdentityHeader::Scope));
        assert!(!set.contains(IdentityHeader::ClientId));
        assert_eq!(
            IdentityHeaders::parse(&[], "x").unwrap(),
            IdentityHeaders::NONE
        );
        let all: Vec<String> = IdentityHeader::ALL
            .iter()
            .map(|h| h.config_name().to_owned())
            .collect();
        assert_eq!(
            IdentityHeaders::parse(&all, "x").unwrap(),
            IdentityHeaders::ALL
        );
        let err = IdentityHeaders::parse(&names(&["subject", "sub"]), "routes[1].identity_headers")
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[1].identity_headers[1]"), "{err}");
        let err = IdentityHeaders::parse(&names(&["scope", "scope"]), "identity_headers")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("identity_headers[1]") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn a_route_overrides_the_filter_set() {
        let config = crate::FilterConfig::parse(
            br#"{"sidecar":{"cluster":"k"},"identity_headers":["subject"],
                 "routes":[{"prefix":"/a","audience":"a","identity_headers":[]},{"prefix":"/","audience":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(config.routes[0].identity_headers, IdentityHeaders::NONE);
        let inherited = config.routes[1].identity_headers;
        assert!(inherited.contains(IdentityHeader::Subject));
        assert!(!inherited.contains(IdentityHeader::Scope));
        let default = crate::FilterConfig::parse(
            br#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(default.routes[0].identity_headers, IdentityHeaders::ALL);
    }

    #[test]
    fn the_default_is_every_header() {
        for header in IdentityHeader::ALL {
            assert!(IdentityHeaders::default().contains(header));
            assert!(!IdentityHeaders::NONE.contains(header));
        }
    }
}
