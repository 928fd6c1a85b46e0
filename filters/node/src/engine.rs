//! One verifier: the filter configuration, the key material held, this process's token cache, and the fetch
//! protocol's decisions (what to ask the sidecar next, what to do with its answer). Plain Rust, tested natively;
//! the bindings only move strings and bytes across to JavaScript, which does the HTTP and the timers.

use crate::material::Delivery;
use crate::render::{render_status, render_verdict};
use keymesh_core::delivery::fetch::REFETCH_EVERY_MS;
use keymesh_core::delivery::{FetchOutcome, FetchRequest};
use keymesh_core::policy::unknown_external_kid;
use keymesh_core::{
    authorize, CredentialError, DenyReason, FilterConfig, FilterConfigError, RequestParts,
    TokenCache, Verdict,
};

/// What a bundle response did, for the JavaScript loop to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// Ask again at once (something changed and there may be more, a full bundle is needed, or a long poll ran
    /// its course); otherwise wait for the next tick.
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
    delivery: Delivery,
    tokens: TokenCache,
    refetch_hint: Option<String>,
}

impl Engine {
    /// Parses and validates the configuration with the filter's own parser (same fields, same errors).
    pub fn new(config_json: &[u8]) -> Result<Self, FilterConfigError> {
        let config = FilterConfig::parse(config_json)?;
        let tokens = TokenCache::new(config.token_cache_size);
        let delivery = Delivery::new(&config.sidecar);
        Ok(Self {
            config,
            delivery,
            tokens,
            refetch_hint: None,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The bundle request to send at `now_ms`, as the filter would send it (long poll once something is held,
    /// `If-None-Match` unless a full bundle is needed); `None`: wait a tick.
    pub fn next_fetch(&mut self, now_ms: u64) -> Option<FetchRequest> {
        self.delivery.next_request(&self.config.sidecar, now_ms)
    }

    /// How long to wait before the next fetch when the last one does not ask to go again at once.
    pub fn tick_ms(&self) -> u64 {
        self.delivery.tick_ms()
    }

    /// Handles the answer to the bundle request sent at `sent_ms`: `status` is `None` when the request failed or
    /// timed out.
    pub fn on_fetch_response(
        &mut self,
        status: Option<u16>,
        body: &[u8],
        sent_ms: u64,
        now_ms: u64,
    ) -> FetchReport {
        let (outcome, again) =
            self.delivery
                .answered(&self.config.sidecar, status, body, sent_ms, now_ms);
        let (event, message) = describe(&outcome);
        FetchReport {
            again,
            event,
            message,
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
        let snapshot = self.delivery.snapshot();
        let material = snapshot.key_material(now_ms, Some(&self.tokens));
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let verdict = authorize(&self.config, &request, &material, now);
        if let Verdict::Deny(denial) = &verdict {
            if matches!(
                denial.reason,
                DenyReason::Token(CredentialError::UnknownKid)
            ) {
                if let Some(kid) = snapshot
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
        if self.refetch_hint.is_none() || !self.delivery.try_refetch_slot(now_ms, REFETCH_EVERY_MS)
        {
            return None;
        }
        let kid = self.refetch_hint.take()?;
        Some((
            self.config.sidecar.refetch_path.clone(),
            format!("kid={}", form_encode(&kid)),
        ))
    }

    /// What is held, as JSON: `{"version", "ageMs"}`.
    pub fn status(&self, now_ms: u64) -> String {
        render_status(self.delivery.version(), self.delivery.age_ms(now_ms))
    }
}

/// The JavaScript event name and log line for what a bundle answer came to (the filter's log lines).
fn describe(outcome: &FetchOutcome) -> (&'static str, String) {
    match outcome {
        FetchOutcome::Stored {
            version,
            delta,
            puts,
            deletes,
            skipped,
        } => {
            let kind = if *delta { "delta" } else { "full" };
            let mut message = format!(
                "bundle v{version} applied ({kind}: {puts} api keys put, {deletes} deleted)"
            );
            for reason in skipped {
                message.push_str(&format!("; key left out: {reason}"));
            }
            ("applied", message)
        }
        FetchOutcome::PageStored {
            version,
            pages,
            keys_read,
            keys_total,
        } => (
            "page",
            format!(
                "bundle v{version}: page {pages} stored ({keys_read} of {keys_total} api keys)"
            ),
        ),
        FetchOutcome::OutOfStep => (
            "mismatch",
            "bundle resync out of step (another version or shared data moved); starting again"
                .into(),
        ),
        FetchOutcome::NotModified => ("not_modified", String::new()),
        FetchOutcome::AlreadyHeld => ("stale", "bundle not newer than the one held".into()),
        FetchOutcome::DeltaMismatch => (
            "mismatch",
            "bundle delta does not apply to the version held; asking for a full bundle".into(),
        ),
        FetchOutcome::Rejected(e) => (
            "rejected",
            format!("bundle from sidecar rejected, keeping the last good one: {e}"),
        ),
        FetchOutcome::NoBody => ("rejected", "bundle response had no body".into()),
        FetchOutcome::StoreFailed(e) => ("rejected", e.to_string()),
        FetchOutcome::HttpStatus(status) => ("failed", format!("bundle fetch answered {status}")),
        FetchOutcome::Unreachable => (
            "failed",
            "bundle fetch failed (sidecar unreachable or timed out)".into(),
        ),
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
        let first = engine.next_fetch(900).unwrap();
        assert_eq!(
            first.path, "/v1/bundle?page=0",
            "no long poll before the first bundle"
        );
        assert_eq!((first.if_none_match, first.timeout_ms), (None, 1500));
        assert_eq!(engine.tick_ms(), 200, "the filter's startup tick");
        assert_eq!(engine.status(900), r#"{"ageMs":0,"version":null}"#);
        let out = engine.on_fetch_response(Some(200), br#"{"version":7}"#, 900, 1_000);
        assert!(out.again && out.event == "applied", "{out:?}");
        assert!(
            out.message
                .starts_with("bundle v7 applied (full: 0 api keys put"),
            "{out:?}"
        );
        let next = engine.next_fetch(1_000).unwrap();
        assert_eq!(next.path, "/v1/bundle?wait=20&page=0");
        assert_eq!(next.if_none_match.as_deref(), Some("\"7\""));
        assert_eq!(next.timeout_ms, 21_500);
        assert_eq!(engine.tick_ms(), 700);
        assert!(!engine.on_fetch_response(Some(304), b"", 1_500, 2_000).again);
        engine.next_fetch(2_000).unwrap();
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
        // A broken body is no answer either: a sidecar serving garbage must not keep old keys fresh.
        let rejected = engine.on_fetch_response(Some(200), b"not json", 9_000, 9_500);
        assert_eq!((rejected.again, rejected.event), (false, "rejected"));
        assert!(engine.status(9_500).contains("\"ageMs\":7500"));
        // A delta that does not fit: a full bundle is asked for at once.
        let out = engine.on_fetch_response(Some(200), br#"{"version":9,"since":8}"#, 9_000, 9_000);
        assert_eq!((out.again, out.event), (true, "mismatch"));
        assert_eq!(engine.next_fetch(9_000).unwrap().if_none_match, None);
        assert!(
            engine.status(9_000).contains("\"version\":7"),
            "the keys held stay in force"
        );
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
