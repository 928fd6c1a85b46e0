//! One worker's side of the token cache: the requests waiting for a token, the token requests this worker has in
//! flight, and resuming the waiting requests when a token (or a refusal) arrives. Shared by the root context and
//! the HTTP contexts of one worker (one VM, one thread).
//!
//! Token requests are dispatched by the root context, in its tick, whatever request needed them. Envoy cancels an
//! HTTP call when the stream that made it ends, and the proxy-wasm SDK delivers an answer to the context whose
//! callback made the call; a token is for every request waiting for it, so neither may be the first request's
//! stream. An HTTP context that needs a token therefore only records it and asks for a tick in
//! [`DISPATCH_TICK`]; the root dispatches, receives the answer, and resumes every waiting stream.

use crate::host::{self, HostSharedData};
use keymesh_core::egress::cache::{CacheKey, CachedAnswer, Lookup, TokenCache};
use keymesh_core::egress::exchange::{token_request, Answer, Refusal};
use keymesh_core::egress::{Destination, EgressConfig};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

/// How soon the root runs after a request needs a token request (the least tick period Envoy has).
pub(crate) const DISPATCH_TICK: Duration = Duration::from_millis(1);
/// How often a worker with waiting requests looks for the token another worker is getting.
pub(crate) const WAIT_TICK: Duration = Duration::from_millis(20);

/// What a token request is for: one key's token, asked for on `destination`'s terms.
struct Wanted {
    destination: Destination,
    subject: Option<String>,
}

/// The requests waiting for one key's token.
struct Waiting {
    wanted: Wanted,
    contexts: Vec<u32>,
}

/// A token request this worker dispatched.
struct InFlight {
    key: CacheKey,
    since_ms: u64,
}

/// The state of one configured plugin on one worker.
pub(crate) struct Worker {
    pub(crate) config: EgressConfig,
    /// The root context: token requests are made (and answered) there.
    root: u32,
    cache: TokenCache<HostSharedData>,
    owner: u64,
    waiting: RefCell<HashMap<CacheKey, Waiting>>,
    /// Keys whose cached token is due for renewal (no request waits for them).
    renewals: RefCell<HashMap<CacheKey, Wanted>>,
    in_flight: RefCell<HashMap<u32, InFlight>>,
    /// The tick period asked of the host (zero: none).
    tick_period: Cell<Duration>,
}

/// What an HTTP context does with its request.
pub(crate) enum Step {
    /// Send it on with this `Authorization` value.
    Send(String),
    /// Answer it with this refusal.
    Refuse(Refusal),
    /// Pause it: it is resumed (or answered) when the token arrives.
    Wait,
}

impl Worker {
    pub(crate) fn new(config: EgressConfig, root: u32) -> Self {
        let cache = TokenCache::new(HostSharedData, &config);
        let owner = cache.register_owner();
        Self {
            config,
            root,
            cache,
            owner,
            waiting: RefCell::default(),
            renewals: RefCell::default(),
            in_flight: RefCell::default(),
            tick_period: Cell::new(Duration::ZERO),
        }
    }

    /// The step for request `context_id` to `destination`, on behalf of `subject`. Runs in the HTTP context.
    pub(crate) fn step(
        &self,
        context_id: u32,
        destination: &Destination,
        subject: Option<&str>,
    ) -> Step {
        let key = CacheKey::new(destination, subject);
        let wanted = || Wanted {
            destination: destination.clone(),
            subject: subject.map(str::to_owned),
        };
        match self.cache.lookup(&key, host::now_ms()) {
            Lookup::Fresh(token) => Step::Send(format!("Bearer {token}")),
            Lookup::Renew(token) => {
                self.renewals.borrow_mut().entry(key).or_insert_with(wanted);
                self.tick_every(DISPATCH_TICK);
                Step::Send(format!("Bearer {token}"))
            }
            Lookup::Refused(refusal) => Step::Refuse(refusal),
            Lookup::Miss => {
                self.waiting
                    .borrow_mut()
                    .entry(key)
                    .or_insert_with(|| Waiting {
                        wanted: wanted(),
                        contexts: Vec::new(),
                    })
                    .contexts
                    .push(context_id);
                self.tick_every(DISPATCH_TICK);
                Step::Wait
            }
        }
    }

    /// Asks the sidecar for `key`'s token, unless this worker already is or another worker holds the lease. Runs
    /// in the root context's tick.
    fn fetch(&self, key: &CacheKey, wanted: &Wanted, now: u64) {
        if self.in_flight.borrow().values().any(|f| &f.key == key) {
            return;
        }
        if !self.cache.try_lease(key, self.owner, now) {
            return;
        }
        let request = token_request(&self.config, &wanted.destination, wanted.subject.as_deref());
        let sidecar = &self.config.sidecar;
        match host::dispatch_post(
            &sidecar.cluster,
            &sidecar.authority,
            &sidecar.path,
            &request.headers,
            &request.body,
            Duration::from_millis(sidecar.timeout_ms),
        ) {
            Ok(token) => {
                self.in_flight.borrow_mut().insert(
                    token,
                    InFlight {
                        key: key.clone(),
                        since_ms: now,
                    },
                );
            }
            Err(status) => {
                log::warn!(
                    "cannot dispatch token request to cluster `{}`: {status:?}",
                    sidecar.cluster
                );
                let refused = CachedAnswer::of(Answer::Refused(Refusal::Unavailable), now);
                self.cache.store(key, &refused, self.owner);
                self.complete(key, &refused);
            }
        }
    }

    /// Handles the answer to token request `token` (delivered to the root context), if it is one of this
    /// worker's. A reset call (`num_headers` 0) has no response maps: reading one is `BadArgument`, on which the
    /// SDK panics, so it is answered as unavailable without looking.
    pub(crate) fn answered(&self, token: u32, num_headers: usize, body_size: usize) -> bool {
        let Some(flight) = self.in_flight.borrow_mut().remove(&token) else {
            return false;
        };
        let (status, body) = if num_headers == 0 {
            (None, None)
        } else {
            (
                host::call_response_status(),
                host::call_response_body(body_size),
            )
        };
        let now = host::now_ms();
        let answer = Answer::read(status, body.as_deref(), now);
        if let Answer::Refused(refusal) = &answer {
            log::info!("token request answered {status:?}: {refusal:?}");
        }
        let cached = CachedAnswer::of(answer, now);
        self.cache.store(&flight.key, &cached, self.owner);
        self.complete(&flight.key, &cached);
        true
    }

    /// Resumes (or answers) every request of this worker waiting for `key`, then makes the root effective again.
    fn complete(&self, key: &CacheKey, answer: &CachedAnswer) {
        let Some(waiting) = self.waiting.borrow_mut().remove(key) else {
            return;
        };
        for context in waiting.contexts {
            if host::switch_to(context).is_err() {
                continue;
            }
            match answer {
                CachedAnswer::Token { token, .. } => {
                    let value = format!("Bearer {token}");
                    if host::set_request_header("authorization", Some(&value)).is_ok() {
                        let _ = host::resume_request();
                    } else {
                        respond(Refusal::Unavailable);
                    }
                }
                CachedAnswer::Refused { refusal, .. } => respond(*refusal),
            }
        }
        let _ = host::switch_to(self.root);
    }

    /// The root context's tick: dispatch the token requests HTTP contexts asked for (renewals, and tokens requests
    /// wait for), serve waiting requests from tokens other workers stored, and take over keys whose fetch stalled
    /// (a lease that expired, or a request of this worker unanswered past its timeout).
    pub(crate) fn tick(&self) {
        let now = host::now_ms();
        let stale_after = self
            .config
            .sidecar
            .timeout_ms
            .saturating_add(self.config.lease_ms);
        self.in_flight
            .borrow_mut()
            .retain(|_, flight| now < flight.since_ms.saturating_add(stale_after));
        let renewals: Vec<(CacheKey, Wanted)> = self.renewals.borrow_mut().drain().collect();
        for (key, wanted) in renewals {
            if !matches!(self.cache.lookup(&key, now), Lookup::Fresh(_)) {
                self.fetch(&key, &wanted, now);
            }
        }
        let keys: Vec<CacheKey> = self.waiting.borrow().keys().cloned().collect();
        for key in keys {
            match self.cache.lookup(&key, now) {
                Lookup::Fresh(token) | Lookup::Renew(token) => self.complete(
                    &key,
                    &CachedAnswer::Token {
                        token,
                        exp_ms: u64::MAX,
                    },
                ),
                Lookup::Refused(refusal) => self.complete(
                    &key,
                    &CachedAnswer::Refused {
                        refusal,
                        until_ms: 0,
                    },
                ),
                Lookup::Miss => {
                    let waiting = self.waiting.borrow();
                    let Some(w) = waiting.get(&key) else {
                        continue;
                    };
                    let wanted = Wanted {
                        destination: w.wanted.destination.clone(),
                        subject: w.wanted.subject.clone(),
                    };
                    drop(waiting);
                    self.fetch(&key, &wanted, now);
                }
            }
        }
        if self.waiting.borrow().is_empty() {
            self.tick_every(Duration::ZERO);
        } else {
            self.tick_every(WAIT_TICK);
        }
    }

    /// Forgets a request that ended while waiting.
    pub(crate) fn forget(&self, context_id: u32) {
        self.waiting.borrow_mut().retain(|_, w| {
            w.contexts.retain(|c| *c != context_id);
            !w.contexts.is_empty()
        });
    }

    /// Asks the host to tick every `period` (zero: stop), unless it already does.
    fn tick_every(&self, period: Duration) {
        if self.tick_period.get() != period && host::set_tick_period(period).is_ok() {
            self.tick_period.set(period);
        }
    }
}

/// Answers the current request with `refusal`.
pub(crate) fn respond(refusal: Refusal) {
    if let Err(status) = host::send_response(refusal.status(), &refusal.headers(), &refusal.body())
    {
        log::error!("cannot send local response: {status:?}");
    }
}
