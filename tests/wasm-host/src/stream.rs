//! [`HttpStream`]: the handle of one HTTP context, through which a test delivers request and
//! response events and reads what the filter did to them.

use crate::abi::http_calls::HttpCall;
use crate::abi::stream::LocalResponse;
use crate::builder::owned_path;
use crate::call::{Call, Target};
use crate::error::HostError;
use crate::headers::HeaderMap;
use crate::types::{Action, StreamType};
use crate::vm::Vm;
use std::ops::{Deref, DerefMut};

static EMPTY_MAP: HeaderMap = HeaderMap::new();

/// One event Envoy delivers to an HTTP context.
pub(crate) enum Delivery {
    RequestHeaders(HeaderMap, bool),
    RequestBody(Vec<u8>, bool),
    RequestTrailers(HeaderMap),
    ResponseHeaders(HeaderMap, bool),
    ResponseBody(Vec<u8>, bool),
    ResponseTrailers(HeaderMap),
}

/// A live HTTP context of a [`Vm`]. It dereferences to the VM, so VM methods (answering HTTP calls,
/// logs, metrics, time) are at hand. Dropping the handle leaves the stream open (get it back with
/// [`Vm::http_stream`]); [`HttpStream::finish`] or the end of the VM ends it.
pub struct HttpStream<'vm> {
    vm: &'vm mut Vm,
    id: u32,
}

impl<'vm> HttpStream<'vm> {
    pub(crate) fn new(vm: &'vm mut Vm, id: u32) -> HttpStream<'vm> {
        HttpStream { vm, id }
    }

    /// The context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn call(&mut self, delivery: Delivery) -> Call<'_, Action> {
        Call::new(self.vm, Target::Stream(self.id, delivery))
    }

    /// Delivers request headers (`proxy_on_request_headers`); returns the filter's action.
    pub fn on_request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.call_on_request_headers(headers, end_of_stream)
            .execute()
    }

    /// Delivers a request body chunk (`proxy_on_request_body`). While the filter pauses, chunks
    /// accumulate in one buffer, as with Envoy's `StopIterationAndBuffer`.
    pub fn on_request_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.call_on_request_body(chunk, end_of_stream).execute()
    }

    /// Delivers request trailers (`proxy_on_request_trailers`).
    pub fn on_request_trailers(&mut self, trailers: &[(&str, &str)]) -> Result<Action, HostError> {
        self.call_on_request_trailers(trailers).execute()
    }

    /// Delivers response headers (`proxy_on_response_headers`).
    pub fn on_response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.call_on_response_headers(headers, end_of_stream)
            .execute()
    }

    /// Delivers a response body chunk (`proxy_on_response_body`).
    pub fn on_response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.call_on_response_body(chunk, end_of_stream).execute()
    }

    /// Delivers response trailers (`proxy_on_response_trailers`).
    pub fn on_response_trailers(&mut self, trailers: &[(&str, &str)]) -> Result<Action, HostError> {
        self.call_on_response_trailers(trailers).execute()
    }

    /// Delivers request headers given as a [`HeaderMap`], whose values may be any bytes (HTTP allows `obs-text`
    /// in a value, which is not UTF-8); returns the filter's action.
    pub fn on_request_header_map(
        &mut self,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.call(Delivery::RequestHeaders(headers, end_of_stream))
            .execute()
    }

    /// [`HttpStream::on_request_headers`] with expectations.
    pub fn call_on_request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Call<'_, Action> {
        self.call(Delivery::RequestHeaders(
            HeaderMap::from(headers),
            end_of_stream,
        ))
    }

    /// [`HttpStream::on_request_body`] with expectations.
    pub fn call_on_request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Call<'_, Action> {
        self.call(Delivery::RequestBody(chunk.to_vec(), end_of_stream))
    }

    /// [`HttpStream::on_request_trailers`] with expectations.
    pub fn call_on_request_trailers(&mut self, trailers: &[(&str, &str)]) -> Call<'_, Action> {
        self.call(Delivery::RequestTrailers(HeaderMap::from(trailers)))
    }

    /// [`HttpStream::on_response_headers`] with expectations.
    pub fn call_on_response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Call<'_, Action> {
        self.call(Delivery::ResponseHeaders(
            HeaderMap::from(headers),
            end_of_stream,
        ))
    }

    /// [`HttpStream::on_response_body`] with expectations.
    pub fn call_on_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Call<'_, Action> {
        self.call(Delivery::ResponseBody(chunk.to_vec(), end_of_stream))
    }

    /// [`HttpStream::on_response_trailers`] with expectations.
    pub fn call_on_response_trailers(&mut self, trailers: &[(&str, &str)]) -> Call<'_, Action> {
        self.call(Delivery::ResponseTrailers(HeaderMap::from(trailers)))
    }

    fn stream(&self) -> Option<&crate::abi::stream::StreamState> {
        self.vm.state().streams.get(&self.id)
    }

    /// The request headers as the filter left them.
    pub fn request_headers(&self) -> &HeaderMap {
        self.stream().map_or(&EMPTY_MAP, |s| &s.request_headers)
    }

    /// The request trailers as the filter left them.
    pub fn request_trailers(&self) -> &HeaderMap {
        self.stream().map_or(&EMPTY_MAP, |s| &s.request_trailers)
    }

    /// The response headers as the filter left them.
    pub fn response_headers(&self) -> &HeaderMap {
        self.stream().map_or(&EMPTY_MAP, |s| &s.response_headers)
    }

    /// The response trailers as the filter left them.
    pub fn response_trailers(&self) -> &HeaderMap {
        self.stream().map_or(&EMPTY_MAP, |s| &s.response_trailers)
    }

    /// The current request body buffer as the filter left it.
    pub fn request_body(&self) -> &[u8] {
        self.stream().map_or(&[], |s| &s.request_body)
    }

    /// The current response body buffer as the filter left it.
    pub fn response_body(&self) -> &[u8] {
        self.stream().map_or(&[], |s| &s.response_body)
    }

    /// Takes the local response the filter sent, marking it checked.
    pub fn take_local_response(&mut self) -> Option<LocalResponse> {
        self.vm
            .state_mut()
            .streams
            .get_mut(&self.id)
            .and_then(|s| s.local_response.take())
    }

    /// Takes the `proxy_close_stream` resets the filter issued, marking them checked.
    pub fn take_resets(&mut self) -> Vec<StreamType> {
        self.vm
            .state_mut()
            .streams
            .get_mut(&self.id)
            .map(|s| std::mem::take(&mut s.resets))
            .unwrap_or_default()
    }

    /// Every `proxy_continue_stream` the filter issued for this stream, in order.
    pub fn resumes(&self) -> &[StreamType] {
        self.stream().map_or(&[], |s| &s.resumes)
    }

    /// Whether the request is paused (a callback returned `Pause` and nothing resumed it since).
    pub fn is_request_paused(&self) -> bool {
        self.stream().is_some_and(|s| s.request_paused.is_some())
    }

    /// Whether the response is paused.
    pub fn is_response_paused(&self) -> bool {
        self.stream().is_some_and(|s| s.response_paused.is_some())
    }

    /// A property for this stream only (shadows the VM's), e.g. `&["request", "path"]`.
    pub fn set_stream_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        if let Some(stream) = self.vm.state_mut().streams.get_mut(&self.id) {
            stream
                .properties
                .insert(owned_path(path), Some(value.into()));
        }
    }

    /// Declares a property absent for this stream.
    pub fn set_stream_property_absent(&mut self, path: &[&str]) {
        if let Some(stream) = self.vm.state_mut().streams.get_mut(&self.id) {
            stream.properties.insert(owned_path(path), None);
        }
    }

    /// A property as this stream sees it (including values the filter set).
    pub fn stream_property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path = owned_path(path);
        match self.stream().and_then(|s| s.properties.get(&path)) {
            Some(value) => value.clone(),
            None => self
                .vm
                .property(&path.iter().map(String::as_str).collect::<Vec<_>>()),
        }
    }

    /// Ends the stream (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`) and fails if it left
    /// effects unconsumed: an unanswered HTTP call, an unchecked local response or reset, or a
    /// direction paused and never resumed.
    pub fn finish(self) -> Result<(), HostError> {
        let effects = self.vm.end_stream(self.id)?;
        if effects.is_empty() {
            return Ok(());
        }
        self.vm.fail(HostError::Unconsumed {
            at: format!("end of context {}", self.id),
            effects,
        })
    }
}

impl HttpStream<'_> {
    /// Ends the stream as a downstream reset does (the client went away while a direction may be
    /// paused): `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`. Envoy cancels the stream's
    /// unanswered HTTP calls; they are returned, so a test can check what the reset cost. Fails if
    /// the stream left another effect unconsumed (an unchecked local response or reset).
    pub fn reset_by_client(self) -> Result<Vec<HttpCall>, HostError> {
        let (effects, cancelled) = self.vm.end_stream_with(self.id, true)?;
        if effects.is_empty() {
            return Ok(cancelled);
        }
        self.vm.fail(HostError::Unconsumed {
            at: format!("reset of context {}", self.id),
            effects,
        })
    }
}

impl Deref for HttpStream<'_> {
    type Target = Vm;

    fn deref(&self) -> &Vm {
        self.vm
    }
}

impl DerefMut for HttpStream<'_> {
    fn deref_mut(&mut self) -> &mut Vm {
        self.vm
    }
}

impl Vm {
    /// Delivers `delivery` to stream `id` and tracks pauses the way Envoy's filter chain would.
    pub(crate) fn deliver(&mut self, id: u32, delivery: Delivery) -> Result<Action, HostError> {
        let Some(stream) = self.state_mut().streams.get_mut(&id) else {
            return self.expectation(format!("context {id} is not a live HTTP stream"));
        };
        // (export, size argument, end_of_stream argument, response direction, body callback)
        let (export, size, end_of_stream, response, body) = match delivery {
            Delivery::RequestHeaders(map, eos) => {
                let n = map.len();
                stream.request_headers = map;
                ("proxy_on_request_headers", n, Some(eos), false, false)
            }
            Delivery::ResponseHeaders(map, eos) => {
                let n = map.len();
                stream.response_headers = map;
                ("proxy_on_response_headers", n, Some(eos), true, false)
            }
            Delivery::RequestTrailers(map) => {
                let n = map.len();
                stream.request_trailers = map;
                ("proxy_on_request_trailers", n, None, false, false)
            }
            Delivery::ResponseTrailers(map) => {
                let n = map.len();
                stream.response_trailers = map;
                ("proxy_on_response_trailers", n, None, true, false)
            }
            Delivery::RequestBody(chunk, eos) => {
                let n = append_chunk(
                    &mut stream.request_body,
                    stream.request_body_buffering,
                    chunk,
                );
                ("proxy_on_request_body", n, Some(eos), false, true)
            }
            Delivery::ResponseBody(chunk, eos) => {
                let n = append_chunk(
                    &mut stream.response_body,
                    stream.response_body_buffering,
                    chunk,
                );
                ("proxy_on_response_body", n, Some(eos), true, true)
            }
        };
        let local_before = stream.local_response_sent;
        let size = crate::codec::len_u32(size);
        let raw = match end_of_stream {
            Some(eos) => {
                self.invoke::<(u32, u32, u32), i32>(export, id, (id, size, u32::from(eos)))
            }
            None => self.invoke::<(u32, u32), i32>(export, id, (id, size)),
        };
        let raw = match raw {
            // The Rust SDK's answer when the context it created for this id is a stream (TCP) one.
            Err(HostError::Trap { output, .. }) if output.contains("invalid context_id") => {
                return Err(HostError::Unsupported(format!(
                    "TCP filters are not supported: {export} reached context {id}, which the filter's root \
                     context created as a stream (TCP) context, not an HTTP one; this host drives HTTP filters only"
                )));
            }
            raw => raw?,
        };
        let action = match raw.map(|raw| (raw, Action::from_raw(raw))) {
            None => Action::Continue,
            Some((_, Some(action))) => action,
            Some((raw, None)) => {
                return self.fail(HostError::BadReturn {
                    callback: export,
                    value: raw.into(),
                    what: "action",
                })
            }
        };
        self.check_local_response_pause(id, local_before, Some(action), export)?;
        if let Some(stream) = self.state_mut().streams.get_mut(&id) {
            let paused = (action == Action::Pause && !stream.local_response_sent).then_some(export);
            match (response, body) {
                (false, true) => stream.request_body_buffering = action == Action::Pause,
                (true, true) => stream.response_body_buffering = action == Action::Pause,
                _ => {}
            }
            if response {
                stream.response_paused = paused;
            } else {
                stream.request_paused = paused;
            }
        }
        self.run_deferred()?;
        Ok(action)
    }
}

/// Envoy keeps buffering while the filter pauses a body callback; after `Continue` the buffer was
/// passed on and the next chunk starts a new one. Returns the size handed to the filter.
fn append_chunk(buffer: &mut Vec<u8>, buffering: bool, chunk: Vec<u8>) -> usize {
    if !buffering {
        buffer.clear();
    }
    buffer.extend(chunk);
    buffer.len()
}
