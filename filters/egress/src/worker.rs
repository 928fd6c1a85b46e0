//! One worker's side of the token cache: the requests waiting for a token, the token requests this worker has in
//! flight, and resuming the waiting requests when a token (or a refusal) arrives. Shared by the root context and
//! the HTTP contexts of one worker (one VM, one thread).

use crate::host::{self, HostSharedData};
use keymesh_core::egress::cache::{CacheKey, CachedAnswer, Lookup, TokenCache};
use keymesh_core::egress::exchange::{token_request, Answer, Refusal};
use keymesh_core::egress::{Destination, EgressConfig};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// How often a worker with waiting requests looks for the token another worker is getting.
pub(crate) const WAIT_TICK: Duration = Duration::from_millis(20);

/// What a request waits for: the token of one key, to be asked for on `destination`'s terms.
struct Waiting {
    destination: Destination,
    subject: Option<String>,
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
    cache: TokenCache<HostSharedData>,
    owner: u64,
    waiting: RefCell<HashMap<CacheKey, Waiting>>,
    in_flight: RefCell<HashMap<u32, InFlight>>,
    ticking: RefCell<bool>,
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
    pub(crate) fn new(config: EgressConfig) -> Self {
        let cache = TokenCache::new(HostSharedData, &config);
        let owner = cache.register_owner();
        Self {
            config,
            cache,
            owner,
            waiting: RefCell::default(),
            in_flight: RefCell::default(),
            ticking: RefCell::new(false),
        }
    }

    /// The step for request `context_id` to `destination`, on behalf of `subject`.
    pub(crate) fn step(
        &self,
        context_id: u32,
        destination: &Destination,
        subject: Option<&str>,
    ) -> Step {
        let key = CacheKey::new(destination, subject);
        let now = host::now_ms();
        match self.cache.lookup(&key, now) {
            Lookup::Fresh(token) => Step::Send(format!("Bearer {token}")),
            Lookup::Renew(token) => {
                self.fetch(&key, destination, subject, now, context_id);
                Step::Send(format!("Bearer {token}"))
            }
            Lookup::Refused(refusal) => Step::Refuse(refusal),
            Lookup::Miss => {
                self.waiting
                    .borrow_mut()
                    .entry(key.clone())
                    .or_insert_with(|| Waiting {
                        destination: destination.clone(),
                        subject: subject.map(str::to_owned),
                        contexts: Vec::new(),
                    })
                    .contexts
                    .push(context_id);
                self.fetch(&key, destination, subject, now, context_id);
                self.ensure_ticking();
                Step::Wait
            }
        }
    }

    /// Asks the sidecar for `key`'s token, unless this worker already is or another worker holds the lease.
    /// `current` is the context this runs in.
    fn fetch(
        &self,
        key: &CacheKey,
        destination: &Destination,
        subject: Option<&str>,
        now: u64,
        current: u32,
    ) {
        if self.in_flight.borrow().values().any(|f| &f.key == key) {
            return;
        }
        if !self.cache.try_lease(key, self.owner, now) {
            return;
        }
        let request = token_request(&self.config, destination, subject);
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
                self.complete(key, &refused, current);
            }
        }
    }

    /// Handles the answer to token request `token`, if it is one of this worker's. `current` is the context the
    /// answer was delivered to, made effective again afterwards.
    /// A reset call (`num_headers` 0) has no response maps: reading one is `BadArgument`, on which the SDK
    /// panics, so it is answered as unavailable without looking.
    pub(crate) fn answered(
        &self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        current: u32,
    ) -> bool {
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
        self.complete(&flight.key, &cached, current);
        true
    }

    /// Resumes (or answers) every request of this worker waiting for `key`, then makes `current` effective again.
    fn complete(&self, key: &CacheKey, answer: &CachedAnswer, current: u32) {
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
        let _ = host::switch_to(current);
    }

    /// On each tick while requests wait: serve them from tokens other workers stored, and take over keys whose
    /// fetch stalled (a lease that expired, or a request of this worker unanswered past its timeout).
    pub(crate) fn tick(&self, root: u32) {
        let now = host::now_ms();
        let stale_after = self
            .config
            .sidecar
            .timeout_ms
            .saturating_add(self.config.lease_ms);
        self.in_flight
            .borrow_mut()
            .retain(|_, flight| now < flight.since_ms.saturating_add(stale_after));
        let keys: Vec<CacheKey> = self.waiting.borrow().keys().cloned().collect();
        for key in keys {
            match self.cache.lookup(&key, now) {
                Lookup::Fresh(token) | Lookup::Renew(token) => self.complete(
                    &key,
                    &CachedAnswer::Token {
                        token,
                        exp_ms: u64::MAX,
                    },
                    root,
                ),
                Lookup::Refused(refusal) => self.complete(
                    &key,
                    &CachedAnswer::Refused {
                        refusal,
                        until_ms: 0,
                    },
                    root,
                ),
                Lookup::Miss => {
                    let waiting = self.waiting.borrow();
                    let Some(w) = waiting.get(&key) else {
                        continue;
                    };
                    let (destination, subject) = (w.destination.clone(), w.subject.clone());
                    drop(waiting);
                    self.fetch(&key, &destination, subject.as_deref(), now, root);
                }
            }
        }
        if self.waiting.borrow().is_empty() && *self.ticking.borrow() {
            self.ticking.replace(false);
            let _ = host::set_tick_period(Duration::ZERO);
        }
    }

    /// Forgets a request that ended while waiting.
    pub(crate) fn forget(&self, context_id: u32) {
        self.waiting.borrow_mut().retain(|_, w| {
            w.contexts.retain(|c| *c != context_id);
            !w.contexts.is_empty()
        });
    }

    fn ensure_ticking(&self) {
        if !*self.ticking.borrow() && host::set_tick_period(WAIT_TICK).is_ok() {
            self.ticking.replace(true);
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
