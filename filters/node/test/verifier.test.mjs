// The fetch loop and the verifier's lifecycle against a scripted sidecar (no network): the filter's protocol
// (first fetch without a long poll, If-None-Match, deltas, a full resync after a delta that does not fit),
// staleness, configuration errors, close().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keymesh, fixtures, fakeSidecar, hang, manualClock, until } from './support.mjs';

const ordersKeyRow = fixtures.rows.find((r) => r.core.allow && r.core.identity.clientId === 'ak_orders');
const ordersKeyHash = fixtures.bundle.api_keys.put.find((k) => k.id === 'ak_orders').hash;
const jwtRow = fixtures.rows.find((r) => r.core.allow && r.core.identity.credential === 'jwt');

function asked(row) {
  const headers = row.authorization.map((v) => ['authorization', v]);
  if (row.xApiKey !== null) headers.push(['x-api-key', row.xApiKey]);
  return { method: 'GET', path: row.path, headers };
}

test('configuration is checked by the filter\'s parser, errors naming the field', () => {
  const base = { sidecar: { cluster: 'keymesh' }, routes: [{ prefix: '/', audience: 'https://orders.local' }] };
  const transport = async () => ({ status: 503, body: Buffer.alloc(0) });
  assert.throws(
    () => keymesh.createVerifier({ ...base, sidecar: { cluster: 'keymesh', timeout_ms: 5 } }, { transport }),
    (e) => e instanceof keymesh.ConfigError && /invalid `sidecar\.timeout_ms`/.test(e.message),
  );
  assert.throws(
    () => keymesh.createVerifier({ ...base, routes: [{ prefix: 'no-slash', audience: 'https://orders.local' }] }, { transport }),
    /routes\[0\]\.prefix/,
  );
  assert.throws(() => keymesh.createVerifier({ ...base, colour: 'blue' }, { transport }), /unknown field `colour`/);
  assert.throws(() => keymesh.createVerifier('{not json', { transport }), keymesh.ConfigError);
  const env = process.env.KEYMESH_SIDECAR_URL;
  delete process.env.KEYMESH_SIDECAR_URL;
  assert.throws(() => keymesh.createVerifier(base), /sidecarUrl/);
  if (env !== undefined) process.env.KEYMESH_SIDECAR_URL = env;
});

test('the loop speaks the filter\'s protocol: first fetch, long poll, deltas, full resync', async () => {
  const answers = [];
  const sidecar = fakeSidecar((req) => new Promise((resolve) => answers.push({ req, resolve })));
  const clock = manualClock(fixtures.nowMs);
  const verifier = keymesh.createVerifier(fixtures.config, { transport: sidecar.transport, clock, logger: null, proxyId: 'node-test' });
  const next = async () => {
    await until(() => answers.length > 0);
    return answers.shift();
  };
  // Before the first bundle: fail closed with 503.
  assert.equal(verifier.authorize(asked(jwtRow)).status, 503);
  let call = await next();
  assert.equal(call.req.path, '/v1/bundle?page=0');
  assert.equal(call.req.headers['if-none-match'], undefined);
  assert.equal(call.req.headers['x-keymesh-proxy'], 'node-test');
  call.resolve({ status: 200, body: fixtures.bundle });
  await verifier.ready();
  assert.equal(verifier.authorize(asked(ordersKeyRow)).allow, true);

  // Something changed, so it asks again at once: a long poll naming the version held.
  call = await next();
  assert.equal(call.req.path, '/v1/bundle?wait=25&page=0');
  assert.equal(call.req.headers['if-none-match'], '"1"');
  assert.equal(call.req.timeoutMs, 27000);
  call.resolve({ status: 200, body: { version: 2, since: 1, issuers: fixtures.bundle.issuers, api_keys: { delete: [ordersKeyHash] } } });
  await until(() => verifier.status().version === 2);
  const refused = verifier.authorize(asked(ordersKeyRow));
  assert.equal(refused.status, 401);
  assert.match(refused.headers['www-authenticate'], /^apikey realm="keymesh", error="invalid_key"/);

  // A delta from a version this process does not hold: keep the keys, ask for everything.
  call = await next();
  assert.equal(call.req.headers['if-none-match'], '"2"');
  call.resolve({ status: 200, body: { version: 9, since: 5, issuers: fixtures.bundle.issuers } });
  call = await next();
  assert.equal(call.req.headers['if-none-match'], undefined, 'a full bundle is asked for');
  assert.equal(call.req.path, '/v1/bundle?page=0');
  assert.equal(verifier.status().version, 2);
  call.resolve({ status: 200, body: { ...fixtures.bundle, version: 9 } });
  await until(() => verifier.status().version === 9);
  assert.equal(verifier.authorize(asked(ordersKeyRow)).allow, true, 'the full bundle brought the key back');

  // A broken response keeps the last good bundle.
  call = await next();
  call.resolve({ status: 200, body: '{"version": 10, "issuers": [{"issuer": 5}]}' });
  call = await next();
  assert.equal(call.req.headers['if-none-match'], '"9"');
  assert.equal(verifier.authorize(asked(jwtRow)).allow, true);
  verifier.close();
  call.resolve({ status: 304, body: '' });
});

test('a full bundle in pages is stored page by page and used only once complete', async () => {
  const answers = [];
  const sidecar = fakeSidecar((req) => new Promise((resolve) => answers.push({ req, resolve })));
  const clock = manualClock(fixtures.nowMs);
  const verifier = keymesh.createVerifier(fixtures.config, { transport: sidecar.transport, clock, logger: null, proxyId: 'node-test' });
  const next = async () => {
    await until(() => answers.length > 0);
    return answers.shift();
  };
  const keys = fixtures.bundle.api_keys.put;
  const others = keys.filter((k) => k.id !== 'ak_orders');
  const orders = keys.filter((k) => k.id === 'ak_orders');
  let call = await next();
  assert.equal(call.req.path, '/v1/bundle?page=0');
  call.resolve({ status: 200, body: { ...fixtures.bundle, version: 4, api_keys: { put: others }, page: { from: 0, next: others.length, keys: keys.length } } });
  call = await next();
  assert.equal(call.req.path, `/v1/bundle?page=${others.length}&version=4`, 'the next page of the same version, at once');
  assert.equal(call.req.headers['if-none-match'], undefined);
  assert.equal(verifier.status().version, null, 'nothing is in force before the last page');
  assert.equal(verifier.authorize(asked(jwtRow)).status, 503);
  call.resolve({ status: 200, body: { version: 4, api_keys: { put: orders }, page: { from: others.length, keys: keys.length } } });
  await until(() => verifier.status().version === 4);
  assert.equal(verifier.authorize(asked(ordersKeyRow)).allow, true);
  assert.equal(verifier.authorize(asked(jwtRow)).allow, true, 'the issuers of the first page');
  call = await next();
  assert.equal(call.req.headers['if-none-match'], '"4"');
  verifier.close();
  call.resolve({ status: 304, body: '' });
});

test('stale key material fails closed at max_age_secs, unless the route keeps the last keys', async () => {
  const config = {
    ...fixtures.config,
    sidecar: { cluster: 'keymesh', long_poll_secs: 0, timeout_ms: 1000, refresh_interval_ms: 100, max_age_secs: 3 },
    routes: [
      ...fixtures.config.routes,
      { prefix: '/lenient', audience: 'https://orders.local', scopes: ['orders:read'], when_stale: 'last_known_keys' },
    ],
  };
  let up = true;
  const sidecar = fakeSidecar((req, n) => {
    if (!up) throw new Error('connection refused');
    return n === 1 ? { status: 200, body: fixtures.bundle } : { status: 304, body: '' };
  });
  const clock = manualClock(fixtures.nowMs);
  const verifier = keymesh.createVerifier(config, { transport: sidecar.transport, clock, logger: null });
  await verifier.ready();
  await until(() => sidecar.requests.length >= 2);
  up = false;
  const fetched = sidecar.requests.length;
  await until(() => sidecar.requests.length > fetched + 1);
  clock.now += 3000;
  assert.equal(verifier.authorize(asked(jwtRow)).allow, true, 'still within max_age_secs');
  clock.now += 1000;
  const stale = verifier.authorize(asked(jwtRow));
  assert.equal(stale.status, 503);
  assert.match(JSON.parse(stale.body).error_description, /stale: no answer from its sidecar for 4 s/);
  const lenient = verifier.authorize({ ...asked(jwtRow), path: '/lenient/1' });
  assert.equal(lenient.allow, true, 'when_stale: last_known_keys');
  // The sidecar answers again: fresh at once.
  up = true;
  await until(() => verifier.authorize(asked(jwtRow)).allow === true);
  verifier.close();
});

test('close() stops the loop and rejects ready() when no bundle arrived', async () => {
  const sidecar = fakeSidecar((req) => hang(req));
  const verifier = keymesh.createVerifier(fixtures.config, { transport: sidecar.transport, logger: null });
  await until(() => sidecar.requests.length === 1);
  verifier.close();
  await assert.rejects(verifier.ready(), /closed before the first key bundle/);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sidecar.requests.length, 1, 'no fetch after close()');
});
