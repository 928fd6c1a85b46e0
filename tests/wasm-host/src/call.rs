//! [`Call`]: one callback into the filter with expectations on what it does, in the shape of
//! proxy-wasm/test-framework (`call_…().expect_…().returning(…).execute_and_expect(…)`), but
//! against host state instead of a global mock.
//!
//! ```no_run
//! # use keymesh_wasm_host::{Action, FilterModule, HostError, HttpResponse, LogLevel};
//! # fn demo(module: &FilterModule) -> Result<(), HostError> {
//! let mut vm = module.vm().build()?;
//! vm.start()?;
//! let mut stream = vm.new_http_stream()?;
//! stream
//!     .call_on_request_headers(&[(":path", "/"), ("x-fixture-call", "1")], true)
//!     .expect_http_call("authz")
//!     .returning(HttpResponse::new(403))
//!     .expect_local_response(401)
//!     .expect_log(LogLevel::Warn, "authz call failed")
//!     .execute_and_expect(Action::Pause)?;
//! # Ok(()) }
//! ```

use crate::abi::http_calls::HttpResponse;
use crate::error::HostError;
use crate::stream::Delivery;
use crate::types::{Action, LogLevel};
use crate::vm::Vm;
use std::fmt::Debug;
use std::marker::PhantomData;

/// Which callback a [`Call`] runs.
pub(crate) enum Target {
    VmStart,
    Configure,
    Tick,
    Stream(u32, Delivery),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::VmStart => "proxy_on_vm_start",
            Target::Configure => "proxy_on_configure",
            Target::Tick => "proxy_on_tick",
            Target::Stream(_, delivery) => match delivery {
                Delivery::RequestHeaders(..) => "proxy_on_request_headers",
                Delivery::RequestBody(..) => "proxy_on_request_body",
                Delivery::RequestTrailers(..) => "proxy_on_request_trailers",
                Delivery::ResponseHeaders(..) => "proxy_on_response_headers",
                Delivery::ResponseBody(..) => "proxy_on_response_body",
                Delivery::ResponseTrailers(..) => "proxy_on_response_trailers",
            },
        }
    }
}

/// What a callback returns: `bool` (`proxy_on_vm_start`, `proxy_on_configure`), [`Action`] (stream
/// callbacks) or `()` (`proxy_on_tick`).
pub trait CallOutput: sealed::Sealed + Sized + PartialEq + Debug {}

mod sealed {
    use crate::types::Action;

    /// The raw outcome of a callback, converted to the caller's type.
    pub enum Outcome {
        Bool(bool),
        Action(Action),
        Unit,
    }

    pub trait Sealed: Sized {
        fn from_outcome(outcome: Outcome) -> Option<Self>;
    }

    impl Sealed for bool {
        fn from_outcome(outcome: Outcome) -> Option<bool> {
            match outcome {
                Outcome::Bool(value) => Some(value),
                _ => None,
            }
        }
    }

    impl Sealed for Action {
        fn from_outcome(outcome: Outcome) -> Option<Action> {
            match outcome {
                Outcome::Action(action) => Some(action),
                _ => None,
            }
        }
    }

    impl Sealed for () {
        fn from_outcome(outcome: Outcome) -> Option<()> {
            match outcome {
                Outcome::Unit => Some(()),
                _ => None,
            }
        }
    }
}

use sealed::Outcome;

impl CallOutput for bool {}
impl CallOutput for Action {}
impl CallOutput for () {}

enum Answer {
    Respond(HttpResponse),
    Fail,
    Leave,
}

enum Expectation {
    HttpCall { upstream: String, answer: Answer },
    LocalResponse { status: u16 },
    Log { level: LogLevel, contains: String },
}

/// A callback about to run, with expectations checked after it (and after any HTTP-call answers
/// given with [`ExpectHttpCall::returning`], which run right after the callback, in order).
#[must_use = "a call does nothing until .execute() or .execute_and_expect()"]
pub struct Call<'vm, R> {
    vm: &'vm mut Vm,
    target: Target,
    expectations: Vec<Expectation>,
    output: PhantomData<R>,
}

/// An expected HTTP call, waiting to be told how the test answers it.
#[must_use = "say how the call is answered: .returning(..), .reset() or .unanswered()"]
pub struct ExpectHttpCall<'vm, R> {
    call: Call<'vm, R>,
    upstream: String,
}

impl<'vm, R> ExpectHttpCall<'vm, R> {
    fn answer(mut self, answer: Answer) -> Call<'vm, R> {
        self.call.expectations.push(Expectation::HttpCall {
            upstream: self.upstream,
            answer,
        });
        self.call
    }

    /// Answer the call with `response` right after the callback.
    pub fn returning(self, response: HttpResponse) -> Call<'vm, R> {
        self.answer(Answer::Respond(response))
    }

    /// Reset the call (no headers, no body, no response maps) right after the callback; see
    /// [`Vm::reset_http_call`].
    pub fn reset(self) -> Call<'vm, R> {
        self.answer(Answer::Fail)
    }

    /// Leave the call pending; the test answers it later with [`Vm::respond_to_http_call`].
    pub fn unanswered(self) -> Call<'vm, R> {
        self.answer(Answer::Leave)
    }
}

impl<'vm, R: CallOutput> Call<'vm, R> {
    pub(crate) fn new(vm: &'vm mut Vm, target: Target) -> Call<'vm, R> {
        Call {
            vm,
            target,
            expectations: Vec::new(),
            output: PhantomData,
        }
    }

    /// Expect the callback to dispatch an HTTP call to cluster `upstream`.
    pub fn expect_http_call(self, upstream: &str) -> ExpectHttpCall<'vm, R> {
        ExpectHttpCall {
            call: self,
            upstream: upstream.to_owned(),
        }
    }

    /// Expect a local response with `status` (checked, and marked consumed).
    pub fn expect_local_response(mut self, status: u16) -> Call<'vm, R> {
        self.expectations
            .push(Expectation::LocalResponse { status });
        self
    }

    /// Expect a log line at `level` whose message contains `contains`.
    pub fn expect_log(mut self, level: LogLevel, contains: &str) -> Call<'vm, R> {
        self.expectations.push(Expectation::Log {
            level,
            contains: contains.to_owned(),
        });
        self
    }

    /// Runs the callback, then the HTTP-call answers, then checks the expectations.
    pub fn execute(self) -> Result<R, HostError> {
        self.run().map(|(result, _)| result)
    }

    /// [`Call::execute`], then checks the callback returned `expected`.
    pub fn execute_and_expect(self, expected: R) -> Result<(), HostError> {
        let callback = self.target.name();
        let (received, vm) = self.run()?;
        if received == expected {
            return Ok(());
        }
        vm.expectation(format!(
            "{callback}: expected {expected:?}, received {received:?}"
        ))
    }

    fn run(self) -> Result<(R, &'vm mut Vm), HostError> {
        let Call {
            vm,
            target,
            expectations,
            ..
        } = self;
        let callback = target.name();
        let log_mark = vm.state().output.logs.len();
        let call_mark = vm.state().http.history.len();
        let stream_id = match &target {
            Target::Stream(id, _) => Some(*id),
            _ => None,
        };
        let outcome = match target {
            Target::VmStart => Outcome::Bool(vm.vm_start_raw()?),
            Target::Configure => Outcome::Bool(vm.configure_raw()?),
            Target::Tick => {
                vm.tick_raw()?;
                Outcome::Unit
            }
            Target::Stream(id, delivery) => Outcome::Action(vm.deliver(id, delivery)?),
        };
        let Some(result) = R::from_outcome(outcome) else {
            return vm.expectation(format!(
                "{callback}: internal error: unexpected result type"
            ));
        };
        let result = vm.settle(result)?;
        let mut claimed = Vec::new();
        for expectation in &expectations {
            if let Expectation::HttpCall { upstream, answer } = expectation {
                let token = vm.state().http.history[call_mark..]
                    .iter()
                    .find(|c| c.upstream == *upstream && !claimed.contains(&c.token))
                    .map(|c| c.token);
                let Some(token) = token else {
                    let seen: Vec<String> = vm.state().http.history[call_mark..]
                        .iter()
                        .map(|c| c.describe())
                        .collect();
                    return vm.expectation(format!("{callback}: expected an HTTP call to cluster `{upstream}`; dispatched: {seen:?}"));
                };
                claimed.push(token);
                match answer {
                    Answer::Respond(response) => {
                        vm.respond_to_http_call(token, response.clone())?
                    }
                    Answer::Fail => vm.reset_http_call(token)?,
                    Answer::Leave => {}
                }
            }
        }
        for expectation in &expectations {
            match expectation {
                Expectation::HttpCall { .. } => {}
                Expectation::Log { level, contains } => {
                    let logs = &vm.state().output.logs[log_mark..];
                    if !logs
                        .iter()
                        .any(|l| l.level == *level && l.message.contains(contains.as_str()))
                    {
                        let seen: Vec<String> = logs.iter().map(ToString::to_string).collect();
                        return vm.expectation(format!(
                            "{callback}: expected a [{level}] log line containing {contains:?}; logged: {seen:#?}"
                        ));
                    }
                }
                Expectation::LocalResponse { status } => {
                    let Some(id) = stream_id else {
                        return vm.expectation(format!(
                            "{callback}: expect_local_response needs an HTTP stream callback"
                        ));
                    };
                    let taken = vm
                        .state_mut()
                        .streams
                        .get_mut(&id)
                        .and_then(|s| s.local_response.take());
                    match taken {
                        Some(response) if response.status_code == *status => {}
                        Some(response) => {
                            return vm.expectation(format!(
                                "{callback}: expected local response {status}, received {} ({:?})",
                                response.status_code,
                                response.body_text()
                            ))
                        }
                        None => {
                            return vm.expectation(format!(
                                "{callback}: expected local response {status}, none was sent"
                            ))
                        }
                    }
                }
            }
        }
        Ok((result, vm))
    }
}

impl Vm {
    /// [`Vm::on_vm_start`] with expectations.
    pub fn call_on_vm_start(&mut self) -> Call<'_, bool> {
        Call::new(self, Target::VmStart)
    }

    /// [`Vm::on_configure`] with expectations.
    pub fn call_on_configure(&mut self) -> Call<'_, bool> {
        Call::new(self, Target::Configure)
    }

    /// [`Vm::on_tick`] with expectations.
    pub fn call_on_tick(&mut self) -> Call<'_, ()> {
        Call::new(self, Target::Tick)
    }
}
