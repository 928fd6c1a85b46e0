//! How a test sees and answers the HTTP calls a filter dispatched, as the upstream would through
//! Envoy: a response, or a failure delivered as zero headers.

use crate::abi::http_calls::{HttpCall, HttpResponse};
use crate::codec::len_u32;
use crate::error::HostError;
use crate::vm::Vm;

impl Vm {
    /// HTTP calls dispatched and not yet answered, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        let http = &self.state().http;
        http.pending
            .iter()
            .filter_map(|token| http.call(*token).cloned())
            .collect()
    }

    /// Refuses (or again accepts) every `proxy_http_call` with `BadArgument`, as Envoy 1.40 does while its
    /// cluster manager is not ready (during `on_configure`, and on a worker's first ticks at startup).
    pub fn refuse_http_calls(&mut self, refuse: bool) {
        self.state_mut().http.refusing = refuse;
    }

    /// Every HTTP call the filter dispatched, answered or not, oldest first.
    pub fn http_call_history(&self) -> &[HttpCall] {
        &self.state().http.history
    }

    /// The oldest unanswered HTTP call to cluster `upstream`; an error naming what was dispatched
    /// if there is none. Answer it with [`Vm::respond_to_http_call`] or [`Vm::reset_http_call`].
    pub fn next_http_call(&mut self, upstream: &str) -> Result<HttpCall, HostError> {
        let pending = self.pending_http_calls();
        match pending.iter().find(|call| call.upstream == upstream) {
            Some(call) => Ok(call.clone()),
            None => {
                let seen: Vec<String> = pending.iter().map(HttpCall::describe).collect();
                let notes = self.state().output.notes.join("; ");
                self.expectation(format!(
                    "no unanswered HTTP call to cluster `{upstream}`; unanswered: {seen:?}; host notes: [{notes}]"
                ))
            }
        }
    }

    /// Answers HTTP call `token` with `response` through `proxy_on_http_call_response`.
    pub fn respond_to_http_call(
        &mut self,
        token: u32,
        response: HttpResponse,
    ) -> Result<(), HostError> {
        self.deliver_http_call(token, Some(response))
    }

    /// Resets HTTP call `token` (the upstream cut off, e.g. mid-body): Envoy 1.40 then calls
    /// `proxy_on_http_call_response` with zero headers, body and trailers, and has no response maps
    /// (reading one gets `BadArgument`). A refused connection or a timeout is not a reset: answer
    /// those with [`HttpResponse::connect_failure`] or [`HttpResponse::timeout`].
    pub fn reset_http_call(&mut self, token: u32) -> Result<(), HostError> {
        self.deliver_http_call(token, None)
    }

    fn deliver_http_call(
        &mut self,
        token: u32,
        response: Option<HttpResponse>,
    ) -> Result<(), HostError> {
        let http = &self.state().http;
        let Some(call) = http
            .pending
            .contains(&token)
            .then(|| http.call(token))
            .flatten()
            .cloned()
        else {
            return self.expectation(format!("no unanswered HTTP call with token {token}"));
        };
        let context = call.context_id;
        if !self.is_live_context(context) {
            return self.expectation(format!(
                "{} cannot be answered: its context has ended",
                call.describe()
            ));
        }
        let sizes = response.as_ref().map_or((0, 0, 0), |r| {
            (
                len_u32(r.headers.len()),
                len_u32(r.body.len()),
                len_u32(r.trailers.len()),
            )
        });
        let state = self.state_mut();
        state.http.pending.retain(|t| *t != token);
        state.http.delivering = response;
        let local_before = state
            .streams
            .get(&context)
            .is_some_and(|s| s.local_response_sent);
        let params = (context, token, sizes.0, sizes.1, sizes.2);
        let result = self.invoke::<(u32, u32, u32, u32, u32), ()>(
            "proxy_on_http_call_response",
            context,
            params,
        );
        self.state_mut().http.delivering = None;
        result?;
        self.check_local_response_pause(
            context,
            local_before,
            None,
            "proxy_on_http_call_response",
        )?;
        self.run_deferred()?;
        self.settle(())
    }
}
