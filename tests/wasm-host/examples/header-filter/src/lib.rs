//! A small header filter: adds `x-greeting: <plugin configuration>` to every request, answers 403 to a
//! request carrying `x-block`, and stamps `x-filtered: yes` on responses.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { greeting: String::new() }) });
}}

struct Root {
    greeting: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match String::from_utf8(bytes) {
            Ok(greeting) if !greeting.is_empty() => {
                self.greeting = greeting;
                true
            }
            _ => {
                log::error!("configuration must be a non-empty UTF-8 greeting");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Greeter { greeting: self.greeting.clone() }))
    }
}

struct Greeter {
    greeting: String,
}

impl Context for Greeter {}

impl HttpContext for Greeter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get_http_request_header("x-block").is_some() {
            log::info!("blocked");
            self.send_http_response(403, vec![("content-type", "text/plain")], Some(b"blocked"));
            return Action::Pause;
        }
        self.set_http_request_header("x-greeting", Some(&self.greeting));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-filtered", Some("yes"));
        Action::Continue
    }
}
