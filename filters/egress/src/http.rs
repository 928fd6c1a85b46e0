//! The HTTP context: find the destination, take the subject token, and send, refuse or wait as the worker says.

use crate::host;
use crate::worker::{respond, Step, Worker};
use keymesh_core::egress::exchange::bearer_token;
use keymesh_core::egress::Mode;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub(crate) struct EgressHttp {
    context_id: u32,
    worker: Option<Rc<Worker>>,
}

impl EgressHttp {
    pub(crate) fn new(context_id: u32, worker: Option<Rc<Worker>>) -> Self {
        Self { context_id, worker }
    }
}

impl Context for EgressHttp {
    fn on_done(&mut self) -> bool {
        if let Some(worker) = &self.worker {
            worker.forget(self.context_id);
        }
        true
    }
}

impl HttpContext for EgressHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            let _ = host::send_response(500, &[], "keymesh egress filter is not configured");
            return Action::Pause;
        };
        let headers = host::request_headers();
        let authority = headers
            .iter()
            .find(|(n, _)| n == ":authority")
            .map_or("", |(_, v)| v.as_str());
        let authorization: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str())
            .collect();
        let Some(destination) = worker.config.destination(authority) else {
            // Not a configured destination: the application's token is not for it.
            if !authorization.is_empty() {
                let _ = host::set_request_header("authorization", None);
            }
            return Action::Continue;
        };
        let subject = match destination.mode {
            Mode::Exchange => match bearer_token(&authorization) {
                Ok(subject) => Some(subject),
                Err(refusal) => {
                    respond(refusal);
                    return Action::Pause;
                }
            },
            Mode::ClientCredentials => None,
        };
        match worker.step(self.context_id, destination, subject) {
            Step::Send(value) => {
                if host::set_request_header("authorization", Some(&value)).is_err() {
                    respond(keymesh_core::egress::Refusal::Unavailable);
                    return Action::Pause;
                }
                Action::Continue
            }
            Step::Refuse(refusal) => {
                respond(refusal);
                Action::Pause
            }
            Step::Wait => {
                // Until the token arrives the original token must not leave: the request is paused, and is
                // resumed only after its Authorization header has been replaced.
                Action::Pause
            }
        }
    }
}
