'use strict';
// @keymesh/verify: the Envoy filter's decisions for Node.js services. Every decision is made by keymesh-core
// compiled to WebAssembly (./wasm); this file only does HTTP to the sidecar, timers, and header plumbing.

const os = require('node:os');
const { Engine } = require('./wasm/keymesh_node.js');
const { createHttpTransport } = require('./transport.js');
const middleware = require('./middleware.js');

const EMPTY = new Uint8Array(0);
const PROXY_HEADER = 'x-keymesh-proxy';

/** A configuration the filter's parser refused; the message names the bad field. */
class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'KeymeshConfigError';
  }
}

const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };
const defaultLogger = {
  debug() {},
  info() {},
  warn: (msg) => console.warn(`keymesh: ${msg}`),
  error: (msg) => console.error(`keymesh: ${msg}`),
};

/** Every value of each header, by lower-case name, from node's header object, rawHeaders, pairs or a Headers. */
function headerValues(headers, names) {
  const found = names.map(() => []);
  const add = (name, value) => {
    const i = names.indexOf(String(name).toLowerCase());
    if (i < 0 || value === undefined || value === null) return;
    if (Array.isArray(value)) for (const v of value) found[i].push(String(v));
    else found[i].push(String(value));
  };
  if (!headers) return found;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [n, v] of headers) add(n, v);
    else for (let i = 0; i + 1 < headers.length; i += 2) add(headers[i], headers[i + 1]);
  } else if (typeof headers.entries === 'function' && typeof headers.get === 'function') {
    for (const [n, v] of headers.entries()) add(n, v);
  } else {
    for (const name of Object.keys(headers)) add(name, headers[name]);
  }
  return found;
}

class Verifier {
  #engine;
  #transport;
  #clock;
  #logger;
  #proxyId;
  #apiKeyHeader;
  #closed = false;
  #abort = new AbortController();
  #wake = null;
  #ready;
  #resolveReady;
  #rejectReady;
  #refetching = false;

  constructor(config, options = {}) {
    const text = typeof config === 'string' ? config : JSON.stringify(config);
    try {
      this.#engine = new Engine(text);
    } catch (e) {
      throw new ConfigError(typeof e === 'string' ? e : String(e && e.message ? e.message : e));
    }
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger === null ? silentLogger : { ...silentLogger, ...(options.logger ?? defaultLogger) };
    this.#proxyId = options.proxyId ?? `node:${os.hostname()}:${process.pid}`;
    this.#apiKeyHeader = this.#engine.apiKeyHeader();
    if (options.transport) {
      this.#transport = options.transport;
    } else {
      const url = options.sidecarUrl ?? process.env.KEYMESH_SIDECAR_URL;
      if (!url) {
        this.#engine.free();
        throw new ConfigError('no sidecar address: pass options.sidecarUrl or set KEYMESH_SIDECAR_URL');
      }
      this.#transport = createHttpTransport(url);
    }
    this.#ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    // Nobody may be waiting on ready(); a rejection on close() must not be reported as unhandled.
    this.#ready.catch(() => {});
    // The loop only ends on close(); if it ever threw, the keys held would go stale and requests fail closed at
    // max_age_secs, so say why loudly.
    this.#loop().catch((e) => this.#logger.error(`key bundle fetch loop stopped: ${e && e.stack}`));
  }

  /** Resolves once the first key bundle is applied; rejects if the verifier is closed first. */
  ready() {
    return this.#ready;
  }

  /**
   * Decides one request. `headers` is node's `req.headers`, `req.rawHeaders` (keeps repeated headers, as the
   * filter sees them), an array of [name, value] pairs, or a fetch `Headers`.
   */
  authorize({ method, path, headers } = {}) {
    void method; // Rules match on the path, as the filter's.
    const names = this.#apiKeyHeader ? ['authorization', this.#apiKeyHeader] : ['authorization'];
    const [authorization, apiKey = []] = headerValues(headers, names);
    const verdict = JSON.parse(this.#engine.authorize(String(path ?? '/'), authorization, apiKey, this.#clock()));
    if (!verdict.allow && verdict.reason === 'unknown_kid') this.#maybeRefetch();
    return verdict;
  }

  /** What is held: { version, ageMs }. */
  status() {
    return JSON.parse(this.#engine.status(this.#clock()));
  }

  /** Stops the fetch loop; pending ready() promises reject. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    if (this.#wake) this.#wake();
    this.#rejectReady(new Error('keymesh verifier closed before the first key bundle arrived'));
    if (typeof this.#transport.close === 'function') this.#transport.close();
  }

  async #loop() {
    while (!this.#closed) {
      const request = this.#engine.nextFetch(this.#clock());
      if (!request) {
        await this.#sleep(this.#engine.tickMs());
        continue;
      }
      const next = JSON.parse(request);
      const headers = { accept: 'application/json', [PROXY_HEADER]: this.#proxyId };
      if (next.ifNoneMatch) headers['if-none-match'] = next.ifNoneMatch;
      let status = 0;
      let body = EMPTY;
      const sentMs = this.#clock();
      try {
        const res = await this.#transport({
          method: 'GET',
          path: next.path,
          headers,
          timeoutMs: next.timeoutMs,
          signal: this.#abort.signal,
        });
        status = res.status;
        body = res.body ?? EMPTY;
      } catch (e) {
        if (this.#closed) break;
        this.#logger.debug(`bundle fetch error: ${e && e.message}`);
      }
      if (this.#closed) break;
      const out = JSON.parse(this.#engine.onFetchResponse(status, body, sentMs, this.#clock()));
      if (out.event === 'applied') {
        this.#logger.info(out.message);
        this.#resolveReady();
      } else if (out.event === 'rejected' || out.event === 'failed' || out.event === 'mismatch') {
        this.#logger.warn(out.message);
      }
      if (!out.again) await this.#sleep(this.#engine.tickMs());
    }
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  async #maybeRefetch() {
    if (this.#refetching || this.#closed) return;
    const refetch = this.#engine.takeRefetch(this.#clock());
    if (!refetch) return;
    const { path, body } = JSON.parse(refetch);
    this.#refetching = true;
    try {
      const res = await this.#transport({
        method: 'POST',
        path,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
        timeoutMs: 2000,
        signal: this.#abort.signal,
      });
      if (res.status !== 202) this.#logger.warn(`key refetch request answered ${res.status}`);
    } catch (e) {
      this.#logger.warn(`key refetch request failed: ${e && e.message}`);
    } finally {
      this.#refetching = false;
    }
  }
}

/** A verifier for `config` (the Envoy filter's configuration JSON, as an object or text) with its fetch loop. */
function createVerifier(config, options) {
  return new Verifier(config, options);
}

module.exports = { createVerifier, Verifier, ConfigError, ...middleware };
