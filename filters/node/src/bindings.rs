//! The `wasm-bindgen` surface: one class, strings and bytes in, JSON strings out. The JavaScript wrapper
//! (`pkg/index.js`) parses the JSON; it never decides anything itself.

use crate::engine::Engine;
use wasm_bindgen::prelude::wasm_bindgen;

/// A verifier for one filter configuration (JavaScript class `Engine`).
#[wasm_bindgen(js_name = Engine)]
#[derive(Debug)]
pub struct JsEngine {
    engine: Engine,
}

/// Milliseconds since the epoch from JavaScript's number; negative or NaN counts as 0.
fn millis(now_ms: f64) -> u64 {
    if now_ms.is_finite() && now_ms > 0.0 {
        // Truncation is intended: the engine works in whole milliseconds.
        now_ms as u64
    } else {
        0
    }
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Parses the filter configuration (JSON text); throws the filter's error naming the bad field.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<JsEngine, String> {
        Engine::new(config_json.as_bytes())
            .map(|engine| Self { engine })
            .map_err(|e| e.to_string())
    }

    /// The bundle request to send now, as JSON `{"path", "ifNoneMatch", "timeoutMs"}`, or an empty string: wait
    /// a tick.
    #[wasm_bindgen(js_name = nextFetch)]
    pub fn next_fetch(&mut self, now_ms: f64) -> String {
        self.engine
            .next_fetch(millis(now_ms))
            .map(|next| {
                serde_json::json!({
                    "path": next.path,
                    "ifNoneMatch": next.if_none_match,
                    "timeoutMs": next.timeout_ms,
                })
                .to_string()
            })
            .unwrap_or_default()
    }

    /// Milliseconds to wait before the next fetch when the last answer does not ask to go again at once.
    #[wasm_bindgen(js_name = tickMs)]
    pub fn tick_ms(&self) -> f64 {
        self.engine.tick_ms() as f64
    }

    /// Handles the answer to a bundle request sent at `sent_ms` (`status` 0: failed or timed out), as JSON
    /// `{"again", "event", "message"}`.
    #[wasm_bindgen(js_name = onFetchResponse)]
    pub fn on_fetch_response(
        &mut self,
        status: u16,
        body: &[u8],
        sent_ms: f64,
        now_ms: f64,
    ) -> String {
        let status = (status != 0).then_some(status);
        let out = self
            .engine
            .on_fetch_response(status, body, millis(sent_ms), millis(now_ms));
        serde_json::json!({ "again": out.again, "event": out.event, "message": out.message })
            .to_string()
    }

    /// Decides one request from its path, every `Authorization` value and every value of the configured
    /// API-key header; returns the verdict as JSON.
    pub fn authorize(
        &mut self,
        path: &str,
        authorization: Vec<String>,
        api_key: Vec<String>,
        now_ms: f64,
    ) -> String {
        let authorization: Vec<&str> = authorization.iter().map(String::as_str).collect();
        let api_key: Vec<&str> = api_key.iter().map(String::as_str).collect();
        self.engine
            .authorize(path, &authorization, &api_key, millis(now_ms))
    }

    /// The refetch request to send now, as JSON `{"path", "body"}`, or an empty string.
    #[wasm_bindgen(js_name = takeRefetch)]
    pub fn take_refetch(&mut self, now_ms: f64) -> String {
        self.engine
            .take_refetch(millis(now_ms))
            .map(|(path, body)| serde_json::json!({ "path": path, "body": body }).to_string())
            .unwrap_or_default()
    }

    /// The configured API-key header name (lower case), or an empty string when API-key headers are off.
    #[wasm_bindgen(js_name = apiKeyHeader)]
    pub fn api_key_header(&self) -> String {
        self.engine
            .config()
            .api_key_header
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// The sidecar's `:authority` and `x-keymesh-proxy`-independent settings the loop needs, as JSON
    /// `{"authority", "refetchPath", "maxAgeSecs"}`.
    #[wasm_bindgen(js_name = sidecarSettings)]
    pub fn sidecar_settings(&self) -> String {
        let sidecar = &self.engine.config().sidecar;
        serde_json::json!({
            "authority": sidecar.authority,
            "maxAgeSecs": sidecar.max_age_secs,
        })
        .to_string()
    }

    /// What is held, as JSON `{"version", "ageMs"}`.
    pub fn status(&self, now_ms: f64) -> String {
        self.engine.status(millis(now_ms))
    }
}
