// The middleware for node:http, Express and Fastify, with a scripted sidecar: allowed requests reach the
// handler with req.keymesh and the headers the filter would forward; refused ones get the filter's reply.
// Express runs on an in-process loopback server; Fastify through inject(); node:http on fake req/res objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import express from 'express';
import Fastify from 'fastify';
import { keymesh, fixtures, fakeSidecar, hang, manualClock } from './support.mjs';

const jwtRow = fixtures.rows.find((r) => r.core.allow && r.core.identity.credential === 'jwt');
const token = jwtRow.authorization[0];
const refusedRow = fixtures.rows.find((r) => !r.core.allow && r.core.status === 401 && r.authorization.length === 1);

async function readyVerifier() {
  const sidecar = fakeSidecar((req, n) => (n === 1 ? { status: 200, body: fixtures.bundle } : hang(req)));
  const verifier = keymesh.createVerifier(fixtures.config, {
    transport: sidecar.transport,
    clock: manualClock(fixtures.nowMs),
    logger: null,
  });
  await verifier.ready();
  return verifier;
}

function fakeExchange(url, rawHeaders) {
  const headers = {};
  for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i].toLowerCase()] = rawHeaders[i + 1];
  const req = { method: 'GET', url, rawHeaders, headers };
  const res = {
    writeHead(status, h) {
      this.status = status;
      this.headers = h;
    },
    end(body) {
      this.body = body;
    },
  };
  return { req, res };
}

test('node:http: identity on allow, the filter\'s reply on deny', async () => {
  const verifier = await readyVerifier();
  const seen = [];
  const listener = keymesh.nodeHttp(verifier, (req) => seen.push(req));
  const ok = fakeExchange(jwtRow.path, ['Authorization', token, 'X-Keymesh-Subject', 'spoofed', 'x-keymesh-issuer', 'evil']);
  listener(ok.req, ok.res);
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].keymesh, jwtRow.core.identity);
  assert.equal(seen[0].headers['x-keymesh-subject'], jwtRow.core.identity.subject);
  assert.equal(seen[0].headers['x-keymesh-issuer'], jwtRow.core.identity.issuer);
  assert.equal(seen[0].headers.authorization, undefined, 'the credential is not passed on (forward_token off)');
  const no = fakeExchange(refusedRow.path, ['authorization', refusedRow.authorization[0]]);
  listener(no.req, no.res);
  assert.equal(seen.length, 1, 'the handler did not run');
  assert.equal(no.res.status, refusedRow.core.status);
  assert.deepEqual(no.res.headers, refusedRow.core.headers);
  assert.equal(no.res.body, refusedRow.core.body);
  // Two Authorization headers: refused as the filter refuses them (node's req.headers keeps only the first).
  const twice = fakeExchange(jwtRow.path, ['authorization', token, 'authorization', token]);
  listener(twice.req, twice.res);
  assert.equal(twice.res.status, 400);
  verifier.close();
});

test('Express: req.keymesh on allow, the filter\'s reply on deny, rules on the full URL', async () => {
  const verifier = await readyVerifier();
  const app = express();
  const router = express.Router();
  router.get('/:id', (req, res) => res.json({ keymesh: req.keymesh, subject: req.get('x-keymesh-subject') }));
  app.use('/orders', keymesh.express(verifier), router);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    const ok = await fetch(`${base}/orders/1`, { headers: { authorization: token, 'x-keymesh-subject': 'spoofed' } });
    assert.equal(ok.status, 200);
    const body = await ok.json();
    assert.deepEqual(body.keymesh, jwtRow.core.identity);
    assert.equal(body.subject, jwtRow.core.identity.subject);
    const no = await fetch(`${base}/orders/1`, { headers: { authorization: refusedRow.authorization[0] } });
    assert.equal(no.status, refusedRow.core.status);
    assert.equal(no.headers.get('www-authenticate'), refusedRow.core.headers['www-authenticate']);
    assert.equal(await no.text(), refusedRow.core.body);
  } finally {
    server.close();
    verifier.close();
  }
});

test('Fastify: request.keymesh on allow, the filter\'s reply on deny', async () => {
  const verifier = await readyVerifier();
  const app = Fastify();
  await app.register(keymesh.fastify(verifier));
  app.get('/orders/:id', async (request) => ({ keymesh: request.keymesh, subject: request.headers['x-keymesh-subject'] }));
  const ok = await app.inject({ method: 'GET', url: '/orders/1', headers: { authorization: token, 'x-keymesh-subject': 'x' } });
  assert.equal(ok.statusCode, 200);
  assert.deepEqual(ok.json().keymesh, jwtRow.core.identity);
  assert.equal(ok.json().subject, jwtRow.core.identity.subject);
  const none = await app.inject({ method: 'GET', url: '/orders/1' });
  assert.equal(none.statusCode, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="keymesh"');
  assert.equal(none.headers['content-type'], 'application/json');
  assert.equal(none.json().error, 'invalid_token');
  const uncovered = await app.inject({ method: 'GET', url: '/elsewhere' });
  assert.equal(uncovered.statusCode, 403, 'no rule covers the path: fail closed');
  await app.close();
  verifier.close();
});
