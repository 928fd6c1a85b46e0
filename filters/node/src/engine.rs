//! One verifier: the filter configuration, the key material held, this process's token cache, and the fetch
//! protocol's decisions (what to ask the sidecar next, what to do with its answer). Plain Rust, tested natively;
//! the bindings only move strings and bytes across to JavaScript, which does the HTTP and the timers.

use crate::material::{Applied, HeldBundle};
use crate::render::{render_status, render_verdict};
use keymesh_core::bundle::etag;
use keymesh_core::policy::unknown_external_kid;
use keymesh_core::{
    authorize, CredentialError, DenyReason, FilterConfig, FilterConfigError, KeyMaterial,
    RequestParts, TokenCache, Verdict,
};

/// Fetch period before the first bundle arrives: requests fail closed until then (the filter's startup tick).
pub const STARTUP_TICK_MS: u64 = 200;

/// A `304` that took at least this long answered a long poll that ran its course: poll again at once instead
/// of waiting a tick, so that no change waits for the gap between two polls. A quicker `304` (plain polling, or
/// a sidecar shutting down) waits for the tick, as in the filter.
pub const LONG_POLL_REARM_MS: u64 = 1_000;

/// At most one refetch request per process this often; the sidecar throttles per issuer on top (as the filter).
pub const REFETCH_EVERY_MS: u64 = 5_000;

/// The next bundle request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Path and query, e.g. `/v1/bundle?wait=25`.
    pub path: String,
    /// `If-None-Match` value, when a version is held.
    pub if_none_match: Option<String>,
    /// Give up on the request after this long (the long poll's wait included).
    pub timeout_ms: u64,
}

/// What a bundle response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// Ask again at once (something changed and there may be more, or a full bundle is needed); otherwise wait
    /// for the next tick.
    pub again: bool,
    /// Short name of what happened: `applied`, `not_modified`, `stale`, `mismatch`, `rejected`, `failed`.
    pub event: &'static str,
    /// A log line for the operator; never contains key material or tokens.
    pub message: String,
}

/// A verifier for one filter configuration.
#[derive(Debug)]
pub struct Engine {
    config: FilterConfig,
    held: HeldBundle,
    tokens: TokenCache,
    refetch_hint: Option<String>,
    refetch_at_ms: Option<u64>,
}

impl Engine {
    /// Parses and validates the configuration with the filter's own parser (same fields, same errors).
    pub fn new(config_json: &[u8]) -> Result<Self, FilterConfigError> {
        let config = FilterConfig::parse(config_json)?;
        let tokens = TokenCache::new(config.token_cache_size);
        Ok(Self {
            config,
            held: HeldBundle::new(),
            tokens,
            refetch_hint: None,
            refetch_at_ms: None,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The bundle request to send now: long-poll only once something is held, so the first bundle comes back
    /// at once.
    pub fn next_fetch(&self) -> FetchRequest {
        let sidecar = &self.config.sidecar;
        let have = self.held.held_version();
        let wait_secs = if have.is_some() {
            sidecar.long_poll_secs
        } else {
            0
        };
        let path = if wait_secs > 0 {
            format!("{}?wait={wait_secs}", sidecar.path)
        } else {
            sidecar.path.clone()
        };
        FetchRequest {
            path,
            if_none_match: have.map(etag),
            timeout_ms: sidecar
                .timeout_ms
                .saturating_add(wait_secs.saturating_mul(1000)),
        }
    }

    /// How long to wait before the next fetch when the last one does not ask to go again at once.
    pub fn tick_ms(&self) -> u64 {
        if self.held.version().is_some() {
            self.config.sidecar.refresh_interval_ms
        } else {
            STARTUP_TICK_MS.min(self.config.sidecar.refresh_interval_ms)
        }
    }

    /// Handles the answer to a bundle request sent at `sent_ms`: `status` is `None` when the request failed or
    /// timed out.
    pub fn on_fetch_response(
        &mut self,
        status: Option<u16>,
        body: &[u8],
        sent_ms: u64,
        now_ms: u64,
    ) -> FetchOutcome {
        let long_poll_ran = self.held.held_version().is_some()
            && self.config.sidecar.long_poll_secs > 0
            && now_ms.saturating_sub(sent_ms) >= LONG_POLL_REARM_MS;
        if matches!(status, Some(200 | 304)) {
            self.held.mark_fresh(now_ms);
        }
        let outcome = |again, event, message: String| FetchOutcome {
            again,
            event,
            message,
        };
        match status {
            Some(200) => match self.held.apply(body, now_ms) {
                Applied::Stored {
                    version,
                    delta,
                    skipped,
                } => {
                    let (keys, revoked) = self.held.counts();
                    let kind = if delta { "delta" } else { "full" };
                    let mut message = format!(
                        "bundle v{version} applied ({kind}; {keys} api keys, {revoked} revoked tokens held)"
                    );
                    for reason in skipped {
                        message.push_str(&format!("; key left out: {reason}"));
                    }
                    outcome(true, "applied", message)
                }
                Applied::Stale => {
                    outcome(false, "stale", "bundle not newer than the one held".into())
                }
                Applied::Mismatch => outcome(
                    true,
                    "mismatch",
                    "bundle delta does not apply to the version held; asking for a full bundle"
                        .into(),
                ),
                Applied::Rejected(e) => outcome(
                    false,
                    "rejected",
                    format!("bundle from sidecar rejected, keeping the last good one: {e}"),
                ),
            },
            Some(304) => outcome(long_poll_ran, "not_modified", String::new()),
            Some(status) => outcome(false, "failed", format!("bundle fetch answered {status}")),
            None => outcome(
                false,
                "failed",
                "bundle fetch failed (sidecar unreachable or timed out)".into(),
            ),
        }
    }

    /// Decides one request, as the filter does for the same headers and key material; `now_ms` is the time.
    /// Returns the verdict as JSON (see `render`).
    pub fn authorize(
        &mut self,
        path: &str,
        authorization: &[&str],
        api_key: &[&str],
        now_ms: u64,
    ) -> String {
        let request = RequestParts {
            path,
            authorization: authorization.to_vec(),
            api_key: if self.config.api_key_header.is_some() {
                api_key.to_vec()
            } else {
                Vec::new()
            },
        };
        let material = KeyMaterial {
            keys: self.held.keys(),
            age_secs: self.held.age_ms(now_ms) / 1000,
            directory: &self.held,
            cache: Some(&self.tokens),
        };
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let verdict = authorize(&self.config, &request, &material, now);
        if let Verdict::Deny(denial) = &verdict {
            if matches!(
                denial.reason,
                DenyReason::Token(CredentialError::UnknownKid)
            ) {
                if let Some(kid) = self
                    .held
                    .keys()
                    .and_then(|keys| unknown_external_kid(&self.config, &request, keys))
                {
                    self.refetch_hint = Some(kid);
                }
            }
        }
        render_verdict(&self.config, &verdict)
    }

    /// The refetch request to send now, if a token named an unknown `kid` of an external issuer and none was
    /// sent in the last [`REFETCH_EVERY_MS`]: the path and its form body.
    pub fn take_refetch(&mut self, now_ms: u64) -> Option<(String, String)> {
        if self
            .refetch_at_ms
            .is_some_and(|last| now_ms < last.saturating_add(REFETCH_EVERY_MS))
        {
            return None;
        }
        let kid = self.refetch_hint.take()?;
        self.refetch_at_ms = Some(now_ms);
        Some((
            self.config.sidecar.refetch_path.clone(),
            format!("kid={}", form_encode(&kid)),
        ))
    }

    /// What is held, as JSON: `{"version", "apiKeys", "revokedTokens", "ageMs"}`.
    pub fn status(&self, now_ms: u64) -> String {
        let (api_keys, revoked) = self.held.counts();
        render_status(
            self.held.version(),
            api_keys,
            revoked,
            self.held.age_ms(now_ms),
        )
    }
}

/// `application/x-www-form-urlencoded` value encoding: unreserved characters as they are, the rest as `%XX`.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const CONFIG: &str = r#"{"sidecar":{"cluster":"k","long_poll_secs":20,"timeout_ms":1500,"refresh_interval_ms":700},
        "routes":[{"prefix":"/","audience":"https://orders.local"}]}"#;

    #[test]
    fn the_fetch_loop_asks_like_the_filter() {
        let mut engine = Engine::new(CONFIG.as_bytes()).unwrap();
        let first = engine.next_fetch();
        assert_eq!(
            first.path, "/v1/bundle",
            "no long poll before the first bundle"
        );
        assert_eq!((first.if_none_match, first.timeout_ms), (None, 1500));
        assert_eq!(engine.tick_ms(), STARTUP_TICK_MS);
        let out = engine.on_fetch_response(Some(200), br#"{"version":7}"#, 900, 1_000);
        assert!(out.again && out.event == "applied", "{out:?}");
        let next = engine.next_fetch();
        assert_eq!(next.path, "/v1/bundle?wait=20");
        assert_eq!(next.if_none_match.as_deref(), Some("\"7\""));
        assert_eq!(next.timeout_ms, 21_500);
        assert_eq!(engine.tick_ms(), 700);
        assert!(!engine.on_fetch_response(Some(304), b"", 1_500, 2_000).again);
        assert!(
            engine.on_fetch_response(Some(304), b"", 0, 2_000).again,
            "a long poll that ran its course is renewed at once"
        );
        assert!(engine.status(2_500).contains("\"ageMs\":500"));
        let failed = engine.on_fetch_response(None, b"", 0, 9_000);
        assert_eq!((failed.again, failed.event), (false, "failed"));
        assert!(
            engine.status(9_000).contains("\"ageMs\":7000"),
            "a failure is not an answer"
        );
        // A delta that does not fit: a full bundle is asked for at once.
        let out = engine.on_fetch_response(Some(200), br#"{"version":9,"since":8}"#, 9_000, 9_000);
        assert_eq!((out.again, out.event), (true, "mismatch"));
        assert_eq!(engine.next_fetch().if_none_match, None);
    }

    #[test]
    fn refetch_hints_are_throttled_and_form_encoded() {
        let mut engine = Engine::new(CONFIG.as_bytes()).unwrap();
        assert_eq!(engine.take_refetch(0), None);
        engine.refetch_hint = Some("k 1&x".into());
        assert_eq!(
            engine.take_refetch(10_000),
            Some(("/v1/issuers/refetch".into(), "kid=k%201%26x".into()))
        );
        engine.refetch_hint = Some("k2".into());
        assert_eq!(engine.take_refetch(10_000 + REFETCH_EVERY_MS - 1), None);
        assert!(engine.take_refetch(10_000 + REFETCH_EVERY_MS).is_some());
    }

    #[test]
    fn configuration_errors_are_the_filters() {
        let err =
            Engine::new(br#"{"sidecar":{"cluster":"k","timeout_ms":5},"routes":[]}"#).unwrap_err();
        assert!(err.to_string().contains("sidecar.timeout_ms"), "{err}");
        let err =
            Engine::new(br#"{"sidecar":{"cluster":"k"},"routes":[],"colour":1}"#).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
