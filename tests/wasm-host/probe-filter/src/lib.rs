//! Conformance probe for `keymesh-wasm-host`: in every callback phase it calls every host function the
//! host implements, with valid and invalid arguments, and records one line per call (`call => status
//! [value]`). Each phase's lines go into shared data under `probe:<phase>`; a request carrying
//! `x-probe: report` gets them all back as a local 200 response, in a fixed order. Run against the
//! host and against Envoy, the two reports must be equal.
//!
//! The scenario a driver plays (see `tests/wasm-host/conformance/README.md`):
//! 1. `POST /probe` with `x-probe: main`, a body and trailers. On request headers the probe
//!    dispatches calls to `probe_upstream` (`/call`, answered 200 `x-up: 1`, body `pong`) and to
//!    `probe_upstream` (`/reset`, the upstream cuts off mid-body), to `probe_refused` (nothing
//!    listens) and to `probe_upstream` `/hang` with a 200 ms timeout (never answered), pauses, and
//!    resumes once all four answers arrived. The upstream answers the request 200 with a body and trailers.
//! 2. Ticks (period 200 ms) probe once after the first request headers.
//! 3. `GET /report` with `x-probe: report` returns every phase's lines.

mod raw;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::fmt::Write;

/// The phases whose lines the report contains, in report order.
const PHASES: &[&str] = &[
    "configure",
    "tick",
    "request_headers",
    "call_response_ok",
    "call_response_reset",
    "call_response_refused",
    "call_response_timeout",
    "request_body",
    "request_trailers",
    "response_headers",
    "response_body",
    "response_trailers",
    "done",
    "log",
];

/// Set by the first request headers: ticks probe once after it.
const GO_KEY: &str = "probe-go";
/// Map and buffer types, as the ABI numbers them.
const MAPS: [(u32, &str); 8] = [
    (0, "request_headers"),
    (1, "request_trailers"),
    (2, "response_headers"),
    (3, "response_trailers"),
    (4, "grpc_initial_metadata"),
    (5, "grpc_trailing_metadata"),
    (6, "call_response_headers"),
    (7, "call_response_trailers"),
];
const BUFFERS: [(u32, &str); 7] = [
    (0, "request_body"),
    (1, "response_body"),
    (2, "downstream_data"),
    (4, "call_response_body"),
    (5, "grpc_receive"),
    (6, "vm_configuration"),
    (7, "plugin_configuration"),
];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot { probed_tick: false }) });
}}

/// One phase's record.
struct Record {
    phase: &'static str,
    lines: String,
}

impl Record {
    fn new(phase: &'static str) -> Record {
        Record {
            phase,
            lines: String::new(),
        }
    }

    fn line(&mut self, call: &str, answer: impl std::fmt::Display) {
        let _ = writeln!(self.lines, "{}: {call} => {answer}", self.phase);
    }

    fn status(&mut self, call: &str, status: u32) {
        self.line(call, name(status));
    }

    fn data(&mut self, call: &str, (status, data): raw::Answer) {
        match data {
            Some(bytes) => self.line(call, format!("Ok {:?}", String::from_utf8_lossy(&bytes))),
            None => self.status(call, status),
        }
    }

    /// Stores the record under `probe:<phase>` (overwriting: a phase is recorded once).
    fn save(self) {
        let key = format!("probe:{}", self.phase);
        if raw::get_shared(&key).0 == 0 {
            return;
        }
        raw::set_shared(&key, self.lines.as_bytes(), 0);
    }
}

/// The ABI's status names.
fn name(status: u32) -> String {
    match status {
        0 => "Ok".into(),
        1 => "NotFound".into(),
        2 => "BadArgument".into(),
        3 => "SerializationFailure".into(),
        4 => "ParseFailure".into(),
        6 => "InvalidMemoryAccess".into(),
        7 => "Empty".into(),
        8 => "CasMismatch".into(),
        10 => "InternalFailure".into(),
        12 => "Unimplemented".into(),
        other => format!("Status({other})"),
    }
}

/// Every host function, with valid and invalid arguments. Calls with lasting effects are chosen to
/// be harmless: empty edits, unknown clusters, unknown tokens.
fn probe_everything(r: &mut Record) {
    let phase = r.phase;
    for (map, label) in MAPS {
        let key = if map == 6 { ":status" } else { "x-probe" };
        r.data(
            &format!("get_header({label}, {key})"),
            raw::get_header(map, key),
        );
        r.status(&format!("get_pairs({label})"), raw::get_pairs(map).0);
    }
    r.status("get_header(map 99)", raw::get_header(99, "x-probe").0);
    for (map, label) in MAPS {
        r.status(
            &format!("add_header({label})"),
            raw::add_header(map, &format!("x-probe-{phase}"), "added"),
        );
    }
    r.status(
        "add_header(map 99)",
        raw::add_header(99, "x-probe-bad", "1"),
    );
    r.status(
        "remove_header(request_headers, x-probe-absent)",
        raw::remove_header(0, "x-probe-absent"),
    );
    r.status(
        "replace_header(call_response_headers)",
        raw::replace_header(6, "x-up", "2"),
    );
    for (buffer, label) in BUFFERS {
        r.data(
            &format!("get_buffer({label}, 0, 64)"),
            raw::get_buffer(buffer, 0, 64),
        );
    }
    r.status("get_buffer(buffer 99)", raw::get_buffer(99, 0, 64).0);
    r.status(
        "set_buffer(request_body, append nothing)",
        raw::set_buffer(0, usize::MAX >> 1, 0, b""),
    );
    r.status(
        "set_buffer(response_body, append nothing)",
        raw::set_buffer(1, usize::MAX >> 1, 0, b""),
    );
    r.status(
        "set_buffer(vm_configuration)",
        raw::set_buffer(6, 0, 0, b"x"),
    );
    r.data(
        "get_property(plugin_root_id)",
        raw::get_property(&["plugin_root_id"]),
    );
    r.data(
        "get_property(plugin_vm_id)",
        raw::get_property(&["plugin_vm_id"]),
    );
    r.status(
        "set_property(probe_set)",
        raw::set_property(&["probe_set"], "v"),
    );
    let (status, data, _) = raw::get_shared("probe-missing");
    r.data("get_shared(probe-missing)", (status, data));
    let key = format!("probe-shared-{phase}");
    r.status("set_shared(cas 0)", raw::set_shared(&key, b"one", 0));
    let (status, data, cas) = raw::get_shared(&key);
    r.data("get_shared(written)", (status, data));
    r.status(
        "set_shared(stale cas)",
        raw::set_shared(&key, b"two", cas.wrapping_add(1000)),
    );
    r.status(
        "set_shared(current cas)",
        raw::set_shared(&key, b"three", cas),
    );
    r.status(
        "set_shared(cas of missing key)",
        raw::set_shared(&format!("probe-new-{phase}"), b"x", 77),
    );
    let (status, queue) = raw::register_queue("probe-queue");
    r.status("register_queue", status);
    r.status(
        "resolve_queue(probe, probe-queue)",
        raw::resolve_queue("probe", "probe-queue").0,
    );
    r.status(
        "resolve_queue(probe, missing)",
        raw::resolve_queue("probe", "probe-missing").0,
    );
    r.status("enqueue(registered)", raw::enqueue(queue, "item"));
    r.data("dequeue(registered)", raw::dequeue(queue));
    r.status("dequeue(registered, empty)", raw::dequeue(queue).0);
    r.status("enqueue(unknown id)", raw::enqueue(0x7fff_0000, "x"));
    r.status("dequeue(unknown id)", raw::dequeue(0x7fff_0000).0);
    let (status, counter) = raw::define_metric(0, "probe_counter");
    r.status("define_metric(counter)", status);
    r.status(
        "increment_metric(counter, 1)",
        raw::increment_metric(counter, 1),
    );
    r.status(
        "increment_metric(counter, -1)",
        raw::increment_metric(counter, -1),
    );
    r.status("record_metric(counter, 2)", raw::record_metric(counter, 2));
    r.status("get_metric(counter)", raw::get_metric(counter).0);
    let (status, gauge) = raw::define_metric(1, "probe_gauge");
    r.status("define_metric(gauge)", status);
    r.status("record_metric(gauge, 5)", raw::record_metric(gauge, 5));
    r.status(
        "increment_metric(gauge, -2)",
        raw::increment_metric(gauge, -2),
    );
    let (status, value) = raw::get_metric(gauge);
    r.line("get_metric(gauge)", format!("{} {value}", name(status)));
    let (status, histogram) = raw::define_metric(2, "probe_histogram");
    r.status("define_metric(histogram)", status);
    r.status(
        "record_metric(histogram, 7)",
        raw::record_metric(histogram, 7),
    );
    r.status(
        "increment_metric(histogram, 1)",
        raw::increment_metric(histogram, 1),
    );
    r.status("get_metric(histogram)", raw::get_metric(histogram).0);
    r.status(
        "define_metric(type 9)",
        raw::define_metric(9, "probe_bad").0,
    );
    r.status("get_metric(unknown id)", raw::get_metric(0x7fff_0000).0);
    r.status(
        "increment_metric(unknown id)",
        raw::increment_metric(0x7fff_0000, 1),
    );
    r.status("log(info)", raw::log(2, "probe log line"));
    r.status("log(level 9)", raw::log(9, "probe bad level"));
    r.status("get_log_level", raw::log_level());
    r.status("get_current_time", raw::current_time().0);
    r.status(
        "http_call(unknown cluster)",
        raw::http_call(
            "probe_unknown",
            &[(":method", "GET"), (":path", "/"), (":authority", "x")],
            1000,
        )
        .0,
    );
    r.status(
        "http_call(no :path)",
        raw::http_call(
            "probe_upstream",
            &[(":method", "GET"), (":authority", "x")],
            1000,
        )
        .0,
    );
    r.status(
        "grpc_call(unknown cluster)",
        raw::grpc_call("probe_unknown").0,
    );
    r.status("grpc_send(unknown token)", raw::grpc_send(0x7fff_0000));
    r.status("grpc_cancel(unknown token)", raw::grpc_cancel(0x7fff_0000));
    r.status("grpc_close(unknown token)", raw::grpc_close(0x7fff_0000));
    r.status("get_status", raw::get_status());
    r.status("continue_stream(type 9)", raw::continue_stream(9));
    r.status("close_stream(type 9)", raw::close_stream(9));
    r.status(
        "set_effective_context(unknown)",
        raw::set_effective_context(0x7fff_0000),
    );
}

struct ProbeRoot {
    probed_tick: bool,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mut r = Record::new("configure");
        r.status("set_tick_period(200)", raw::set_tick_period(200));
        probe_everything(&mut r);
        r.save();
        true
    }

    fn on_tick(&mut self) {
        if self.probed_tick || raw::get_shared(GO_KEY).0 != 0 {
            return;
        }
        self.probed_tick = true;
        let mut r = Record::new("tick");
        r.status("set_tick_period(200)", raw::set_tick_period(200));
        probe_everything(&mut r);
        r.save();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeStream {
            context_id,
            report: false,
            awaiting: 0,
            refused_token: 0,
            timeout_token: 0,
            body_seen: [false; 2],
        }))
    }
}

struct ProbeStream {
    context_id: u32,
    report: bool,
    /// HTTP calls dispatched and not answered yet; the request resumes when none are left.
    awaiting: u32,
    /// The calls whose failure the probe records: connection refused, and timed out.
    refused_token: u32,
    timeout_token: u32,
    /// Whether request/response body callbacks were probed already (chunking differs by proxy).
    body_seen: [bool; 2],
}

impl ProbeStream {
    fn resume_when_answered(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
        if self.awaiting == 0 {
            raw::continue_stream(0);
        }
    }

    fn send_report(&self) {
        let mut body = String::new();
        for phase in PHASES {
            match raw::get_shared(&format!("probe:{phase}")) {
                (0, Some(lines), _) => body.push_str(&String::from_utf8_lossy(&lines)),
                _ => {
                    let _ = writeln!(body, "{phase}: not recorded");
                }
            }
        }
        let headers = [("content-type", "text/plain")];
        self.send_http_response(200, headers.to_vec(), Some(body.as_bytes()));
    }

    fn body(&mut self, index: usize, phase: &'static str) {
        if self.report || self.body_seen[index] {
            return;
        }
        self.body_seen[index] = true;
        let mut r = Record::new(phase);
        probe_everything(&mut r);
        r.save();
    }
}

impl Context for ProbeStream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if token == self.refused_token || token == self.timeout_token {
            let phase = if token == self.refused_token {
                "call_response_refused"
            } else {
                "call_response_timeout"
            };
            let mut r = Record::new(phase);
            r.line("headers>0", headers > 0);
            r.data("get_header(:status)", raw::get_header(6, ":status"));
            r.data(
                "get_header(content-type)",
                raw::get_header(6, "content-type"),
            );
            r.data("body", raw::get_buffer(4, 0, body));
            r.save();
            self.resume_when_answered();
            return;
        }
        let phase = if headers == 0 {
            "call_response_reset"
        } else {
            "call_response_ok"
        };
        let mut r = Record::new(phase);
        r.line(
            "arguments(headers>0, body, trailers)",
            format!("{} {body} {trailers}", headers > 0),
        );
        r.line("token is nonzero", token != 0);
        r.data(
            "get_header(call_response_headers, x-up)",
            raw::get_header(6, "x-up"),
        );
        probe_everything(&mut r);
        r.save();
        self.resume_when_answered();
    }

    fn on_done(&mut self) -> bool {
        if !self.report {
            let mut r = Record::new("done");
            probe_everything(&mut r);
            r.save();
        }
        true
    }
}

impl HttpContext for ProbeStream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if raw::get_header(0, "x-probe").1.as_deref() == Some(b"report") {
            self.report = true;
            self.send_report();
            return Action::Pause;
        }
        raw::set_shared(GO_KEY, b"1", 0);
        let mut r = Record::new("request_headers");
        r.line("context id is nonzero", self.context_id != 0);
        // Replacing a header: where does it end up?
        r.status(
            "replace_header(request_headers, x-first)",
            raw::replace_header(0, "x-first", "replaced"),
        );
        let order = order_of(&["x-first", "x-second"]);
        r.line("order after replace", order);
        r.status(
            "set_pairs(request_trailers, empty)",
            raw::set_pairs(1, &raw::serialize(&[])),
        );
        probe_everything(&mut r);
        let call = [
            (":method", "GET"),
            (":path", "/call"),
            (":authority", "probe"),
        ];
        let (status, _) = raw::http_call("probe_upstream", &call, 5000);
        r.status("http_call(probe_upstream)", status);
        let reset = [
            (":method", "GET"),
            (":path", "/reset"),
            (":authority", "probe"),
        ];
        let (status, _) = raw::http_call("probe_upstream", &reset, 5000);
        r.status("http_call(probe_upstream /reset)", status);
        let (status, _) = raw::http_call("probe_empty", &call, 5000);
        r.status("http_call(cluster without hosts)", status);
        let (status, token) = raw::http_call("probe_refused", &call, 5000);
        r.status("http_call(probe_refused)", status);
        self.refused_token = token;
        let hang = [
            (":method", "GET"),
            (":path", "/hang"),
            (":authority", "probe"),
        ];
        let (status, token) = raw::http_call("probe_upstream", &hang, 200);
        r.status("http_call(probe_upstream /hang, 200 ms)", status);
        self.timeout_token = token;
        r.save();
        self.awaiting = 4;
        Action::Pause
    }

    fn on_http_request_body(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        self.body(0, "request_body");
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if !self.report {
            let mut r = Record::new("request_trailers");
            probe_everything(&mut r);
            r.save();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if !self.report {
            let mut r = Record::new("response_headers");
            probe_everything(&mut r);
            r.save();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        self.body(1, "response_body");
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        if !self.report {
            let mut r = Record::new("response_trailers");
            probe_everything(&mut r);
            r.save();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if !self.report {
            let mut r = Record::new("log");
            probe_everything(&mut r);
            r.save();
        }
    }
}

/// The positions of `names` among the request headers' names (only those, in map order).
fn order_of(names: &[&str]) -> String {
    let (status, data) = raw::get_pairs(0);
    let Some(data) = data else {
        return name(status);
    };
    let found: Vec<String> = decode_names(&data)
        .into_iter()
        .filter(|n| names.contains(&n.as_str()))
        .collect();
    found.join(",")
}

/// Header names of a serialized map.
fn decode_names(data: &[u8]) -> Vec<String> {
    let word = |at: usize| -> usize {
        data.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize)
    };
    let count = word(0);
    let mut at = 4 + count * 8;
    let mut names = Vec::new();
    for i in 0..count {
        let (name_len, value_len) = (word(4 + i * 8), word(8 + i * 8));
        if let Some(name) = data.get(at..at + name_len) {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        at += name_len + 1 + value_len + 1;
    }
    names
}
